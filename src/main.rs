use std::sync::atomic::{AtomicU64, Ordering};

fn main() -> std::process::ExitCode {
    install_panic_hook();
    vitalsd::cli::main()
}

/// Replaces the default panic hook, which prints a backtrace when `RUST_BACKTRACE` is set and,
/// to resolve it, loads the binary's debug info and keeps it mapped for good (a daemon of
/// 18 MB grew to 188 MB after one panic).
///
/// A library task may panic (bluez-async 0.9.0 unwrapped the result of a D-Bus call in a
/// detached task; our patched copy in vendor/ no longer does, but another such unwrap would
/// behave the same); tokio contains such a panic to its task, and the daemon keeps running. This hook logs it as one error line,
/// where and what, never a backtrace; the 1st, 10th, 100th... panic of the process only, so a
/// burst of them is no storm. A panic in a Bluetooth or D-Bus library makes the BLE watchdog
/// check its BlueZ session at once (and make it again if it does not answer).
fn install_panic_hook() {
    static PANICS: AtomicU64 = AtomicU64::new(0);
    std::panic::set_hook(Box::new(|info| {
        let total = PANICS.fetch_add(1, Ordering::Relaxed) + 1;
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let library = ["bluez-async", "btleplug", "dbus"]
            .iter()
            .any(|name| location.contains(name));
        if library {
            vitalsd::transport::ble::library_panicked();
        }
        let decade = |n: u64| n.checked_ilog10().unwrap_or(0);
        if total > 1 && decade(total) == decade(total - 1) {
            return;
        }
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".to_owned());
        let thread = std::thread::current();
        let thread = thread.name().unwrap_or("unnamed");
        if tracing::dispatcher::has_been_set() {
            tracing::error!(
                thread,
                panics_total = total,
                "panic at {location}: {message} (logged at the 1st, 10th, 100th... panic; no backtrace)"
            );
        } else {
            eprintln!("vitalsd: thread {thread:?}: panic at {location}: {message}");
        }
    }));
}
