//! Overload, side by side: N TCP device servers (100 by default) send Masimo lines, 5 % of
//! them alarm lines (SpO2 80 %), at a total rate; one WebSocket client on loopback reads. Run
//! against the real `vitalsd` binary (store on, in a temporary data dir) and against a bare
//! tokio relay (TCP line -> WebSocket text frame, no parsing; this same binary as a child
//! process) in the same run, each in its own process so that CPU time (`wait4` rusage) and
//! peak RSS (`VmHWM`) are each one's own.
//!
//! Per line: latency from just before the device server writes it to the client's receipt
//! of the message with its `perfusion_index` reading (the relay: of the line itself); the PI
//! value and the device identify the line. Printed per rate: p50/p99/max, delivered/lost, coalesced (the
//! daemon's heartbeat count), alarm messages, CPU time per line, peak RSS, and the ratios.
//! CPU per line is each process's CPU time (`/proc/PID/stat`) from the first line's send to
//! 200 ms after the last one's receipt, over the lines sent: what the lines cost. The whole
//! process's time (start to exit, `wait4`) is printed beside it; it also holds costs that are
//! not per line and that the two do not share (the daemon opens its store and watches its
//! devices for the 2 s before the clock starts, and flushes when stopped).
//!
//! `cargo bench --bench overload`; `OVERLOAD_RATES=1000,25000,100000` (lines/s),
//! `OVERLOAD_SECONDS=5`, `OVERLOAD_DEVICES=100`; `OVERLOAD_REPEAT=5` runs five relay/daemon
//! pairs per rate, alternating, and prints the median of their ratios;
//! `OVERLOAD_VITALSD=/path/to/vitalsd` runs another build of the daemon (to measure before and
//! after a change). For vitalsd, the peak
//! of each queue's depth (`/healthz`) and of RSS (/proc) sampled every 200 ms is printed too
//! (`OVERLOAD_PEAKS=0`: not sampled).
//!
//! The devices run at their own phases, as independent monitors do: device `i` of N starts
//! `i / N` of its write period after the first. `OVERLOAD_IN_STEP=1` starts them all at once
//! instead, the worst case: every device's line in the same 10 ms tick, so each write is a
//! burst of one line per device, and every device's alarm line comes in the same burst.
//!
//! `OVERLOAD_SLOW=1` prints, per tenth of a second of sending time, where lines took longer than
//! 3 ms (the tail's moments); `OVERLOAD_SLOW_US` sets another limit, in microseconds.
//!
//! Fairness (`OVERLOAD_FLOOD=40000`, instead of the rates): `OVERLOAD_FAIR_BEDS` (10) normal
//! devices send alarm lines only, `OVERLOAD_FAIR_RATE` (200) lines/s in all, first alone, then
//! next to one more device flooding `OVERLOAD_FLOOD` lines/s with its profile's `max_rate` (as
//! a clinic leaves it); prints the normal devices' latency both times and the ratio.

mod common;

use common::{DeviceServers, address_after, env_or};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

/// Distinct PI values (00.00..99.99): one line's identity within a device.
const PI_MOD: u64 = 10_000;

fn line(dev: usize, n: u64, alarm: bool) -> String {
    let pi = (n % PI_MOD) as f64 / 100.0;
    let spo2 = if alarm { 80 } else { 97 };
    format!(
        "11/22/26 04:00:00 SN={dev:010} SPO2={spo2:03}% BPM=072 PI={pi:05.2}% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
    )
}

/// `flood_last`: the last device is the flooding one, with its profile's own `max_rate` (as
/// a clinic leaves it); the others may send anything.
fn daemon_config(dir: &std::path::Path, ports: &[u16], flood_last: bool) -> String {
    let mut s = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}/data\"\n",
        dir.display()
    );
    for (r, pair) in ports.chunks(2).enumerate() {
        s.push_str(&format!("[[rooms]]\nid = \"r{r}\"\nname = \"Room {r}\"\n"));
        for (i, port) in pair.iter().enumerate() {
            let dev = r * 2 + i;
            let max_rate = if flood_last && dev == ports.len() - 1 {
                ""
            } else {
                "max_rate = 1000000\n"
            };
            s.push_str(&format!(
                "[[rooms.recliners]]\nid = \"{}\"\n[[rooms.recliners.devices]]\nid = \"dev{dev}\"\nprofile = \"masimo-rad8\"\ntcp = \"127.0.0.1:{port}\"\n{max_rate}",
                if i == 0 { "A" } else { "B" }
            ));
        }
    }
    s
}

/// The relay: connects to every device server, forwards each line as a text frame to the
/// one WebSocket client.
async fn relay(devices: Vec<String>) {
    let ws_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("relay listening on {}", ws_listener.local_addr().unwrap());
    let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(65_536);
    for addr in devices {
        let tx = tx.clone();
        tokio::spawn(async move {
            let Ok(s) = TcpStream::connect(&addr).await else {
                return;
            };
            let mut lines = tokio::io::BufReader::new(s).lines();
            while let Ok(Some(l)) = lines.next_line().await {
                if tx.send(l).await.is_err() {
                    break;
                }
            }
        });
    }
    let (s, _) = ws_listener.accept().await.unwrap();
    // As the daemon's listener does: a frame goes out when written, not after Nagle's wait.
    s.set_nodelay(true).unwrap();
    let mut ws = tokio_tungstenite::accept_async(s).await.unwrap();
    while let Some(l) = rx.recv().await {
        if ws.feed(Message::text(l)).await.is_err() {
            return;
        }
        while let Ok(l) = rx.try_recv() {
            if ws.feed(Message::text(l)).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Kind {
    Relay,
    Vitalsd,
}

struct Outcome {
    hist: Histogram<u64>,
    sent: u64,
    delivered: u64,
    coalesced: u64,
    alarm_msgs: u64,
    raised: u64,
    /// CPU seconds of the whole process, start to exit.
    cpu_s: f64,
    /// CPU seconds while the lines flow: from the first line's send until 200 ms after the
    /// last one's receipt (so the store's last batch is in).
    flow_cpu_s: f64,
    rss_kib: i64,
    closed: bool,
    /// The daemon's queue depths and RSS, sampled from `/healthz` and /proc while it ran.
    peaks: Option<Peaks>,
}

/// The largest of each depth seen by the sampler ([`sample`]).
#[derive(Debug, Default, Clone)]
struct Peaks {
    rss_kib: u64,
    store_backlog: u64,
    store_commands: u64,
    store_dropped: u64,
    client_priority: u64,
    client_readings: u64,
    dispatch: u64,
    /// Alarm updates and saved states coalesced in the hub->store queue, transitions dropped.
    dispatch_coalesced: u64,
    dispatch_dropped: u64,
    notify: u64,
}

/// A plain HTTP GET of `/healthz` on loopback: its JSON body.
async fn healthz(addr: &str) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .ok()?;
    let mut out = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut s, &mut out)
        .await
        .ok()?;
    let text = String::from_utf8_lossy(&out);
    serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
}

/// Samples the daemon's queue depths (`/healthz`) and RSS (/proc) every 200 ms until `stop`.
async fn sample(addr: String, pid: u32, stop: Arc<std::sync::atomic::AtomicBool>) -> Peaks {
    let mut p = Peaks::default();
    while !stop.load(Ordering::Relaxed) {
        if let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status"))
            && let Some(kib) = status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            p.rss_kib = p.rss_kib.max(kib);
        }
        if let Ok(Some(h)) = tokio::time::timeout(Duration::from_secs(1), healthz(&addr)).await {
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            p.store_backlog = p.store_backlog.max(n(&h["store"]["backlog"]));
            p.store_commands = p.store_commands.max(n(&h["store"]["pending_commands"]));
            p.store_dropped = p.store_dropped.max(n(&h["store"]["dropped"]));
            p.client_priority = p
                .client_priority
                .max(n(&h["delivery"]["max_pending_priority"]));
            p.client_readings = p
                .client_readings
                .max(n(&h["delivery"]["max_pending_readings"]));
            p.dispatch = p.dispatch.max(n(&h["overload"]["dispatch"]["peak"]));
            p.dispatch_coalesced = p
                .dispatch_coalesced
                .max(n(&h["overload"]["dispatch"]["coalesced"]));
            p.dispatch_dropped = p
                .dispatch_dropped
                .max(n(&h["overload"]["dispatch"]["dropped"]));
            p.notify = p.notify.max(n(&h["overload"]["notify"]["depth"]));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    p
}

/// The CPU time (user + system, all threads) a running process has used so far, from
/// `/proc/PID/stat` (in clock ticks: 10 ms resolution, ~1 % of the shortest window measured).
fn cpu_so_far(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces), from the 3rd on: utime and
    // stime are the 14th and 15th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        f.get(i - 3)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: a plain libc query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(14) + ticks(15)) / hz.max(1.0)
}

/// Stops the child and returns (CPU seconds, peak RSS KiB).
///
/// The peak RSS is the child's `VmHWM` (/proc), read before it is stopped: `wait4`'s
/// `ru_maxrss` is no good here, as Linux carries the high-water mark of the memory a process
/// replaced by `exec` (the spawning bench's, several MiB after the first runs) over into it.
fn reap(child: &mut std::process::Child) -> (f64, i64) {
    let pid = child.id() as libc::pid_t;
    let hwm = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        });
    // SAFETY: plain syscalls on our own child; `ru` is written by the kernel.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
        let mut status = 0;
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::wait4(pid, &mut status, 0, &mut ru);
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        (t(ru.ru_utime) + t(ru.ru_stime), hwm.unwrap_or(ru.ru_maxrss))
    }
}

/// A device that floods: `rate` lines a second, as much as is due every 10 ms, until aborted
/// (a throttled source reads it only as fast as its budget; the rest waits in the socket).
async fn flood_writer(mut link: TcpStream, dev: usize, rate: u64) {
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let start = Instant::now();
    let mut n = 0u64;
    let mut buf = String::new();
    loop {
        tick.tick().await;
        let due = (start.elapsed().as_secs_f64() * rate as f64) as u64 + 1;
        buf.clear();
        // At most a second's worth at once: a blocked socket does not build a backlog here.
        n = n.max(due.saturating_sub(rate));
        while n < due {
            buf.push_str(&line(dev, n, false));
            n += 1;
        }
        if link.write_all(buf.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// Per tenth of a second of sending time (from the first line): lines delivered, the largest
/// latency, and how many took longer than its limit (`OVERLOAD_SLOW_US`, 3 ms). Shows whether the tail is spread out or
/// is a few moments (in step, `OVERLOAD_IN_STEP=1`, the alarm lines' bursts: every device
/// sends its alarm line in the same tenth, 0.7 s, 2.7 s, 4.7 s, ... into a run at 1 000
/// lines/s).
struct SlowTenths {
    tenths: Vec<(u64, u64, u64)>,
    /// A line slower than this (microseconds) counts as slow.
    limit_us: u64,
}

impl SlowTenths {
    fn new() -> SlowTenths {
        SlowTenths {
            tenths: Vec::new(),
            limit_us: env_or("OVERLOAD_SLOW_US", 3_000u64),
        }
    }

    fn record(&mut self, sent_us: u64, latency_us: u64) {
        let i = (sent_us / 100_000) as usize;
        if i >= self.tenths.len() {
            self.tenths.resize(i + 1, (0, 0, 0));
        }
        let e = &mut self.tenths[i];
        e.0 += 1;
        e.1 = e.1.max(latency_us);
        e.2 += u64::from(latency_us > self.limit_us);
    }

    fn print(&self, kind: Kind) {
        for (i, &(n, max, slow)) in self.tenths.iter().enumerate() {
            if slow > 0 {
                println!(
                    "  {kind:?} slow at {:.1} s: {slow} of {n} lines over {:.2} ms, max {:.2} ms",
                    i as f64 / 10.0,
                    self.limit_us as f64 / 1000.0,
                    max as f64 / 1000.0
                );
            }
        }
    }
}

/// The shape of one run.
#[derive(Clone, Copy)]
struct Shape {
    /// Lines per second over the measured devices.
    rate: u64,
    seconds: u64,
    /// Measured devices.
    devices: usize,
    /// One alarm line in this many.
    alarm_every: u64,
    /// Lines per second of one more device, not measured, that floods (0: none).
    flood: u64,
    /// The devices write in step (every device's line in the same tick: bursts of one line per
    /// device, and its alarm lines all at once) rather than each at its own phase.
    in_step: bool,
}

async fn run(kind: Kind, shape: Shape) -> Outcome {
    let Shape {
        rate,
        seconds,
        devices,
        alarm_every,
        flood,
        in_step,
    } = shape;
    let dir = tempfile::tempdir().unwrap();
    let servers = DeviceServers::bind(devices + usize::from(flood > 0)).await;
    let ports = servers.ports();
    let mut child = match kind {
        Kind::Relay => Command::new(std::env::current_exe().unwrap())
            .env("OVERLOAD_ROLE", "relay")
            .env(
                "OVERLOAD_RELAY_DEVICES",
                ports
                    .iter()
                    .map(|p| format!("127.0.0.1:{p}"))
                    .collect::<Vec<_>>()
                    .join(","),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        Kind::Vitalsd => {
            let path = dir.path().join("overload.toml");
            std::fs::write(&path, daemon_config(dir.path(), &ports, flood > 0)).unwrap();
            // OVERLOAD_VITALSD: another build to compare with (e.g. the one before a change).
            let bin = std::env::var("OVERLOAD_VITALSD")
                .unwrap_or_else(|_| env!("CARGO_BIN_EXE_vitalsd").to_owned());
            Command::new(bin)
                .args(["run", "--config", path.to_str().unwrap()])
                .env("RUST_LOG", "error")
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        }
    };
    let addr = match kind {
        Kind::Relay => address_after(&mut child, "relay listening on "),
        Kind::Vitalsd => address_after(&mut child, "listening on http://"),
    };
    let mut links = servers.accept_all("the system under test").await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    if kind == Kind::Vitalsd {
        // Let every device come up (connected) before the clock starts.
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new(
        (0..devices as u64 * PI_MOD)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let stop_sampling = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // `OVERLOAD_PEAKS=0`: no sampling (the daemon then serves no `/healthz` during the run).
    let sampler = (kind == Kind::Vitalsd && env_or("OVERLOAD_PEAKS", 1u8) == 1)
        .then(|| tokio::spawn(sample(addr.clone(), child.id(), stop_sampling.clone())));
    let cpu_at_start = cpu_so_far(child.id());
    let epoch = Instant::now();
    let per_dev = (rate / devices as u64).max(1);
    let total_per_dev = per_dev * seconds;
    // Each device writes every 10 ms what is due by then.
    let mut writers = Vec::new();
    // The flooding device: not measured; it stops with the run.
    let flooder = if flood > 0
        && let Some(link) = links.pop()
    {
        Some(tokio::spawn(flood_writer(link, links.len(), flood)))
    } else {
        None
    };
    for (dev, mut link) in links.into_iter().enumerate() {
        let sent_at = sent_at.clone();
        // Real devices run on their own clocks: device `dev` starts `dev / devices` of its
        // write period (one line, or the 10 ms tick if shorter) after the first, so that the
        // lines, and the alarm lines, arrive spread out as from independent monitors.
        // `OVERLOAD_IN_STEP=1`: all at once (the worst case: one burst of a line per device).
        let phase = if in_step {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 / per_dev as f64).max(0.010))
                .mul_f64(dev as f64 / devices as f64)
        };
        writers.push(tokio::spawn(async move {
            tokio::time::sleep(phase).await;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let start = Instant::now();
            let mut n = 0u64;
            let mut buf = String::new();
            while n < total_per_dev {
                tick.tick().await;
                let due = ((start.elapsed().as_secs_f64() * per_dev as f64) as u64 + 1)
                    .min(total_per_dev);
                buf.clear();
                let t = epoch.elapsed().as_micros() as u64;
                while n < due {
                    // 5 % alarm lines, spread evenly.
                    buf.push_str(&line(dev, n, n % alarm_every == 7 % alarm_every));
                    sent_at[dev * PI_MOD as usize + (n % PI_MOD) as usize]
                        .store(t, Ordering::Relaxed);
                    n += 1;
                }
                if link.write_all(buf.as_bytes()).await.is_err() {
                    break;
                }
            }
            (n, link)
        }));
    }
    let sent_total = per_dev * seconds * devices as u64;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap();
    let (mut delivered, mut coalesced, mut alarm_msgs, mut raised) = (0u64, 0u64, 0u64, 0u64);
    let mut closed = false;
    let mut slow = SlowTenths::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    let mut quiet_since: Option<Instant> = None;
    while delivered < sent_total && Instant::now() < deadline {
        let msg = match tokio::time::timeout(Duration::from_millis(500), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            Ok(_) => {
                closed = true;
                break;
            }
            Err(_) => {
                // Nothing for a while after the writers are done: what was lost is lost.
                if writers.iter().all(|w| w.is_finished()) {
                    let q = *quiet_since.get_or_insert_with(Instant::now);
                    if q.elapsed() > Duration::from_secs(3) {
                        break;
                    }
                }
                continue;
            }
        };
        let now = epoch.elapsed().as_micros() as u64;
        let Message::Text(text) = msg else { continue };
        let text = text.as_str();
        // (device, PI) of every line this message carries: one for the relay; for vitalsd
        // one per `perfusion_index` reading (a v2 `readings` message carries every line of
        // one device read; a v1 `reading`, from an older build, one).
        let mut lines: Vec<(Option<usize>, Option<f64>)> = Vec::new();
        match kind {
            Kind::Relay => {
                let dev = text
                    .split("SN=")
                    .nth(1)
                    .and_then(|r| r.get(..10))
                    .and_then(|d| d.parse::<usize>().ok());
                let pi = text
                    .split("PI=")
                    .nth(1)
                    .and_then(|r| r.get(..5))
                    .and_then(|v| v.parse::<f64>().ok());
                lines.push((dev, pi));
            }
            Kind::Vitalsd => {
                if text.contains("\"type\":\"heartbeat\"") {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
                        coalesced = v["coalesced"].as_u64().unwrap_or(0);
                    }
                    continue;
                }
                if text.contains("\"type\":\"alarm\"") {
                    alarm_msgs += 1;
                    if text.contains("\"event\":\"raised\"") {
                        raised += 1;
                    }
                    continue;
                }
                let dev = text
                    .split("\"device\":\"dev")
                    .nth(1)
                    .and_then(|r| r.split('"').next())
                    .and_then(|d| d.parse::<usize>().ok());
                // The PI's value is the first after its metric name.
                for (at, _) in text.match_indices("\"metric\":\"perfusion_index\"") {
                    let pi = text[at..]
                        .split("\"value\":")
                        .nth(1)
                        .and_then(|r| r.split([',', '}']).next())
                        .and_then(|v| v.parse::<f64>().ok());
                    lines.push((dev, pi));
                }
            }
        }
        for (dev, pi) in lines {
            let (Some(dev), Some(pi)) = (dev, pi) else {
                continue;
            };
            if dev >= devices {
                continue; // the flooding device
            }
            let slot = dev * PI_MOD as usize + ((pi * 100.0).round() as u64 % PI_MOD) as usize;
            let Some(t0) = sent_at.get(slot).map(|a| a.load(Ordering::Relaxed)) else {
                continue;
            };
            delivered += 1;
            if now >= t0 {
                hist.record((now - t0).max(1)).ok();
                slow.record(t0, now - t0);
            }
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let flow_cpu_s = cpu_so_far(child.id()) - cpu_at_start;
    if std::env::var_os("OVERLOAD_SLOW").is_some() {
        slow.print(kind);
    }
    if kind == Kind::Vitalsd
        && let Ok(Some(h)) = tokio::time::timeout(Duration::from_secs(2), healthz(&addr)).await
    {
        // The daemon's own count since start (a heartbeat's may predate the last coalescing).
        coalesced = coalesced.max(h["delivery"]["coalesced_readings"].as_u64().unwrap_or(0));
    }
    let mut sent = 0;
    for w in writers {
        if let Ok((n, _link)) = w.await {
            sent += n;
        }
    }
    if let Some(f) = flooder {
        f.abort();
    }
    drop(ws);
    stop_sampling.store(true, Ordering::Relaxed);
    let peaks = match sampler {
        Some(s) => s.await.ok(),
        None => None,
    };
    let (cpu_s, rss_kib) = reap(&mut child);
    Outcome {
        hist,
        sent,
        delivered,
        coalesced,
        alarm_msgs,
        raised,
        cpu_s,
        flow_cpu_s,
        rss_kib,
        closed,
        peaks,
    }
}

fn show(name: &str, o: &Outcome) {
    let us_per_line = o.cpu_s * 1e6 / o.sent.max(1) as f64;
    let flow_us_per_line = o.flow_cpu_s * 1e6 / o.sent.max(1) as f64;
    println!(
        "  {name:<8} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  delivered {}/{} ({:.1} %)  lost {}  coalesced {}  alarm msgs {} (raised {})  CPU {:.2} s = {:.1} us/line (while the lines flow {:.2} s = {:.1} us/line)  RSS {:.1} MiB{}",
        o.hist.value_at_quantile(0.5) as f64 / 1000.0,
        o.hist.value_at_quantile(0.99) as f64 / 1000.0,
        o.hist.max() as f64 / 1000.0,
        o.delivered,
        o.sent,
        o.delivered as f64 * 100.0 / o.sent.max(1) as f64,
        o.sent.saturating_sub(o.delivered),
        o.coalesced,
        o.alarm_msgs,
        o.raised,
        o.cpu_s,
        us_per_line,
        o.flow_cpu_s,
        flow_us_per_line,
        o.rss_kib as f64 / 1024.0,
        if o.closed { "  CLOSED" } else { "" },
    );
    if let Some(p) = &o.peaks {
        println!(
            "           peaks (sampled every 200 ms): RSS {:.1} MiB  store backlog {} commands {} dropped {}  client pending priority {} readings {}  dispatch {} (coalesced {}, dropped {})  notify {}",
            p.rss_kib as f64 / 1024.0,
            p.store_backlog,
            p.store_commands,
            p.store_dropped,
            p.client_priority,
            p.client_readings,
            p.dispatch,
            p.dispatch_coalesced,
            p.dispatch_dropped,
            p.notify,
        );
    }
}

fn main() {
    if std::env::var("OVERLOAD_ROLE").as_deref() == Ok("relay") {
        let devices = std::env::var("OVERLOAD_RELAY_DEVICES")
            .unwrap_or_default()
            .split(',')
            .map(str::to_owned)
            .collect();
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(relay(devices));
        return;
    }
    // `cargo bench` passes `--bench`; nothing else is an argument here.
    let rates: Vec<u64> = std::env::var("OVERLOAD_RATES")
        .unwrap_or_else(|_| "1000,25000,100000".into())
        .split(',')
        .filter_map(|r| r.trim().parse().ok())
        .collect();
    let seconds = env_or("OVERLOAD_SECONDS", 5u64);
    let devices = env_or("OVERLOAD_DEVICES", 100usize);
    let in_step = env_or("OVERLOAD_IN_STEP", 0u8) == 1;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The fairness scenario: OVERLOAD_FLOOD=40000 (lines/s of one more device, with its
    // profile's max_rate) next to OVERLOAD_FAIR_BEDS normal devices (10) whose every line is an
    // alarm line (SpO2 80 %), OVERLOAD_FAIR_RATE lines/s over all of them (200): their latency
    // without and then with the flood, in the same run.
    let flood = env_or("OVERLOAD_FLOOD", 0u64);
    if flood > 0 {
        let shape = Shape {
            rate: env_or("OVERLOAD_FAIR_RATE", 200u64),
            seconds,
            devices: env_or("OVERLOAD_FAIR_BEDS", 10usize),
            alarm_every: 1,
            flood: 0,
            in_step,
        };
        println!(
            "fairness: {} normal devices, every line an alarm line, {} lines/s in all; then the same next to one device flooding {flood} lines/s (its profile's max_rate)",
            shape.devices, shape.rate
        );
        let idle = rt.block_on(run(Kind::Vitalsd, shape));
        let flooded = rt.block_on(run(Kind::Vitalsd, Shape { flood, ..shape }));
        show("idle", &idle);
        show("flooded", &flooded);
        let q = |o: &Outcome, p: f64| o.hist.value_at_quantile(p) as f64;
        println!(
            "  ratios   alarm-line p50 {:.2}x  p99 {:.2}x (flooded / idle)",
            q(&flooded, 0.5) / q(&idle, 0.5).max(1.0),
            q(&flooded, 0.99) / q(&idle, 0.99).max(1.0),
        );
        return;
    }
    println!(
        "overload: {devices} TCP device servers ({}), 5 % alarm lines, {seconds} s per rate, one WebSocket client",
        if in_step {
            "in step: every device's line in the same tick"
        } else {
            "each at its own phase"
        }
    );
    // OVERLOAD_REPEAT=N: N alternating relay/daemon pairs per rate and the median of their
    // ratios (this machine's p99 varies run to run more than the daemon's changes do).
    let repeat = env_or("OVERLOAD_REPEAT", 1usize).max(1);
    for rate in rates {
        let shape = Shape {
            rate,
            seconds,
            devices,
            alarm_every: 20,
            flood: 0,
            in_step,
        };
        let mut ratios: Vec<(f64, f64, f64)> = Vec::new();
        for _ in 0..repeat {
            let relay = rt.block_on(run(Kind::Relay, shape));
            let daemon = rt.block_on(run(Kind::Vitalsd, shape));
            println!("{rate} lines/s:");
            show("relay", &relay);
            show("vitalsd", &daemon);
            let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { f64::NAN };
            let p99 = ratio(
                daemon.hist.value_at_quantile(0.99) as f64,
                relay.hist.value_at_quantile(0.99) as f64,
            );
            // Per line: the CPU used while the lines flow. The whole process's also counts
            // fixed costs that are not per line (the daemon opens its store and watches its
            // devices for 2 s before the clock starts; the relay has neither).
            let cpu = ratio(daemon.flow_cpu_s, relay.flow_cpu_s);
            let whole = ratio(daemon.cpu_s, relay.cpu_s);
            println!(
                "  ratios   p99 {p99:.2}x  CPU/line {cpu:.2}x (whole process {whole:.2}x)  RSS {:.2}x",
                ratio(daemon.rss_kib as f64, relay.rss_kib as f64),
            );
            ratios.push((p99, cpu, whole));
        }
        if repeat > 1 {
            let median = |mut v: Vec<f64>| {
                v.sort_by(f64::total_cmp);
                v[v.len() / 2]
            };
            let fmt = |v: &[f64]| {
                v.iter()
                    .map(|x| format!("{x:.2}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            let p99: Vec<f64> = ratios.iter().map(|r| r.0).collect();
            let cpu: Vec<f64> = ratios.iter().map(|r| r.1).collect();
            let whole: Vec<f64> = ratios.iter().map(|r| r.2).collect();
            println!(
                "{rate} lines/s, median of {repeat} pairs: p99 {:.2}x ({})  CPU/line {:.2}x ({}; whole process {:.2}x)",
                median(p99.clone()),
                fmt(&p99),
                median(cpu.clone()),
                fmt(&cpu),
                median(whole),
            );
        }
    }
}
