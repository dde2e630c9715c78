//! The nurse-station dashboard: plain HTML, JavaScript and CSS from `assets/dashboard/`,
//! compiled into the binary (`include_str!`) and served at `/` and `/assets/...`. No build step,
//! no CDN: a station with no internet access gets the whole page from the daemon.
//!
//! The static files need no token (the page asks for one); everything they fetch does.
//! `Cache-Control: no-cache` makes a browser revalidate after an upgrade, so a station never
//! keeps running an old page against a new daemon.

use axum::Router;
use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// One file of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The `Content-Type` it is served with.
    pub content_type: &'static str,
    /// The file's text.
    pub body: &'static str,
}

/// The page itself, served at `/`.
pub const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("../../assets/dashboard/index.html"),
};

/// A JavaScript module of the dashboard, `assets/dashboard/{name}`.
macro_rules! module {
    ($name:literal) => {
        (
            $name,
            Asset {
                content_type: "text/javascript; charset=utf-8",
                body: include_str!(concat!("../../assets/dashboard/", $name)),
            },
        )
    };
}

/// The files under `/assets/`, by name: the stylesheet and the ES modules (`app.js` is the
/// entry; its header has the module map). A module loads with `script-src 'self'` like any
/// script of the daemon's own.
const ASSETS: &[(&str, Asset)] = &[
    (
        "style.css",
        Asset {
            content_type: "text/css; charset=utf-8",
            body: include_str!("../../assets/dashboard/style.css"),
        },
    ),
    module!("app.js"),
    module!("announce.js"),
    module!("actions.js"),
    module!("audio.js"),
    module!("beat.js"),
    module!("bed.js"),
    module!("forms.js"),
    module!("history.js"),
    module!("http.js"),
    module!("limits.js"),
    module!("live.js"),
    module!("log.js"),
    module!("session.js"),
    module!("state.js"),
    module!("text.js"),
    module!("top.js"),
    module!("trends.js"),
    module!("util.js"),
    module!("ws.js"),
];

/// The asset served at `/assets/{name}`, if there is one.
pub fn asset(name: &str) -> Option<Asset> {
    ASSETS.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
}

/// The dashboard's routes: `GET /` and `GET /assets/{name}`. Generic over the router state so
/// it merges into any router.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|| async { respond(INDEX) }))
        .route("/assets/{name}", get(serve_asset))
}

async fn serve_asset(Path(name): Path<String>) -> Response {
    match asset(&name) {
        Some(a) => respond(a),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({
                "error": format!(
                    "no dashboard asset {name:?}; expected one of: {}",
                    ASSETS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
                )
            })
            .to_string(),
        )
            .into_response(),
    }
}

fn respond(a: Asset) -> Response {
    (
        [
            (header::CONTENT_TYPE, a.content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        a.body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_the_page_links_is_served_with_its_content_type() {
        let mut linked = Vec::new();
        for part in INDEX.body.split("/assets/").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                .collect();
            linked.push(name);
        }
        assert_eq!(linked, ["style.css", "app.js"]);
        for (name, want) in [
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
        ] {
            let a = asset(name).unwrap_or_else(|| panic!("{name} is served"));
            assert_eq!(a.content_type, want);
            assert!(!a.body.is_empty());
        }
    }

    /// Every `import ... from './x.js'` of every module names a served module: a module added
    /// to assets/dashboard/ but not to ASSETS would leave the page blank.
    #[test]
    fn every_module_a_module_imports_is_served_as_javascript() {
        let mut seen = 0;
        for (name, a) in ASSETS.iter().filter(|(n, _)| n.ends_with(".js")) {
            for part in a.body.split("from './").skip(1) {
                let dep: String = part.chars().take_while(|c| *c != '\'').collect();
                let served =
                    asset(&dep).unwrap_or_else(|| panic!("{name} imports {dep}, not served"));
                assert_eq!(
                    served.content_type, "text/javascript; charset=utf-8",
                    "{dep}"
                );
                seen += 1;
            }
        }
        assert!(
            seen > 10,
            "the entry module imports the others ({seen} imports seen)"
        );
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/dashboard");
        for entry in std::fs::read_dir(&dir).expect("assets/dashboard is readable") {
            let file = entry.expect("a directory entry").file_name();
            let file = file.to_string_lossy();
            if file != "index.html" {
                assert!(
                    asset(&file).is_some(),
                    "assets/dashboard/{file} is not in ASSETS"
                );
            }
        }
        assert!(
            INDEX
                .body
                .contains(r#"<script type="module" src="/assets/app.js">"#)
        );
    }

    #[test]
    fn unknown_or_traversing_asset_names_are_not_served() {
        for name in ["", "index.html", "../Cargo.toml", "app.js/", "APP.JS"] {
            assert_eq!(asset(name), None, "{name:?}");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_outside_the_daemon() {
        let files = std::iter::once(("index.html", INDEX.body))
            .chain(ASSETS.iter().map(|(n, a)| (*n, a.body)));
        for (name, text) in files {
            for bad in ["http://", "https://", "//cdn", "@import"] {
                assert!(!text.contains(bad), "{name} contains {bad:?}");
            }
        }
    }
}
