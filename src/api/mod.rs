//! The HTTP JSON API and the WebSocket `/ws` (axum). Formats: `docs/api.md`.
//!
//! Every WebSocket connection has its own task and its own queue ([`crate::hub::queue`]): a
//! client that stops reading stalls only itself. Requests and messages are size-bounded.

pub mod auth;
pub mod records;

use crate::hub::Hub;
use crate::hub::queue::Next;
use axum::Router;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
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

/// The router: `/api/rooms`, `/healthz`, `/ws`, `/`.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/healthz", get(healthz))
        .route("/api/rooms", get(rooms))
        .route("/ws", get(ws_upgrade))
        .merge(records::routes())
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024))
        .with_state(state)
}

async fn index() -> Html<&'static str> {
    Html(concat!(
        "<!doctype html><meta charset=utf-8><title>vitalsd</title>",
        "<h1>vitalsd</h1><p>API: <a href=/api/rooms>/api/rooms</a>, ",
        "WebSocket: <code>/ws</code>, health: <a href=/healthz>/healthz</a>.</p>"
    ))
}

async fn healthz(State(s): State<ApiState>) -> impl IntoResponse {
    let body = serde_json::json!({
        "status": "ok",
        "clients": s.hub.client_count(),
        "seq": s.hub.last_seq(),
    });
    axum::Json(body)
}

async fn rooms(State(s): State<ApiState>) -> Response {
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
}

async fn ws_upgrade(
    State(s): State<ApiState>,
    params: Result<Query<WsParams>, axum::extract::rejection::QueryRejection>,
    ws: WebSocketUpgrade,
) -> Response {
    let since = match params {
        Ok(Query(p)) => p.since,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("bad query: {e}; expected ?since=<sequence number>"),
            )
                .into_response();
        }
    };
    ws.max_message_size(MAX_CLIENT_MESSAGE)
        .max_frame_size(MAX_CLIENT_MESSAGE)
        .on_upgrade(move |socket| serve_client(s, socket, since))
}

async fn serve_client(s: ApiState, mut socket: WebSocket, since: Option<u64>) {
    let sub = s.hub.subscribe(since);
    let id = sub.id;
    let queue = sub.queue.clone();
    let reason = async {
        for m in sub.preamble {
            send(&mut socket, m).await?;
        }
        let mut beat = tokio::time::interval(HEARTBEAT);
        loop {
            // Drain everything queued, priority first.
            loop {
                match queue.pop() {
                    Next::Send(m) => send(&mut socket, m).await?,
                    Next::Empty => break,
                    Next::Closed(why) => return Err(why),
                }
            }
            tokio::select! {
                _ = s.cancel.cancelled() => return Err("daemon shutting down".to_owned()),
                _ = queue.notified() => {}
                _ = beat.tick() => send(&mut socket, s.hub.heartbeat(queue.coalesced())).await?,
                incoming = socket.recv() => match incoming {
                    None | Some(Ok(Message::Close(_))) => return Ok(()),
                    Some(Err(e)) => return Err(format!("client error: {e}")),
                    // Clients may send pings or small text; nothing they send changes state here.
                    Some(Ok(_)) => {}
                },
            }
        }
    }
    .await;
    s.hub.unsubscribe(id);
    if let Err(why) = reason {
        tracing::debug!(client = id, reason = %why, "websocket closed");
        let frame = CloseFrame {
            code: axum::extract::ws::close_code::AWAY,
            reason: Utf8Bytes::from(truncate(&why, 120)),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            socket.send(Message::Close(Some(frame))),
        )
        .await;
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
