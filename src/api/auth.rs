//! Tokens and roles. Every `/api` call and every WebSocket carries a token (`Authorization:
//! Bearer <token>`, or `?token=` on `/ws` because browsers cannot set WebSocket headers); the
//! token's role decides what it may do. With no `[[users]]` configured (allowed only on
//! loopback), every request acts as the local admin.

use super::ApiState;
pub use crate::config::Role;
use axum::Json;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The user name, for the audit trail.
    pub name: String,
    pub role: Role,
}

/// An API error: a status and a message, sent as `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    /// An error with a status.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }

    /// 400.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response()
    }
}

/// Checks the request's token and that its role is at least `role`.
pub fn require(state: &ApiState, headers: &HeaderMap, role: Role) -> Result<Principal, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    check(state, token, role)
}

/// Checks a token (from a header or a query) against the configured users.
pub fn check(state: &ApiState, token: Option<&str>, role: Role) -> Result<Principal, ApiError> {
    let users = &state.hub.config().users;
    if users.is_empty() {
        return Ok(Principal {
            name: "local".to_owned(),
            role: Role::Admin,
        });
    }
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token, expected `Authorization: Bearer <token>` (or ?token= on /ws)",
        ));
    };
    let user = users
        .iter()
        .find(|u| constant_time_eq(u.token.as_bytes(), token.as_bytes()))
        .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
    if user.role < role {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "user {:?} has role {}, expected {} or above",
                user.name,
                user.role.name(),
                role.name()
            ),
        ));
    }
    Ok(Principal {
        name: user.name.clone(),
        role: user.role,
    })
}

/// Compares without an early exit, so response time does not leak how much of a token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(constant_time_eq(b"abcdefgh12345678", b"abcdefgh12345678"));
        assert!(!constant_time_eq(b"abcdefgh12345678", b"abcdefgh12345679"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
