//! Alarm routes: current alarms, acknowledge, audio pause, limits and baseline. Every action
//! takes effect only once its events are committed (commit, then apply: an action answered
//! 503 has changed nothing), and every event names who did it.

use super::ApiState;
use super::auth::{ApiError, RequireAdmin, RequireNurse, RequireViewer};
use super::bed_path::BedPath;
use crate::alarm::{Baseline, BedLimits};
use crate::clock::{rfc3339_ms, wall_ms};
use crate::hub::ActionError;
use crate::model::BedIdx;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// The alarm routes.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/alarms", get(current))
        .route("/api/alarms/history", get(history))
        .route("/api/alarms/{id}/ack", post(acknowledge))
        .route(
            "/api/beds/{room}/{recliner}/audio-pause",
            post(pause).delete(cancel_pause),
        )
        .route(
            "/api/beds/{room}/{recliner}/limits",
            get(get_limits).put(put_limits),
        )
        .route("/api/beds/{room}/{recliner}/baseline", post(baseline))
}

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> ApiError {
        let status = match e {
            ActionError::UnknownAlarm(_) => StatusCode::NOT_FOUND,
            ActionError::NotAcknowledgeable(_) => StatusCode::CONFLICT,
            ActionError::NotCommitted(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Resolves a bed id (`room1/A`) to a bed.
pub fn bed(state: &ApiState, id: &str) -> Result<BedIdx, ApiError> {
    state
        .hub
        .bed_by_id(id)
        .ok_or_else(|| ApiError::not_found(format!("no bed {id:?}")))
}

/// Parses a JSON body, with an error that says what was expected.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8], expected: &str) -> Result<T, ApiError> {
    if bytes.is_empty() {
        return serde_json::from_slice(b"{}")
            .map_err(|e| ApiError::bad_request(format!("{e}; expected {expected}")));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("{e}; expected {expected}")))
}

async fn current(State(s): State<ApiState>, _who: RequireViewer) -> Result<Json<Value>, ApiError> {
    Ok(Json(s.hub.alarms_json()))
}

#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryQuery {
    pub(crate) bed: Option<String>,
    pub(crate) limit: Option<usize>,
}

/// The alarm-event log from the store, newest first: every raise, acknowledgement (with who),
/// pause, limit change and clear, as the messages dashboards got.
async fn history(
    State(s): State<ApiState>,
    _who: RequireViewer,
    q: Result<axum::extract::Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let axum::extract::Query(q) = q.map_err(|e| {
        ApiError::bad_request(format!(
            "{e}; expected ?bed=room1/A&limit=N (both optional)"
        ))
    })?;
    if let Some(b) = &q.bed
        && s.hub.bed_by_id(b).is_none()
    {
        return Err(ApiError::not_found(format!("no bed {b:?}")));
    }
    let limit = q.limit.unwrap_or(200).clamp(1, 5000);
    let store = s
        .store
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no store"))?;
    let rows = store
        .alarm_history(q.bed.as_deref(), limit)
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let events: Vec<Value> = rows
        .iter()
        .filter_map(|r| serde_json::from_str(&r.event.json).ok())
        .collect();
    Ok(Json(json!({ "events": events })))
}

async fn acknowledge(
    State(s): State<ApiState>,
    who: RequireNurse,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::bad_request(format!("{id:?} is not an alarm id, expected a number"))
    })?;
    let events = s.hub.acknowledge(id, who.name()).await?;
    let alarm = events
        .iter()
        .rev()
        .find_map(|d| serde_json::from_slice::<Value>(&d.json).ok())
        .map(|m| m["alarm"].clone())
        .unwrap_or(Value::Null);
    Ok(Json(json!({ "alarm": alarm })))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PauseBody {
    seconds: Option<u64>,
}

async fn pause(
    State(s): State<ApiState>,
    who: RequireNurse,
    BedPath(id): BedPath,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let bed = bed(&s, &id)?;
    let b: PauseBody = body(&raw, r#"{"seconds": N} (optional)"#)?;
    let (granted, _) = s
        .hub
        .pause_audio(bed, b.seconds.map(Duration::from_secs), who.name())
        .await?;
    let until = wall_ms() + i64::try_from(granted.as_millis()).unwrap_or(0);
    Ok(Json(
        json!({ "until": rfc3339_ms(until), "seconds": granted.as_secs() }),
    ))
}

async fn cancel_pause(
    State(s): State<ApiState>,
    who: RequireNurse,
    BedPath(id): BedPath,
) -> Result<Json<Value>, ApiError> {
    let bed = bed(&s, &id)?;
    s.hub.cancel_pause(bed, who.name()).await?;
    Ok(Json(json!({ "audio_paused": false })))
}

fn limits_json(s: &ApiState, bed: BedIdx) -> Value {
    let (rules, baseline) = s.hub.limits_of(bed);
    let has_baseline = baseline.fields().iter().any(|(_, v)| v.is_some());
    json!({ "rules": rules, "baseline": if has_baseline { json!(baseline) } else { Value::Null } })
}

async fn get_limits(
    State(s): State<ApiState>,
    _who: RequireViewer,
    BedPath(id): BedPath,
) -> Result<Json<Value>, ApiError> {
    let bed = bed(&s, &id)?;
    Ok(Json(limits_json(&s, bed)))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PresetBody {
    preset: String,
}

async fn put_limits(
    State(s): State<ApiState>,
    who: RequireAdmin,
    BedPath(id): BedPath,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let bed = bed(&s, &id)?;
    let (raw, confirm_disable) = take_confirm(&raw)?;
    let limits: BedLimits = match serde_json::from_slice::<PresetBody>(&raw) {
        Ok(PresetBody { preset }) => {
            s.hub
                .config()
                .presets
                .get(&preset)
                .cloned()
                .ok_or_else(|| {
                    let known: Vec<&str> =
                        s.hub.config().presets.keys().map(String::as_str).collect();
                    ApiError::bad_request(format!(
                        "unknown preset {preset:?}, expected one of: {}",
                        known.join(", ")
                    ))
                })?
        }
        Err(_) => crate::alarm::parse_limits_json(&raw).map_err(|e| {
            ApiError::bad_request(format!(
                "{e}; expected {{\"preset\": NAME}} or {{\"rule\": [...]}} as in docs/alarms.md"
            ))
        })?,
    };
    let unguarded = limits.unguarded();
    if !unguarded.is_empty() && !confirm_disable {
        let names: Vec<&str> = unguarded.iter().map(|m| m.name()).collect();
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "this limit set has no rule for {}, so it switches off those physiological alarms of the bed; \
                 to do that on purpose, send the same body with \"confirm_disable\": true (admin only)",
                names.join(" and ")
            ),
        ));
    }
    if !unguarded.is_empty() {
        tracing::warn!(bed = %s.hub.config().bed(bed).id, by = %who.name(), metrics = ?unguarded, "limit set without spo2/pulse_rate rules confirmed: those alarms are off");
    }
    s.hub.set_limits(bed, limits, who.name()).await?;
    Ok(Json(limits_json(&s, bed)))
}

/// Takes `"confirm_disable": true|false` out of a limits body (a JSON object), giving the rest of
/// the body and the flag. A body that is not an object is passed on unchanged, for the parser to
/// name what is wrong.
fn take_confirm(raw: &[u8]) -> Result<(Vec<u8>, bool), ApiError> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(raw) else {
        return Ok((raw.to_vec(), false));
    };
    let confirm = match map.remove("confirm_disable") {
        None => false,
        Some(Value::Bool(b)) => b,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "confirm_disable is {other}, expected true or false"
            )));
        }
    };
    let rest = serde_json::to_vec(&Value::Object(map))
        .map_err(|e| ApiError::bad_request(format!("limits body: {e}")))?;
    Ok((rest, confirm))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BaselineBody {
    sys: Option<f64>,
    dia: Option<f64>,
    pulse_rate: Option<f64>,
    spo2: Option<f64>,
    #[serde(default)]
    from_recent: bool,
}

async fn baseline(
    State(s): State<ApiState>,
    who: RequireNurse,
    BedPath(id): BedPath,
    raw: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let bed = bed(&s, &id)?;
    let b: BaselineBody = body(
        &raw,
        r#"{"sys": N, "dia": N, "pulse_rate": N, "spo2": N} (each optional) or {"from_recent": true}"#,
    )?;
    let given = Baseline {
        sys: b.sys,
        dia: b.dia,
        pulse_rate: b.pulse_rate,
        spo2: b.spo2,
    };
    if !b.from_recent && given.fields().iter().all(|(_, v)| v.is_none()) {
        return Err(ApiError::bad_request(
            "no baseline values, expected at least one of sys, dia, pulse_rate, spo2, or from_recent: true",
        ));
    }
    let (set, _) = s
        .hub
        .set_baseline(bed, given, b.from_recent, who.name())
        .await?;
    // Also into the open session, if any, where discharge readiness reads it.
    let bed_id = s.hub.config().bed(bed).id.clone();
    if let Some(store) = &s.store
        && let Ok(Some(_)) = store.current_session(&bed_id).await
    {
        let ev = crate::store::session::SessionEvent::Baseline {
            sys: set.sys,
            dia: set.dia,
            pulse_rate: set.pulse_rate,
            spo2: set.spo2,
        };
        store
            .session_event(&bed_id, ev, Some(who.principal.name.clone()))
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("baseline set, but not recorded in the session: {e}"),
                )
            })?;
    }
    Ok(Json(json!({ "baseline": set })))
}
