//! The simulator's I/O: every device marked `simulated = true` in the config is played on its
//! configured endpoint, byte for byte in its real protocol, through the encoders in
//! [`crate::protocol`]:
//! - a serial binding (`port = PATH`) gets a pseudo-terminal pair; `PATH` becomes a symlink to
//!   the pty's slave side (like a `/dev/serial/by-id` link), re-pointed on every replug;
//! - a TCP binding (`tcp = HOST:PORT`) gets a listener there, like a serial device server.
//!
//! Device rates are real time (a Rad-8 talks at 1 Hz, a Nonin at 75 frames/s, a cuff takes
//! ~25 s); only the physiology and the scenario's events run on the accelerated clock.

use super::bluez::{Bus, DeviceSpec, FakeBluez};
use super::device_sim::{DeviceSim, SharedPatient};
use super::physiology::{DeviceRole, Faults, Patient, Vitals};
use super::scenario::Scenario;
use crate::clock::{calendar_utc, wall_ms};
use crate::config::{Config, Endpoint};
use crate::model;
use crate::protocol::{contec, masimo, nonin, suntech};
use anyhow::Context;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_serial::SerialPort;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The running simulator.
pub struct SimHandle {
    endpoints: Vec<(String, String)>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    /// The fake BlueZ, when a BLE device is simulated.
    bluez: Option<Arc<FakeBluez>>,
    /// Its private D-Bus (dropped last: kills and reaps the dbus-daemon).
    bus: Option<Bus>,
}

impl SimHandle {
    /// (device id, where it is: tty path -> pty, host:port, or BLE address).
    pub fn endpoints(&self) -> &[(String, String)] {
        &self.endpoints
    }

    /// The address of the simulator's private D-Bus, where its fake BlueZ owns `org.bluez`, if
    /// a BLE device is simulated. A daemon reaches the simulated BLE devices when its
    /// `DBUS_SYSTEM_BUS_ADDRESS` is this (btleplug reads it when the daemon's first BLE device
    /// starts). The variable is process-wide: set it before any thread of the daemon runs (the
    /// `demo` command spawns the bus with [`Bus::spawn`] before its runtime starts and passes it
    /// to [`start_with`]), or give it to a daemon in a child process.
    pub fn dbus_address(&self) -> Option<&str> {
        self.bus.as_ref().map(Bus::address)
    }

    /// The simulator's private D-Bus, when a BLE device is simulated (tests kill its
    /// dbus-daemon to play a crashed system bus, and start a new one in its directory).
    pub fn bus(&self) -> Option<&Bus> {
        self.bus.as_ref()
    }

    /// The fake BlueZ, when a BLE device is simulated (tests drive faults through it).
    pub fn bluez(&self) -> Option<&Arc<FakeBluez>> {
        self.bluez.as_ref()
    }

    /// Stops every simulated device (their links close, as if unplugged), then the fake BlueZ
    /// and its dbus-daemon.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        self.tracker.close();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await;
        drop(self.bluez.take());
        if let Some(bus) = self.bus.take() {
            // Killing and reaping the child blocks briefly.
            let _ = tokio::task::spawn_blocking(move || drop(bus)).await;
        }
    }
}

/// Starts playing every simulated device of `cfg`. Serial ports, TCP listeners and the fake
/// BlueZ exist when this returns, so a daemon started next finds them. BLE devices get a
/// private D-Bus of their own ([`SimHandle::dbus_address`]).
pub async fn start(cfg: &Config, scenario: Scenario) -> anyhow::Result<SimHandle> {
    start_with(cfg, scenario, None).await
}

/// [`start`], with the private D-Bus for BLE devices given (spawned earlier, so that its
/// address could be put in the environment before any thread started); without one, one is
/// spawned when a BLE device is simulated. Either way the handle owns it.
pub async fn start_with(
    cfg: &Config,
    scenario: Scenario,
    bus: Option<Bus>,
) -> anyhow::Result<SimHandle> {
    let mut bus = bus;
    let ble_specs: Vec<DeviceSpec> = cfg
        .devices
        .iter()
        .filter(|b| b.simulated)
        .filter_map(super::ble::device_spec)
        .collect();
    let bluez = if ble_specs.is_empty() {
        None
    } else {
        if bus.is_none() {
            bus = Some(
                tokio::task::spawn_blocking(Bus::spawn)
                    .await
                    .context("the dbus-daemon spawner failed")??,
            );
        }
        let address = bus
            .as_ref()
            .map(|b| b.address().to_owned())
            .unwrap_or_default();
        Some(Arc::new(
            FakeBluez::start(&address, ble_specs)
                .await
                .context("cannot start the fake BlueZ")?,
        ))
    };
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let scenario = Arc::new(scenario);
    let started = Instant::now();
    let mut endpoints = Vec::new();
    let patients: Vec<SharedPatient> = cfg
        .beds
        .iter()
        .enumerate()
        .map(|(i, bed)| {
            let script = scenario
                .bed(&bed.id)
                .cloned()
                .unwrap_or_else(|| Scenario::steady(&[bed.id.as_str()]).beds[0].clone());
            Arc::new(Mutex::new(Patient::new(&script, scenario.seed ^ i as u64)))
        })
        .collect();
    for (i, binding) in cfg.devices.iter().enumerate() {
        if !binding.simulated {
            continue;
        }
        let sim = DeviceSim {
            id: binding.id.clone(),
            protocol: binding.profile.protocol.clone(),
            profile: binding.profile.name.clone(),
            role: match binding.profile.kind {
                crate::config::DeviceKind::Bp => DeviceRole::Bp,
                _ => DeviceRole::Oximeter,
            },
            patient: patients[usize::from(binding.bed.0)].clone(),
            scenario: scenario.clone(),
            started,
            cancel: cancel.clone(),
            rng: SmallRng::seed_from_u64(scenario.seed.wrapping_add(1000 + i as u64)),
        };
        let at = match &binding.endpoint {
            Endpoint::Serial { path } => {
                let pty = Pty::open(path)
                    .with_context(|| format!("device {}: cannot create its pty", binding.id))?;
                let shown = format!("{} -> {}", path.display(), pty.slave_name);
                tracker.spawn(serve_serial(sim, path.clone(), pty));
                shown
            }
            Endpoint::Tcp { addr } => {
                let listener = TcpListener::bind(addr.as_str())
                    .await
                    .with_context(|| format!("device {}: cannot listen on {addr}", binding.id))?;
                tracker.spawn(serve_tcp(sim, addr.clone(), listener));
                format!("tcp {addr}")
            }
            Endpoint::Ble { address, .. } => {
                let (Some(fake), Some(ble)) = (&bluez, &binding.profile.ble) else {
                    anyhow::bail!(
                        "device {}: profile {} has no BLE layout",
                        binding.id,
                        binding.profile.name
                    );
                };
                let writes = fake
                    .take_writes(address)
                    .with_context(|| format!("device {}: no fake BLE device", binding.id))?;
                let bp_interval = cfg.bed(binding.bed).bp_interval;
                tracker.spawn(super::ble::serve_ble(
                    sim,
                    fake.clone(),
                    address.clone(),
                    ble.clone(),
                    bp_interval,
                    writes,
                ));
                format!("ble {address} \"{}\"", super::ble::device_name(binding))
            }
        };
        endpoints.push((binding.id.clone(), at));
    }
    Ok(SimHandle {
        endpoints,
        cancel,
        tracker,
        bluez,
        bus,
    })
}

/// A pseudo-terminal whose slave side is reachable through a symlink.
struct Pty {
    master: tokio_serial::SerialStream,
    /// Held open so the master never sees a hang-up between daemon connections.
    _slave: tokio_serial::SerialStream,
    slave_name: String,
}

impl Pty {
    fn open(link: &Path) -> anyhow::Result<Pty> {
        let (master, slave) = tokio_serial::SerialStream::pair().context("openpty failed")?;
        let slave_name = slave.name().context("the pty's slave side has no name")?;
        point_symlink(link, Path::new(&slave_name))?;
        Ok(Pty {
            master,
            _slave: slave,
            slave_name,
        })
    }
}

/// Makes `link` a symlink to `target`, atomically replacing an old symlink. Refuses to
/// replace anything that is not a symlink (a real device node, a file).
fn point_symlink(link: &Path, target: &Path) -> anyhow::Result<()> {
    if let Some(dir) = link.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::symlink_metadata(link)
        && !meta.file_type().is_symlink()
    {
        anyhow::bail!(
            "{} exists and is not a symlink; the simulator will not replace it",
            link.display()
        );
    }
    let tmp = PathBuf::from(format!("{}.tmp{}", link.display(), std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
    std::fs::rename(&tmp, link)
        .with_context(|| format!("cannot move symlink to {}", link.display()))
}

/// How a device session ended.
enum SessionEnd {
    Cancelled,
    /// The scenario unplugs the device.
    Unplugged,
    /// The other side went away or an I/O error happened.
    Lost,
}

async fn serve_serial(mut sim: DeviceSim, link: PathBuf, first: Pty) {
    let mut pty = Some(first);
    loop {
        let current = match pty.take() {
            Some(p) => p,
            None => match Pty::open(&link) {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(device = %sim.id, error = %format!("{e:#}"), "simulator cannot recreate pty");
                    if sleep_or_cancel(&sim.cancel, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let Pty {
            master,
            _slave: slave,
            ..
        } = current;
        let end = session(&mut sim, master).await;
        drop(slave);
        match end {
            SessionEnd::Cancelled => {
                let _ = std::fs::remove_file(&link);
                return;
            }
            SessionEnd::Unplugged => {
                let _ = std::fs::remove_file(&link);
                if wait_replug(&mut sim).await {
                    return;
                }
            }
            SessionEnd::Lost => {
                if sleep_or_cancel(&sim.cancel, Duration::from_millis(200)).await {
                    return;
                }
            }
        }
    }
}

async fn serve_tcp(mut sim: DeviceSim, addr: String, first: TcpListener) {
    let mut listener = Some(first);
    loop {
        let l = match listener.take() {
            Some(l) => l,
            None => match TcpListener::bind(addr.as_str()).await {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(device = %sim.id, error = %e, "simulator cannot re-listen");
                    if sleep_or_cancel(&sim.cancel, Duration::from_secs(1)).await {
                        return;
                    }
                    continue;
                }
            },
        };
        let accepted = tokio::select! {
            _ = sim.cancel.cancelled() => return,
            a = l.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            listener = Some(l);
            continue;
        };
        let _ = stream.set_nodelay(true);
        match session(&mut sim, stream).await {
            SessionEnd::Cancelled => return,
            SessionEnd::Unplugged => {
                drop(l);
                if wait_replug(&mut sim).await {
                    return;
                }
            }
            SessionEnd::Lost => listener = Some(l),
        }
    }
}

/// Waits while the scenario keeps the device unplugged. True if cancelled.
async fn wait_replug(sim: &mut DeviceSim) -> bool {
    loop {
        let (_, f, _) = sim.now();
        if !f.disconnected {
            return false;
        }
        if sleep_or_cancel(&sim.cancel, Duration::from_millis(100)).await {
            return true;
        }
    }
}

/// Sleeps; true if cancelled meanwhile.
pub(super) async fn sleep_or_cancel(cancel: &CancellationToken, d: Duration) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(d) => false,
    }
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(sim: &mut DeviceSim, io: S) -> SessionEnd {
    match sim.protocol.as_str() {
        "masimo-ascii" => masimo_session(sim, io).await,
        "nonin-format2" => nonin_session(sim, io, false).await,
        "nonin-format7" => nonin_session(sim, io, true).await,
        "nonin-format8" => nonin_format8_session(sim, io).await,
        "suntech" => suntech_session(sim, io).await,
        "contec-legacy" => contec_legacy_session(sim, io).await,
        "contec-v7" => contec_v7_session(sim, io).await,
        other => {
            tracing::error!(device = %sim.id, protocol = other, "the simulator cannot speak this protocol");
            let _ = sim.cancel.clone().cancelled().await;
            SessionEnd::Cancelled
        }
    }
}

/// Writes `bytes`, prefixed with garbage when the scenario says so.
async fn write<S: AsyncWrite + Unpin>(
    sim: &mut DeviceSim,
    io: &mut S,
    garbage: bool,
    bytes: &[u8],
) -> Result<(), SessionEnd> {
    // A noisy line: a burst of garbage before about one write in three.
    if garbage && sim.rng.random_range(0..3) == 0 {
        let g = sim.garbage();
        io.write_all(&g).await.map_err(|_| SessionEnd::Lost)?;
    }
    io.write_all(bytes).await.map_err(|_| SessionEnd::Lost)?;
    io.flush().await.map_err(|_| SessionEnd::Lost)
}

/// Rounds a physiological value into a device field.
pub(super) fn whole<T: TryFrom<i64>>(v: f64) -> Option<T> {
    T::try_from(v.round() as i64).ok()
}

async fn masimo_session<S: AsyncRead + AsyncWrite + Unpin>(
    sim: &mut DeviceSim,
    mut io: S,
) -> SessionEnd {
    // The Radical-7 color prints its wider line; every other Masimo the Rad-8's.
    let layout = match sim.profile.as_str() {
        "masimo-radical7" => masimo::MasimoLayout::Radical7Color,
        _ => masimo::MasimoLayout::Ascii1,
    };
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sim.cancel.cancelled() => return SessionEnd::Cancelled,
            _ = tick.tick() => {}
        }
        let (v, f, _) = sim.now();
        if f.disconnected {
            return SessionEnd::Unplugged;
        }
        let mut exc: u32 = 0;
        if f.finger_out {
            exc |= 0x020;
        }
        if f.probe_unplugged {
            exc |= 0x001;
        }
        if f.searching {
            exc |= 0x008;
        }
        if f.motion {
            exc |= 0x010;
        }
        if v.perfusion_index < 0.3 {
            exc |= 0x004;
        }
        let no_numbers = f.finger_out || f.probe_unplugged || f.searching;
        let line = masimo::MasimoLine {
            device_time: calendar_utc(wall_ms()),
            serial: 56_661,
            spo2: if no_numbers { None } else { whole(v.spo2) },
            bpm: if no_numbers {
                None
            } else {
                whole(v.pulse_rate)
            },
            pi: if no_numbers {
                None
            } else {
                Some(((v.perfusion_index * 100.0).round() / 100.0) as f32)
            },
            exc,
        };
        if let Err(end) = write(sim, &mut io, f.garbage, line.encode_as(layout).as_bytes()).await {
            return end;
        }
    }
}

/// A Nonin in data format #2, or #7 (`format7`: the same packets with 16-bit pleth frames).
async fn nonin_session<S: AsyncRead + AsyncWrite + Unpin>(
    sim: &mut DeviceSim,
    mut io: S,
    format7: bool,
) -> SessionEnd {
    // 25 frames per packet at 75 frames/s: one packet every 1/3 s.
    let mut tick = tokio::time::interval(Duration::from_millis(333));
    loop {
        tokio::select! {
            _ = sim.cancel.cancelled() => return SessionEnd::Cancelled,
            _ = tick.tick() => {}
        }
        let (v, f, t) = sim.now();
        if f.disconnected {
            return SessionEnd::Unplugged;
        }
        let mut pleth = [0u8; 25];
        {
            let mut p = sim.patient.lock().unwrap_or_else(|e| e.into_inner());
            for (i, s) in pleth.iter_mut().enumerate() {
                let dt = sim
                    .scenario
                    .scenario_time(Duration::from_micros(13_333 * i as u64));
                *s = p.pleth(t + dt);
            }
        }
        let mut status: u8 = 0;
        if f.probe_unplugged {
            status |= 0x40;
        }
        if f.motion {
            status |= 0x20;
        }
        if f.searching {
            status |= 0x10;
        }
        if f.finger_out {
            status |= 0x08;
        }
        // Perfusion: green (good) unless the index is low, then red.
        status |= if v.perfusion_index < 0.3 { 0x04 } else { 0x02 };
        let no_numbers = f.finger_out || f.probe_unplugged || f.searching;
        let packet = nonin::NoninPacket {
            pleth,
            hr: if no_numbers {
                None
            } else {
                whole(v.pulse_rate)
            },
            spo2: if no_numbers { None } else { whole(v.spo2) },
            status,
            low_battery: f.low_battery,
        };
        let bytes = if format7 {
            packet.encode_format7()
        } else {
            packet.encode()
        };
        if let Err(end) = write(sim, &mut io, f.garbage, &bytes).await {
            return end;
        }
    }
}

/// A Nonin in data format #8: one 4-byte frame a second.
async fn nonin_format8_session<S: AsyncRead + AsyncWrite + Unpin>(
    sim: &mut DeviceSim,
    mut io: S,
) -> SessionEnd {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = sim.cancel.cancelled() => return SessionEnd::Cancelled,
            _ = tick.tick() => {}
        }
        let (v, f, _) = sim.now();
        if f.disconnected {
            return SessionEnd::Unplugged;
        }
        let mut status: u8 = 0;
        if f.probe_unplugged {
            status |= 0x40;
        }
        if f.searching {
            status |= 0x20;
        }
        if v.perfusion_index < 0.3 {
            status |= 0x10;
        }
        if f.motion {
            status |= 0x04;
        }
        let mut b4: u8 = 0;
        if f.finger_out {
            b4 |= 0x08;
        }
        if f.low_battery {
            b4 |= 0x01;
        }
        let (_, numbers) = oximeter_flags(&f);
        let frame = nonin::encode_format8(
            if numbers { whole(v.pulse_rate) } else { None },
            if numbers { whole(v.spo2) } else { None },
            status,
            b4,
        );
        if let Err(end) = write(sim, &mut io, f.garbage, &frame).await {
            return end;
        }
    }
}

/// The oximeter's conditions as device flags (finger out, probe unplugged, searching), and
/// whether it has numbers to send.
fn oximeter_flags(f: &Faults) -> (model::Flags, bool) {
    let mut flags = model::Flags::EMPTY;
    flags.set_if(model::Flag::NoFinger, f.finger_out);
    flags.set_if(model::Flag::SensorFault, f.probe_unplugged);
    flags.set_if(model::Flag::Searching, f.searching);
    (flags, !(f.finger_out || f.probe_unplugged || f.searching))
}

/// A pleth batch: `n` samples `step` apart from scenario time `t`, device units 0..=255.
fn pleth_samples(sim: &mut DeviceSim, t: Duration, n: usize, step: Duration) -> Vec<u8> {
    let mut p = sim.patient.lock().unwrap_or_else(|e| e.into_inner());
    (0..n)
        .map(|i| {
            let dt = sim.scenario.scenario_time(step * i as u32);
            p.pleth(t + dt)
        })
        .collect()
}

/// One 100 ms batch of a Contec oximeter (60 Hz): six frames from scenario time `t`, each
/// `frame(numbers, pleth, flags)` with the 7-bit pleth, the oximeter's flags and whether it
/// has numbers to send.
fn contec_batch<const N: usize>(
    sim: &mut DeviceSim,
    t: Duration,
    f: &Faults,
    mut frame: impl FnMut(bool, u8, model::Flags) -> [u8; N],
) -> Vec<u8> {
    let (flags, numbers) = oximeter_flags(f);
    let mut bytes = Vec::with_capacity(6 * N);
    for pleth in pleth_samples(sim, t, 6, Duration::from_micros(16_667)) {
        bytes.extend_from_slice(&frame(numbers, pleth >> 1, flags));
    }
    bytes
}

/// A Contec CMS50D+ with old firmware: 5-byte frames at 60 Hz, unasked, sent in batches of six
/// every 100 ms.
async fn contec_legacy_session<S: AsyncRead + AsyncWrite + Unpin>(
    sim: &mut DeviceSim,
    mut io: S,
) -> SessionEnd {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = sim.cancel.cancelled() => return SessionEnd::Cancelled,
            _ = tick.tick() => {}
        }
        let (v, f, t) = sim.now();
        if f.disconnected {
            return SessionEnd::Unplugged;
        }
        let bytes = contec_batch(sim, t, &f, |numbers, pleth, flags| {
            contec::encode_legacy(
                numbers.then_some(v.spo2),
                numbers.then_some(v.pulse_rate),
                pleth,
                flags,
            )
        });
        if let Err(end) = write(sim, &mut io, f.garbage, &bytes).await {
            return end;
        }
    }
}

/// A Contec CMS50D+ v4.6 / CMS50EW (V7.0 protocol): silent until the host's start command,
/// then real-time packets at 60 Hz (batches of six every 100 ms) until a stop command or 30 s
/// without a start or keep-alive.
async fn contec_v7_session<S: AsyncRead + AsyncWrite + Unpin>(
    sim: &mut DeviceSim,
    mut io: S,
) -> SessionEnd {
    const SILENT_AFTER: Duration = Duration::from_secs(30);
    let mut framer = contec::V7Framer::default();
    let mut codes = Vec::new();
    let mut buf = [0u8; 256];
    // When the host last started or kept the stream alive; `None` while stopped.
    let mut alive_since: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = sim.cancel.cancelled() => return SessionEnd::Cancelled,
            r = io.read(&mut buf) => {
                let n = match r {
                    Ok(0) | Err(_) => return SessionEnd::Lost,
                    Ok(n) => n,
                };
                contec::v7_commands(&mut framer, &buf[..n], &mut codes);
                for code in codes.drain(..) {
                    match code {
                        contec::V7_START => alive_since = Some(Instant::now()),
                        contec::V7_KEEP_ALIVE if alive_since.is_some() => {
                            alive_since = Some(Instant::now());
                        }
                        contec::V7_STOP => alive_since = None,
                        _ => {}
                    }
                }
                continue;
            }
            _ = tick.tick() => {}
        }
        let (v, f, t) = sim.now();
        if f.disconnected {
            return SessionEnd::Unplugged;
        }
        if alive_since.is_some_and(|at| at.elapsed() > SILENT_AFTER) {
            alive_since = None;
        }
        if alive_since.is_none() {
            continue;
        }
        let bytes = contec_batch(sim, t, &f, |numbers, pleth, flags| {
            contec::encode_v7_realtime(
                numbers.then_some(v.spo2),
                numbers.then_some(v.pulse_rate),
                numbers.then_some(v.perfusion_index),
                pleth,
                flags,
            )
        });
        if let Err(end) = write(sim, &mut io, f.garbage, &bytes).await {
            return end;
        }
    }
}

/// The SunTech module: answers commands; a measurement inflates for ~5 s to 30 mmHg above
/// systolic and deflates at 8 mmHg/s; below 10 mmHg it dumps the cuff and the result is ready.
/// Asked for the result while measuring, it answers busy (`B`).
async fn suntech_session<S: AsyncRead + AsyncWrite + Unpin>(
    sim: &mut DeviceSim,
    mut io: S,
) -> SessionEnd {
    const INFLATE: Duration = Duration::from_secs(5);
    const DEFLATE_MMHG_PER_S: f64 = 8.0;
    let mut parser = suntech::CommandDecoder::default();
    let mut commands = Vec::new();
    let mut buf = [0u8; 256];
    let mut measuring: Option<(Instant, Vitals, Faults)> = None;
    let mut last: Option<suntech::BpData> = None;
    let mut check = tokio::time::interval(Duration::from_millis(200));
    loop {
        let n = tokio::select! {
            _ = sim.cancel.cancelled() => return SessionEnd::Cancelled,
            _ = check.tick() => {
                if sim.now().1.disconnected {
                    return SessionEnd::Unplugged;
                }
                continue;
            }
            r = io.read(&mut buf) => match r {
                Ok(0) | Err(_) => return SessionEnd::Lost,
                Ok(n) => n,
            },
        };
        let (v_now, f_now, _) = sim.now();
        if f_now.disconnected {
            return SessionEnd::Unplugged;
        }
        // Where the cuff is now, and whether a running measurement just finished.
        let pressure = |m: &Option<(Instant, Vitals, Faults)>| -> Option<f64> {
            let (since, v, _) = m.as_ref()?;
            let peak = v.sys + 30.0;
            let el = since.elapsed();
            if el < INFLATE {
                return Some(peak * el.as_secs_f64() / INFLATE.as_secs_f64());
            }
            let p = peak - DEFLATE_MMHG_PER_S * (el - INFLATE).as_secs_f64();
            // Below 10 mmHg the module dumps the rest of the air and the result is ready.
            (p >= 10.0).then_some(p)
        };
        if pressure(&measuring).is_none()
            && let Some((_, v, f)) = measuring.take()
        {
            last = Some(bp_result(&v, &f));
        }
        parser.feed(&buf[..n], &mut commands);
        for cmd in commands.drain(..) {
            let reply = match cmd {
                suntech::Command::StartAdult => {
                    measuring = Some((Instant::now(), v_now, f_now));
                    suntech::Response::Ack(b'O')
                }
                suntech::Command::Abort => {
                    measuring = None;
                    suntech::Response::Ack(b'A')
                }
                suntech::Command::GetCuffPressure => {
                    let p = pressure(&measuring).unwrap_or(0.0);
                    suntech::Response::CuffPressure(p.round() as u16)
                }
                // Still measuring: the module is busy.
                suntech::Command::GetBpData if measuring.is_some() => suntech::Response::Ack(b'B'),
                suntech::Command::GetBpData => match &last {
                    Some(d) => suntech::Response::BpData(*d),
                    // No measurement yet: the module reports "terminated" (86).
                    None => suntech::Response::BpData(bp_error(86)),
                },
                _ => suntech::Response::Ack(b'N'),
            };
            if let Err(end) = write(sim, &mut io, f_now.garbage, &reply.encode()).await {
                return end;
            }
        }
    }
}

fn bp_result(v: &Vitals, f: &Faults) -> suntech::BpData {
    if let Some(code) = f.cuff_error {
        return bp_error(code);
    }
    suntech::BpData {
        sys: whole(v.sys).unwrap_or(0),
        dia: whole(v.dia).unwrap_or(0),
        map: whole(v.map).unwrap_or(0),
        hr: whole(v.pulse_rate).unwrap_or(0),
        error_code: 0,
        ..suntech::BpData::default()
    }
}

fn bp_error(code: u8) -> suntech::BpData {
    suntech::BpData {
        error_code: code,
        ..suntech::BpData::default()
    }
}
