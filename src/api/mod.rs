//! The HTTP JSON API and the WebSocket `/ws` (axum). Formats: `docs/api.md`.
//!
//! Every WebSocket connection has its own task and its own queue ([`crate::hub::queue`]): a
//! client that stops reading stalls only itself. Requests and messages are size-bounded.

pub mod alarms;
pub mod auth;
pub mod dashboard;
pub mod guard;
pub mod records;
pub mod serve;

use crate::config::Role;
use crate::hub::Hub;
use crate::hub::queue::Next;
use auth::require;
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
        "store": store,
    });
    let status = if writable {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn rooms(State(s): State<ApiState>, headers: HeaderMap) -> Response {
    if let Err(e) = require(&s, &headers, Role::Viewer) {
        return e.into_response();
    }
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
    /// The caller's token (browsers cannot set headers on a WebSocket).
    token: Option<String>,
}

/// Whether a browser's `Origin` names the host it connected to. Another site's page cannot open
/// a WebSocket to the daemon with a user's token this way. Clients that send no Origin
/// (not browsers) pass; the token still applies.
pub fn origin_allowed(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

async fn ws_upgrade(
    State(s): State<ApiState>,
    headers: HeaderMap,
    params: Result<Query<WsParams>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    if !origin_allowed(&headers) {
        return auth::ApiError::new(
            StatusCode::FORBIDDEN,
            "the page's Origin is not this daemon's address, expected a dashboard served by it",
        )
        .into_response();
    }
    let (since, token) = match params {
        Ok(Query(p)) => (p.since, p.token),
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("bad query: {e}; expected ?since=<sequence number>&token=<token>"),
            )
                .into_response();
        }
    };
    // A token in the subprotocol list (`vitalsd`, `vitalsd.token.<token>`) stays out of URLs
    // and logs; the query is still accepted.
    let token = token.or_else(|| auth::token_from_protocols(&headers));
    if let Err(e) = auth::check(&s, token.as_deref(), Role::Viewer) {
        return e.into_response();
    }
    ws.protocols([auth::WS_PROTOCOL])
        .max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve_client(s, socket, since))
}

async fn serve_client(s: ApiState, mut socket: WebSocket, since: Option<u64>) {
    let sub = s.hub.subscribe(since);
    // A new connection is a dashboard alive; it stays alive while it answers our pings.
    s.hub.dashboard_alive();
    let id = sub.id;
    let queue = sub.queue.clone();
    let reason = async {
        for m in sub.preamble {
            send(&mut socket, m).await?;
        }
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            // Drain everything queued, priority first.
            // Everything queued goes out in one write: feed each message, flush once.
            let mut fed = 0usize;
            loop {
                match queue.pop() {
                    Next::Send(m) => {
                        feed(&mut socket, m).await?;
                        fed += 1;
                        // Bound a burst so the first message is not held back for long.
                        if fed >= MAX_BATCH {
                            flush(&mut socket).await?;
                            fed = 0;
                        }
                    }
                    Next::Empty => break,
                    Next::Closed(why) => return Err(why),
                }
            }
            if fed > 0 {
                flush(&mut socket).await?;
            }
            tokio::select! {
                _ = s.cancel.cancelled() => return Err("daemon shutting down".to_owned()),
                _ = queue.notified() => {}
                _ = beat.tick() => {
                    send(&mut socket, s.hub.heartbeat(queue.coalesced())).await?;
                    // Browsers answer pings by themselves: a pong proves the page is alive.
                    socket
                        .send(Message::Ping(Bytes::from_static(b"alive?")))
                        .await
                        .map_err(|e| format!("ping failed: {e}"))?;
                }
                incoming = socket.recv() => match incoming {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(format!("client error: {e}")),
                    // Pongs and small messages: the dashboard is alive. Nothing a client sends
                    // changes state here (actions go through the HTTP API, with a token).
                    Some(Ok(_)) => s.hub.dashboard_alive(),
                },
            }
        }
    }
    .await;
    s.hub.unsubscribe(id);
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
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
    }
}

/// Messages written to a socket before it is flushed.
const MAX_BATCH: usize = 64;

/// Queues a message on the socket without flushing it.
async fn feed(socket: &mut WebSocket, m: Bytes) -> Result<(), String> {
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
async fn flush(socket: &mut WebSocket) -> Result<(), String> {
    use futures_util::SinkExt;
    match tokio::time::timeout(SEND_TIMEOUT, socket.flush()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("send failed: {e}")),
        Err(_) => Err(format!("client did not take messages for {SEND_TIMEOUT:?}")),
    }
}

async fn send(socket: &mut WebSocket, m: Bytes) -> Result<(), String> {
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
    use super::origin_allowed;
    use axum::http::{HeaderMap, HeaderValue, header};

    fn h(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut m = HeaderMap::new();
        m.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(o) = origin {
            m.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
        }
        m
    }

    #[test]
    fn only_pages_from_the_daemon_itself_may_open_a_websocket() {
        assert!(origin_allowed(&h(None, "127.0.0.1:8080")));
        assert!(origin_allowed(&h(
            Some("http://127.0.0.1:8080"),
            "127.0.0.1:8080"
        )));
        assert!(!origin_allowed(&h(
            Some("http://evil.example"),
            "127.0.0.1:8080"
        )));
        assert!(!origin_allowed(&h(Some("null"), "127.0.0.1:8080")));
    }
}
