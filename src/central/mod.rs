//! `vitalsd central`: the central view of several sites (docs/mqtt.md, "Central view").
//!
//! Subscribes to every allowed site's topic tree on the broker (a persistent session, so
//! alarm events published while the central is away are kept for it), rebuilds the sites'
//! rooms and beds ([`state`]), and serves the same dashboard, `/ws` and read API as a site,
//! grouped by site. It makes no alarm decision: it shows the alarms the sites publish, and
//! raises `site_offline` itself when a site's Last Will fires or its heartbeats stop.
//! Acknowledging (or pausing) here publishes a signed command to the site
//! ([`crate::mqtt::command`]); the acknowledgement shows once the site's own alarm event
//! says so.

pub mod history;
pub mod state;

use crate::api::auth::{ApiError, Principal, WS_PROTOCOL, check_users, token_from_protocols};
use crate::api::bed_path::BedPath;
use crate::api::records::HistoryParams;
use crate::clock::wall_ms;
use crate::config::{CentralConfig, Role};
use crate::hub::queue::{Class, ClientQueue, Next};
use crate::mqtt::command;
use anyhow::Context as _;
use axum::Router;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use state::{AlarmRef, Out};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Heartbeat period on every dashboard connection.
const WS_HEARTBEAT: Duration = Duration::from_secs(1);
/// After a (re)connection to the broker, every dashboard gets a new snapshot this much later
/// (the retained state has arrived by then).
const RESYNC_AFTER: Duration = Duration::from_secs(2);
/// A send that takes longer than this drops the connection.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// The first wait before connecting to the broker again; it doubles after each failed attempt
/// up to [`RECONNECT_MAX`].
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
/// The longest wait between two attempts (before jitter). The view is blind while the central
/// waits, so this bounds how long after the broker is back the central still shows its sites
/// as it last saw them; a site's bridge backs off to the same 5 s.
const RECONNECT_MAX: Duration = Duration::from_secs(5);

/// The wait before the next attempt: `backoff` less up to half of it at random, so that
/// several central instances cut off together do not come back in step.
fn jittered(backoff: Duration) -> Duration {
    backoff.mul_f64(1.0 - rand::random::<f64>() / 2.0)
}

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    cfg: Arc<CentralConfig>,
    client: AsyncClient,
    cancel: CancellationToken,
}

struct Inner {
    state: state::State,
    clients: HashMap<u64, Arc<ClientQueue>>,
    next_client: u64,
    broker_up: bool,
}

fn lock(m: &Mutex<Inner>) -> std::sync::MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    /// Sends what the state produced to every client.
    fn fan_out(&mut self, out: Out) {
        for (class, msg) in out.msgs {
            for q in self.clients.values() {
                q.push(class, msg.clone());
            }
        }
        if out.resnapshot && !self.clients.is_empty() {
            let snap = self.state.snapshot(true, wall_ms());
            if let Ok(b) = serde_json::to_vec(&snap) {
                let b = Bytes::from(b);
                for q in self.clients.values() {
                    q.push(Class::Priority, b.clone());
                }
            }
        }
    }
}

/// A running central view.
pub struct Running {
    pub addr: SocketAddr,
    pub tls: bool,
    cancel: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
}

impl Running {
    /// Stops the listener and the MQTT link.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
    }
}

/// Starts the central view: the MQTT subscriber, the site watch, the listener.
pub async fn start(cfg: Arc<CentralConfig>, listen: SocketAddr) -> anyhow::Result<Running> {
    let cancel = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let timeout = crate::mqtt::HEARTBEAT * crate::mqtt::HEARTBEAT_MISSED;
    let names: Vec<String> = cfg.sites.iter().map(|s| s.name.clone()).collect();
    let inner = Arc::new(Mutex::new(Inner {
        state: state::State::new(
            &names,
            i64::try_from(timeout.as_millis()).unwrap_or(15_000),
            wall_ms(),
        ),
        clients: HashMap::new(),
        next_client: 0,
        broker_up: false,
    }));
    let m = &cfg.mqtt;
    let mut o = MqttOptions::new(&m.client_id, &m.host, m.port);
    o.set_keep_alive(m.keepalive);
    // A persistent session: QoS 1 alarm events published while the central is away are kept
    // by the broker and delivered when it is back.
    o.set_clean_session(false);
    o.set_max_packet_size(1 << 20, 1 << 20);
    if let Some(user) = &m.username {
        o.set_credentials(user, m.password.clone().unwrap_or_default());
    }
    let tls = crate::mqtt::tls::prepare(m.tls.as_ref())?;
    crate::mqtt::tls::set_transport(&mut o, tls.as_ref());
    let (client, mut el) = AsyncClient::new(o, 1024);
    el.set_network_options(crate::mqtt::network_options());
    let shared = Shared {
        inner: inner.clone(),
        cfg: cfg.clone(),
        client: client.clone(),
        cancel: cancel.clone(),
    };
    tracker.spawn(mqtt_loop(shared.clone(), el));
    // The site watch: heartbeats that stopped.
    {
        let inner = inner.clone();
        let cancel = cancel.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let mut g = lock(&inner);
                let out = g.state.tick(wall_ms());
                g.fan_out(out);
            }
        });
    }
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("listener has no address")?;
    let app = router(shared);
    let app = crate::api::guard::layer(
        app,
        crate::api::guard::Guard::new(&cfg.api, addr, cfg.tls.is_some()),
    );
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(crate::api::serve::tls_config(&t.cert, &t.key)?)),
        None => None,
    };
    let limits = crate::api::serve::Limits {
        header_timeout: cfg.api.header_timeout,
        max_connections: cfg.api.max_connections,
        tls: tls.clone(),
    };
    tracker.spawn(crate::api::serve::serve(
        listener,
        app,
        limits,
        cancel.clone(),
        tracker.clone(),
    ));
    Ok(Running {
        addr,
        tls: tls.is_some(),
        cancel,
        tracker,
    })
}

/// Polls the MQTT client: (re)subscribes on every connection, feeds the state.
async fn mqtt_loop(s: Shared, mut el: rumqttc::EventLoop) {
    let mut backoff = RECONNECT_FIRST;
    let mut logged = false;
    loop {
        let ev = tokio::select! {
            _ = s.cancel.cancelled() => {
                let _ = s.client.try_disconnect();
                return;
            }
            ev = el.poll() => ev,
        };
        match ev {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                backoff = RECONNECT_FIRST;
                logged = false;
                tracing::info!(broker = %s.cfg.mqtt.url, "central: connected to the broker");
                // Where each site's events stopped for us, taken before anything of this
                // connection comes in.
                let points = lock(&s.inner).state.resync_points();
                for site in &s.cfg.sites {
                    let topic = format!("vitalsd/{}/{}/#", crate::mqtt::TOPIC_VERSION, site.name);
                    if let Err(e) = s.client.try_subscribe(topic.clone(), QoS::AtLeastOnce) {
                        tracing::warn!(%topic, error = %e, "central: cannot subscribe");
                    }
                }
                // Subscribed first (the broker takes a connection's packets in order), then
                // ask every site for the events after those: a site that reconnected to a
                // restarted broker before us replayed them to nobody (docs/mqtt.md, "Resync").
                for (site, after) in points {
                    request_resync(&s, &site, after);
                }
                {
                    let mut g = lock(&s.inner);
                    g.broker_up = true;
                    g.state.reconnected(wall_ms());
                }
                // Once the retained state has come in again, every dashboard gets a new
                // snapshot: the view is whole again whatever happened meanwhile.
                let inner = s.inner.clone();
                let cancel = s.cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = tokio::time::sleep(RESYNC_AFTER) => {
                            lock(&inner).fan_out(Out { resnapshot: true, ..Out::default() });
                        }
                    }
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) => {
                let mut g = lock(&s.inner);
                let mut out = g
                    .state
                    .on_message(&p.topic, &p.payload, p.retain, wall_ms());
                let resync = std::mem::take(&mut out.resync);
                g.fan_out(out);
                drop(g);
                for (site, after) in resync {
                    request_resync(&s, &site, after);
                }
            }
            Ok(_) => {}
            Err(e) => {
                lock(&s.inner).broker_up = false;
                if !std::mem::replace(&mut logged, true) {
                    tracing::warn!(broker = %s.cfg.mqtt.url, error = %e, "central: broker unreachable; retrying");
                }
                tokio::select! {
                    _ = s.cancel.cancelled() => return,
                    _ = tokio::time::sleep(jittered(backoff)) => {}
                }
                // Whichever of a site and the central is back first, no alarm event is lost
                // (the resync request, docs/mqtt.md): the central need not race the sites.
                backoff = (backoff * 2).min(RECONNECT_MAX);
            }
        }
    }
}

/// Asks `site` to publish again its alarm events after `after` (QoS 1; the site's replies
/// are `"replay": true`, duplicates dropped by `event_id`).
fn request_resync(s: &Shared, site: &str, after: i64) {
    let topic = crate::mqtt::Topics::new(site).resync();
    let body = crate::mqtt::resync_request(after, &s.cfg.mqtt.client_id);
    match s.client.try_publish(topic, QoS::AtLeastOnce, false, body) {
        Ok(()) => tracing::debug!(%site, after, "central: resync asked"),
        Err(e) => tracing::warn!(%site, error = %e, "central: cannot ask for a resync"),
    }
}

fn router(s: Shared) -> Router {
    Router::new()
        .merge(crate::api::dashboard::routes())
        .route("/healthz", get(healthz))
        .route("/api/rooms", get(rooms))
        .route("/api/sites", get(sites))
        .route("/api/alarms", get(alarms))
        .route("/api/alarms/history", get(alarm_history))
        .route("/api/beds/{room}/{recliner}/history", get(bed_history))
        .route("/api/alarms/{id}/ack", post(acknowledge))
        .route("/api/beds/{room}/{recliner}/audio-pause", post(pause))
        .route("/ws", get(ws_upgrade))
        .layer(axum::extract::DefaultBodyLimit::max(s.cfg.api.max_body))
        .with_state(s)
}

fn require(s: &Shared, headers: &HeaderMap, role: Role) -> Result<Principal, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    check_users(&s.cfg.users, token, role)
}

fn json_response(v: &Value) -> Response {
    axum::Json(v).into_response()
}

async fn healthz(State(s): State<Shared>) -> Response {
    let g = lock(&s.inner);
    let body = json!({
        "status": if g.broker_up { "ok" } else { "degraded" },
        "broker": if g.broker_up { "connected" } else { "unreachable" },
        "clients": g.clients.len(),
        "seq": g.state.seq(),
        "sites": g.state.sites_json(),
    });
    let status = if g.broker_up {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn rooms(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(e) = require(&s, &headers, Role::Viewer) {
        return e.into_response();
    }
    let snap = lock(&s.inner).state.snapshot(false, wall_ms());
    json_response(&snap)
}

async fn sites(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(e) = require(&s, &headers, Role::Viewer) {
        return e.into_response();
    }
    let sites = lock(&s.inner).state.sites_json();
    json_response(&json!({ "sites": sites }))
}

async fn alarms(State(s): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(e) = require(&s, &headers, Role::Viewer) {
        return e.into_response();
    }
    let list = lock(&s.inner).state.alarms();
    json_response(&json!({ "alarms": list }))
}

/// The alarm events the central received (its bounded log, [`history::MAX_EVENTS`]), newest
/// first, in the shape of a site's `GET /api/alarms/history` (same query).
async fn alarm_history(
    State(s): State<Shared>,
    headers: HeaderMap,
    q: Result<
        axum::extract::Query<crate::api::alarms::HistoryQuery>,
        axum::extract::rejection::QueryRejection,
    >,
) -> Result<Response, ApiError> {
    require(&s, &headers, Role::Viewer)?;
    let q = crate::api::records::query(q)?;
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let g = lock(&s.inner);
    if let Some(b) = &q.bed
        && !g.state.has_bed(b)
    {
        return Err(ApiError::not_found(format!(
            "no bed {b:?}, expected a central bed id (site/room/recliner)"
        )));
    }
    let events = g.state.history.events(q.bed.as_deref(), limit);
    Ok(json_response(&json!({ "events": events })))
}

/// A bed's readings of one metric from the central's window ([`history::WINDOW_MS`]), in
/// the shape of a site's `GET /api/beds/{room}/{recliner}/history` (same query).
async fn bed_history(
    State(s): State<Shared>,
    headers: HeaderMap,
    BedPath(bed): BedPath,
    q: Result<axum::extract::Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    require(&s, &headers, Role::Viewer)?;
    let r = crate::api::records::query(q)?.range()?;
    let g = lock(&s.inner);
    if !g.state.has_bed(&bed) {
        return Err(ApiError::not_found(format!(
            "no bed {bed:?}, expected a central bed id (site/room/recliner)"
        )));
    }
    let points = g
        .state
        .history
        .query(&bed, r.metric, r.from, r.to, r.points);
    Ok(json_response(&json!({
        "bed": bed,
        "metric": r.metric.name(),
        "unit": r.metric.unit(),
        "from": crate::clock::rfc3339_ms(r.from),
        "to": crate::clock::rfc3339_ms(r.to),
        "points": points,
    })))
}

/// Signs `action` for `site` and publishes it on the site's command topic.
fn send_command(
    s: &Shared,
    site: &str,
    action: command::Action,
    who: &Principal,
) -> Result<(), ApiError> {
    let secret = s
        .cfg
        .site(site)
        .and_then(|c| c.command_secret.as_deref())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                format!(
                    "no command_secret for site {site:?} in the central config, expected [[sites]] command_secret (the site's [mqtt] command_secret)"
                ),
            )
        })?;
    if !lock(&s.inner).broker_up {
        // Queued until the broker is back, it could arrive too late to be accepted.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the broker is unreachable, so the command cannot reach the site; try again, or act at the site",
        ));
    }
    let body = command::Body {
        action,
        site: site.to_owned(),
        actor: who.name.clone(),
        at_ms: wall_ms(),
        nonce: command::nonce(),
    };
    let topic = crate::mqtt::Topics::new(site).command();
    s.client
        .try_publish(topic, QoS::AtLeastOnce, false, command::sign(secret, &body))
        .map_err(|e| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("cannot send the command to the broker: {e}"),
            )
        })?;
    tracing::info!(%site, actor = %who.name, command = ?body.action, "central: command sent");
    Ok(())
}

/// Acknowledging at central sends the command to the site: `202 Accepted`; the alarm shows
/// acknowledged when the site's own event says so.
async fn acknowledge(
    State(s): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let who = require(&s, &headers, Role::Nurse)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("{id:?} is not an alarm id, expected a number"))
    })?;
    let r = lock(&s.inner).state.alarm_ref(id);
    match r {
        None => Err(ApiError::not_found(format!("no alarm {id}"))),
        Some(AlarmRef::Central(site)) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "alarm {id} is the central's site_offline for {site:?}: it clears when the site is heard again, it is not acknowledged"
            ),
        )),
        Some(AlarmRef::Site(site, alarm)) => {
            send_command(&s, &site, command::Action::Acknowledge { alarm }, &who)?;
            Ok((
                StatusCode::ACCEPTED,
                axum::Json(json!({ "sent": true, "site": site, "site_alarm": alarm })),
            ))
        }
    }
}

/// Pausing a bed's audio at central: a command to the site, as for an acknowledgement.
async fn pause(
    State(s): State<Shared>,
    headers: HeaderMap,
    BedPath(bed): BedPath,
    raw: axum::body::Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let who = require(&s, &headers, Role::Nurse)?;
    let (site, site_bed) = lock(&s.inner)
        .state
        .site_bed(&bed)
        .ok_or_else(|| ApiError::not_found(format!("no bed {bed:?}")))?;
    let seconds = if raw.is_empty() {
        None
    } else {
        let v: Value = serde_json::from_slice(&raw).map_err(|e| {
            ApiError::bad_request(format!("{e}; expected {{\"seconds\": N}} (optional)"))
        })?;
        v["seconds"].as_u64()
    };
    send_command(
        &s,
        &site,
        command::Action::PauseAudio {
            bed: site_bed,
            seconds,
        },
        &who,
    )?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "sent": true, "site": site })),
    ))
}

#[derive(Debug, serde::Deserialize)]
struct WsParams {
    /// Accepted and ignored: the central sends a whole snapshot on every connection.
    #[allow(dead_code)]
    since: Option<u64>,
    token: Option<String>,
}

async fn ws_upgrade(
    State(s): State<Shared>,
    headers: HeaderMap,
    params: Result<axum::extract::Query<WsParams>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    // The Origin of the upgrade is checked by the guard layer (src/api/guard.rs) around the
    // whole router, against this central's own names and `[api] allowed_origins`.
    let token = match params {
        Ok(axum::extract::Query(p)) => p.token,
        Err(e) => {
            return ApiError::bad_request(format!(
                "bad query: {e}; expected ?since=<sequence number>&token=<token>"
            ))
            .into_response();
        }
    };
    let token = token.or_else(|| token_from_protocols(&headers));
    // As at a site: a page that sends no token at the upgrade authenticates with its first
    // message (the dashboard does), and gets nothing before it.
    let needs_auth_message = token.is_none() && !s.cfg.users.is_empty();
    if !needs_auth_message && let Err(e) = check_users(&s.cfg.users, token.as_deref(), Role::Viewer)
    {
        return e.into_response();
    }
    ws.protocols([WS_PROTOCOL])
        .max_message_size(16 * 1024)
        .on_upgrade(move |mut socket| async move {
            if needs_auth_message {
                let checked =
                    crate::api::read_auth_message(&mut socket, s.cfg.api.header_timeout, &s.cancel)
                        .await
                        .and_then(|token| {
                            check_users(&s.cfg.users, Some(&token), Role::Viewer)
                                .map_err(|e| e.message)
                        });
                if let Err(why) = checked {
                    tracing::debug!(reason = %why, "central websocket refused");
                    let frame = axum::extract::ws::CloseFrame {
                        code: crate::api::CLOSE_UNAUTHORIZED,
                        reason: Utf8Bytes::from(why.chars().take(120).collect::<String>()),
                    };
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        socket.send(Message::Close(Some(frame))),
                    )
                    .await;
                    return;
                }
            }
            serve_client(s, socket).await;
        })
}

async fn serve_client(s: Shared, mut socket: WebSocket) {
    let queue = Arc::new(ClientQueue::default());
    let (id, snapshot) = {
        let mut g = lock(&s.inner);
        let id = g.next_client;
        g.next_client += 1;
        g.clients.insert(id, queue.clone());
        (id, g.state.snapshot(false, wall_ms()))
    };
    let reason: Result<(), String> = async {
        send(&mut socket, serde_json::to_vec(&snapshot).unwrap_or_default()).await?;
        let mut beat = tokio::time::interval(WS_HEARTBEAT);
        loop {
            loop {
                match queue.pop() {
                    Next::Send(m) => send(&mut socket, m).await?,
                    Next::Empty => break,
                    Next::Closed(why) => return Err(why),
                }
            }
            tokio::select! {
                _ = s.cancel.cancelled() => return Err("central shutting down".to_owned()),
                _ = queue.notified() => {}
                _ = beat.tick() => {
                    let (seq, clients) = {
                        let g = lock(&s.inner);
                        (g.state.seq(), g.clients.len())
                    };
                    let hb = json!({
                        "v": 1, "type": "heartbeat", "seq": seq,
                        "time": crate::clock::rfc3339_ms(wall_ms()),
                        "coalesced": queue.coalesced(),
                        "dashboards": { "live": 0, "hidden": 0, "not_armed": 0, "clients": clients },
                        "counted": false,
                    });
                    send(&mut socket, serde_json::to_vec(&hb).unwrap_or_default()).await?;
                }
                incoming = socket.recv() => match incoming {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(format!("client error: {e}")),
                    // Page heartbeats and anything else: nothing a client sends changes state.
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    .await;
    lock(&s.inner).clients.remove(&id);
    if let Err(why) = reason {
        tracing::debug!(client = id, reason = %why, "central: websocket closed");
    }
}

async fn send(socket: &mut WebSocket, m: impl Into<Bytes>) -> Result<(), String> {
    let text = Utf8Bytes::try_from(m.into()).map_err(|e| format!("message not UTF-8: {e}"))?;
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!(
            "client did not take a message for {SEND_TIMEOUT:?}"
        )),
    }
}

/// Runs the central view until `shutdown` resolves.
pub async fn run(
    cfg: Arc<CentralConfig>,
    listen: SocketAddr,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = start(cfg, listen).await?;
    let (http, ws) = if running.tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("vitalsd central listening on {http}://{}/", running.addr);
    println!("  WebSocket:  {ws}://{}/ws", running.addr);
    println!("  API:        {http}://{}/api/rooms", running.addr);
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reconnect_wait_is_jittered_within_half_of_the_backoff() {
        for _ in 0..1000 {
            let w = jittered(RECONNECT_MAX);
            assert!(w > RECONNECT_MAX / 2 && w <= RECONNECT_MAX, "{w:?}");
        }
    }
}
