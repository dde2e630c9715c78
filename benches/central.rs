//! The central view under load: N sites x B beds, each site a real `vitalsd run` whose
//! oximeters are TCP device servers of this bench (Masimo lines at a rate per device),
//! publishing through a real Mosquitto (started here on a free loopback port) to one
//! `vitalsd central`, read by one WebSocket client at central.
//!
//! Per line: latency from just before the device server writes it to the central client's
//! receipt of its `perfusion_index` reading (the PI value and the device identify the line).
//! Printed: p50/p99/max, delivered/lost, messages/s delivered. Two floors measured in the same
//! run, so the figures compare: `mqtt`, a bare rumqttc publisher -> the same Mosquitto -> a
//! rumqttc subscriber at the same rate (QoS 0, one message per line, a payload of a reading's
//! size); and `site ws`, one WebSocket client at site 0, for that site's devices (the site's
//! own path, without the broker and central).
//!
//! `cargo bench --bench central`; `CENTRAL_SITES=5`, `CENTRAL_BEDS=4` (per site),
//! `CENTRAL_RATE=1` (lines/s per oximeter), `CENTRAL_SECONDS=20`. Without Mosquitto
//! (`apt-get install mosquitto`) it says so and measures nothing.

mod common;

use common::{DeviceServers, address_after, env_or};
use futures_util::StreamExt;
use hdrhistogram::Histogram;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

/// Distinct PI values (00.00..99.99): one line's identity within a device.
const PI_MOD: u64 = 10_000;

fn line(n: u64) -> String {
    let pi = (n % PI_MOD) as f64 / 100.0;
    format!(
        "11/22/26 04:00:00 SN=0000000001 SPO2=097% BPM=072 PI={pi:05.2}% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000000\r\n"
    )
}

fn mosquitto() -> Option<PathBuf> {
    if Path::new("/usr/sbin/mosquitto").exists() {
        return Some("/usr/sbin/mosquitto".into());
    }
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join("mosquitto"))
            .find(|f| f.exists())
    })
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A child process killed when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Site `s`: its beds, each with one Masimo over TCP (device `s{s}d{b}`), and `[mqtt]`.
fn site_config(dir: &Path, s: usize, ports: &[u16], broker: u16) -> String {
    let mut t = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{}/data\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{broker}\"\nsite = \"s{s}\"\nkeepalive = \"5s\"\n",
        dir.display()
    );
    for (r, pair) in ports.chunks(2).enumerate() {
        t.push_str(&format!("[[rooms]]\nid = \"r{r}\"\nname = \"Room {r}\"\n"));
        for (i, port) in pair.iter().enumerate() {
            let b = r * 2 + i;
            t.push_str(&format!(
                "[[rooms.recliners]]\nid = \"{}\"\n[[rooms.recliners.devices]]\nid = \"s{s}d{b}\"\nprofile = \"masimo-rad8\"\ntcp = \"127.0.0.1:{port}\"\n",
                if i == 0 { "A" } else { "B" }
            ));
        }
    }
    t
}

/// (device, PI) of every `perfusion_index` reading in a dashboard message: a `reading`, or
/// a message with a `readings` list (one per device read).
fn pi_readings(text: &str) -> Vec<(String, f64)> {
    if !text.contains("perfusion_index") {
        return Vec::new();
    }
    let Ok(m) = serde_json::from_str::<serde_json::Value>(text) else {
        return Vec::new();
    };
    let one = |r: &serde_json::Value, dev: &serde_json::Value| {
        let dev = r["device"].as_str().or(dev.as_str())?;
        (r["metric"] == "perfusion_index").then_some(())?;
        Some((dev.to_owned(), r["value"].as_f64()?))
    };
    match m["readings"].as_array() {
        Some(list) => list.iter().filter_map(|r| one(r, &m["device"])).collect(),
        None => one(&m, &serde_json::Value::Null).into_iter().collect(),
    }
}

/// `s{s}d{b}` -> its index among all devices.
fn device_index(dev: &str, beds: usize) -> Option<usize> {
    let (s, b) = dev.strip_prefix('s')?.split_once('d')?;
    let (s, b): (usize, usize) = (s.parse().ok()?, b.parse().ok()?);
    (b < beds).then_some(s * beds + b)
}

struct Tally {
    hist: Histogram<u64>,
    delivered: u64,
    first_us: u64,
    last_us: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            hist: Histogram::<u64>::new_with_bounds(1, 120_000_000, 3).unwrap(),
            delivered: 0,
            first_us: u64::MAX,
            last_us: 0,
        }
    }

    fn record(&mut self, sent_us: u64, now_us: u64) {
        self.delivered += 1;
        self.first_us = self.first_us.min(sent_us);
        self.last_us = self.last_us.max(now_us);
        self.hist.record(now_us.saturating_sub(sent_us).max(1)).ok();
    }

    fn show(&self, name: &str, sent: u64) {
        let span = self.last_us.saturating_sub(self.first_us).max(1) as f64 / 1e6;
        println!(
            "  {name:<9} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  delivered {}/{}  lost {}  {:.1} msgs/s",
            self.hist.value_at_quantile(0.5) as f64 / 1000.0,
            self.hist.value_at_quantile(0.99) as f64 / 1000.0,
            self.hist.max() as f64 / 1000.0,
            self.delivered,
            sent,
            sent.saturating_sub(self.delivered),
            self.delivered as f64 / span,
        );
    }
}

/// The floor: rumqttc -> Mosquitto -> rumqttc, `devices` streams at `rate` messages/s each.
async fn floor(port: u16, devices: usize, rate: u64, seconds: u64) -> (Tally, u64) {
    let mut o = MqttOptions::new("bench-floor-sub", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (sub, mut sel) = AsyncClient::new(o, 100);
    sel.set_network_options(vitalsd::mqtt::network_options());
    sub.subscribe("bench/floor/#", QoS::AtMostOnce)
        .await
        .unwrap();
    // Until the SUBACK, nothing is measured.
    loop {
        if let Event::Incoming(Packet::SubAck(_)) = sel.poll().await.unwrap() {
            break;
        }
    }
    let mut o = MqttOptions::new("bench-floor-pub", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(5));
    let (publ, mut pel) = AsyncClient::new(o, 4096);
    pel.set_network_options(vitalsd::mqtt::network_options());
    let poller = tokio::spawn(async move { while pel.poll().await.is_ok() {} });
    let epoch = Instant::now();
    let total_per_dev = rate * seconds;
    let mut writers = Vec::new();
    for dev in 0..devices {
        let publ = publ.clone();
        writers.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / rate as f64);
            // Spread the devices' phases as real devices are.
            let start = tokio::time::Instant::now()
                + period.mul_f64(dev as f64 / devices.max(1) as f64);
            let mut tick = tokio::time::interval_at(start, period);
            for n in 0..total_per_dev {
                tick.tick().await;
                let t = epoch.elapsed().as_micros() as u64;
                // About a reading message's size.
                let payload = format!(
                    "{{\"v\":1,\"type\":\"reading\",\"seq\":{n},\"bed\":\"r0/A\",\"device\":\"{dev}\",\"metric\":\"perfusion_index\",\"value\":1.0,\"unit\":\"%\",\"at\":\"2026-12-01T07:00:00.000Z\",\"sent_us\":{t}}}"
                );
                let _ = publ
                    .publish(format!("bench/floor/{dev}"), QoS::AtMostOnce, false, payload)
                    .await;
            }
        }));
    }
    let sent = total_per_dev * devices as u64;
    let mut tally = Tally::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 10);
    while tally.delivered < sent && Instant::now() < deadline {
        let ev = match tokio::time::timeout(Duration::from_millis(500), sel.poll()).await {
            Ok(Ok(ev)) => ev,
            Ok(Err(_)) => break,
            Err(_) if writers.iter().all(|w| w.is_finished()) => break,
            Err(_) => continue,
        };
        let now = epoch.elapsed().as_micros() as u64;
        if let Event::Incoming(Packet::Publish(p)) = ev {
            let text = String::from_utf8_lossy(&p.payload);
            if let Some(t) = text
                .split("\"sent_us\":")
                .nth(1)
                .and_then(|r| r.trim_end_matches('}').parse::<u64>().ok())
            {
                tally.record(t, now);
            }
        }
    }
    poller.abort();
    (tally, sent)
}

/// Reads one WebSocket until `done`, recording the lines of `devices` (indices).
async fn read_ws(
    mut ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    beds: usize,
    sent_at: Arc<Vec<AtomicU64>>,
    epoch: Instant,
    expected: u64,
    until: Instant,
) -> Tally {
    let mut tally = Tally::new();
    let mut seen = vec![false; sent_at.len()];
    while tally.delivered < expected && Instant::now() < until {
        let msg = match tokio::time::timeout_at(until.into(), ws.next()).await {
            Ok(Some(Ok(m))) => m,
            _ => break,
        };
        let now = epoch.elapsed().as_micros() as u64;
        let Message::Text(text) = msg else { continue };
        for (dev, pi) in pi_readings(text.as_str()) {
            let Some(d) = device_index(&dev, beds) else {
                continue;
            };
            let slot = d * PI_MOD as usize + ((pi * 100.0).round() as u64 % PI_MOD) as usize;
            let t0 = sent_at.get(slot).map_or(0, |a| a.load(Ordering::Relaxed));
            if t0 == 0 || std::mem::replace(&mut seen[slot], true) {
                continue; // before the clock started, or a duplicate
            }
            tally.record(t0, now);
        }
    }
    tally
}

async fn bench(mosq: PathBuf, sites: usize, beds: usize, rate: u64, seconds: u64) {
    let dir = tempfile::tempdir().unwrap();
    let bport = free_port();
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {bport} 127.0.0.1\nallow_anonymous true\nmax_queued_messages 100000\n\
             set_tcp_nodelay true\n"
        ),
    )
    .unwrap();
    let _broker = Proc(
        Command::new(&mosq)
            .args(["-c", conf.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", bport)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto listens on {bport}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let devices = sites * beds;
    println!(
        "central: {sites} sites x {beds} beds (one Masimo each over TCP, {rate} lines/s), {seconds} s, Mosquitto on 127.0.0.1:{bport}, one WebSocket client at central"
    );

    // The floor first, alone on the broker.
    let (floor_tally, floor_sent) = floor(bport, devices, rate, seconds).await;

    // The sites and the central.
    let bin = env!("CARGO_BIN_EXE_vitalsd");
    let mut central_toml = format!(
        "listen = \"127.0.0.1:0\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:{bport}\"\nclient_id = \"bench-central\"\nkeepalive = \"5s\"\n"
    );
    for s in 0..sites {
        central_toml.push_str(&format!("[[sites]]\nname = \"s{s}\"\n"));
    }
    let cpath = dir.path().join("central.toml");
    std::fs::write(&cpath, central_toml).unwrap();
    let mut c = Command::new(bin)
        .args(["central", "--config", cpath.to_str().unwrap()])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let central_addr = address_after(&mut c, "listening on http://");
    let _central = Proc(c);
    let mut servers = DeviceServers::default();
    let mut site_procs = Vec::new();
    let mut site0_addr = String::new();
    for s in 0..sites {
        let site = DeviceServers::bind(beds).await;
        let ports = site.ports();
        servers.extend(site);
        let sdir = dir.path().join(format!("s{s}"));
        std::fs::create_dir_all(&sdir).unwrap();
        let path = sdir.join("site.toml");
        std::fs::write(&path, site_config(&sdir, s, &ports, bport)).unwrap();
        let mut child = Command::new(bin)
            .args(["run", "--config", path.to_str().unwrap()])
            .env("RUST_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = address_after(&mut child, "listening on http://");
        if s == 0 {
            site0_addr = addr;
        }
        site_procs.push(Proc(child));
    }
    let links = servers.accept_all("every site").await;
    let (mut cws, _) = tokio_tungstenite::connect_async(format!("ws://{central_addr}/ws"))
        .await
        .unwrap();
    // Until central shows every site's beds (their retained config came through).
    let ready = Instant::now() + Duration::from_secs(60);
    loop {
        let m = tokio::time::timeout_at(ready.into(), cws.next())
            .await
            .expect("central shows every site's beds within 60 s");
        let Some(Ok(Message::Text(t))) = m else {
            panic!("central's WebSocket closed");
        };
        if !t.as_str().contains("\"type\":\"snapshot\"") {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(t.as_str()).unwrap();
        let n: usize = v["rooms"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| r["beds"].as_array().map_or(0, Vec::len))
            .sum();
        if n == devices {
            break;
        }
    }
    let (sws, _) = tokio_tungstenite::connect_async(format!("ws://{site0_addr}/ws"))
        .await
        .unwrap();

    let sent_at: Arc<Vec<AtomicU64>> = Arc::new(
        (0..devices as u64 * PI_MOD)
            .map(|_| AtomicU64::new(0))
            .collect(),
    );
    let epoch = Instant::now();
    let total_per_dev = rate * seconds;
    let mut writers = Vec::new();
    for (dev, mut link) in links.into_iter().enumerate() {
        let sent_at = sent_at.clone();
        writers.push(tokio::spawn(async move {
            let period = Duration::from_secs_f64(1.0 / rate as f64);
            let start =
                tokio::time::Instant::now() + period.mul_f64(dev as f64 / devices.max(1) as f64);
            let mut tick = tokio::time::interval_at(start, period);
            // n from 1: PI 00.00 is never sent, so a stale reading cannot match.
            for n in 1..=total_per_dev {
                tick.tick().await;
                let t = (epoch.elapsed().as_micros() as u64).max(1);
                sent_at[dev * PI_MOD as usize + (n % PI_MOD) as usize].store(t, Ordering::Relaxed);
                if link.write_all(line(n).as_bytes()).await.is_err() {
                    break;
                }
            }
            link
        }));
    }
    let until = Instant::now() + Duration::from_secs(seconds + 10);
    let sent = total_per_dev * devices as u64;
    let site0 = tokio::spawn(read_ws(
        sws,
        beds,
        sent_at.clone(),
        epoch,
        total_per_dev * beds as u64,
        until,
    ));
    let central = read_ws(cws, beds, sent_at.clone(), epoch, sent, until).await;
    let site0 = site0.await.unwrap();
    for w in writers {
        let _ = w.await;
    }
    println!("  (latency: device line written -> message received)");
    floor_tally.show("mqtt", floor_sent);
    site0.show("site ws", total_per_dev * beds as u64);
    central.show("central", sent);
    let ratio = |a: u64, b: u64| a as f64 / b.max(1) as f64;
    println!(
        "  central/mqtt floor: p50 {:.1}x  p99 {:.1}x;  central/site ws: p50 {:.1}x  p99 {:.1}x",
        ratio(
            central.hist.value_at_quantile(0.5),
            floor_tally.hist.value_at_quantile(0.5)
        ),
        ratio(
            central.hist.value_at_quantile(0.99),
            floor_tally.hist.value_at_quantile(0.99)
        ),
        ratio(
            central.hist.value_at_quantile(0.5),
            site0.hist.value_at_quantile(0.5)
        ),
        ratio(
            central.hist.value_at_quantile(0.99),
            site0.hist.value_at_quantile(0.99)
        ),
    );
    drop(site_procs);
}

fn main() {
    let Some(mosq) = mosquitto() else {
        println!(
            "central bench skipped: no mosquitto (/usr/sbin/mosquitto or on PATH); apt-get install mosquitto"
        );
        return;
    };
    let sites = env_or("CENTRAL_SITES", 5usize);
    let beds = env_or("CENTRAL_BEDS", 4usize).max(1);
    let rate = env_or("CENTRAL_RATE", 1u64).max(1);
    let seconds = env_or("CENTRAL_SECONDS", 20u64).max(1);
    assert!(
        rate * seconds < PI_MOD,
        "CENTRAL_RATE x CENTRAL_SECONDS must stay under {PI_MOD} (the PI values that identify a line)"
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(mosq, sites, beds, rate, seconds));
}
