//! Tokens and roles. Every `/api` call and every WebSocket carries a token (`Authorization:
//! Bearer <token>`; on `/ws`, where browsers cannot set headers, a first message
//! `{"type":"auth","token":...}`, the WebSocket subprotocol `vitalsd.token.<token>` offered next
//! to `vitalsd`, or `?token=`); the token's role decides what it may do. With no `[[users]]`
//! configured (allowed only on loopback), every request acts as the local admin.
//!
//! Handlers take the caller as an extractor, [`RequireViewer`], [`RequireNurse`] or
//! [`RequireAdmin`] (an [`Auth`] of that role): a request without a good token never reaches
//! the handler's body, and no handler can forget the check.

use super::ApiState;
pub use crate::config::Role;
use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::marker::PhantomData;

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

/// The least role a route needs, as a type: [`Viewer`], [`Nurse`], [`Admin`].
pub trait MinRole: Send + Sync + 'static {
    const ROLE: Role;
}

/// Reading: rooms, alarms, limits, sessions, history, exports, the WebSocket.
#[derive(Debug)]
pub struct Viewer;
/// Acting on a bed: acknowledge, pause, sessions, baseline.
#[derive(Debug)]
pub struct Nurse;
/// Changing limits.
#[derive(Debug)]
pub struct Admin;

impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Nurse {
    const ROLE: Role = Role::Nurse;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// The caller of a route that needs role `R` or above, extracted from the request's
/// `Authorization: Bearer` header; the request is refused (401 without or with an unknown
/// token, 403 with too low a role) before the handler runs.
#[derive(Debug)]
pub struct Auth<R: MinRole> {
    pub principal: Principal,
    role: PhantomData<R>,
}

impl<R: MinRole> Auth<R> {
    /// The user name, for the audit trail.
    pub fn name(&self) -> &str {
        &self.principal.name
    }
}

/// A caller with any role.
pub type RequireViewer = Auth<Viewer>;
/// A caller with the nurse or admin role.
pub type RequireNurse = Auth<Nurse>;
/// A caller with the admin role.
pub type RequireAdmin = Auth<Admin>;

impl<R: MinRole> FromRequestParts<ApiState> for Auth<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        require(state, &parts.headers, R::ROLE).map(|principal| Auth {
            principal,
            role: PhantomData,
        })
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

/// The WebSocket subprotocol the daemon answers with; a client offers it together with
/// `vitalsd.token.<token>`.
pub const WS_PROTOCOL: &str = "vitalsd";

/// The token offered as a `vitalsd.token.<token>` item of `Sec-WebSocket-Protocol`.
pub fn token_from_protocols(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("vitalsd.token.").map(str::to_owned))
}

/// Checks a token (from a header or a query) against the configured users.
pub fn check(state: &ApiState, token: Option<&str>, role: Role) -> Result<Principal, ApiError> {
    check_users(&state.hub.config().users, token, role)
}

/// Checks a token against `users` (a site's or a central's); no users means the local admin.
pub fn check_users(
    users: &[crate::config::User],
    token: Option<&str>,
    role: Role,
) -> Result<Principal, ApiError> {
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
    // Every user is compared (no early exit), each over a fixed-length digest.
    let presented = crate::config::token_sha256(token);
    let mut found = None;
    for u in users {
        if digests_equal(&u.token_sha256, &presented) && found.is_none() {
            found = Some(u);
        }
    }
    let user = found.ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "unknown token"))?;
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

/// Whether two token digests (SHA-256) are equal, compared without an early exit: the time
/// depends on neither where the tokens differ nor their lengths.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::digests_equal;
    use crate::config::token_sha256;

    fn tokens_equal(a: &str, b: &str) -> bool {
        digests_equal(&token_sha256(a), &token_sha256(b))
    }

    #[test]
    fn tokens_compare_equal_only_when_identical() {
        assert!(tokens_equal("abcdefgh12345678", "abcdefgh12345678"));
        assert!(!tokens_equal("abcdefgh12345678", "abcdefgh12345679"));
        assert!(!tokens_equal("abc", "abcd"));
        assert!(!tokens_equal("", "abcdefgh12345678"));
    }
}
