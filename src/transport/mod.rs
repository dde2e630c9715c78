//! Links to devices: byte streams from serial ports (tokio-serial, with the profile's link
//! settings) and serial device servers over raw TCP, here; Bluetooth LE GATT notifications in
//! [`ble`]. A [`Link`] is just bytes in and out; framing and meaning belong to
//! [`crate::protocol`]. Reconnecting is the caller's loop ([`Backoff`]).

pub mod ble;

use crate::config::{Endpoint, FlowControl, LinkSettings, Parity};
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A connected device: any byte stream.
pub trait AsyncLink: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncLink for T {}

/// An open connection to a device.
pub type Link = Box<dyn AsyncLink>;

/// Why a device could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The serial port could not be opened or configured.
    #[error("cannot open serial port {path}: {source}")]
    Serial {
        path: String,
        #[source]
        source: tokio_serial::Error,
    },
    /// The serial device server did not accept the connection.
    #[error("cannot connect to serial device server {addr}: {source}")]
    Tcp {
        addr: String,
        #[source]
        source: io::Error,
    },
    /// The connection attempt took too long.
    #[error("connecting to {endpoint} timed out after {after:?}")]
    Timeout { endpoint: String, after: Duration },
    /// The endpoint is not a byte stream (a Bluetooth LE device: see [`ble`]).
    #[error("{endpoint} is not a byte stream, expected a serial port or host:port")]
    NotAStream { endpoint: String },
}

/// How long a TCP connect may take before the attempt counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// TCP keepalive on device-server sockets: first probe after 5 s idle, then every 2 s, and
/// the connection is dropped after 3 unanswered probes (~11 s for a vanished peer).
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2);
const KEEPALIVE_RETRIES: u32 = 3;

/// Opens the endpoint with the profile's link settings (ignored for TCP: the device server
/// owns the serial side).
pub async fn open(endpoint: &Endpoint, link: &LinkSettings) -> Result<Link, TransportError> {
    match endpoint {
        Endpoint::Serial { path } => {
            let shown = path.display().to_string();
            let builder = tokio_serial::new(shown.clone(), link.baud)
                .data_bits(data_bits(link.data_bits))
                .parity(match link.parity {
                    Parity::None => tokio_serial::Parity::None,
                    Parity::Odd => tokio_serial::Parity::Odd,
                    Parity::Even => tokio_serial::Parity::Even,
                })
                .stop_bits(if link.stop_bits == 2 {
                    tokio_serial::StopBits::Two
                } else {
                    tokio_serial::StopBits::One
                })
                .flow_control(match link.flow_control {
                    FlowControl::None => tokio_serial::FlowControl::None,
                    FlowControl::Software => tokio_serial::FlowControl::Software,
                    FlowControl::Hardware => tokio_serial::FlowControl::Hardware,
                });
            let stream = tokio_serial::SerialStream::open(&builder).map_err(|source| {
                TransportError::Serial {
                    path: shown,
                    source,
                }
            })?;
            Ok(Box::new(stream))
        }
        Endpoint::Tcp { addr } => {
            let connect = TcpStream::connect(addr.as_str());
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, connect)
                .await
                .map_err(|_| TransportError::Timeout {
                    endpoint: endpoint.to_string(),
                    after: CONNECT_TIMEOUT,
                })?
                .map_err(|source| TransportError::Tcp {
                    addr: addr.clone(),
                    source,
                })?;
            // Readings are small and latency matters more than packet count.
            let _ = stream.set_nodelay(true);
            // A device server that vanishes without FIN/RST (power cut, cable pulled) leaves
            // a half-open socket: keepalive probes end it at the kernel level. The sources'
            // read deadline (expected period + grace without a valid frame) is the primary
            // liveness check; this also catches a peer that is gone while nothing is read.
            let keepalive = socket2::TcpKeepalive::new()
                .with_time(KEEPALIVE_IDLE)
                .with_interval(KEEPALIVE_INTERVAL)
                .with_retries(KEEPALIVE_RETRIES);
            if let Err(e) = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive) {
                tracing::warn!(endpoint = %endpoint, error = %e, "TCP keepalive could not be enabled; the read deadline still applies");
            }
            Ok(Box::new(stream))
        }
        Endpoint::Ble { .. } => Err(TransportError::NotAStream {
            endpoint: endpoint.to_string(),
        }),
    }
}

fn data_bits(n: u8) -> tokio_serial::DataBits {
    match n {
        5 => tokio_serial::DataBits::Five,
        6 => tokio_serial::DataBits::Six,
        7 => tokio_serial::DataBits::Seven,
        _ => tokio_serial::DataBits::Eight,
    }
}

/// Exponential reconnect backoff: 250 ms doubling to 5 s. The caller resets it only after a
/// link delivered valid data for a stable time (not on every accepted connect), so a device
/// server that accepts and closes at once is retried at most every 5 s. Five seconds at
/// most, because every second without a device is a second without monitoring.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    /// A fresh backoff.
    pub fn new() -> Backoff {
        Backoff { next: Self::FIRST }
    }

    /// The delay before the next attempt; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// Back to the first delay, after a link that delivered valid data for a stable time.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap_and_resets() {
        let mut b = Backoff::new();
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_millis() as u64).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(250));
    }

    #[tokio::test]
    async fn a_closed_tcp_port_is_a_clear_error_naming_the_address() {
        // Bind then drop, so the port is (almost certainly) closed.
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        let link = LinkSettings {
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        };
        let err = match open(&Endpoint::Tcp { addr: addr.clone() }, &link).await {
            Ok(_) => panic!("connected to a closed port"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&addr), "{err}");
    }

    #[tokio::test]
    async fn a_missing_serial_port_is_a_clear_error_naming_the_path() {
        let link = LinkSettings {
            baud: 9600,
            data_bits: 8,
            parity: Parity::None,
            stop_bits: 1,
            flow_control: FlowControl::None,
        };
        let path = std::path::PathBuf::from("/nonexistent/vitalsd-tty");
        let err = match open(&Endpoint::Serial { path }, &link).await {
            Ok(_) => panic!("opened a missing port"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("/nonexistent/vitalsd-tty"), "{err}");
    }
}
