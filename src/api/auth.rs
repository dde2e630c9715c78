//! Who may do what. PLACEHOLDER until the lead's version lands: every request is treated as
//! an admin named `local` (the "no users, loopback" rule of docs/api.md). The signatures are
//! the contract; only the body of [`require`] changes.

use super::ApiState;
use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

/// Roles, each allowed what the one before is plus more.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Reads.
    Viewer,
    /// Also acknowledges, pauses audio, admits/discharges, records session events.
    Nurse,
    /// Also changes limits.
    Admin,
}

/// The caller of a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user's name (recorded as the actor of what they do).
    pub name: String,
    /// Their role.
    pub role: Role,
}

/// An API error: a status and `{"error": message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    /// An error with a status and a message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
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

/// Checks that the request may act with `role`, and says who it is.
pub fn require(state: &ApiState, headers: &HeaderMap, role: Role) -> Result<Principal, ApiError> {
    let _ = (state, headers, role);
    Ok(Principal {
        name: "local".to_owned(),
        role: Role::Admin,
    })
}
