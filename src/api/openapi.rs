//! The OpenAPI 3 document at `GET /api/openapi.json`, generated with utoipa from the request
//! and response types (`#[derive(ToSchema)]` on the wire messages, the store's sessions and
//! history, and the request bodies and queries of the handlers).
//!
//! Every path operation is declared here, in one place, on an empty function that only carries
//! its `#[utoipa::path]` (the handlers stay as they are). Answers that the handlers build as
//! JSON objects around a type (`{"session": Session}`) have their envelope declared here.
//! `tests/ops.rs` fails when a route of the router or of docs/api.md is missing.

use super::ApiState;
use super::alarms::{BaselineBody, HistoryQuery, PauseBody, PresetBody};
use super::records::{ExportParams, HistoryParams, SessionsParams};
use crate::hub::wire::{AlarmMsg, AlarmView, SnapshotMsg};
use crate::store::query::HistoryPoint;
use crate::store::session::{Admit, Session, SessionEvent, SessionEventRow};
use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Serialize;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The route.
pub fn routes() -> Router<ApiState> {
    Router::new().route("/api/openapi.json", get(document))
}

/// Public: it describes the API and holds no data.
async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json().unwrap_or_else(|e| format!(r#"{{"error":"openapi: {e}"}}"#)),
    )
}

/// The document as JSON.
pub fn json() -> Result<String, serde_json::Error> {
    ApiDoc::openapi().to_json()
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "vitalsd",
        description = "Secondary alarm system and recorder for two-patient ketamine-assisted therapy rooms. \
            Formats and rules: docs/api.md. Every /api call carries `Authorization: Bearer <token>` \
            (roles viewer < nurse < admin); errors are `{\"error\": \"...\"}`."
    ),
    paths(
        dashboard_index, dashboard_asset, healthz, websocket, metrics, openapi_json,
        rooms, alarms_current, alarms_history, alarm_ack, audio_pause, audio_resume,
        limits_get, limits_put, baseline_set,
        admit, discharge, session_event, session_current, readiness, bed_history,
        sessions_list, session_one, session_export,
    ),
    components(schemas(SessionEvent, PresetBody)),
    modifiers(&BearerToken),
    tags(
        (name = "dashboard", description = "The nurse-station page and the WebSocket"),
        (name = "operations", description = "Health, Prometheus metrics, this document"),
        (name = "alarms", description = "Current alarms, acknowledgement, audio pause, limits, baseline"),
        (name = "sessions", description = "Admission, session events, history, exports"),
    )
)]
struct ApiDoc;

/// The `bearer` security scheme every `/api` operation names.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// `{"error": "..."}`: what was wrong and what was expected.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /healthz`.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `degraded` (503) while the store cannot write.
    pub status: String,
    /// WebSocket clients.
    pub clients: u64,
    /// The latest sequence number.
    pub seq: u64,
    /// `{"live","hidden","not_armed","clients"}`: dashboards able to sound, and the rest.
    #[schema(value_type = Object)]
    pub dashboards: serde_json::Value,
    /// The store's health: `writable`, `backlog`, `dropped`, `dropped_events`, `last_error`,
    /// `last_incident`.
    #[schema(value_type = Option<Object>)]
    pub store: Option<serde_json::Value>,
}

/// `{"alarms": [Alarm]}`.
#[derive(Serialize, ToSchema)]
pub struct AlarmList<'a> {
    pub alarms: Vec<AlarmView<'a>>,
}

/// `{"alarm": Alarm}`.
#[derive(Serialize, ToSchema)]
pub struct AlarmAnswer<'a> {
    pub alarm: AlarmView<'a>,
}

/// `{"events": [alarm message]}`, newest first.
#[derive(Serialize, ToSchema)]
pub struct AlarmEvents<'a> {
    pub events: Vec<AlarmMsg<'a>>,
}

/// An audio pause granted.
#[derive(Serialize, ToSchema)]
pub struct PauseAnswer {
    /// When it ends, RFC 3339.
    pub until: String,
    /// Its length as granted (never over the configured maximum).
    pub seconds: u64,
}

/// The pause ended.
#[derive(Serialize, ToSchema)]
pub struct ResumeAnswer {
    pub audio_paused: bool,
}

/// A bed's limits.
#[derive(Serialize, ToSchema)]
pub struct LimitsAnswer {
    /// `{rule, condition, active, effective, note}` per rule.
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<serde_json::Value>,
    /// `{"sys","dia","pulse_rate","spo2"}` or null.
    #[schema(value_type = Option<Object>)]
    pub baseline: Option<serde_json::Value>,
}

/// `PUT .../limits`: a preset by name, or rules in the preset format (docs/alarms.md).
#[derive(Serialize, ToSchema)]
pub struct LimitsBody {
    /// A preset's name (instead of `rule`).
    pub preset: Option<String>,
    /// Rules in the preset format (instead of `preset`).
    #[schema(value_type = Option<Vec<Object>>)]
    pub rule: Option<Vec<serde_json::Value>>,
    /// Required to accept a set without a rule for `spo2` or `pulse_rate`.
    pub confirm_disable: Option<bool>,
}

/// `{"baseline": {...}}` as set.
#[derive(Serialize, ToSchema)]
pub struct BaselineAnswer {
    #[schema(value_type = Object)]
    pub baseline: serde_json::Value,
}

/// `{"session": Session}`.
#[derive(Serialize, ToSchema)]
pub struct SessionAnswer {
    pub session: Session,
}

/// `{"session": Session | null}`: the bed's open session.
#[derive(Serialize, ToSchema)]
pub struct OpenSessionAnswer {
    pub session: Option<Session>,
}

/// `{"sessions": [Session]}`, newest first, without events.
#[derive(Serialize, ToSchema)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

/// `{"event": SessionEvent}` as stored.
#[derive(Serialize, ToSchema)]
pub struct EventAnswer {
    pub event: SessionEventRow,
}

/// A bed's readiness for discharge.
#[derive(Serialize, ToSchema)]
pub struct ReadinessAnswer {
    pub bed: String,
    pub ready: bool,
    pub since: Option<String>,
    pub since_ms: Option<i64>,
    pub reasons: Vec<String>,
}

/// A metric's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryAnswer {
    pub bed: String,
    pub metric: String,
    pub unit: String,
    pub from: String,
    pub to: String,
    pub points: Vec<HistoryPoint>,
}

// The operations. Each function only carries its declaration.

#[utoipa::path(get, path = "/", tag = "dashboard",
    responses((status = 200, description = "The nurse-station dashboard (HTML)", content_type = "text/html", body = String)))]
#[allow(dead_code)]
fn dashboard_index() {}

#[utoipa::path(get, path = "/assets/{name}", tag = "dashboard",
    params(("name" = String, Path, description = "app.js, style.css, ...")),
    responses((status = 200, description = "A dashboard asset built into the binary", body = String),
        (status = 404, description = "No such asset")))]
#[allow(dead_code)]
fn dashboard_asset() {}

#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The daemon can record", body = Health),
        (status = 503, description = "Degraded: the store cannot write (readings held in memory)", body = Health)))]
#[allow(dead_code)]
fn healthz() {}

#[utoipa::path(get, path = "/ws", tag = "dashboard",
    params(("since" = Option<u64>, Query, description = "Resume after this sequence number"),
        ("token" = Option<String>, Query, description = "The token, if not sent as the subprotocol `vitalsd.token.<token>`")),
    responses((status = 101, description = "WebSocket: a snapshot, then alarm, device_status, reading, notification and heartbeat messages (docs/api.md)", body = SnapshotMsg),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The page's Origin is not this daemon's", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn websocket() {}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4 (docs/metrics.md)", content_type = "text/plain", body = String),
        (status = 401, description = "No or unknown token", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn metrics() {}

#[utoipa::path(get, path = "/api/openapi.json", tag = "operations",
    responses((status = 200, description = "This document", body = Object)))]
#[allow(dead_code)]
fn openapi_json() {}

#[utoipa::path(get, path = "/api/rooms", tag = "dashboard",
    responses((status = 200, description = "Every room, bed and device with its status, latest values and alarms: the WebSocket snapshot", body = SnapshotMsg),
        (status = 401, description = "No or unknown token", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn rooms() {}

#[utoipa::path(get, path = "/api/alarms", tag = "alarms",
    responses((status = 200, description = "Every current alarm, bed-less ones included", body = AlarmList),
        (status = 401, description = "No or unknown token", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn alarms_current() {}

#[utoipa::path(get, path = "/api/alarms/history", tag = "alarms", params(HistoryQuery),
    responses((status = 200, description = "The alarm-event log, newest first", body = AlarmEvents),
        (status = 404, description = "Unknown bed", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn alarms_history() {}

#[utoipa::path(post, path = "/api/alarms/{id}/ack", tag = "alarms",
    params(("id" = u64, Path, description = "The alarm's id")),
    responses((status = 200, description = "Acknowledged (committed): audio silenced; a latched alarm clears", body = AlarmAnswer),
        (status = 403, description = "Role below nurse", body = ErrorBody),
        (status = 404, description = "No current alarm with this id", body = ErrorBody),
        (status = 409, description = "Not acknowledgeable (no_dashboard ends when a dashboard lives)", body = ErrorBody),
        (status = 503, description = "Not committed: nothing changed", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn alarm_ack() {}

#[utoipa::path(post, path = "/api/beds/{room}/{recliner}/audio-pause", tag = "alarms",
    params(("room" = String, Path), ("recliner" = String, Path)),
    request_body(content = PauseBody, description = "`seconds`: default 120, capped at the maximum"),
    responses((status = 200, description = "Paused", body = PauseAnswer),
        (status = 404, description = "Unknown bed", body = ErrorBody),
        (status = 503, description = "Not committed: nothing changed", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn audio_pause() {}

#[utoipa::path(delete, path = "/api/beds/{room}/{recliner}/audio-pause", tag = "alarms",
    params(("room" = String, Path), ("recliner" = String, Path)),
    responses((status = 200, description = "The pause ended", body = ResumeAnswer),
        (status = 404, description = "Unknown bed", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn audio_resume() {}

#[utoipa::path(get, path = "/api/beds/{room}/{recliner}/limits", tag = "alarms",
    params(("room" = String, Path), ("recliner" = String, Path)),
    responses((status = 200, description = "The bed's rules and baseline", body = LimitsAnswer),
        (status = 404, description = "Unknown bed", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn limits_get() {}

#[utoipa::path(put, path = "/api/beds/{room}/{recliner}/limits", tag = "alarms",
    params(("room" = String, Path), ("recliner" = String, Path)),
    request_body(content = LimitsBody, description = "A preset (see PresetBody) or rules"),
    responses((status = 200, description = "Applied (admin)", body = LimitsAnswer),
        (status = 400, description = "Invalid rules, with the reason", body = ErrorBody),
        (status = 409, description = "Would switch spo2 or pulse_rate alarms off without confirm_disable", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn limits_put() {}

#[utoipa::path(post, path = "/api/beds/{room}/{recliner}/baseline", tag = "alarms",
    params(("room" = String, Path), ("recliner" = String, Path)),
    request_body = BaselineBody,
    responses((status = 200, description = "Baseline set", body = BaselineAnswer),
        (status = 422, description = "No recent readings to take it from", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn baseline_set() {}

#[utoipa::path(post, path = "/api/beds/{room}/{recliner}/admit", tag = "sessions",
    params(("room" = String, Path), ("recliner" = String, Path)),
    request_body = Admit,
    responses((status = 201, description = "Admitted", body = SessionAnswer),
        (status = 409, description = "The bed already has an open session", body = ErrorBody),
        (status = 422, description = "A value out of range", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn admit() {}

#[utoipa::path(post, path = "/api/beds/{room}/{recliner}/discharge", tag = "sessions",
    params(("room" = String, Path), ("recliner" = String, Path)),
    responses((status = 200, description = "Discharged", body = SessionAnswer),
        (status = 404, description = "No open session", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn discharge() {}

#[utoipa::path(post, path = "/api/beds/{room}/{recliner}/events", tag = "sessions",
    params(("room" = String, Path), ("recliner" = String, Path)),
    request_body = SessionEvent,
    responses((status = 201, description = "Recorded", body = EventAnswer),
        (status = 404, description = "No open session", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn session_event() {}

#[utoipa::path(get, path = "/api/beds/{room}/{recliner}/session", tag = "sessions",
    params(("room" = String, Path), ("recliner" = String, Path)),
    responses((status = 200, description = "The open session, or null", body = OpenSessionAnswer)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn session_current() {}

#[utoipa::path(get, path = "/api/beds/{room}/{recliner}/readiness", tag = "sessions",
    params(("room" = String, Path), ("recliner" = String, Path)),
    responses((status = 200, description = "Whether the patient's values are back within margin, with the reasons", body = ReadinessAnswer)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn readiness() {}

#[utoipa::path(get, path = "/api/beds/{room}/{recliner}/history", tag = "sessions",
    params(("room" = String, Path), ("recliner" = String, Path), HistoryParams),
    responses((status = 200, description = "Readings, or min/max/avg buckets when there are more than `points`", body = HistoryAnswer),
        (status = 400, description = "A malformed query", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn bed_history() {}

#[utoipa::path(get, path = "/api/sessions", tag = "sessions", params(SessionsParams),
    responses((status = 200, description = "Sessions, newest first, without events", body = SessionList)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn sessions_list() {}

#[utoipa::path(get, path = "/api/sessions/{id}", tag = "sessions",
    params(("id" = i64, Path)),
    responses((status = 200, description = "The session with its events", body = SessionAnswer),
        (status = 404, description = "No such session", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn session_one() {}

#[utoipa::path(get, path = "/api/sessions/{id}/export", tag = "sessions",
    params(("id" = i64, Path), ExportParams),
    responses((status = 200, description = "The file: text/csv (every reading), application/fhir+json (a FHIR R4 Bundle) or text/html (a printable report)", body = String),
        (status = 404, description = "No such session", body = ErrorBody)),
    security(("bearer" = [])))]
#[allow(dead_code)]
fn session_export() {}

#[cfg(test)]
mod tests {
    #[test]
    fn the_document_is_openapi_3_and_names_the_bearer_scheme() {
        let v: serde_json::Value = serde_json::from_str(&super::json().unwrap()).unwrap();
        assert!(v["openapi"].as_str().unwrap().starts_with("3."));
        assert_eq!(
            v["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
        assert!(v["components"]["schemas"]["Session"].is_object(), "{v}");
    }
}
