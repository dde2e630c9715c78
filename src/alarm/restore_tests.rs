//! Snapshot and restore of a bed's alarm state (what survives a restart), and
//! `baseline_missing`. Times are explicit: `t(s)` is `s` seconds after the first run started;
//! `later(s)` is the same wall time in a second process whose monotonic clock started afresh.

use super::*;
use crate::model::DeviceKind;
use crate::model::Mono;
use crate::model::{BedIdx, DeviceIdx, Flags, Measurement, Metric, Observation};
use std::time::Duration;

const BED: BedIdx = BedIdx(0);
const OXI: DeviceIdx = DeviceIdx(0);
const CUFF: DeviceIdx = DeviceIdx(1);
const PRESET: &str = include_str!("../../config/presets/ketamine-session.toml");
const WALL0: i64 = 1_700_000_000_000;
/// The engine clock's head start (as the hub gives it), so instants before a restart exist.
const HEAD: u64 = 366 * 86_400;

fn t(secs: f64) -> Now {
    Now {
        mono: Mono(((HEAD as f64 + secs) * 1e9) as u64),
        wall_ms: WALL0 + (secs * 1000.0) as i64,
    }
}

/// Wall time `secs` after the first run started, in a process started at `restart` seconds.
fn later(restart: f64, secs: f64) -> Now {
    Now {
        mono: Mono(((HEAD as f64 + secs - restart) * 1e9) as u64),
        wall_ms: WALL0 + (secs * 1000.0) as i64,
    }
}

fn spec() -> BedSpec {
    BedSpec {
        devices: vec![
            DeviceSpec {
                idx: OXI,
                kind: DeviceKind::Oximeter,
                expected_period: Duration::from_secs(1),
                metrics: vec![Metric::Spo2, Metric::PulseRate],
            },
            DeviceSpec {
                idx: CUFF,
                kind: DeviceKind::Bp,
                expected_period: Duration::from_secs(600),
                metrics: vec![Metric::NibpSys, Metric::NibpDia, Metric::NibpMean],
            },
        ],
        bp_interval: Duration::from_secs(600),
    }
}

fn engine(ids: u64) -> BedAlarms {
    BedAlarms::new(
        BED,
        spec(),
        parse_limits(PRESET).unwrap(),
        &AlarmIds::new(ids),
    )
    .unwrap()
}

fn feed(e: &mut BedAlarms, metric: Metric, v: f64, now: Now) -> Vec<AlarmEvent> {
    let device = match metric {
        Metric::NibpSys | Metric::NibpDia | Metric::NibpMean => CUFF,
        _ => OXI,
    };
    let obs = Observation {
        bed: BED,
        device,
        m: Measurement::new(metric, v, Flags::EMPTY),
        received_ms: now.wall_ms,
        mono: now.mono,
        bed_seq: 0,
        simulated: true,
    };
    let mut out = Vec::new();
    e.observe(&obs, now, &mut out);
    e.tick(now, &mut out);
    out
}

fn current(e: &BedAlarms, cond: &str) -> Option<Alarm> {
    e.alarms()
        .find(|a| a.condition.to_string() == cond)
        .copied()
}

fn has(events: &[AlarmEvent], event: &str, cond: &str) -> bool {
    events.iter().any(|e| {
        let v = serde_json::to_value(e).unwrap();
        v["event"] == event && v["alarm"]["condition"] == cond
    })
}

/// Through JSON, as the store keeps it.
fn saved(e: &BedAlarms, now: Now) -> BedSnapshot {
    let json = serde_json::to_string(&e.snapshot(now)).unwrap();
    serde_json::from_str(&json).unwrap()
}

#[test]
fn a_restored_bed_keeps_its_limits_baseline_and_alarms_with_their_ids_states_and_times() {
    let mut e = engine(1000);
    let mut out = Vec::new();
    // Limits changed at run time: SpO2 low at 92 instead of 90.
    let mut limits = parse_limits(PRESET).unwrap();
    limits.rules[0].threshold = Threshold::Absolute(92.0);
    e.set_limits(limits.clone(), "admin", t(0.0), &mut out)
        .unwrap();
    let baseline = Baseline {
        sys: Some(120.0),
        dia: Some(80.0),
        ..Baseline::default()
    };
    e.set_baseline(baseline, "nurse", t(0.0), &mut out).unwrap();
    // A high SpO2 alarm that latched, and a systolic rise acknowledged while it lasts.
    feed(&mut e, Metric::Spo2, 80.0, t(1.0));
    feed(&mut e, Metric::Spo2, 97.0, t(2.0));
    let latched = current(&e, "spo2_low").unwrap();
    assert_eq!(latched.state, AlarmState::Latched);
    feed(&mut e, Metric::NibpSys, 170.0, t(3.0));
    let rise = current(&e, "nibp_sys_rise").unwrap();
    e.acknowledge(rise.id, "nurse", t(4.0), &mut out).unwrap();

    let snap = saved(&e, t(10.0));
    let mut r = engine(1);
    let done = r.restore(&snap, later(60.0, 70.0)).unwrap();
    assert_eq!(done.alarms, 3, "spo2_low, nibp_sys_rise, nibp_sys_high");
    assert!(done.dropped.is_empty());
    assert_eq!(r.limit_rules(), &limits);
    assert_eq!(r.baseline(), baseline);
    let a = current(&r, "spo2_low").unwrap();
    assert_eq!(a, latched, "same id, state, priority, times");
    let b = current(&r, "nibp_sys_rise").unwrap();
    assert_eq!(
        (b.id, b.state, b.audio),
        (rise.id, AlarmState::Acknowledged, Audio::Silenced)
    );
    assert!(
        r.limits()
            .iter()
            .all(|s| s.active || s.condition.to_string() == "nibp_dia_rise"),
        "nibp_sys_rise is active again with the restored baseline"
    );
    // The latched alarm still needs an acknowledgement; a new alarm gets a new, larger id.
    let mut out = Vec::new();
    r.acknowledge(a.id, "nurse", later(60.0, 71.0), &mut out)
        .unwrap();
    assert!(has(&out, "cleared", "spo2_low"));
    feed(&mut r, Metric::Spo2, 80.0, later(60.0, 72.0));
    let new = current(&r, "spo2_low").unwrap();
    assert!(new.id.0 > rise.id.0 && new.id.0 > latched.id.0, "{new:?}");
}

#[test]
fn a_restored_audio_pause_keeps_its_remaining_time_and_an_expired_one_is_gone() {
    let mut e = engine(1000);
    let mut out = Vec::new();
    feed(&mut e, Metric::Spo2, 80.0, t(0.0));
    e.pause_audio(Some(Duration::from_secs(300)), "nurse", t(10.0), &mut out)
        .unwrap();
    let snap = saved(&e, t(20.0));
    assert_eq!(snap.audio_paused_until_ms, Some(t(310.0).wall_ms));

    // Restarted 100 s in: 210 s of the pause are left, and the alarm is still paused.
    let mut r = engine(1);
    let now = later(100.0, 100.0);
    assert!(r.restore(&snap, now).unwrap().paused);
    assert_eq!(
        r.audio_paused_until(),
        Some(now.after(Duration::from_secs(210)).mono)
    );
    assert_eq!(current(&r, "spo2_low").unwrap().audio, Audio::Paused);
    let mut out = Vec::new();
    r.tick(later(100.0, 309.9), &mut out);
    assert!(
        !out.iter().any(|e| e.kind == EventKind::AudioResumed),
        "{out:?}"
    );
    r.tick(later(100.0, 310.0), &mut out);
    assert_eq!(current(&r, "spo2_low").unwrap().audio, Audio::Sounding);

    // Restarted after the pause ended: no pause, and the alarm sounds.
    let mut r = engine(1);
    assert!(!r.restore(&snap, later(400.0, 400.0)).unwrap().paused);
    assert_eq!(r.audio_paused_until(), None);
    assert_eq!(current(&r, "spo2_low").unwrap().audio, Audio::Sounding);
}

#[test]
fn restored_escalation_keeps_its_level_and_schedule_across_the_restart() {
    let mut e = engine(1000);
    feed(&mut e, Metric::Spo2, 80.0, t(0.0));
    for s in 1..=250 {
        feed(&mut e, Metric::Spo2, 80.0, t(f64::from(s)));
    }
    let snap = saved(&e, t(250.0));
    let esc = snap.alarms[0].escalation;
    assert_eq!(esc.level, 0);
    assert_eq!(esc.raised_ms, t(0.0).wall_ms);
    assert_eq!(esc.next_ms, Some(t(300.0).wall_ms), "level 1 at 5 min");

    // Down from 250 s to 280 s: the next page is still due at 300 s, at level 1.
    let mut r = engine(1);
    r.restore(&snap, later(280.0, 280.0)).unwrap();
    let mut levels = Vec::new();
    for s in 281..=420 {
        for ev in feed(&mut r, Metric::Spo2, 80.0, later(280.0, f64::from(s))) {
            if let EventKind::Notify { level } = ev.kind {
                levels.push((s, level));
            }
        }
    }
    assert_eq!(levels, [(300, 1), (420, 1)]);
}

#[test]
fn a_restored_active_alarm_is_judged_by_the_next_valid_reading() {
    let mut e = engine(1000);
    for s in 0..=11 {
        feed(&mut e, Metric::Spo2, 88.0, t(f64::from(s)));
    }
    let id = current(&e, "spo2_low").unwrap().id;
    let snap = saved(&e, t(12.0));
    let mut r = engine(1);
    r.restore(&snap, later(30.0, 30.0)).unwrap();
    let mut out = Vec::new();
    r.tick(later(30.0, 31.0), &mut out);
    assert!(
        current(&r, "spo2_low").is_some(),
        "no reading yet: it stays"
    );
    let ev = feed(&mut r, Metric::Spo2, 97.0, later(30.0, 32.0));
    assert!(has(&ev, "cleared", "spo2_low"));
    assert_eq!(ev[0].alarm.map(|a| a.id), Some(id));
}

#[test]
fn saved_alarms_whose_rule_is_gone_are_dropped_and_bad_limits_are_refused() {
    let mut e = engine(1000);
    feed(&mut e, Metric::Spo2, 80.0, t(0.0));
    let mut snap = saved(&e, t(1.0));
    snap.alarms[0].condition = "spo2_high".into();
    let mut r = engine(1);
    let done = r.restore(&snap, later(5.0, 5.0)).unwrap();
    assert_eq!(
        (done.alarms, done.dropped),
        (0, vec!["spo2_high".to_owned()])
    );
    snap.limits.rules[0].hysteresis = -1.0;
    let mut r = engine(1);
    assert!(r.restore(&snap, later(5.0, 5.0)).is_err());
    assert_eq!(r.limit_rules(), &parse_limits(PRESET).unwrap(), "unchanged");
}

#[test]
fn a_dosed_bed_without_a_baseline_raises_baseline_missing_until_one_is_set() {
    let mut e = engine(1000);
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    assert!(
        current(&e, "baseline_missing").is_none(),
        "not dosed: a note only"
    );
    e.set_dosed(true, t(1.0), &mut out);
    out.clear();
    e.tick(t(1.1), &mut out);
    let a = current(&e, "baseline_missing").expect("raised at the next tick");
    assert_eq!(
        (a.priority, a.kind),
        (Priority::Medium, AlarmKind::Technical)
    );
    assert!(
        matches!(out[1].kind, EventKind::Notify { level: 0 }),
        "{out:?}"
    );
    assert!(
        e.limits()
            .iter()
            .any(|s| s.note.is_some_and(|n| n.contains("baseline_missing")))
    );
    // Survives a restart like any alarm.
    let mut r = engine(1);
    r.restore(&saved(&e, t(2.0)), later(5.0, 5.0)).unwrap();
    assert_eq!(current(&r, "baseline_missing").map(|a| a.id), Some(a.id));
    // A baseline for only one relative rule is not enough; for both it clears.
    let mut out = Vec::new();
    let sys_only = Baseline {
        sys: Some(120.0),
        ..Baseline::default()
    };
    r.set_baseline(sys_only, "nurse", later(5.0, 6.0), &mut out)
        .unwrap();
    assert!(!has(&out, "cleared", "baseline_missing"));
    let both = Baseline {
        sys: Some(120.0),
        dia: Some(80.0),
        ..Baseline::default()
    };
    r.set_baseline(both, "nurse", later(5.0, 7.0), &mut out)
        .unwrap();
    assert!(has(&out, "cleared", "baseline_missing"));
}

#[test]
fn actions_never_raise_baseline_missing_so_a_dry_run_takes_no_alarm_id() {
    let mut e = engine(1000);
    let mut out = Vec::new();
    e.set_dosed(true, t(0.0), &mut out);
    e.set_limits(parse_limits(PRESET).unwrap(), "admin", t(0.0), &mut out)
        .unwrap();
    assert!(current(&e, "baseline_missing").is_none());
    e.tick(t(0.1), &mut out);
    assert!(current(&e, "baseline_missing").is_some());
    e.set_dosed(false, t(1.0), &mut out);
    assert!(current(&e, "baseline_missing").is_none(), "discharged");
}
