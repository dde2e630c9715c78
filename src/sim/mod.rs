//! The device simulator: it stands in for real devices in the demo and in every test.
//!
//! - [`scenario`]: scenario files (patients' baselines, doses, desaturations, device faults,
//!   time acceleration); format in `docs/scenarios.md`.
//! - [`physiology`]: the pure patient model: vitals, pleth and faults at a scenario time.
//! - [`devices`]: the I/O: each device marked `simulated = true` in the config is played on its
//!   endpoint (a pseudo-terminal behind a symlink, or a TCP port), byte for byte in its protocol.
//! - [`bluez`]: a private `dbus-daemon` and a fake BlueZ on it; [`ble`]: the BLE devices it
//!   serves, played from the same patients.

pub mod ble;
pub mod bluez;
mod device_sim;
pub mod devices;
pub mod physiology;
pub mod scenario;

pub use devices::{SimHandle, start, start_with};
