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
//!   device flags, measurements and observations; and the shared vocabulary: monotonic time and
//!   durations, alarm conditions and priorities, limit rules and presets, the engine policy, a
//!   bed's devices as the engine needs them. No I/O.
//! - [`clock`]: monotonic and wall-clock time; the only place that reads a clock.
//! - [`protocol`]: pure decoders (and the simulator's encoders), one file per device family;
//!   the byte-stream framing several families share in `protocol/framing.rs`. Bytes in,
//!   measurements out; never panics, never turns a "no value" code into a number.
//! - [`alarm`]: the pure per-bed alarm engine (limits, technical conditions, latching, audio
//!   pause, escalation) and the dashboard watchdog; runs inline on the decode path; the engine
//!   by concern in `alarm/engine/` (physiological, technical, escalation, operator actions,
//!   snapshot). Built from
//!   plain data ([`model::BedSpec`], [`model::BedLimits`], [`model::Policy`]), never from the
//!   config.
//! - [`config`]: the clinic's config file and the device profiles in `devices/`, validated with
//!   errors that name file, line and key. Values are typed (`config/values.rs`: ids, roles,
//!   addresses, URLs, UUIDs, protocol and metric names, with durations from `model`) and read
//!   by serde through one reader (`config::read_toml`, the scenario loader's too), so a bad
//!   value is refused while the file is read; `raw.rs` is the file as written, `load.rs`,
//!   `profiles.rs`, `topology.rs` the checks across values.
//! - [`transport`]: byte streams from serial ports and TCP serial device servers, with
//!   reconnect and backoff; Bluetooth LE GATT notifications through btleplug/BlueZ
//!   ([`transport::ble`]).
//! - [`metrics`]: counters and latency histograms for `/metrics` (Prometheus); a leaf every
//!   stage counts into, read by [`api::metrics`] with the state the others keep.
//! - [`store`]: the durable record (SQLite): readings, alarm events, sessions, history and
//!   exports; written by its own thread, never on the alarm path.
//! - [`hub`]: per-bed state (latest values, sequence numbers), each bed under its own lock,
//!   and fan-out of messages serialized once to subscribers' bounded queues with an explicit
//!   policy per message kind (superseded alarm updates coalesced for a slow client, new
//!   alarms never). By concern: `mod.rs` (ingest, device status, subscriptions, timers),
//!   `fanout.rs` (numbering and publication), `actions.rs` (operator actions, restore),
//!   `view.rs` (snapshot, console lines), `queue.rs` (a client's queue), `wire.rs` (the
//!   messages). It publishes to the store rather than calling it: the store implements
//!   [`hub::Recorder`] and consumes the [`hub::Dispatch`] channel, wired in [`app`].
//! - [`sim`]: the device simulator: physiology, scenarios, and the real protocols over
//!   pseudo-terminals, TCP, and a fake BlueZ on a private D-Bus.
//! - [`sources`]: one task per bound device: transport -> decoder -> observation, plus the
//!   device's own dialogue (starting a SunTech measurement on the bed's interval).
//! - [`notify`]: webhook notifications with retries, an outbox that survives restarts.
//! - [`overload`]: counters of the overload defences (throttled devices, the notification
//!   queue, the alarm-event queue), plain atomics read by `/healthz` and `/metrics`.
//! - [`mqtt`]: the bridge that publishes readings and alarms to a site's MQTT broker, and
//!   takes the signed commands of a central view.
//! - [`hl7`]: HL7 v2 over MLLP to the EHR (IHE PCD-01 `ORU^R01`) and to an alarm manager
//!   (IHE PCD-04 `ORU^R40`), ACKed, retried, queued in the store across restarts.
//! - [`api`]: the HTTP JSON API and the WebSocket `/ws` (axum), tokens and roles.
//! - [`central`]: `vitalsd central`, the view of several sites rebuilt from what they publish
//!   to an MQTT broker; serves the dashboard and API as [`api`] does, for every site.
//! - [`app`]: wires the components together and shuts them down in order.
//! - [`cli`]: the `vitalsd` command line (thin; `main.rs` only calls it).
//!
//! ## Layering
//!
//! A module names only modules below it; there is no import cycle between the top-level
//! modules, nor between the files (and subfolders) of one folder (a file may name its own
//! folder's `mod.rs`, the folder's front). From the bottom up, today:
//!
//! 1. `model` (names no other module of the crate);
//! 2. `clock`, `protocol`, `alarm` (on `model` only: the engine takes time as a parameter);
//! 3. `config` (on `model` and `protocol`'s decoder names), `metrics` (on `clock` and
//!    `alarm`'s event types);
//! 4. `transport`, `store`, `overload`, `hub` (the hub names no store: `tests/layout.rs`);
//! 5. `sim`;
//! 6. `sources`, `notify`, `mqtt`, `hl7`;
//! 7. `api`, then `central`, then `app`, then `cli`.
//!
//! Vocabulary two modules share goes down into `model` rather than one reaching into the other
//! (`config` and `alarm` do not know each other). Where a type moved down, its old path stays
//! as a re-export (`clock::Mono`, `config::DeviceKind`, `config::parse_duration`,
//! `alarm::Priority`, `alarm::BedLimits`, ...). `cargo test --test tests layout::` checks the
//! rule from the code's imports and names the imports that close a cycle.
//!
//! No source file holds more than 1000 lines of non-test code (the same test checks it): a
//! larger concern is a folder of files by concern, e.g. `store/export/` (the record and CSV in
//! `mod.rs`, `fhir.rs`, `html.rs` with its `summary.rs` and `plot.rs`, `text.rs` for local times
//! and wording) and `sim/bluez/` (`bus.rs`, the D-Bus daemon; `objects.rs`, the adapter, device
//! and GATT objects; `mod.rs`, the fake's handle the players drive); `cli.rs` keeps what
//! `vitalsd demo` does besides running in `cli/demo.rs`.

pub mod alarm;
pub mod api;
pub mod app;
pub mod central;
pub mod cli;
pub mod clock;
pub mod config;
pub mod hl7;
pub mod hub;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod notify;
pub mod overload;
pub mod protocol;
pub mod sim;
pub mod sources;
pub mod store;
pub mod transport;
