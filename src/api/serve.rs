//! The accept loop of the HTTP/WebSocket listener (plain or TLS), with the limits axum::serve
//! does not have (docs/api.md, "Security"):
//!
//! - a request's headers (and the TLS handshake) must arrive within `[api] header_timeout`,
//!   which also closes a kept-alive connection idle that long between requests;
//! - at most `[api] max_connections` open connections (WebSockets included). At the cap, the
//!   connection idle the longest (no byte either way for a second or more) is closed to make
//!   room, so a flood of idle or half-sent connections cannot lock out `/healthz`, the alarm
//!   actions or a new dashboard; when every connection is busy, the new one is refused at once
//!   (plain HTTP gets a 503), without holding a file descriptor.
//!
//! Why here and not as tower(-http) layers (those wrap the router, in guard.rs): a tower layer
//! sees a request only once hyper has read its headers, so it cannot time out a connection that
//! never completes its headers or its TLS handshake (slowloris), close a kept-alive connection
//! idle between requests, or count connections and close the longest-idle one to make room
//! (tower's `ConcurrencyLimit` makes requests wait; it frees no file descriptor).

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::collections::HashMap;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// A connection silent for less than this is never closed to make room.
const EVICTABLE_AFTER: Duration = Duration::from_secs(1);

/// How the listener serves.
#[derive(Clone)]
pub struct Limits {
    pub header_timeout: Duration,
    pub max_connections: usize,
    /// Serve TLS with this config (HTTPS and WSS) instead of plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

/// Serves `app` on `listener` until `stop` is cancelled. Connection tasks run on `tracker`, so
/// shutdown waits for requests in flight (each connection is shut down gracefully).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    stop: CancellationToken,
    tracker: tokio_util::task::TaskTracker,
) {
    let table = Arc::new(Table {
        start: Instant::now(),
        next_id: AtomicU64::new(0),
        open: Mutex::new(HashMap::new()),
    });
    let acceptor = limits.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let mut refused_logged = Instant::now() - Duration::from_secs(60);
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            a = listener.accept() => a,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a little instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Alarm messages are small and must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let Some(slot) = table.admit(limits.max_connections) else {
            if refused_logged.elapsed() > Duration::from_secs(10) {
                refused_logged = Instant::now();
                tracing::warn!(%peer, max = limits.max_connections, "connection refused: every connection slot is busy ([api] max_connections)");
            }
            if acceptor.is_none() {
                tokio::spawn(refuse(tcp));
            }
            continue;
        };
        let kill = slot.kill.clone();
        let io = Tracked { inner: tcp, slot };
        let app = app.clone();
        let acceptor = acceptor.clone();
        let stop = stop.clone();
        let header_timeout = limits.header_timeout;
        tracker.spawn(async move {
            match acceptor {
                None => serve_connection(io, app, header_timeout, kill, stop).await,
                Some(acceptor) => {
                    let handshake = tokio::time::timeout(header_timeout, acceptor.accept(io)).await;
                    match handshake {
                        Ok(Ok(tls)) => {
                            serve_connection(tls, app, header_timeout, kill, stop).await;
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        }
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
}

/// One connection: HTTP/1.1 with upgrades (WebSocket), closed when evicted or at shutdown.
async fn serve_connection<S>(
    io: S,
    app: Router,
    header_timeout: Duration,
    kill: CancellationToken,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = TowerToHyperService::new(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r {
            tracing::debug!(error = %e, "http connection ended");
        },
        _ = kill.cancelled() => tracing::debug!("idle connection closed to make room"),
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

/// Answers a connection over the cap with a 503 and closes it (never waits long).
async fn refuse(mut tcp: tokio::net::TcpStream) {
    let body = r#"{"error":"too many connections ([api] max_connections), try again"}"#;
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\nRetry-After: 1\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), tcp.write_all(response.as_bytes())).await;
}

/// The open connections, with when each last moved a byte.
struct Table {
    start: Instant,
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
}

struct Entry {
    last: Arc<AtomicU64>,
    kill: CancellationToken,
}

impl Table {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A slot for a new connection, closing the longest-idle one at the cap; None when every
    /// connection is busy.
    fn admit(self: &Arc<Self>, max: usize) -> Option<Slot> {
        let now = self.now_ms();
        let mut open = self
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if open.len() >= max {
            let idle_ms = u64::try_from(EVICTABLE_AFTER.as_millis()).unwrap_or(u64::MAX);
            let oldest = open
                .iter()
                .map(|(id, e)| (*id, e.last.load(Ordering::Relaxed)))
                .filter(|(_, last)| now.saturating_sub(*last) >= idle_ms)
                .min_by_key(|(_, last)| *last)
                .map(|(id, _)| id)?;
            if let Some(e) = open.remove(&oldest) {
                e.kill.cancel();
            }
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let last = Arc::new(AtomicU64::new(now));
        let kill = CancellationToken::new();
        open.insert(
            id,
            Entry {
                last: last.clone(),
                kill: kill.clone(),
            },
        );
        Some(Slot {
            id,
            last,
            kill,
            table: self.clone(),
        })
    }
}

/// A connection's place in the table; dropped with the connection (a WebSocket keeps it
/// after the upgrade, since the socket moves into the WebSocket).
struct Slot {
    id: u64,
    last: Arc<AtomicU64>,
    kill: CancellationToken,
    table: Arc<Table>,
}

impl Slot {
    fn touch(&self) {
        self.last.store(self.table.now_ms(), Ordering::Relaxed);
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self
            .table
            .open
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        open.remove(&self.id);
    }
}

/// A socket that records its last activity and fails once its slot was taken.
struct Tracked<S> {
    inner: S,
    slot: Slot,
}

fn evicted() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "closed to make room for a new connection",
    )
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.slot.kill.is_cancelled() {
            return Poll::Ready(Err(evicted()));
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.slot.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.slot.kill.is_cancelled() {
            return Poll::Ready(Err(evicted()));
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.slot.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Loads `[tls] cert` and `key` (PEM) into a server config (aws-lc-rs, TLS 1.2 and 1.3, HTTP/1.1
/// by ALPN).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<rustls::ServerConfig> {
    use anyhow::Context as _;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| {
            format!(
                "cannot read certificates from {} ([tls] cert), expected PEM",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        anyhow::bail!(
            "no certificate in {} ([tls] cert), expected PEM \"BEGIN CERTIFICATE\"",
            cert.display()
        );
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| {
        format!(
            "cannot read a private key from {} ([tls] key), expected PEM (PKCS#8, PKCS#1 or SEC1)",
            key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("[tls] cert and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// File descriptors kept free for everything but API connections, besides those open at start:
/// the store (SQLite's database, WAL and shared-memory files, an export), the notifier's and
/// the MQTT bridge's sockets, the BLE D-Bus connection, a connection being accepted and evicted.
pub const FD_RESERVE: u64 = 64;
/// And per configured device: its serial port or socket, with room for a reconnect that
/// overlaps the old link's close (and a simulated device's pty pair).
pub const FD_PER_DEVICE: u64 = 4;

/// How many API connections fit under the open-file limit `nofile` when `open_now` descriptors
/// are already open: `[api] max_connections`, lowered if needed so that every device link can
/// always (re)connect and the store, notifier and MQTT bridge can open their files and sockets
/// (a connection flood hits the cap, never EMFILE). At least 1.
pub fn connection_cap(max_connections: usize, nofile: u64, open_now: u64, devices: usize) -> usize {
    let reserve = FD_RESERVE + FD_PER_DEVICE * devices as u64 + open_now;
    let room = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    max_connections.min(room).max(1)
}

/// Descriptors open in this process now (Linux's /proc/self/fd); None where unknown.
pub fn open_fds() -> Option<u64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    // The directory handle read_dir held is one of them.
    u64::try_from(n.saturating_sub(1)).ok()
}

/// Raises the soft limit on open files to the hard limit, so that `[api] max_connections` plus
/// the device links, the store and the notifier fit. Returns (before, after), or None where there
/// is no such limit.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)] // rlim_t is u64 on Linux, not on every unix
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.rlim_cur;
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Some((before as u64, before as u64));
        }
    }
    Some((before as u64, lim.rlim_cur as u64))
}

/// No file-descriptor limit to raise here.
#[cfg(not(unix))]
pub fn raise_fd_limit() -> Option<(u64, u64)> {
    None
}

#[cfg(test)]
mod tests {
    use super::{FD_PER_DEVICE, FD_RESERVE, connection_cap};

    #[test]
    fn the_connection_cap_leaves_descriptors_for_every_device_and_the_store() {
        // Plenty of descriptors: the configured cap.
        assert_eq!(connection_cap(256, 20_000, 30, 8), 256);
        // 1024 (a common default) with 5000 configured: what is left after the reserve.
        let cap = connection_cap(5000, 1024, 30, 8);
        assert_eq!(cap as u64, 1024 - 30 - FD_RESERVE - 8 * FD_PER_DEVICE);
        // Never zero, even when the limit is below the reserve.
        assert_eq!(connection_cap(256, 50, 30, 8), 1);
    }
}
