//! One endpoint's sender: a connection (TCP, or TLS through rustls), the endpoint's queue in
//! order, one message in flight at a time, its ACK awaited before the next (HL7 original-mode
//! acknowledgment, IHE PCD TF-2 "expected actions"). The queue lives in the store's
//! `hl7_outbox`; this task only removes a row once its ACK accepted it.
//!
//! Policy (docs/hl7.md, "ACK and retry"):
//! - AA / CA: delivered; removed from the outbox; the next one is sent.
//! - AR / CR (reject: the receiver cannot take it now): sent again after the backoff, for as
//!   long as it takes; the link counts as down meanwhile.
//! - AE / CE (error: the receiver finds the message itself wrong): sent again after the backoff
//!   up to [`MAX_AE`] times, then given up: removed, logged as an error, counted in
//!   `rejected`, and reported to dashboards. Sending it for ever would block every later
//!   message behind one the receiver will never take.
//! - No connection, a connection lost, no ACK within `ack_timeout`: reconnect and send the
//!   same message again (same control id) after the backoff, 0.5 s doubling to 10 s.

use super::mllp::{self, AckCode, Deframer};
use crate::clock::{rfc3339_ms, wall_ms};
use crate::config::Hl7Endpoint;
use crate::hub::Hub;
use crate::hub::link::LinkStats;
use crate::store::StoreHandle;
use crate::store::hl7_outbox::{Hl7Op, Hl7Row};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio_util::sync::CancellationToken;

/// Attempts answered AE before a message is given up.
pub const MAX_AE: u32 = 3;
const FIRST_RETRY: Duration = Duration::from_millis(500);
const MAX_RETRY: Duration = Duration::from_secs(10);

/// Backoff after `failures` failures in a row: 0.5 s doubling to 10 s.
pub fn retry_delay(failures: u32) -> Duration {
    let shift = failures.saturating_sub(1).min(16);
    (FIRST_RETRY * (1u32 << shift)).min(MAX_RETRY)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Conn = Box<dyn Io>;

/// Builds the TLS client config of an endpoint: the CA file's certificates, or the system's.
pub fn tls_connector(ep: &Hl7Endpoint) -> Result<tokio_rustls::TlsConnector, String> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    match &ep.ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(Iterator::collect::<Result<Vec<_>, _>>)
                .map_err(|e| {
                    format!(
                        "cannot read certificates from {}: {e}, expected PEM",
                        path.display()
                    )
                })?;
            for c in certs {
                roots.add(c).map_err(|e| {
                    format!("a certificate in {} is not usable: {e}", path.display())
                })?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    if roots.is_empty() {
        return Err("no trusted certificate authority (set ca = \"file.pem\")".to_owned());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS protocol versions: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One endpoint's sender.
pub struct Link {
    ep: Hl7Endpoint,
    stats: Arc<LinkStats>,
    store: StoreHandle,
    hub: Arc<Hub>,
    queue: VecDeque<Hl7Row>,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Failures in a row (for the backoff).
    failures: u32,
    /// The link was reported down (to log and report the recovery once).
    down_reported: bool,
}

enum Exchange {
    Ack(mllp::Ack),
    Failed(String),
}

impl Link {
    pub fn new(
        ep: Hl7Endpoint,
        stats: Arc<LinkStats>,
        store: StoreHandle,
        hub: Arc<Hub>,
        queue: VecDeque<Hl7Row>,
    ) -> Link {
        Link {
            ep,
            stats,
            store,
            hub,
            queue,
            tls: None,
            failures: 0,
            down_reported: false,
        }
    }

    /// Sends until cancelled; `rx` brings new messages (already in the outbox).
    pub async fn run(mut self, mut rx: UnboundedReceiver<Hl7Row>, cancel: CancellationToken) {
        if self.ep.tls {
            match tls_connector(&self.ep) {
                Ok(c) => self.tls = Some(c),
                Err(e) => {
                    tracing::error!(endpoint = %self.ep.name, error = %e, "HL7 endpoint: TLS cannot be set up; nothing is sent to it");
                    self.failed(&e);
                }
            }
        }
        if !self.queue.is_empty() {
            tracing::info!(endpoint = %self.ep.name, count = self.queue.len(), "HL7: sending messages left from before the restart");
        }
        let mut conn: Option<Conn> = None;
        let mut deframer = Deframer::default();
        // Connect at start, then again only when there is something to send (interface
        // engines close idle connections).
        let mut want_connection = true;
        loop {
            while let Ok(r) = rx.try_recv() {
                self.queue.push_back(r);
            }
            self.stats
                .queued
                .store(self.queue.len() as u64, Ordering::Relaxed);
            if conn.is_none() && (want_connection || !self.queue.is_empty()) {
                if self.ep.tls && self.tls.is_none() {
                    // No usable TLS config: keep the queue, stay down.
                    if !self.wait(Duration::from_secs(60), &mut rx, &cancel).await {
                        return;
                    }
                    continue;
                }
                let attempt = tokio::select! {
                    _ = cancel.cancelled() => return,
                    c = self.connect() => c,
                };
                match attempt {
                    Ok(c) => {
                        conn = Some(c);
                        deframer = Deframer::default();
                        want_connection = false;
                        if self.queue.is_empty() {
                            self.succeeded();
                        }
                    }
                    Err(e) => {
                        self.failed(&format!("cannot connect to {}: {e}", self.ep.address()));
                        if !self
                            .wait(retry_delay(self.failures), &mut rx, &cancel)
                            .await
                        {
                            return;
                        }
                        continue;
                    }
                }
            }
            let Some(row) = self.queue.front().cloned() else {
                let mut buf = [0u8; 512];
                let closed = match conn.as_mut() {
                    Some(c) => tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = rx.recv() => match r {
                            Some(r) => { self.queue.push_back(r); false }
                            None => return,
                        },
                        n = c.read(&mut buf) => matches!(n, Ok(0) | Err(_)),
                    },
                    None => tokio::select! {
                        _ = cancel.cancelled() => return,
                        r = rx.recv() => match r {
                            Some(r) => { self.queue.push_back(r); false }
                            None => return,
                        },
                    },
                };
                if closed {
                    conn = None;
                }
                continue;
            };
            let Some(c) = conn.as_mut() else { continue };
            let ex = tokio::select! {
                _ = cancel.cancelled() => return,
                ex = exchange(c, &mut deframer, &row, self.ep.ack_timeout) => ex,
            };
            match ex {
                Exchange::Ack(ack) => match ack.code {
                    AckCode::Accept => {
                        self.queue.pop_front();
                        self.store.hl7(Hl7Op::Remove(row.id));
                        self.stats.sent.fetch_add(1, Ordering::Relaxed);
                        self.succeeded();
                        continue;
                    }
                    AckCode::Reject => {
                        let why = format!("rejected (AR) {}", ack.text).trim().to_owned();
                        self.retry_later(&why);
                        self.failed(&why);
                    }
                    AckCode::Error => {
                        let why = format!("application error (AE) {}", ack.text)
                            .trim()
                            .to_owned();
                        let attempts = self.retry_later(&why);
                        if attempts >= MAX_AE {
                            self.give_up(&why, attempts);
                            self.succeeded();
                            continue;
                        }
                        self.failures += 1;
                    }
                },
                Exchange::Failed(why) => {
                    conn = None;
                    self.retry_later(&why);
                    self.failed(&why);
                }
            }
            if !self
                .wait(retry_delay(self.failures), &mut rx, &cancel)
                .await
            {
                return;
            }
        }
    }

    async fn connect(&self) -> Result<Conn, String> {
        let tcp = tokio::time::timeout(
            self.ep.ack_timeout,
            tokio::net::TcpStream::connect((self.ep.host.as_str(), self.ep.port)),
        )
        .await
        .map_err(|_| format!("no connection within {:?}", self.ep.ack_timeout))?
        .map_err(|e| e.to_string())?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Box::new(tcp)),
            Some(connector) => {
                let name = rustls::pki_types::ServerName::try_from(self.ep.host.clone())
                    .map_err(|e| format!("{:?} is not a TLS server name: {e}", self.ep.host))?;
                let tls = tokio::time::timeout(self.ep.ack_timeout, connector.connect(name, tcp))
                    .await
                    .map_err(|_| "no TLS handshake in time".to_owned())?
                    .map_err(|e| format!("TLS: {e}"))?;
                Ok(Box::new(tls))
            }
        }
    }

    /// Waits `d`, taking new messages meanwhile; false when cancelled.
    async fn wait(
        &mut self,
        d: Duration,
        rx: &mut UnboundedReceiver<Hl7Row>,
        cancel: &CancellationToken,
    ) -> bool {
        let sleep = tokio::time::sleep(d);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return false,
                _ = &mut sleep => return true,
                r = rx.recv() => match r {
                    Some(r) => {
                        self.queue.push_back(r);
                        self.stats.queued.store(self.queue.len() as u64, Ordering::Relaxed);
                    }
                    None => return false,
                },
            }
        }
    }

    /// The head message failed: count the attempt in its row. Returns its attempts.
    fn retry_later(&mut self, why: &str) -> u32 {
        let Some(r) = self.queue.front_mut() else {
            return 0;
        };
        r.attempts += 1;
        r.last_error = Some(why.to_owned());
        self.store.hl7(Hl7Op::Put(r.clone()));
        r.attempts
    }

    fn give_up(&mut self, why: &str, attempts: u32) {
        if let Some(r) = self.queue.pop_front() {
            tracing::error!(endpoint = %self.ep.name, control_id = r.id, attempts, error = %why, "HL7 message given up: the receiver keeps answering AE");
            self.store.hl7(Hl7Op::Remove(r.id));
            self.stats.rejected.fetch_add(1, Ordering::Relaxed);
            self.report("rejected", Some(why), Some(r.id));
        }
    }

    fn succeeded(&mut self) {
        self.failures = 0;
        self.stats.up.store(true, Ordering::Relaxed);
        if self.down_reported {
            self.down_reported = false;
            tracing::info!(endpoint = %self.ep.name, "HL7 endpoint takes messages again");
            self.report("up", None, None);
        }
    }

    fn failed(&mut self, why: &str) {
        self.failures += 1;
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        self.stats.up.store(false, Ordering::Relaxed);
        if !self.down_reported {
            self.down_reported = true;
            tracing::warn!(endpoint = %self.ep.name, address = %self.ep.address(), error = %why, queued = self.queue.len(), "HL7 endpoint fails; messages are kept and sent again");
            self.report("down", Some(why), None);
        }
    }

    fn report(&self, status: &str, error: Option<&str>, control_id: Option<i64>) {
        self.hub.publish_priority(serde_json::json!({
            "type": "hl7",
            "endpoint": self.ep.name,
            "kind": self.ep.kind.name(),
            "status": status,
            "error": error,
            "control_id": control_id,
            "queued": self.queue.len(),
            "at": rfc3339_ms(wall_ms()),
        }));
    }
}

/// Sends one message and waits for its ACK (an ACK for another control id, left from an
/// earlier attempt, is skipped).
async fn exchange(
    c: &mut Conn,
    deframer: &mut Deframer,
    row: &Hl7Row,
    timeout: Duration,
) -> Exchange {
    if let Err(e) = c.write_all(&mllp::frame(&row.body)).await {
        return Exchange::Failed(format!("send failed: {e}"));
    }
    if let Err(e) = c.flush().await {
        return Exchange::Failed(format!("send failed: {e}"));
    }
    let want = row.id.to_string();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 4096];
    loop {
        match deframer.next_frame() {
            Ok(Some(f)) => match mllp::parse_ack(&f) {
                Ok(ack) if ack.control_id == want || ack.control_id.is_empty() => {
                    return Exchange::Ack(ack);
                }
                Ok(ack) => {
                    tracing::debug!(control_id = %ack.control_id, "HL7: ACK of an earlier attempt skipped");
                    continue;
                }
                Err(e) => return Exchange::Failed(format!("the reply is not an ACK: {e}")),
            },
            Ok(None) => {}
            Err(e) => return Exchange::Failed(e.to_string()),
        }
        match tokio::time::timeout_at(deadline, c.read(&mut buf)).await {
            Err(_) => return Exchange::Failed(format!("no ACK within {timeout:?}")),
            Ok(Ok(0)) => return Exchange::Failed("the endpoint closed the connection".to_owned()),
            Ok(Ok(n)) => deframer.push(&buf[..n]),
            Ok(Err(e)) => return Exchange::Failed(format!("receive failed: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_from_half_a_second_to_ten_seconds() {
        let got: Vec<u64> = (1..=7).map(|f| retry_delay(f).as_millis() as u64).collect();
        assert_eq!(got, [500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
    }
}
