//! The HTTP JSON API and the WebSocket `/ws` (axum). Formats: `docs/api.md`.
//!
//! Every WebSocket connection has its own task and its own queue ([`crate::hub::queue`]): a
//! client that stops reading stalls only itself. Requests and messages are size-bounded.
//!
//! The one message a client sends is the dashboard page's application heartbeat
//! ([`parse_page_beat`]): whether its alarm sound is armed and whether it is visible. Only an
//! armed page counts as a dashboard that can sound ([`crate::alarm::Dashboards`]); answering
//! pings proves nothing (browsers answer them for a frozen tab too).

pub mod alarms;
pub mod auth;
pub mod bed_path;
pub mod dashboard;
pub mod guard;
pub mod metrics;
pub mod openapi;
pub mod records;
pub mod serve;

use crate::config::Role;
use crate::hub::Hub;
use crate::hub::queue::Next;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Largest message a client may send us (clients only send small control messages).
const MAX_CLIENT_MESSAGE: usize = 16 * 1024;
/// Heartbeat period on every connection.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Largest application heartbeat a page sends; anything longer is not one.
pub const MAX_PAGE_BEAT: usize = 1024;
/// A page's heartbeats that say nothing new are passed on at most this often, and ones that
/// do at most every [`MIN_CHANGE_GAP`] (a client that floods them does not take the hub's
/// lock at its own rate; the page's next periodic heartbeat carries what was skipped).
const MIN_BEAT_GAP: Duration = Duration::from_millis(250);
const MIN_CHANGE_GAP: Duration = Duration::from_millis(20);
/// Bad client messages logged per connection (the rest are only counted).
const BAD_MESSAGES_LOGGED: u32 = 5;
/// A send that takes longer than this means the client is not reading: drop the connection
/// (its queue is bounded anyway; this frees the task).
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// Shared state of the HTTP handlers.
#[derive(Clone)]
pub struct ApiState {
    pub hub: Arc<Hub>,
    pub cancel: CancellationToken,
    /// The durable record (sessions, history, exports); None when running without one.
    pub store: Option<crate::store::StoreHandle>,
    /// Counters of the overload defences, shown by `/healthz`.
    pub overload: Arc<crate::overload::Overload>,
}

/// The router: `/api/rooms`, `/healthz`, `/ws`, and the dashboard (`/`, `/assets/...`).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .merge(dashboard::routes())
        .route("/healthz", get(healthz))
        .route("/api/rooms", get(rooms))
        .route("/ws", get(ws_upgrade))
        .merge(alarms::routes())
        .merge(records::routes())
        .merge(metrics::routes())
        .merge(openapi::routes())
        .layer(axum::extract::DefaultBodyLimit::max(
            state.hub.config().api.max_body,
        ))
        .with_state(state)
}

/// For clinic IT's monitoring: 200 while the daemon can record, 503 (`"status":
/// "degraded"`) while the store cannot write (readings are then held in memory).
async fn healthz(State(s): State<ApiState>) -> Response {
    let store = s.store.as_ref().map(|st| st.health());
    let writable = store.as_ref().is_none_or(|h| h.writable);
    let body = serde_json::json!({
        "status": if writable { "ok" } else { "degraded" },
        "clients": s.hub.client_count(),
        "seq": s.hub.last_seq(),
        "dashboards": s.hub.dashboard_counts(),
        "delivery": s.hub.delivery(),
        "store": store,
        "overload": s.overload.json(s.hub.config()),
    });
    let status = if writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn rooms(State(s): State<ApiState>, _who: auth::RequireViewer) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        s.hub.snapshot_json(),
    )
        .into_response()
}

#[derive(Debug, Deserialize)]
struct WsParams {
    /// Resume after this sequence number.
    since: Option<u64>,
    /// The caller's token (accepted; a first message or the subprotocol keeps it out of URLs).
    token: Option<String>,
}

/// The WebSocket close code for a connection that did not authenticate (no, a bad or an
/// unknown token in its first message): like HTTP 401, in the private range 4000-4999.
pub const CLOSE_UNAUTHORIZED: u16 = 4401;

/// `/ws`. The guard ([`guard`]) has already checked the upgrade's `Host` and `Origin` against
/// the allowlists (`[api] allowed_hosts`, `allowed_origins`). The token: `?token=` or the
/// subprotocol `vitalsd.token.<token>` is checked here (401 before the upgrade); without
/// either (and with `[[users]]`), the upgrade is accepted and the first message must be
/// `{"type":"auth","token":...}` within `[api] header_timeout`: nothing is sent before it, and
/// a missing or wrong one closes the connection with [`CLOSE_UNAUTHORIZED`].
async fn ws_upgrade(
    State(s): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<WsParams>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let (since, token) = match params {
        Ok(Query(p)) => (p.since, p.token),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("bad query: {e}; expected ?since=<sequence number>"),
            )
                .into_response();
        }
    };
    // A token in the subprotocol list (`vitalsd`, `vitalsd.token.<token>`) stays out of URLs
    // and logs; the query is still accepted.
    let token = token.or_else(|| auth::token_from_protocols(&headers));
    let needs_auth_message = token.is_none() && !s.hub.config().users.is_empty();
    if !needs_auth_message && let Err(e) = auth::check(&s, token.as_deref(), Role::Viewer) {
        return e.into_response();
    }
    // The read buffer stays at tungstenite's 128 KiB default although it is zeroed on every
    // read attempt (~2 % of the CPU at 25k lines/s): with a small one, an oversized message
    // is left unread when the socket closes, the kernel resets the connection, and the
    // client may never read its 1009 close frame (tests/security.rs).
    ws.protocols([auth::WS_PROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |mut socket| async move {
            if needs_auth_message {
                let wait = s.hub.config().api.header_timeout;
                match first_message_auth(&s, &mut socket, wait).await {
                    Ok(who) => tracing::debug!(user = %who.name, "websocket authenticated"),
                    Err(why) => {
                        tracing::debug!(reason = %why, "websocket refused");
                        let frame = CloseFrame {
                            code: CLOSE_UNAUTHORIZED,
                            reason: Utf8Bytes::from(truncate(&why, 120)),
                        };
                        let _ = tokio::time::timeout(
                            Duration::from_secs(1),
                            socket.send(Message::Close(Some(frame))),
                        )
                        .await;
                        return;
                    }
                }
            }
            serve_client(s, socket, since).await;
        })
}

/// The first message of a WebSocket that authenticates in-band.
#[derive(Debug, Deserialize)]
struct AuthMsg {
    #[serde(rename = "type")]
    kind: String,
    token: String,
}

/// Reads `{"type":"auth","token":...}`. Errors say what was expected.
pub fn parse_auth_message(text: &str) -> Result<String, String> {
    const EXPECTED: &str = r#"expected {"type":"auth","token":"<token>"} first"#;
    let m: AuthMsg = serde_json::from_str(text).map_err(|e| {
        let e = e.to_string();
        format!("not an auth message ({}); {EXPECTED}", truncate(&e, 40))
    })?;
    if m.kind != "auth" {
        return Err(format!(
            "message type {:?}; {EXPECTED}",
            truncate(&m.kind, 20)
        ));
    }
    Ok(m.token)
}

/// Waits up to `wait` for the auth message and checks its token.
async fn first_message_auth(
    s: &ApiState,
    socket: &mut WebSocket,
    wait: Duration,
) -> Result<auth::Principal, String> {
    let token = read_auth_message(socket, wait, &s.cancel).await?;
    auth::check(s, Some(&token), Role::Viewer).map_err(|e| e.message)
}

/// Waits up to `wait` for a WebSocket's first message, `{"type":"auth","token":...}`, and
/// returns its token (checked by the caller: the site's or the central's users). Shared by the
/// site's and the central's `/ws`.
pub async fn read_auth_message(
    socket: &mut WebSocket,
    wait: Duration,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<String, String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let next = tokio::select! {
            _ = cancel.cancelled() => return Err("shutting down".to_owned()),
            n = tokio::time::timeout_at(deadline, socket.recv()) => n,
        };
        let text = match next {
            Err(_) => {
                return Err(format!(
                    "no auth message within {wait:?}; expected {{\"type\":\"auth\",\"token\":...}}"
                ));
            }
            Ok(None | Some(Ok(Message::Close(_)))) => return Err("closed before auth".to_owned()),
            Ok(Some(Err(e))) => return Err(format!("client error: {e}")),
            Ok(Some(Ok(Message::Text(t)))) => t,
            Ok(Some(Ok(Message::Binary(_)))) => {
                return Err(
                    r#"binary message; expected {"type":"auth","token":...} first"#.to_owned(),
                );
            }
            // Pings and pongs before the auth message are allowed.
            Ok(Some(Ok(_))) => continue,
        };
        return parse_auth_message(text.as_str());
    }
}

/// The application heartbeat a dashboard page sends (docs/api.md):
/// `{"type":"heartbeat","audio_armed":bool,"visible":bool, ...}`. Other fields (`playing`,
/// `seq`, ...) are allowed and ignored, so pages may add some.
#[derive(Debug, Deserialize)]
struct PageBeatMsg {
    #[serde(rename = "type")]
    kind: String,
    audio_armed: bool,
    visible: bool,
}

/// Reads a page's heartbeat. Errors say what was wrong and what was expected; the caller
/// ignores the message (a bad heartbeat never closes a dashboard's connection).
pub fn parse_page_beat(text: &str) -> Result<crate::alarm::PageBeat, String> {
    const EXPECTED: &str =
        r#"expected {"type":"heartbeat","audio_armed":true|false,"visible":true|false}"#;
    if text.len() > MAX_PAGE_BEAT {
        return Err(format!(
            "message of {} bytes, longer than a heartbeat ({MAX_PAGE_BEAT}); {EXPECTED}",
            text.len()
        ));
    }
    let m: PageBeatMsg =
        serde_json::from_str(text).map_err(|e| format!("not a heartbeat ({e}); {EXPECTED}"))?;
    if m.kind != "heartbeat" {
        return Err(format!("message type {:?}; {EXPECTED}", m.kind));
    }
    Ok(crate::alarm::PageBeat {
        audio_armed: m.audio_armed,
        visible: m.visible,
    })
}

/// What one connection remembers of its page's heartbeats.
#[derive(Default)]
struct BeatGate {
    last: Option<(tokio::time::Instant, crate::alarm::PageBeat)>,
    bad: u32,
}

impl BeatGate {
    /// Handles a text message from client `id`: a heartbeat goes to the hub (unless it comes
    /// too soon after the last, see [`MIN_BEAT_GAP`]); anything else is ignored with a debug
    /// log.
    fn text(&mut self, hub: &Hub, id: u64, text: &str) {
        match parse_page_beat(text) {
            Ok(beat) => {
                let now = tokio::time::Instant::now();
                let skip = self.last.is_some_and(|(at, b)| {
                    let gap = if b == beat {
                        MIN_BEAT_GAP
                    } else {
                        MIN_CHANGE_GAP
                    };
                    now.duration_since(at) < gap
                });
                if !skip {
                    self.last = Some((now, beat));
                    hub.page_beat(id, beat);
                }
            }
            Err(why) => self.bad(id, &why),
        }
    }

    fn bad(&mut self, id: u64, why: &str) {
        self.bad = self.bad.saturating_add(1);
        if self.bad <= BAD_MESSAGES_LOGGED {
            tracing::debug!(client = id, reason = %why, "client message ignored");
        }
    }
}

async fn serve_client(s: ApiState, socket: WebSocket, since: Option<u64>) {
    use futures_util::StreamExt;
    let sub = s.hub.subscribe(since);
    let id = sub.id;
    let queue = sub.queue.clone();
    // What the client sends is read by a task of its own, polled only when the socket has
    // something to read: polled beside the writes, the read would be attempted (and
    // tungstenite's 128 KiB read buffer zeroed) on every wake of the writer, once per batch of
    // readings under load. The reader ends the connection by answering `ended`.
    let (mut socket, incoming) = socket.split();
    let (ended_tx, mut ended) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(read_client(s.hub.clone(), id, incoming, ended_tx));
    let reason = async {
        for m in sub.preamble {
            send(&mut socket, m).await?;
        }
        let mut beat = tokio::time::interval(HEARTBEAT);
        // The seqs of the messages in the write being made (for the delivery histogram).
        let mut sent: Vec<u64> = Vec::with_capacity(MAX_BATCH);
        // When the last write was made (for `BUSY_GAP`).
        let mut wrote_at = tokio::time::Instant::now();
        loop {
            // Drain everything queued, priority first.
            // Everything queued goes out in one write: feed each message, flush once.
            let mut fed = 0usize;
            loop {
                match queue.pop() {
                    Next::Send(m) => {
                        sent.push(crate::metrics::seq_of(&m));
                        feed(&mut socket, m).await?;
                        fed += 1;
                        // Bound a burst so the first message is not held back for long.
                        if fed >= MAX_BATCH {
                            flush(&mut socket).await?;
                            crate::metrics::global().delivered(&sent);
                            sent.clear();
                            fed = 0;
                        }
                    }
                    Next::Empty => break,
                    Next::Closed(why) => return Err(why),
                }
            }
            if fed > 0 {
                flush(&mut socket).await?;
                crate::metrics::global().delivered(&sent);
                sent.clear();
                wrote_at = tokio::time::Instant::now();
            }
            tokio::select! {
                _ = s.cancel.cancelled() => return Err("daemon shutting down".to_owned()),
                _ = queue.notified() => {
                    // Busy: let the tasks ready now (device reads of the same moment) run
                    // first, so that their messages go out in this one write, not one each.
                    if wrote_at.elapsed() < BUSY_GAP {
                        tokio::task::yield_now().await;
                    }
                }
                _ = beat.tick() => {
                    send(&mut socket, s.hub.heartbeat(id, queue.coalesced())).await?;
                    // Pings keep the link checked; a pong proves only that the browser (not
                    // the page, not its sound) is there, so it keeps no alarm away.
                    use futures_util::SinkExt;
                    socket
                        .send(Message::Ping(Bytes::from_static(b"alive?")))
                        .await
                        .map_err(|e| format!("ping failed: {e}"))?;
                }
                // The reader ended: the client closed (Ok) or failed.
                r = &mut ended => return r.unwrap_or(Ok(())),
            }
        }
    }
    .await;
    reader.abort();
    s.hub.unsubscribe(id);
    crate::metrics::global()
        .coalesced_gone
        .fetch_add(queue.coalesced(), std::sync::atomic::Ordering::Relaxed);
    if let Err(why) = reason {
        tracing::debug!(client = id, reason = %why, "websocket closed");
        // A message over MAX_CLIENT_MESSAGE is "message too big" (1009), anything else "going
        // away" (1001).
        let too_big = why.contains("Space limit exceeded") || why.contains("too long");
        let frame = CloseFrame {
            code: if too_big {
                axum::extract::ws::close_code::SIZE
            } else {
                axum::extract::ws::close_code::AWAY
            },
            reason: Utf8Bytes::from(truncate(&why, 120)),
        };
        use futures_util::SinkExt;
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

/// Reads what client `id` sends until it closes or fails, and says which on `ended`. A page's
/// heartbeat says whether it can sound. Nothing a client sends changes alarm state (actions go
/// through the HTTP API, with a token).
async fn read_client(
    hub: Arc<Hub>,
    id: u64,
    mut incoming: futures_util::stream::SplitStream<WebSocket>,
    ended: tokio::sync::oneshot::Sender<Result<(), String>>,
) {
    use futures_util::StreamExt;
    // Connecting proves nothing: only the page's armed heartbeats count (`BeatGate`).
    let mut gate = BeatGate::default();
    let r = loop {
        match incoming.next().await {
            None | Some(Ok(Message::Close(_))) => break Ok(()),
            Some(Err(e)) => break Err(format!("client error: {e}")),
            Some(Ok(Message::Text(t))) => gate.text(&hub, id, t.as_str()),
            Some(Ok(Message::Binary(b))) => {
                gate.bad(
                    id,
                    &format!(
                        "binary message of {} bytes, expected a text heartbeat",
                        b.len()
                    ),
                );
            }
            Some(Ok(_)) => {}
        }
    };
    let _ = ended.send(r);
}

/// The writing half of a client's WebSocket.
type WsSink = futures_util::stream::SplitSink<WebSocket, Message>;

/// Messages written to a socket before it is flushed.
const MAX_BATCH: usize = 64;

/// A client's writer woken this soon after its last write is under load: it yields once
/// before draining its queue, so that the messages of the device reads ready at that moment
/// share its write. Measured (`OVERLOAD_REPEAT=3 OVERLOAD_RATES=1000,25000 cargo bench --bench
/// overload`, twice, alternating with the build before): yielding on every wake took CPU per
/// line at 25k/s from 15.7-17.7 µs to 14.1-15.9 but cost 12 % more at 1k/s, where there is
/// nothing to batch; yielding only when busy, the median CPU ratio to the relay at 25k/s was
/// 2.30x and 2.37x against 2.46x and 2.82x, at 1k/s 1.94x and 1.78x against 1.92x and 1.78x
/// (the machine noisy: modest, not proven beyond it). An alarm waits at most for the tasks
/// that were ready when it was queued.
const BUSY_GAP: Duration = Duration::from_micros(250);

/// Queues a message on the socket without flushing it.
async fn feed(socket: &mut WsSink, m: Bytes) -> Result<(), String> {
    use futures_util::SinkExt;
    let text = Utf8Bytes::try_from(m).map_err(|e| format!("message not UTF-8: {e}"))?;
    match tokio::time::timeout(SEND_TIMEOUT, socket.feed(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!(
            "client did not take a message for {SEND_TIMEOUT:?}"
        )),
    }
}

/// Writes out what was fed.
async fn flush(socket: &mut WsSink) -> Result<(), String> {
    use futures_util::SinkExt;
    match tokio::time::timeout(SEND_TIMEOUT, socket.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!("client did not take messages for {SEND_TIMEOUT:?}")),
    }
}

async fn send(socket: &mut WsSink, m: Bytes) -> Result<(), String> {
    use futures_util::SinkExt;
    let text = Utf8Bytes::try_from(m).map_err(|e| format!("message not UTF-8: {e}"))?;
    match tokio::time::timeout(SEND_TIMEOUT, socket.send(Message::Text(text))).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!(
            "client did not take a message for {SEND_TIMEOUT:?}"
        )),
    }
}

fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::{MAX_PAGE_BEAT, parse_auth_message, parse_page_beat};
    use crate::alarm::PageBeat;

    #[test]
    fn a_page_heartbeat_says_whether_it_can_sound_and_whether_it_is_visible() {
        let b = parse_page_beat(
            r#"{"type":"heartbeat","audio_armed":true,"visible":false,"playing":"high","seq":7}"#,
        );
        assert_eq!(
            b,
            Ok(PageBeat {
                audio_armed: true,
                visible: false
            })
        );
        let b = parse_page_beat(r#"{"type":"heartbeat","audio_armed":false,"visible":true}"#);
        assert_eq!(
            b,
            Ok(PageBeat {
                audio_armed: false,
                visible: true
            })
        );
    }

    #[test]
    fn bad_or_oversized_heartbeats_are_refused_with_what_was_expected() {
        let long = format!(
            r#"{{"type":"heartbeat","audio_armed":true,"visible":true,"pad":"{}"}}"#,
            "x".repeat(MAX_PAGE_BEAT)
        );
        for bad in [
            "",
            "alive?",
            "null",
            "[]",
            r#"{"type":"heartbeat"}"#,
            r#"{"type":"heartbeat","audio_armed":"yes","visible":true}"#,
            r#"{"type":"heartbeat","audio_armed":1,"visible":true}"#,
            r#"{"type":"ack","audio_armed":true,"visible":true}"#,
            r#"{"audio_armed":true,"visible":true}"#,
            long.as_str(),
        ] {
            let e = parse_page_beat(bad).expect_err(bad);
            assert!(e.contains(r#"expected {"type":"heartbeat""#), "{bad}: {e}");
        }
    }

    #[test]
    fn an_auth_message_carries_the_token_and_anything_else_says_what_was_expected() {
        assert_eq!(
            parse_auth_message(r#"{"type":"auth","token":"abc"}"#),
            Ok("abc".to_owned())
        );
        for bad in [
            "",
            "abc",
            r#"{"type":"heartbeat","audio_armed":true,"visible":true}"#,
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":5}"#,
        ] {
            let e = parse_auth_message(bad).expect_err(bad);
            assert!(e.contains(r#"{"type":"auth","token""#), "{bad}: {e}");
        }
    }
}
