//! vitalsd watches the vital signs of the two patients of a ketamine-assisted couples-therapy
//! room (and of every other room of the clinic): it reads pulse oximeters and blood-pressure
//! cuffs over serial, TCP serial device servers and Bluetooth LE, applies each patient's alarm
//! limits on the path that decoded the reading, records everything, and pushes readings and
//! alarms to the nurse-station dashboard over WebSockets.
//!
//! It is a secondary, distributed alarm system: the bedside devices keep their own alarms.
//!
//! # Layout
//!
//! The modules follow the pipeline, device to nurse:
//!
//! - [`model`]: plain data shared by every stage: metrics (with IEEE 11073 codes and UCUM units),
//!   device flags, measurements and observations. No I/O.
//! - [`clock`]: monotonic and wall-clock time; the only place that reads a clock.
//! - [`config`]: the clinic's config file and the device profiles in `devices/`, validated with
//!   errors that name file, line and key.
//! - [`protocol`]: pure decoders (and the simulator's encoders), one file per device family.
//!   Bytes in, measurements out; never panics, never turns a "no value" code into a number.
//! - [`transport`]: byte streams from serial ports and TCP serial device servers, with
//!   reconnect and backoff; Bluetooth LE GATT notifications through btleplug/BlueZ
//!   ([`transport::ble`]).
//! - [`sources`]: one task per bound device: transport -> decoder -> observation, plus the
//!   device's own dialogue (starting a SunTech measurement on the bed's interval).
//! - [`alarm`]: the pure per-bed alarm engine (limits, technical conditions, latching, audio
//!   pause, escalation) and the dashboard watchdog; runs inline on the decode path.
//! - [`hub`]: per-bed state (latest values, sequence numbers) and fan-out to subscribers with
//!   an explicit policy per message kind.
//! - [`notify`]: webhook notifications with retries, an outbox that survives restarts.
//! - [`overload`]: counters of the overload defences (throttled devices, the notification
//!   queue), plain atomics read by `/healthz`.
//! - [`store`]: the durable record (SQLite): readings, alarm events, sessions, history and
//!   exports; written by its own thread, never on the alarm path.
//! - [`api`]: the HTTP JSON API and the WebSocket `/ws` (axum), tokens and roles.
//! - [`sim`]: the device simulator: physiology, scenarios, and the real protocols over
//!   pseudo-terminals, TCP, and a fake BlueZ on a private D-Bus.
//! - [`app`]: wires the components together and shuts them down in order.
//! - [`cli`]: the `vitalsd` command line (thin; `main.rs` only calls it).

pub mod alarm;
pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod hub;
pub mod model;
pub mod mqtt;
pub mod notify;
pub mod overload;
pub mod protocol;
pub mod sim;
pub mod sources;
pub mod store;
pub mod transport;
