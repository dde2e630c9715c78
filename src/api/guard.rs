//! The checks every request passes before a handler sees it (docs/api.md, "Security"):
//!
//! - **Host allowlist** (DNS rebinding): `Host` must name this daemon: the listener's address,
//!   `localhost`/`127.0.0.1`/`[::1]` on loopback, any IP address on a wildcard listener (a
//!   rebinding page always comes with a DNS name), or `[api] allowed_hosts`. 421 otherwise.
//! - **Origin** (cross-site requests): a state-changing request (anything but GET, HEAD,
//!   OPTIONS) and a WebSocket upgrade from a browser must come from the daemon's own origin or
//!   `[api] allowed_origins`. 403 otherwise. Clients that send no `Origin` are not browsers; a
//!   browser's `Sec-Fetch-Site: cross-site` is refused even without `Origin`.
//! - **JSON only**: a state-changing request with a body must say `Content-Type:
//!   application/json`, so a cross-site "simple" `text/plain` or form POST never reaches a
//!   handler. 415 otherwise.
//! - **Body size**: a declared `Content-Length` above `[api] max_body` gets 413 on every route
//!   (the body extractors enforce the same limit on chunked bodies).
//! - **Request timeout**: a request not answered within `[api] request_timeout` gets 408
//!   (tower-http's `TimeoutLayer`, its empty answer given a JSON error here).
//! - **Headers on every response**: a Content-Security-Policy that allows only the daemon's own
//!   scripts, styles and WebSocket, `frame-ancestors 'none'` and `X-Frame-Options: DENY`,
//!   `nosniff`, `Referrer-Policy: no-referrer` (tower-http's `SetResponseHeaderLayer`; the CSP
//!   is set by the check itself, since it names the WebSocket address of the request's `Host`).
//! - **Request tracing** (tower-http's `TraceLayer`, at debug level): method, path (never the
//!   query, which may hold a token), status and latency.
//!
//! No tower concurrency limit: the listener speaks HTTP/1.1 only, so requests in flight are
//! at most the open connections, which `serve.rs` caps (`[api] max_connections`, evicting the
//! longest idle); a tower `ConcurrencyLimit` would only make requests wait in a queue.

use super::auth::ApiError;
use crate::config::ApiSettings;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// What the checks compare against: built once from the config and the bound address.
#[derive(Debug, Clone)]
pub struct Guard {
    /// Lowercase host names/addresses (no port) `Host` may name.
    hosts: Vec<String>,
    /// A wildcard listener (0.0.0.0, ::): any IP-address `Host` is this daemon.
    any_ip: bool,
    /// Extra origins, lowercase `scheme://host[:port]`.
    origins: Vec<String>,
    /// `https` when the listener serves TLS, else `http`.
    scheme: &'static str,
    max_body: usize,
    request_timeout: Duration,
}

impl Guard {
    /// The checks for a listener bound to `addr`.
    pub fn new(settings: &ApiSettings, addr: SocketAddr, tls: bool) -> Guard {
        let mut hosts = settings.allowed_hosts.clone();
        let ip = addr.ip();
        hosts.push(host_of_ip(ip));
        if ip.is_loopback() || ip.is_unspecified() {
            hosts.extend(["localhost", "127.0.0.1", "[::1]"].map(str::to_owned));
        }
        let mut seen = std::collections::HashSet::new();
        hosts.retain(|h| seen.insert(h.clone()));
        Guard {
            hosts,
            any_ip: ip.is_unspecified(),
            origins: settings.allowed_origins.clone(),
            scheme: if tls { "https" } else { "http" },
            max_body: settings.max_body,
            request_timeout: settings.request_timeout,
        }
    }

    /// Whether `Host` (with or without port) names this daemon. No `Host` (HTTP/1.0 tools) is
    /// not a browser, and passes.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        let Some(host) = host else { return true };
        let name = strip_port(host).to_ascii_lowercase();
        if self.hosts.contains(&name) {
            return true;
        }
        self.any_ip
            && name
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
    }

    /// Whether a browser request may change state / open a WebSocket: its `Origin` is this
    /// daemon's own (`scheme://` + the `Host` it asked for) or a configured one.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            // No Origin: not a browser, unless the browser says the request is cross-site.
            return !headers
                .get("sec-fetch-site")
                .is_some_and(|v| v.as_bytes() == b"cross-site" || v.as_bytes() == b"same-site");
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.origins.contains(&origin) {
            return true;
        }
        let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        let default_port = if self.scheme == "https" {
            ":443"
        } else {
            ":80"
        };
        let own = format!("{}://{}", self.scheme, host);
        origin == own || format!("{origin}{default_port}") == own
    }
}

/// `host:port` or `[v6]:port` without the port.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

fn host_of_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    }
}

/// Wraps `router` in the checks, the request timeout, the security headers and tracing (from
/// the inside out).
pub fn layer(router: Router, guard: Guard) -> Router {
    use tower_http::set_header::SetResponseHeaderLayer;
    use tower_http::trace::{DefaultOnFailure, DefaultOnResponse, TraceLayer};
    use tracing::Level;
    let timeout = guard.request_timeout;
    router
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(axum::middleware::map_response(move |r: Response| async move {
            explain_timeout(r, timeout)
        }))
        .layer(axum::middleware::from_fn_with_state(Arc::new(guard), check))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(
            TraceLayer::new_for_http()
                // The path only: a `?token=` must not reach the log.
                .make_span_with(|req: &Request| {
                    tracing::debug_span!("request", method = %req.method(), path = %req.uri().path())
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG))
                // A 503 from /healthz while the store is down is polled, and logged elsewhere.
                .on_failure(DefaultOnFailure::new().level(Level::DEBUG)),
        )
}

/// Gives the timeout layer's empty 408 a JSON error that names the setting.
fn explain_timeout(r: Response, timeout: Duration) -> Response {
    if r.status() != StatusCode::REQUEST_TIMEOUT || r.headers().contains_key(header::CONTENT_TYPE) {
        return r;
    }
    ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        format!("the request was not complete within {timeout:?} ([api] request_timeout)"),
    )
    .into_response()
}

fn changes_state(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Refuses what the module doc lists, and adds the Content-Security-Policy to every answer.
async fn check(State(g): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .map(|v| v.to_str().unwrap_or("\u{fffd}").to_owned())
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    let mut response = match refusal(&g, &req, host.as_deref()) {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    let h = response.headers_mut();
    // The page's own WebSocket, named explicitly for browsers whose 'self' does not cover ws:.
    let ws = host
        .filter(|h| g.host_allowed(Some(h)))
        .map(|h| {
            let ws = if g.scheme == "https" { "wss" } else { "ws" };
            format!(" {ws}://{h}")
        })
        .unwrap_or_default();
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{ws}; media-src 'self' data: blob:; base-uri 'none'; \
         form-action 'none'; frame-ancestors 'none'"
    );
    if let Ok(v) = HeaderValue::from_str(&csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

fn refusal(g: &Guard, req: &Request, host: Option<&str>) -> Option<ApiError> {
    if !g.host_allowed(host) {
        return Some(ApiError::new(
            StatusCode::MISDIRECTED_REQUEST,
            format!(
                "Host {:?} is not this daemon's name, expected one of {} (add a name the stations use to [api] allowed_hosts)",
                host.unwrap_or_default(),
                g.hosts.join(", ")
            ),
        ));
    }
    let headers = req.headers();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > g.max_body as u64) {
        return Some(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "a body of {} bytes, expected at most {} ([api] max_body)",
                declared.unwrap_or_default(),
                g.max_body
            ),
        ));
    }
    let state_changing = changes_state(req.method());
    if (state_changing || is_websocket_upgrade(headers)) && !g.origin_allowed(headers) {
        let origin = headers
            .get(header::ORIGIN)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        return Some(ApiError::new(
            StatusCode::FORBIDDEN,
            format!(
                "cross-origin request refused: Origin {:?} is not this daemon's, expected a page served by the daemon itself (or one of [api] allowed_origins)",
                origin.unwrap_or_else(|| "(none, Sec-Fetch-Site cross-site)".to_owned())
            ),
        ));
    }
    if state_changing {
        let has_body =
            declared.is_some_and(|n| n > 0) || headers.contains_key(header::TRANSFER_ENCODING);
        match headers.get(header::CONTENT_TYPE) {
            Some(ct) => {
                let mime = ct.to_str().unwrap_or_default();
                let essence = mime.split(';').next().unwrap_or_default().trim();
                if !essence.eq_ignore_ascii_case("application/json") {
                    return Some(ApiError::new(
                        StatusCode::UNSUPPORTED_MEDIA_TYPE,
                        format!("Content-Type {mime:?}, expected application/json"),
                    ));
                }
            }
            None if has_body => {
                return Some(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "a body without Content-Type, expected Content-Type: application/json",
                ));
            }
            None => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, tls: bool) -> Guard {
        let mut s = ApiSettings::default();
        s.allowed_hosts.push("station.clinic.lan".to_owned());
        s.allowed_origins
            .push("https://portal.clinic.lan".to_owned());
        Guard::new(&s, listen.parse().unwrap(), tls)
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (k, v) in pairs {
            m.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        m
    }

    #[test]
    fn a_loopback_listener_answers_to_loopback_names_and_configured_ones_only() {
        let g = guard("127.0.0.1:8080", false);
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "LOCALHOST",
            "[::1]:8080",
            "station.clinic.lan:8080",
        ] {
            assert!(g.host_allowed(Some(ok)), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "10.0.0.5:8080",
            "127.0.0.1.evil",
        ] {
            assert!(!g.host_allowed(Some(bad)), "{bad}");
        }
        assert!(g.host_allowed(None));
    }

    #[test]
    fn a_wildcard_listener_answers_to_any_address_but_not_to_unknown_names() {
        let g = guard("0.0.0.0:8443", true);
        assert!(g.host_allowed(Some("192.168.10.5:8443")));
        assert!(g.host_allowed(Some("[fe80::1]:8443")));
        assert!(!g.host_allowed(Some("evil.example:8443")));
    }

    #[test]
    fn only_the_daemons_own_origin_or_a_configured_one_may_change_state() {
        let g = guard("127.0.0.1:8080", false);
        let own = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert!(g.origin_allowed(&own));
        let evil = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(!g.origin_allowed(&evil));
        let null = headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]);
        assert!(!g.origin_allowed(&null));
        let portal = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://portal.clinic.lan"),
        ]);
        assert!(g.origin_allowed(&portal));
        // The scheme is part of the origin.
        let other_scheme = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "https://127.0.0.1:8080"),
        ]);
        assert!(!g.origin_allowed(&other_scheme));
        assert!(g.origin_allowed(&headers(&[("host", "127.0.0.1:8080")])));
        assert!(!g.origin_allowed(&headers(&[("sec-fetch-site", "cross-site")])));
        let tls = guard("0.0.0.0:443", true);
        assert!(tls.origin_allowed(&headers(&[
            ("host", "station:443"),
            ("origin", "https://station")
        ])));
    }
}
