//! Device bytes -> JSON at a WebSocket client, through the whole daemon, on loopback.
//!
//! A fake serial device server (TCP) sends Masimo ASCII lines at a fixed rate; the daemon
//! decodes them, runs the alarm engine, fans out; a WebSocket client receives the readings.
//! Latency is measured per line from just before the write to the client's receipt of the
//! line's `perfusion_index` reading (the PI value carries the line's sequence number).
//! Also: the hub's ingest throughput (observations/s through decode-free ingest with alarms)
//! and the process's peak RSS.
//!
//! `cargo bench --bench pipeline` (add `-- quick` for a short run).

use futures_util::StreamExt;
use hdrhistogram::Histogram;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use vitalsd::app::{self, Options};
use vitalsd::config::load_config_str;
use vitalsd::hub::{Hub, Stamp};
use vitalsd::model::{DeviceIdx, Flags, Measurement, Metric};

const PI_MOD: u64 = 2000;

fn config(tcp: &str, dir: &std::path::Path) -> vitalsd::config::Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{dir}"
[[rooms]]
id = "room1"
name = "Room 1"
[[rooms.recliners]]
id = "A"
[[rooms.recliners.devices]]
id = "room1-A-oximeter"
profile = "masimo-rad8"
tcp = "{tcp}"
# Far beyond a real Rad-8's 1 line/s: not a flood here (docs/alarms.md, "Flooding devices").
max_rate = 1000000
[[rooms.recliners]]
id = "B"
[[rooms.recliners.devices]]
id = "room1-B-oximeter"
profile = "masimo-rad8"
tcp = "127.0.0.1:{other}"
"#,
        dir = dir.display(),
        other = if tcp.ends_with(":9") { 10 } else { 9 },
    );
    load_config_str(&text, &dir.join("bench.toml")).expect("bench config")
}

fn line(seq: u64) -> String {
    let pi = (seq % PI_MOD) as f64 / 100.0;
    format!(
        "11/22/26 04:00:00 SN=0000056661 SPO2=097% BPM=072 PI={pi:05.2}% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
    )
}

async fn latency_run(rate: u64, seconds: u64) -> Histogram<u64> {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = listener.local_addr().unwrap().to_string();
    let cfg = Arc::new(config(&tcp, dir.path()));
    let daemon = app::start(cfg, Options::default()).await.unwrap();
    let (mut dev, _) = listener.accept().await.unwrap();
    dev.set_nodelay(true).unwrap();
    let url = format!("ws://{}/ws", daemon.addr);
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let sent: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..PI_MOD).map(|_| Default::default()).collect());
    let epoch = Instant::now();
    let total = rate * seconds;
    let sent_w = sent.clone();
    let writer = tokio::spawn(async move {
        let period = Duration::from_nanos(1_000_000_000 / rate);
        let start = Instant::now();
        for seq in 0..total {
            let due = start + period * seq as u32;
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                tokio::time::sleep(wait).await;
            }
            let t = epoch.elapsed().as_nanos() as u64;
            sent_w[(seq % PI_MOD) as usize].store(t, std::sync::atomic::Ordering::Relaxed);
            if dev.write_all(line(seq).as_bytes()).await.is_err() {
                break;
            }
        }
        dev
    });
    let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let warmup = rate / 2;
    let mut seen = 0u64;
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    while seen < total && Instant::now() < deadline {
        let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(5), ws.next()).await
        else {
            break;
        };
        let now = epoch.elapsed().as_nanos() as u64;
        let Ok(text) = msg.into_text() else { continue };
        if !text.contains("\"perfusion_index\"") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let Some(pi) = v["value"].as_f64() else {
            continue;
        };
        let slot = (pi * 100.0).round() as usize % PI_MOD as usize;
        let t0 = sent[slot].load(std::sync::atomic::Ordering::Relaxed);
        seen += 1;
        if seen > warmup && now > t0 {
            hist.record((now - t0) / 1000).ok();
        }
    }
    let _ = writer.await;
    daemon.shutdown().await;
    hist
}

fn ingest_throughput(n: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let cfg = Arc::new(config("127.0.0.1:9", dir.path()));
    let hub = Hub::new(cfg, None).unwrap();
    let _sub = hub.subscribe(None); // one client, so fan-out is exercised
    let batch = [
        Measurement::new(Metric::Spo2, 97.0, Flags::EMPTY),
        Measurement::new(Metric::PulseRate, 72.0, Flags::EMPTY),
        Measurement::new(Metric::PerfusionIndex, 3.5, Flags::EMPTY),
    ];
    let start = Instant::now();
    let mut done = 0;
    while done < n {
        hub.ingest(DeviceIdx(0), Stamp::now(), &batch);
        done += batch.len();
        if done % 30_000 == 0 {
            // Keep the client's queue drained like a live connection would.
            while let vitalsd::hub::queue::Next::Send(_) = _sub.queue.pop() {}
        }
    }
    done as f64 / start.elapsed().as_secs_f64()
}

fn rss_kib() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn report(name: &str, h: &Histogram<u64>) {
    println!(
        "{name}: n={} p50={} us p99={} us p99.9={} us max={} us",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max()
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "quick");
    let secs = if quick { 3 } else { 10 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    for rate in [1_000, 25_000] {
        let h = rt.block_on(latency_run(rate, secs));
        report(&format!("bytes->websocket JSON at {rate} lines/s"), &h);
    }
    let n = if quick { 300_000 } else { 3_000_000 };
    println!(
        "hub ingest with alarm engine and one client: {:.0} observations/s",
        ingest_throughput(n)
    );
    if let Some(kib) = rss_kib() {
        println!("peak RSS of this process: {:.1} MiB", kib as f64 / 1024.0);
    }
}
