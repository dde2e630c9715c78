//! The durable record over HTTP: sessions (admit, events, discharge), discharge readiness,
//! history per bed and metric, and session exports. Formats: docs/api.md and docs/storage.md.
//!
//! Every change is committed to the store before the response confirms it, and is then
//! published to WebSocket clients as a `session` message.

use super::ApiState;
use super::auth::{ApiError, RequireNurse, RequireViewer};
use super::bed_path::BedPath;
use crate::clock::{rfc3339_ms, wall_ms};
use crate::model::Metric;
use crate::store::export::{self, Format};
use crate::store::{Admit, ReadinessMargins, SessionEvent, StoreError, StoreHandle};
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// History returns at most this many points per request.
pub const MAX_POINTS: usize = 5_000;

/// The routes of this file, to merge into the router.
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/api/beds/{room}/{recliner}/admit", post(admit))
        .route("/api/beds/{room}/{recliner}/discharge", post(discharge))
        .route("/api/beds/{room}/{recliner}/events", post(event))
        .route("/api/beds/{room}/{recliner}/session", get(current))
        .route("/api/beds/{room}/{recliner}/readiness", get(readiness))
        .route("/api/beds/{room}/{recliner}/history", get(history))
        .route("/api/sessions", get(sessions))
        .route("/api/sessions/{id}", get(session))
        .route("/api/sessions/{id}/export", get(export_session))
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        let status = match &e {
            StoreError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::NotFound { .. } => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::Unwritable(_) | StoreError::Stopped => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError::new(status, e.to_string())
    }
}

fn store(s: &ApiState) -> Result<&StoreHandle, ApiError> {
    s.store
        .as_ref()
        .ok_or_else(|| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "no store is configured"))
}

/// The bed id of a path, if the config has that bed.
fn bed(s: &ApiState, id: &str) -> Result<String, ApiError> {
    if s.hub.config().beds.iter().any(|b| b.id == id) {
        Ok(id.to_owned())
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("bed {id:?} not found; expected one of the configured beds"),
        ))
    }
}

fn body<T>(b: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    b.map(|Json(v)| v).map_err(|e| {
        // Too large (413) and not JSON (415) keep their status; anything else is 400.
        let status = match e.status() {
            s @ (StatusCode::PAYLOAD_TOO_LARGE | StatusCode::UNSUPPORTED_MEDIA_TYPE) => s,
            _ => StatusCode::BAD_REQUEST,
        };
        ApiError::new(status, format!("bad request body: {}", e.body_text()))
    })
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("bad query: {}", e.body_text()),
        )
    })
}

/// Tells WebSocket clients about a session change: `{"v":1,"type":"session","event":..}`.
fn publish(s: &ApiState, event: &str, bed: &str, payload: Value) {
    let mut msg = json!({
        "v": crate::hub::wire::VERSION,
        "type": "session",
        "event": event,
        "bed": bed,
        "at": rfc3339_ms(wall_ms()),
    });
    if let (Some(m), Some(p)) = (msg.as_object_mut(), payload.as_object()) {
        m.extend(p.clone());
    }
    s.hub.publish_priority(msg);
}

async fn admit(
    State(s): State<ApiState>,
    who: RequireNurse,
    BedPath(id): BedPath,
    req: Result<Json<Admit>, JsonRejection>,
) -> Result<Response, ApiError> {
    let bed = bed(&s, &id)?;
    let req = body(req)?;
    let session = store(&s)?
        .admit(&bed, req, Some(who.principal.name))
        .await?;
    if let Some(idx) = s.hub.bed_by_id(&bed) {
        s.hub.set_dosed(idx, false);
    }
    let v = json!({ "session": session });
    publish(&s, "admitted", &bed, v.clone());
    tracing::info!(bed, session = session.id, "patient admitted");
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn discharge(
    State(s): State<ApiState>,
    who: RequireNurse,
    BedPath(id): BedPath,
) -> Result<Response, ApiError> {
    let bed = bed(&s, &id)?;
    let session = store(&s)?.discharge(&bed, Some(who.principal.name)).await?;
    if let Some(idx) = s.hub.bed_by_id(&bed) {
        s.hub.set_dosed(idx, false);
    }
    let v = json!({ "session": session });
    publish(&s, "discharged", &bed, v.clone());
    tracing::info!(bed, session = session.id, "patient discharged");
    Ok(Json(v).into_response())
}

async fn event(
    State(s): State<ApiState>,
    who: RequireNurse,
    BedPath(id): BedPath,
    req: Result<Json<SessionEvent>, JsonRejection>,
) -> Result<Response, ApiError> {
    let bed = bed(&s, &id)?;
    let ev = body(req)?;
    // A baseline recorded in the session is also the alarm engine's baseline, so relative
    // limits and discharge readiness always agree. An event the store would refuse (a bad
    // value, no open session) must not reach the alarm engine first (found by tests/api_fuzz.rs).
    if matches!(ev, SessionEvent::Baseline { .. }) {
        ev.validate()?;
        if store(&s)?.current_session(&bed).await?.is_none() {
            return Err(StoreError::NotFound {
                what: "open session for bed",
                key: bed,
            }
            .into());
        }
    }
    if let SessionEvent::Baseline {
        sys,
        dia,
        pulse_rate,
        spo2,
    } = &ev
        && let Some(idx) = s.hub.bed_by_id(&bed)
    {
        let given = crate::alarm::Baseline {
            sys: *sys,
            dia: *dia,
            pulse_rate: *pulse_rate,
            spo2: *spo2,
        };
        s.hub
            .set_baseline(idx, given, false, who.name())
            .await
            .map_err(ApiError::from)?;
    }
    let dose = matches!(ev, SessionEvent::Dose { .. });
    let row = store(&s)?
        .session_event(&bed, ev, Some(who.principal.name))
        .await?;
    // A dosed session without a baseline for a relative limit is an alarm condition.
    if dose && let Some(idx) = s.hub.bed_by_id(&bed) {
        s.hub.set_dosed(idx, true);
    }
    let v = json!({ "event": row });
    publish(&s, "event", &bed, v.clone());
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

async fn current(
    State(s): State<ApiState>,
    _who: RequireViewer,
    BedPath(id): BedPath,
) -> Result<Response, ApiError> {
    let bed = bed(&s, &id)?;
    let session = store(&s)?.current_session(&bed).await?;
    Ok(Json(json!({ "session": session })).into_response())
}

async fn readiness(
    State(s): State<ApiState>,
    _who: RequireViewer,
    BedPath(id): BedPath,
) -> Result<Response, ApiError> {
    let bed = bed(&s, &id)?;
    let r = store(&s)?
        .readiness(&bed, ReadinessMargins::default())
        .await?;
    Ok(Json(json!({
        "bed": bed,
        "ready": r.ready,
        "since": r.since_ms.map(rfc3339_ms),
        "since_ms": r.since_ms,
        "reasons": r.reasons,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    metric: String,
    from: Option<String>,
    to: Option<String>,
    points: Option<usize>,
}

/// What a history query asks for, checked: the metric, `from`/`to` in Unix ms (default the
/// last hour) and the most points (default 500).
pub(crate) struct HistoryRange {
    pub metric: Metric,
    pub from: i64,
    pub to: i64,
    pub points: usize,
}

impl HistoryParams {
    /// The range asked for, or a 400 naming the bad value and what was expected (a site's
    /// history and a central's).
    pub(crate) fn range(&self) -> Result<HistoryRange, ApiError> {
        let bad = |what: &str, v: &str, expected: &str| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("{what}: {v:?} is not valid, expected {expected}"),
            )
        };
        let metric = Metric::from_name(&self.metric).ok_or_else(|| {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            bad("metric", &self.metric, &names.join(", "))
        })?;
        let time = |what: &str, v: &Option<String>, default: i64| match v {
            None => Ok(default),
            Some(t) => parse_time(t).ok_or_else(|| bad(what, t, "RFC 3339 or Unix milliseconds")),
        };
        let to = time("to", &self.to, wall_ms())?;
        let from = time("from", &self.from, to - 3_600_000)?;
        if from > to {
            return Err(bad(
                "from",
                self.from.as_deref().unwrap_or(""),
                "a time before `to`",
            ));
        }
        let points = self.points.unwrap_or(500);
        if points == 0 || points > MAX_POINTS {
            return Err(bad("points", &points.to_string(), "1 to 5000"));
        }
        Ok(HistoryRange {
            metric,
            from,
            to,
            points,
        })
    }
}

async fn history(
    State(s): State<ApiState>,
    _who: RequireViewer,
    BedPath(id): BedPath,
    q: Result<Query<HistoryParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let bed = bed(&s, &id)?;
    let HistoryRange {
        metric,
        from,
        to,
        points,
    } = query(q)?.range()?;
    let hist = store(&s)?.history(&bed, metric, from, to, points).await?;
    Ok(Json(json!({
        "bed": bed,
        "metric": metric.name(),
        "unit": metric.unit(),
        "from": rfc3339_ms(from),
        "to": rfc3339_ms(to),
        "points": hist,
    }))
    .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct SessionsParams {
    bed: Option<String>,
    limit: Option<usize>,
}

async fn sessions(
    State(s): State<ApiState>,
    _who: RequireViewer,
    q: Result<Query<SessionsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let list = store(&s)?
        .sessions(q.bed.as_deref(), q.limit.unwrap_or(100))
        .await?;
    Ok(Json(json!({ "sessions": list })).into_response())
}

async fn session(
    State(s): State<ApiState>,
    _who: RequireViewer,
    Path(id): Path<i64>,
) -> Result<Response, ApiError> {
    let session = store(&s)?.session(id).await?;
    Ok(Json(json!({ "session": session })).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportParams {
    format: Option<String>,
}

async fn export_session(
    State(s): State<ApiState>,
    _who: RequireViewer,
    Path(id): Path<i64>,
    q: Result<Query<ExportParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let format = Format::parse(q.format.as_deref().unwrap_or("csv"))?;
    let devices = export::device_info(s.hub.config());
    let zone = export::Zone::of(s.hub.config());
    let body = store(&s)?.export(id, format, devices, zone).await?;
    let disposition = format!(
        "attachment; filename=\"session-{id}.{}\"",
        format.extension()
    );
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        body,
    )
        .into_response())
}

/// Parses Unix milliseconds or an RFC 3339 time (`2026-01-02T03:04:05Z`, fractional seconds
/// and `+hh:mm` offsets allowed).
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().ok();
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let t = s.get(r)?;
        t.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| t.parse().ok())?
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        let digits = &frac[..n];
        let padded: String = digits.chars().chain("000".chars()).take(3).collect();
        ms = padded.parse().ok()?;
        rest = &frac[n..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && matches!(&rest[..1], "+" | "-") && &rest[3..4] == ":" => {
            let oh: i64 = rest.get(1..3)?.parse().ok()?;
            let om: i64 = rest.get(4..6)?.parse().ok()?;
            let sign = if rest.starts_with('-') { -1 } else { 1 };
            sign * (oh * 60 + om)
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    Some(((days * 86_400 + h * 3600 + mi * 60 + se - offset_min * 60) * 1000) + ms)
}

/// Howard Hinnant's civil-to-days algorithm (public domain).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_milliseconds_or_rfc3339() {
        let cases = [
            ("0", Some(0)),
            ("951827696789", Some(951_827_696_789)),
            ("2000-02-29T12:34:56.789Z", Some(951_827_696_789)),
            ("2000-02-29T12:34:56Z", Some(951_827_696_000)),
            ("2000-02-29T14:34:56.7+02:00", Some(951_827_696_700)),
            ("1970-01-01T00:00:00-01:00", Some(3_600_000)),
            ("2000-13-01T00:00:00Z", None),
            ("2000-02-29T12:34:56", None),
            ("yesterday", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_time(text), want, "{text}");
        }
        for ms in [0, 1_700_000_000_123, 4_102_444_800_000] {
            assert_eq!(parse_time(&rfc3339_ms(ms)), Some(ms));
        }
    }
}
