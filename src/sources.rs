//! One task per bound device: open the transport, run the device's dialogue, decode, hand the
//! measurements to the hub, and on any error report `disconnected` and reconnect with backoff.
//! State that must survive a reconnect (the NIBP schedule) lives outside the connection.
//!
//! Two dialogues exist: streaming devices (Masimo, Nonin, Contec: they talk, we listen; a Contec
//! V7 is sent its start command and keep-alive, [`crate::protocol::dialogue_for`]) and the
//! SunTech NIBP module (we start a measurement on the bed's interval, poll the cuff pressure
//! while it runs, then ask for the result).

pub mod throttle;

use crate::clock::{Mono, mono_now};
use crate::hub::wire::DeviceStatus;
use crate::hub::{Hub, Stamp};
use crate::model::{DeviceIdx, Measurement};
use crate::protocol;
use crate::protocol::suntech::{Command, Response, SuntechDecoder};
use crate::transport::{self, Backoff, Link};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use throttle::Throttle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// What a source needs from the daemon.
#[derive(Clone)]
pub struct SourceCtx {
    pub hub: Arc<Hub>,
    pub cancel: CancellationToken,
    /// Where the sources count what their throttles drop ([`throttle`]).
    pub overload: Arc<crate::overload::Overload>,
}

/// Runs one device until cancelled.
///
/// Liveness (docs/alarms.md, "Device liveness"): the device is `connected` only from its first
/// valid frame (a decoded measurement, or a SunTech answer) on a link. A link that delivers
/// no valid frame for the profile's expected period plus the no-data grace is closed and
/// reopened, even if the socket or port is still open. Until a device's first valid frame,
/// and for no longer than that same limit after start, it shows `connecting` and raises no
/// alarm; afterwards it is `disconnected` (and the engine holds `device_disconnected`) until
/// valid data flows again. The reconnect backoff starts again from its shortest delay only
/// after a link delivered valid data for [`crate::alarm::Policy::link_stable`], so a device
/// server that accepts and closes at once is retried at most every 5 s, not 4 times a second.
pub async fn run_device(ctx: SourceCtx, device: DeviceIdx) {
    let cfg = ctx.hub.config().clone();
    let binding = cfg.device(device);
    if matches!(binding.endpoint, crate::config::Endpoint::Ble { .. }) {
        return run_ble_device(ctx, device).await;
    }
    let bed = cfg.bed(binding.bed);
    let live = Liveness {
        limit: binding.profile.expected_period + cfg.alarms.policy.no_data_grace,
        stable: cfg.alarms.policy.link_stable,
    };
    let first_deadline = tokio::time::Instant::now() + live.limit;
    let mut first_pending = true;
    let mut backoff = Backoff::new();
    let mut nibp = NibpSchedule::new(bed.bp_interval);
    let mut last_error: Option<String> = None;
    let mut first_attempt = true;
    loop {
        let delay = if first_attempt {
            Duration::ZERO
        } else {
            backoff.next_delay()
        };
        first_attempt = false;
        let attempt = async {
            tokio::time::sleep(delay).await;
            let link = match transport::open(&binding.endpoint, &binding.profile.link).await {
                Ok(link) => link,
                Err(e) => return Ended::Lost(e.to_string(), false),
            };
            tracing::debug!(device = %binding.id, endpoint = %binding.endpoint, "link open; waiting for valid data");
            if binding.profile.protocol == "suntech" {
                suntech_session(&ctx, device, link, &mut nibp, live).await
            } else {
                stream_session(&ctx, device, link, live).await
            }
        };
        tokio::pin!(attempt);
        let ended = loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                e = &mut attempt => break e,
                _ = tokio::time::sleep_until(first_deadline), if first_pending => {
                    first_pending = false;
                    if ctx.hub.status_of(device) == DeviceStatus::Connecting {
                        let why = format!(
                            "no valid data within {:?} of start{}",
                            live.limit,
                            last_error.as_deref().map(|e| format!(": {e}")).unwrap_or_default()
                        );
                        tracing::warn!(device = %binding.id, reason = %why, "device not reached in its first grace");
                        ctx.hub.device_status(device, DeviceStatus::Disconnected, Some(why));
                    }
                }
            }
        };
        let (why, stable) = match ended {
            Ended::Cancelled => return,
            Ended::Lost(why, stable) => (why, stable),
        };
        if stable {
            backoff.reset();
        }
        if ctx.hub.status_of(device) == DeviceStatus::Connected {
            // A link that delivered data: its loss is news, even for the same reason as before.
            last_error = None;
        }
        if last_error.as_deref() != Some(why.as_str()) {
            tracing::warn!(device = %binding.id, reason = %why, "device disconnected; reconnecting");
            last_error = Some(why.clone());
        }
        // Within the first grace a device that has never delivered valid data is still
        // `connecting` (no alarm); after it, `disconnected`.
        let status = if first_pending && ctx.hub.status_of(device) == DeviceStatus::Connecting {
            DeviceStatus::Connecting
        } else {
            DeviceStatus::Disconnected
        };
        ctx.hub.device_status(device, status, Some(why));
        crate::metrics::global().reconnect(usize::from(device.0));
    }
}

/// A link's liveness rule, from the profile and the alarm policy.
#[derive(Debug, Clone, Copy)]
struct Liveness {
    /// No valid frame for this long: the link is dead (expected period + no-data grace).
    limit: Duration,
    /// Valid data for this long: the link is stable (the backoff resets).
    stable: Duration,
}

/// Tracks the valid frames of one link: reports `connected` at the first one, and knows when
/// the link is dead and whether it was stable.
struct LinkWatch {
    live: Liveness,
    opened: Mono,
    first_valid: Option<Mono>,
    last_valid: Option<Mono>,
}

impl LinkWatch {
    fn new(live: Liveness) -> LinkWatch {
        LinkWatch {
            live,
            opened: mono_now(),
            first_valid: None,
            last_valid: None,
        }
    }

    /// A valid frame arrived at `now`: the first one on this link makes the device
    /// `connected` (before its measurements are ingested, so the engine sees the link up).
    fn valid(&mut self, ctx: &SourceCtx, device: DeviceIdx, now: Mono) {
        if self.first_valid.is_none() {
            self.first_valid = Some(now);
            let binding = ctx.hub.config().device(device);
            tracing::info!(device = %binding.id, endpoint = %binding.endpoint, "device connected: valid data");
            ctx.hub.device_status(device, DeviceStatus::Connected, None);
        }
        self.last_valid = Some(now);
    }

    /// When the link is dead if no valid frame comes first.
    fn deadline(&self) -> Mono {
        self.last_valid
            .unwrap_or(self.opened)
            .saturating_add(self.live.limit)
    }

    /// Why the link is declared dead, and whether it had been stable.
    fn dead(&self) -> Ended {
        let why = match self.last_valid {
            Some(_) => format!(
                "no valid data for {:?} (expected period + grace); link closed",
                self.live.limit
            ),
            None => format!(
                "link open but no valid data within {:?} (expected period + grace); link closed",
                self.live.limit
            ),
        };
        Ended::Lost(why, self.stable())
    }

    fn lost(&self, why: String) -> Ended {
        Ended::Lost(why, self.stable())
    }

    fn stable(&self) -> bool {
        match (self.first_valid, self.last_valid) {
            (Some(f), Some(l)) => l.since(f) >= self.live.stable,
            _ => false,
        }
    }
}

/// How long from now until `at` (zero if past), as a tokio deadline.
fn until(at: Mono) -> tokio::time::Instant {
    tokio::time::Instant::now() + at.since(mono_now())
}

enum Ended {
    Cancelled,
    /// The link failed or died: why, and whether valid data had flowed for the stable time.
    Lost(String, bool),
}

/// A device that streams: read, decode, ingest, until the link fails or delivers no valid
/// frame for the liveness limit. A device that streams only when asked (Contec V7) gets its
/// start command first and its keep-alive on time.
async fn stream_session(
    ctx: &SourceCtx,
    device: DeviceIdx,
    mut link: Link,
    live: Liveness,
) -> Ended {
    let cfg = ctx.hub.config();
    let binding = cfg.device(device);
    let Some(mut decoder) = protocol::decoder_for(&binding.profile.protocol) else {
        // Config validation rejects unknown protocols; this is a second line of defence.
        return Ended::Lost(
            format!("unknown protocol {:?}", binding.profile.protocol),
            false,
        );
    };
    let mut watch = LinkWatch::new(live);
    let dialogue = protocol::dialogue_for(&binding.profile.protocol);
    let mut keep_alive =
        tokio::time::interval(dialogue.map_or(Duration::from_secs(3600), |d| d.every));
    keep_alive.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    if let Some(d) = dialogue {
        keep_alive.reset(); // the first keep-alive is due one period after the start
        if let Err(e) = link.write_all(&d.start).await {
            return watch.lost(format!("write failed: {e}"));
        }
    }
    let mut buf = vec![0u8; 4096];
    let mut out: Vec<Measurement> = Vec::with_capacity(64);
    // One timer, moved on only when it fires early (not per frame: a 75 Hz stream would
    // otherwise re-arm it 75 times a second).
    let deadline = tokio::time::sleep_until(until(watch.deadline()));
    tokio::pin!(deadline);
    let mut flood = Flood::new(ctx, device);
    loop {
        let n = tokio::select! {
            _ = ctx.cancel.cancelled() => return flood.end(Ended::Cancelled),
            _ = flood.over(), if flood.throttle.flooding() => {
                flood.poll();
                continue;
            }
            _ = keep_alive.tick(), if dialogue.is_some() => {
                if let Some(d) = dialogue
                    && let Err(e) = link.write_all(&d.keep_alive).await
                {
                    return flood.end(watch.lost(format!("write failed: {e}")));
                }
                continue;
            }
            _ = &mut deadline => {
                if mono_now() >= watch.deadline() {
                    return flood.end(watch.dead());
                }
                deadline.as_mut().reset(until(watch.deadline()));
                continue;
            }
            r = link.read(&mut buf) => match r {
                Ok(0) => return flood.end(watch.lost("end of stream (device closed the connection)".into())),
                Ok(n) => n,
                Err(e) => return flood.end(watch.lost(format!("read failed: {e}"))),
            },
        };
        let stamp = Stamp::now();
        let report = decoder.feed(&buf[..n], &mut out);
        crate::metrics::global().bad_frames(usize::from(device.0), u64::from(report.bad_frames));
        if report.skipped_bytes > 0 || report.bad_frames > 0 {
            tracing::debug!(
                device = %binding.id,
                skipped_bytes = report.skipped_bytes,
                bad_frames = report.bad_frames,
                "garbage on the line; decoder resynchronised"
            );
        }
        if !out.is_empty() {
            watch.valid(ctx, device, stamp.mono);
        }
        flood.admit(stamp.mono, &mut out);
        ctx.hub.ingest(device, stamp, &out);
        out.clear();
        // Over its budget, the device is read no faster than the budget allows.
        let pause = flood.throttle.pause();
        if !pause.is_zero() {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return flood.end(Ended::Cancelled),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// A stream session's throttle ([`throttle`]) and what it tells the hub and the counters.
struct Flood<'a> {
    ctx: &'a SourceCtx,
    device: DeviceIdx,
    throttle: Throttle,
}

impl<'a> Flood<'a> {
    fn new(ctx: &'a SourceCtx, device: DeviceIdx) -> Flood<'a> {
        Flood {
            ctx,
            device,
            throttle: Throttle::new(ctx.hub.config().device(device).max_rate),
        }
    }

    fn load(&self) -> Option<&crate::overload::DeviceLoad> {
        self.ctx.overload.devices.get(usize::from(self.device.0))
    }

    /// Charges one read's readings; over the budget keeps the newest of each metric, counts
    /// the rest, and raises `device_flooding` at the first excess (before the readings are
    /// ingested).
    fn admit(&mut self, now: Mono, out: &mut Vec<Measurement>) {
        let a = self.throttle.admit(now, out);
        self.noted(a);
    }

    /// Charges one pushed value's readings (BLE: the device cannot be read less); over the
    /// budget drops the whole value ([`Throttle::admit_whole`]), counted, and raises
    /// `device_flooding` at the first excess.
    fn admit_whole(&mut self, now: Mono, out: &mut Vec<Measurement>) {
        let a = self.throttle.admit_whole(now, out);
        self.noted(a);
    }

    fn noted(&self, a: throttle::Admitted) {
        if a.dropped == 0 {
            return;
        }
        if let Some(l) = self.load() {
            l.throttled.fetch_add(a.dropped as u64, Ordering::Relaxed);
        }
        if a.started_flooding {
            let b = self.ctx.hub.config().device(self.device);
            tracing::warn!(device = %b.id, max_rate = b.max_rate, "device sends more readings than its profile allows; throttled");
            if let Some(l) = self.load() {
                l.flooding.store(true, Ordering::Relaxed);
            }
            self.ctx.hub.device_flooding(self.device, true);
        }
    }

    /// Resolves when the flood would end without another excess.
    async fn over(&self) {
        match self.throttle.clears_at() {
            Some(at) => tokio::time::sleep_until(until(at)).await,
            None => std::future::pending().await,
        }
    }

    /// Ends the flood if it is over.
    fn poll(&mut self) {
        if self.throttle.poll(mono_now()) {
            self.cleared();
        }
    }

    fn cleared(&self) {
        let b = self.ctx.hub.config().device(self.device);
        tracing::info!(device = %b.id, throttled = self.throttle.dropped(), "device back within its max_rate");
        if let Some(l) = self.load() {
            l.flooding.store(false, Ordering::Relaxed);
        }
        self.ctx.hub.device_flooding(self.device, false);
    }

    /// The session ends: a flood ends with it (the link's own alarm stands for the device).
    fn end(&self, ended: Ended) -> Ended {
        self.close();
        ended
    }

    /// The link ends: a flood ends with it.
    fn close(&self) {
        if self.throttle.flooding() {
            self.cleared();
        }
    }
}

/// When the next NIBP measurement is due. Survives reconnects, so a flaky link does not start
/// a measurement on every reconnect.
#[derive(Debug)]
struct NibpSchedule {
    interval: Duration,
    next: Option<Mono>,
}

impl NibpSchedule {
    /// The first measurement starts shortly after the cuff is first reached.
    const FIRST_AFTER: Duration = Duration::from_secs(2);

    fn new(interval: Duration) -> NibpSchedule {
        NibpSchedule {
            interval,
            next: None,
        }
    }

    fn due(&mut self, now: Mono) -> Mono {
        *self
            .next
            .get_or_insert(now.saturating_add(Self::FIRST_AFTER))
    }

    fn started(&mut self, now: Mono) {
        self.next = Some(now.saturating_add(self.interval));
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cuff {
    Idle,
    Measuring { since: Mono, peak: u16 },
    AwaitingResult { since: Mono },
}

/// Poll period while a measurement runs, and liveness probe period while idle. The module is
/// dead when it has not answered for the profile's expected period plus the grace (a serial
/// cable pulled out gives no error, only silence).
const CUFF_POLL: Duration = Duration::from_secs(1);
const IDLE_PROBE: Duration = Duration::from_secs(2);
/// A measurement that has not produced a result by then is abandoned (the module has its own
/// safety timeouts well below this; the NIBP-overdue alarm covers the patient).
const MEASUREMENT_LIMIT: Duration = Duration::from_secs(180);
/// Pressure above which inflation is deemed started, and below which deflation is deemed done.
const INFLATED_MMHG: u16 = 20;
const DEFLATED_MMHG: u16 = 10;

/// The SunTech dialogue. Every answer is a valid frame (the module is alive); a measurement
/// is started only on a link where the module has answered.
async fn suntech_session(
    ctx: &SourceCtx,
    device: DeviceIdx,
    mut link: Link,
    schedule: &mut NibpSchedule,
    live: Liveness,
) -> Ended {
    let cfg = ctx.hub.config();
    let binding = cfg.device(device);
    let mut watch = LinkWatch::new(live);
    let mut decoder = SuntechDecoder::default();
    let mut responses: Vec<Response> = Vec::with_capacity(8);
    let mut out: Vec<Measurement> = Vec::with_capacity(8);
    let mut buf = vec![0u8; 512];
    let mut state = Cuff::Idle;
    let mut next_poll = mono_now();
    let mut flood = Flood::new(ctx, device);
    loop {
        let now = mono_now();
        if now >= watch.deadline() {
            return flood.end(watch.dead());
        }
        // Decide what to send now, if anything.
        if now >= next_poll {
            let heard = watch.last_valid.is_some();
            let cmd = match state {
                Cuff::Idle if heard && now >= schedule.due(now) => {
                    schedule.started(now);
                    state = Cuff::Measuring {
                        since: now,
                        peak: 0,
                    };
                    tracing::info!(device = %binding.id, "starting NIBP measurement");
                    Command::StartAdult
                }
                Cuff::Idle => Command::GetCuffPressure,
                Cuff::Measuring { since, .. } | Cuff::AwaitingResult { since }
                    if now.since(since) > MEASUREMENT_LIMIT =>
                {
                    tracing::warn!(device = %binding.id, "NIBP measurement produced no result in time; abandoned");
                    state = Cuff::Idle;
                    Command::Abort
                }
                Cuff::Measuring { .. } => Command::GetCuffPressure,
                Cuff::AwaitingResult { .. } => Command::GetBpData,
            };
            if let Err(e) = link.write_all(&cmd.encode()).await {
                return flood.end(watch.lost(format!("write failed: {e}")));
            }
            next_poll = now.saturating_add(if state == Cuff::Idle {
                IDLE_PROBE
            } else {
                CUFF_POLL
            });
        }
        let wake = next_poll.min(watch.deadline());
        let n = tokio::select! {
            _ = ctx.cancel.cancelled() => return flood.end(Ended::Cancelled),
            _ = tokio::time::sleep_until(until(wake)) => continue,
            _ = flood.over(), if flood.throttle.flooding() => {
                flood.poll();
                continue;
            }
            r = link.read(&mut buf) => match r {
                Ok(0) => return flood.end(watch.lost("end of stream (device closed the connection)".into())),
                Ok(n) => n,
                Err(e) => return flood.end(watch.lost(format!("read failed: {e}"))),
            },
        };
        let stamp = Stamp::now();
        decoder.feed_responses(&buf[..n], &mut responses);
        if !responses.is_empty() {
            watch.valid(ctx, device, stamp.mono);
        }
        for r in responses.drain(..) {
            match (&r, state) {
                (Response::CuffPressure(p), Cuff::Measuring { since, peak }) => {
                    r.measurements(&mut out);
                    let peak = peak.max(*p);
                    state = if peak >= INFLATED_MMHG && *p < DEFLATED_MMHG {
                        // Deflated: ask for the result at once.
                        next_poll = stamp.mono;
                        Cuff::AwaitingResult { since }
                    } else {
                        Cuff::Measuring { since, peak }
                    };
                }
                (Response::BpData(_), Cuff::AwaitingResult { .. }) => {
                    r.measurements(&mut out);
                    state = Cuff::Idle;
                    next_poll = stamp.mono.saturating_add(IDLE_PROBE);
                }
                // Acks, idle pressure probes, and late answers only prove the module is alive.
                _ => ctx.hub.device_heard(device),
            }
        }
        // A module that answers more than it is asked (or a line that replays) is throttled
        // like a streaming device: the newest reading of each metric passes, the module is
        // read no faster than its budget.
        flood.admit(stamp.mono, &mut out);
        ctx.hub.ingest(device, stamp, &out);
        out.clear();
        let pause = flood.throttle.pause();
        if !pause.is_zero() {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return flood.end(Ended::Cancelled),
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }
}

/// Runs one Bluetooth LE device until cancelled: find, connect, subscribe
/// ([`crate::transport::ble::connect`]); feed each value to its characteristic's decoder, whole
/// (one notification is one PDU); hand the measurements to the hub. When the link drops or
/// cannot be made: `disconnected` with the reason, then again after the backoff. The decoders
/// and counters live across reconnects (decoders are reset, as a partial frame cannot span two
/// connections). Until the device has connected once, for the first attempt's grace
/// ([`crate::transport::ble::FIRST_ATTEMPT_GRACE`]), a failed attempt shows as `connecting`
/// with its reason and raises no technical alarm: a device still being found is not a lost one.
pub async fn run_ble_device(ctx: SourceCtx, device: DeviceIdx) {
    use crate::transport::ble::{self, BleError};
    let cfg = ctx.hub.config().clone();
    let binding = cfg.device(device);
    let Some(profile) = binding.profile.ble.as_ref() else {
        // Config validation pairs BLE bindings with BLE profiles; a second line of defence.
        ctx.hub.device_status(
            device,
            DeviceStatus::Disconnected,
            Some(format!(
                "profile {:?} has no [ble] table, expected a BLE profile",
                binding.profile.name
            )),
        );
        return;
    };
    let mut decoders: Vec<(uuid::Uuid, Box<dyn protocol::Decoder>)> = Vec::new();
    for c in &profile.characteristics {
        match protocol::decoder_for(&c.protocol) {
            Some(d) => decoders.push((c.uuid, d)),
            None => {
                tracing::error!(device = %binding.id, protocol = %c.protocol, "no decoder for a characteristic; its values are ignored");
            }
        }
    }
    let mut backoff = Backoff::new();
    let mut last_error: Option<String> = None;
    let grace_until = tokio::time::Instant::now() + ble::FIRST_ATTEMPT_GRACE;
    let mut ever_connected = false;
    // Over the device's life: values that were not a valid PDU, and unexpected values.
    let mut bad_frames: u64 = 0;
    let mut unknown_values: u64 = 0;
    let mut out: Vec<Measurement> = Vec::with_capacity(64);
    loop {
        let connect = ble::connect(&binding.endpoint, profile);
        tokio::pin!(connect);
        // The grace ends on time even while an attempt is still under way.
        let mut grace_over = ever_connected || tokio::time::Instant::now() >= grace_until;
        let connected = loop {
            tokio::select! {
                _ = ctx.cancel.cancelled() => return,
                r = &mut connect => break r,
                _ = tokio::time::sleep_until(grace_until), if !grace_over => {
                    grace_over = true;
                    let why = last_error.clone().unwrap_or_else(|| {
                        format!(
                            "not connected within {:?} (the first connection attempt's grace)",
                            ble::FIRST_ATTEMPT_GRACE
                        )
                    });
                    tracing::warn!(device = %binding.id, reason = %why, "device not connected within its first attempt's grace; still trying");
                    ctx.hub.device_status(device, DeviceStatus::Disconnected, Some(why));
                }
            }
        };
        let why = match connected {
            Ok(mut link) => {
                tracing::info!(device = %binding.id, endpoint = %binding.endpoint, "device connected");
                ctx.hub.device_status(device, DeviceStatus::Connected, None);
                last_error = None;
                ever_connected = true;
                for (_, d) in &mut decoders {
                    d.reset();
                }
                // The backoff resets only once valid data has flowed for the stable time, as
                // for serial links: a device that connects and drops at once backs off to 5 s.
                let mut data_since: Option<tokio::time::Instant> = None;
                let stable = ctx.hub.config().alarms.policy.link_stable;
                let mut flood = Flood::new(&ctx, device);
                let why = loop {
                    let next = tokio::select! {
                        _ = ctx.cancel.cancelled() => {
                            flood.close();
                            link.disconnect().await;
                            return;
                        }
                        _ = flood.over(), if flood.throttle.flooding() => {
                            flood.poll();
                            continue;
                        }
                        n = link.next() => n,
                    };
                    let (uuid, value) = match next {
                        Ok(v) => v,
                        Err(e) => break e.to_string(),
                    };
                    let stamp = Stamp::now();
                    let Some((_, decoder)) = decoders.iter_mut().find(|(u, _)| *u == uuid) else {
                        unknown_values += 1;
                        continue;
                    };
                    let report = decoder.feed(&value, &mut out);
                    tracing::trace!(device = %binding.id, characteristic = %uuid, value = %hex::encode(&value), ?report, "BLE value");
                    if report.bad_frames > 0 || report.skipped_bytes > 0 {
                        crate::metrics::global()
                            .bad_frames(usize::from(device.0), u64::from(report.bad_frames.max(1)));
                        let before = bad_frames;
                        bad_frames += u64::from(report.bad_frames.max(1));
                        // A warning at the 1st, 10th, 100th... so that a device that sends
                        // garbage all day does not flood the log; every one at debug level.
                        let decade = |n: u64| n.checked_ilog10().unwrap_or(0);
                        if before == 0 || decade(bad_frames) > decade(before) {
                            tracing::warn!(
                                device = %binding.id,
                                characteristic = %uuid,
                                value = %hex::encode(&value),
                                bad_frames_total = bad_frames,
                                skipped_bytes = report.skipped_bytes,
                                "malformed BLE value discarded"
                            );
                        } else {
                            tracing::debug!(
                                device = %binding.id,
                                characteristic = %uuid,
                                value = %hex::encode(&value),
                                bad_frames_total = bad_frames,
                                "malformed BLE value discarded"
                            );
                        }
                    }
                    if !out.is_empty() && data_since.is_none() {
                        data_since = Some(tokio::time::Instant::now());
                    }
                    flood.admit_whole(stamp.mono, &mut out);
                    ctx.hub.ingest(device, stamp, &out);
                    out.clear();
                };
                flood.close();
                if data_since.is_some_and(|t| t.elapsed() >= stable) {
                    backoff.reset();
                }
                why
            }
            Err(BleError::Unavailable(why)) => {
                format!("bluetooth is not available: {why}")
            }
            Err(e) => e.to_string(),
        };
        let status = if !ever_connected && tokio::time::Instant::now() < grace_until {
            DeviceStatus::Connecting
        } else {
            DeviceStatus::Disconnected
        };
        if last_error.as_deref() != Some(why.as_str()) {
            if status == DeviceStatus::Connecting {
                tracing::info!(device = %binding.id, reason = %why, "first connection attempt failed; retrying within its grace");
            } else {
                tracing::warn!(device = %binding.id, reason = %why, unknown_values, "device disconnected; reconnecting");
            }
            last_error = Some(why.clone());
        }
        ctx.hub.device_status(device, status, Some(why));
        crate::metrics::global().reconnect(usize::from(device.0));
        tokio::select! {
            _ = ctx.cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff.next_delay()) => {}
        }
    }
}
