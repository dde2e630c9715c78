//! Integration tests: one binary, a module per area (ripgrep style). Everything runs for real:
//! the simulator speaks the device protocols over pseudo-terminals and TCP, the daemon reads
//! them, and the tests watch what a WebSocket client and the CLI see.

mod util;

mod alarms_e2e;
mod api_fuzz;
mod ble;
mod browser;
mod central;
mod cli;
mod config_fuzz;
mod dashboard_e2e;
mod decoder_fuzz;
mod delivery;
mod hl7;
mod layout;
mod liveness;
mod mqtt;
mod notify_e2e;
mod ops;
mod overload;
mod oximeters;
mod restart;
mod security;
mod serial_e2e;
mod store;
