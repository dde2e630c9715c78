//! The bed a request's path names: `/api/beds/{room}/{recliner}/...` read as the bed id
//! `room/recliner`, shared by the site's handlers and the central's.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

/// The bed id (`room1/A`) of a `/api/beds/{room}/{recliner}/...` path. Whether the bed exists
/// is the handler's to check (a site's config, a central's view); a path that does not fit is
/// axum's `Path` rejection, unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BedPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for BedPath {
    type Rejection = PathRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, PathRejection> {
        let Path((room, recliner)) =
            Path::<(String, String)>::from_request_parts(parts, state).await?;
        Ok(BedPath(format!("{room}/{recliner}")))
    }
}
