//! Views of the hub's state: the snapshot message (also `GET /api/rooms`), the current
//! alarms, the console's one line per bed.

use super::fanout::Fanout;
use super::{BedState, Hub, Stamp, System, lock, wire};
use crate::alarm::{Now, Watchdog};
use crate::clock::{mono_now, rfc3339_ms, wall_ms};
use crate::model::{Measurement, Metric};
use std::collections::BTreeMap;
use std::sync::MutexGuard;
use wire::VERSION;

impl Hub {
    /// The snapshot message as JSON (also the body of `GET /api/rooms`).
    pub fn snapshot_json(&self) -> Vec<u8> {
        let beds = self.lock_beds();
        let sys = lock(&self.sys);
        let fan = lock(&self.fan);
        self.snapshot_locked(&beds, &sys, &fan, false)
    }

    /// One line per bed for the console: SpO2, PR, PI, last NIBP and its age.
    pub fn summary_lines(&self) -> Vec<String> {
        let now = wall_ms();
        self.cfg
            .beds
            .iter()
            .zip(&self.beds)
            .map(|(bed, st)| {
                let st = lock(st);
                let show = |metric: Metric, decimals: usize| -> String {
                    match &st.latest[metric.index()] {
                        None => "--".to_owned(),
                        Some(o) => match o.m.value.number() {
                            Some(v) => format!("{v:.decimals$}"),
                            None => reason_text(&o.m),
                        },
                    }
                };
                let nibp = match &st.latest[Metric::NibpSys.index()] {
                    None => "none yet".to_owned(),
                    Some(o) => {
                        let age = (now - o.received_ms).max(0) / 1000;
                        match o.m.value.number() {
                            Some(_) => format!(
                                "{}/{} ({}) {age}s ago",
                                show(Metric::NibpSys, 0),
                                show(Metric::NibpDia, 0),
                                show(Metric::NibpMean, 0)
                            ),
                            None => match o.m.flags.cuff_error() {
                                Some(code) => format!("failed (cuff error {code}) {age}s ago"),
                                None => format!("-- ({}) {age}s ago", reason_text(&o.m)),
                            },
                        }
                    }
                };
                let links: Vec<String> = bed
                    .devices
                    .iter()
                    .zip(&st.devices)
                    .map(|(d, (_, s))| {
                        format!("{}:{:?}", self.cfg.device(*d).profile.kind.name(), s.status)
                            .to_lowercase()
                    })
                    .collect();
                format!(
                    "{:<10} SpO2 {:>4} %  PR {:>4} /min  PI {:>5} %  NIBP {}  [{}]",
                    bed.id,
                    show(Metric::Spo2, 0),
                    show(Metric::PulseRate, 0),
                    show(Metric::PerfusionIndex, 1),
                    nibp,
                    links.join(" ")
                )
            })
            .collect()
    }

    /// Every current alarm, as JSON views.
    pub fn alarms_json(&self) -> serde_json::Value {
        let beds = self.lock_beds();
        let g = lock(&self.sys);
        let list: Vec<wire::AlarmView<'_>> = beds
            .iter()
            .flat_map(|b| b.alarms.alarms())
            .chain(g.watchdog.alarm())
            .chain(g.store_watch.alarm())
            .chain(g.targets.alarms())
            .chain(g.mqtt_watch.as_ref().and_then(|(w, _)| w.alarm()))
            .chain(g.hl7_watch.as_ref().and_then(Watchdog::alarm))
            .map(|a| wire::AlarmView::new(&self.cfg, a))
            .collect();
        serde_json::json!({ "alarms": list })
    }

    pub(super) fn snapshot_locked(
        &self,
        beds: &[MutexGuard<'_, BedState>],
        sys: &System,
        fan: &Fanout,
        resumed: bool,
    ) -> Vec<u8> {
        let cfg = &self.cfg;
        let rooms = cfg
            .rooms
            .iter()
            .map(|room| wire::RoomView {
                id: &room.id,
                name: &room.name,
                beds: room
                    .beds
                    .iter()
                    .map(|bidx| {
                        let bed = cfg.bed(*bidx);
                        let st = &beds[usize::from(bidx.0)];
                        let latest: BTreeMap<&'static str, wire::ReadingView<'_>> = st
                            .latest
                            .iter()
                            .flatten()
                            .filter(|o| wire::in_latest(o.m.metric))
                            .map(|o| (o.m.metric.name(), wire::ReadingView::new(cfg, o)))
                            .collect();
                        let Now {
                            mono: now_mono,
                            wall_ms: now_wall,
                        } = Stamp::now().as_now();
                        let audio_paused_until = st.alarms.audio_paused_until().map(|until| {
                            let left = until.since(now_mono).as_millis();
                            rfc3339_ms(now_wall + i64::try_from(left).unwrap_or(0))
                        });
                        wire::BedView {
                            alarms: st
                                .alarms
                                .alarms()
                                .map(|a| wire::AlarmView::new(cfg, a))
                                .collect(),
                            audio_paused_until,
                            limits_off: limits_off(&st.alarms.limits()),
                            id: &bed.id,
                            recliner: &bed.recliner,
                            label: &bed.label,
                            bp_interval_s: bed.bp_interval.as_secs(),
                            devices: bed
                                .devices
                                .iter()
                                .zip(&st.devices)
                                .map(|(d, (_, s))| {
                                    let b = cfg.device(*d);
                                    wire::DeviceView {
                                        id: &b.id,
                                        profile: &b.profile.name,
                                        vendor: &b.profile.vendor,
                                        model: &b.profile.model,
                                        kind: b.profile.kind,
                                        protocol: &b.profile.protocol,
                                        endpoint: wire::endpoint_text(&b.endpoint),
                                        status: s.status,
                                        status_since: rfc3339_ms(s.since_ms),
                                        detail: s.detail.as_deref(),
                                        simulated: b.simulated,
                                    }
                                })
                                .collect(),
                            latest,
                        }
                    })
                    .collect(),
            })
            .collect();
        let msg = wire::SnapshotMsg {
            v: VERSION,
            kind: "snapshot",
            seq: fan.next_seq - 1,
            resumed,
            time: rfc3339_ms(wall_ms()),
            started: rfc3339_ms(self.started_ms),
            simulated: cfg.devices.iter().any(|d| d.simulated),
            rooms,
            alarms: sys
                .watchdog
                .alarm()
                .into_iter()
                .chain(sys.store_watch.alarm())
                .chain(sys.targets.alarms())
                .chain(sys.mqtt_watch.as_ref().and_then(|(w, _)| w.alarm()))
                .chain(sys.hl7_watch.as_ref().and_then(Watchdog::alarm))
                .map(|a| wire::AlarmView::new(cfg, a))
                .collect(),
            dashboards: sys.dashboards.counts(mono_now(), fan.clients.len()),
        };
        serde_json::to_vec(&msg).unwrap_or_default()
    }
}

/// A short reason for a value without a number: the voiding flag if any, else the invalid kind.
pub fn reason_text(m: &Measurement) -> String {
    if let Some(f) = m.flags.voiding() {
        return f.describe().to_owned();
    }
    match m.value.invalid() {
        Some(r) => r.name().replace('_', " "),
        None => String::new(),
    }
}

/// The guarded metrics (spo2, pulse_rate) without an active limit rule, by name.
fn limits_off(rules: &[crate::alarm::RuleStatus]) -> Vec<&'static str> {
    crate::alarm::BedLimits::GUARDED
        .into_iter()
        .filter(|m| !rules.iter().any(|r| r.active && r.rule.metric == *m))
        .map(|m| m.name())
        .collect()
}
