//! Engine tests with explicit times. `t(s)` is `s` seconds after the start.

use super::*;
use crate::model::DeviceKind;
use crate::model::Mono;
use crate::model::{BedIdx, DeviceIdx, Flag, Flags, Invalid, Measurement, Metric, Observation};
use std::time::Duration;

const BED: BedIdx = BedIdx(0);
const OXI: DeviceIdx = DeviceIdx(0);
const CUFF: DeviceIdx = DeviceIdx(1);
const PRESET: &str = include_str!("../../config/presets/ketamine-session.toml");

fn t(secs: f64) -> Now {
    Now {
        mono: Mono((secs * 1e9) as u64),
        wall_ms: 1_700_000_000_000 + (secs * 1000.0) as i64,
    }
}

fn spec() -> BedSpec {
    BedSpec {
        devices: vec![
            DeviceSpec {
                idx: OXI,
                kind: DeviceKind::Oximeter,
                expected_period: Duration::from_secs(1),
                metrics: vec![Metric::Spo2, Metric::PulseRate, Metric::PerfusionIndex],
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

fn engine() -> BedAlarms {
    BedAlarms::new(
        BED,
        spec(),
        parse_limits(PRESET).unwrap(),
        &AlarmIds::new(1000),
    )
    .unwrap()
}

fn obs(metric: Metric, v: f64, flags: Flags, now: Now) -> Observation {
    let device = match metric {
        Metric::NibpSys | Metric::NibpDia | Metric::NibpMean => CUFF,
        _ => OXI,
    };
    Observation {
        bed: BED,
        device,
        m: Measurement::new(metric, v, flags),
        received_ms: now.wall_ms,
        mono: now.mono,
        bed_seq: 0,
        simulated: true,
    }
}

fn invalid(metric: Metric, now: Now) -> Observation {
    let mut o = obs(metric, 0.0, Flags::EMPTY, now);
    o.m = Measurement::invalid(metric, Invalid::NoValue, Flags::EMPTY);
    o
}

/// Feeds `metric` values at 1 Hz from `from` seconds, ticking each second; returns the events.
fn feed(e: &mut BedAlarms, metric: Metric, from: f64, values: &[f64]) -> Vec<AlarmEvent> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let now = t(from + i as f64);
        e.observe(&obs(metric, *v, Flags::EMPTY, now), now, &mut out);
        e.tick(now, &mut out);
    }
    out
}

fn names(events: &[AlarmEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            let v = serde_json::to_value(e).unwrap();
            let cond = v["alarm"]["condition"].as_str().unwrap_or("-").to_owned();
            format!("{}:{}", v["event"].as_str().unwrap(), cond)
        })
        .collect()
}

fn has(events: &[AlarmEvent], what: &str) -> bool {
    names(events).iter().any(|n| n == what)
}

fn current(e: &BedAlarms, cond: &str) -> Option<Alarm> {
    e.alarms()
        .find(|a| a.condition.to_string() == cond)
        .copied()
}

#[test]
fn the_preset_parses_into_the_documented_rules() {
    let l = parse_limits(PRESET).unwrap();
    let names: Vec<String> = l.rules.iter().map(|r| r.condition().to_string()).collect();
    assert_eq!(
        names,
        [
            "spo2_low",
            "pulse_rate_low",
            "pulse_rate_high",
            "nibp_sys_high",
            "nibp_sys_low",
            "nibp_dia_high",
            "nibp_sys_rise",
            "nibp_dia_rise"
        ]
    );
    let spo2 = l.rules[0];
    assert_eq!(spo2.threshold, Threshold::Absolute(90.0));
    assert_eq!(spo2.delay, Duration::from_secs(10));
    assert_eq!(spo2.hysteresis, 1.0);
    assert_eq!(
        spo2.severe,
        Some(Severe {
            threshold: 85.0,
            priority: Priority::High
        })
    );
}

#[test]
fn bad_presets_are_refused_with_the_bad_value_quoted() {
    let table = [
        (
            "[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=190\npriority='high'",
            "found 190",
        ),
        (
            "[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=90\npriority='high'\ndelay='10 s'",
            "\"10 s\"",
        ),
        (
            "[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=90\npriority='high'\nhysteresis=-1",
            "found -1",
        ),
        (
            "[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=90\npriority='high'\ncolour='red'",
            "colour",
        ),
        (
            "[[rule]]\nmetric='pleth'\ndirection='low'\nthreshold=9\npriority='high'",
            "\"pleth\"",
        ),
        (
            "[[rule]]\nmetric='nibp_sys'\ndirection='low'\nabove_baseline=40\npriority='high'",
            "above_baseline with direction high",
        ),
        (
            "[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=90\npriority='medium'\nsevere={threshold=95,priority='high'}",
            "found 95",
        ),
        (
            "[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=90\npriority='high'\ndelay='5m'",
            "found 300s",
        ),
        (
            "[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=90\npriority='high'\n[[rule]]\nmetric='spo2'\ndirection='low'\nthreshold=88\npriority='high'",
            "\"spo2_low\"",
        ),
    ];
    for (text, want) in table {
        let err = parse_limits(text).unwrap_err().to_string();
        assert!(err.contains(want), "{text}\n=> {err}");
    }
}

#[test]
fn a_low_value_alarms_only_after_the_condition_delay() {
    let mut e = engine();
    let ev = feed(&mut e, Metric::Spo2, 0.0, &[88.0; 10]);
    assert!(!has(&ev, "raised:spo2_low"), "{:?}", names(&ev));
    let ev = feed(&mut e, Metric::Spo2, 10.0, &[88.0]);
    assert!(has(&ev, "raised:spo2_low"));
    let a = current(&e, "spo2_low").unwrap();
    assert_eq!(a.priority, Priority::Medium);
    assert_eq!((a.value, a.limit), (Some(88.0), Some(90.0)));
    assert_eq!(a.started_ms, t(10.0).wall_ms);
}

#[test]
fn a_pending_onset_fires_on_tick_when_the_delay_elapses() {
    let mut e = engine();
    let mut out = Vec::new();
    e.observe(
        &obs(Metric::Spo2, 88.0, Flags::EMPTY, t(0.0)),
        t(0.0),
        &mut out,
    );
    e.observe(
        &obs(Metric::Spo2, 88.0, Flags::EMPTY, t(9.5)),
        t(9.5),
        &mut out,
    );
    e.tick(t(9.9), &mut out);
    assert!(out.is_empty());
    e.tick(t(10.0), &mut out);
    assert_eq!(names(&out), ["raised:spo2_low", "notify:spo2_low"]);
}

#[test]
fn a_short_dip_back_inside_the_limit_cancels_the_onset() {
    let mut e = engine();
    let ev = feed(
        &mut e,
        Metric::Spo2,
        0.0,
        &[
            88.0, 88.0, 88.0, 88.0, 88.0, 91.0, 88.0, 88.0, 88.0, 88.0, 88.0, 88.0,
        ],
    );
    assert!(!has(&ev, "raised:spo2_low"), "{:?}", names(&ev));
}

#[test]
fn a_severe_value_alarms_at_once_at_the_severe_priority() {
    let mut e = engine();
    let ev = feed(&mut e, Metric::Spo2, 0.0, &[84.0]);
    assert!(has(&ev, "raised:spo2_low"));
    assert_eq!(current(&e, "spo2_low").unwrap().priority, Priority::High);
    assert!(has(&ev, "notify:spo2_low"));
}

#[test]
fn a_medium_alarm_rises_to_high_when_the_value_enters_the_severe_band() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[88.0; 11]);
    let ev = feed(&mut e, Metric::Spo2, 11.0, &[84.0]);
    assert_eq!(names(&ev), ["updated:spo2_low", "notify:spo2_low"]);
    assert_eq!(current(&e, "spo2_low").unwrap().priority, Priority::High);
    // The priority does not fall back while the alarm lasts.
    feed(&mut e, Metric::Spo2, 12.0, &[88.0]);
    assert_eq!(current(&e, "spo2_low").unwrap().priority, Priority::High);
}

#[test]
fn clearing_needs_the_value_back_inside_by_the_hysteresis() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[88.0; 11]);
    let table = [(90.0, true), (90.5, true), (91.0, false)];
    for (i, (v, still)) in table.into_iter().enumerate() {
        feed(&mut e, Metric::Spo2, 11.0 + i as f64, &[v]);
        assert_eq!(current(&e, "spo2_low").is_some(), still, "at {v}");
    }
}

#[test]
fn invalid_values_neither_trigger_nor_clear_a_physiological_alarm() {
    let mut e = engine();
    let mut out = Vec::new();
    for s in 0..30 {
        e.observe(&invalid(Metric::Spo2, t(s as f64)), t(s as f64), &mut out);
        e.tick(t(s as f64), &mut out);
    }
    assert!(!has(&out, "raised:spo2_low"));
    feed(&mut e, Metric::Spo2, 30.0, &[84.0]);
    out.clear();
    for s in 31..60 {
        e.observe(&invalid(Metric::Spo2, t(s as f64)), t(s as f64), &mut out);
    }
    assert!(current(&e, "spo2_low").is_some());
    assert!(!has(&out, "cleared:spo2_low") && !has(&out, "latched:spo2_low"));
}

#[test]
fn a_pending_onset_never_fires_on_a_stale_value_but_fires_on_the_next_beyond_value() {
    let mut e = engine();
    let mut out = Vec::new();
    e.observe(
        &obs(Metric::Spo2, 88.0, Flags::EMPTY, t(0.0)),
        t(0.0),
        &mut out,
    );
    for s in 1..20 {
        e.observe(&invalid(Metric::Spo2, t(s as f64)), t(s as f64), &mut out);
        e.tick(t(s as f64), &mut out);
    }
    // The 88 at t=0 is older than 1 s + 5 s grace when the 10 s delay has passed.
    assert!(!has(&out, "raised:spo2_low"), "{:?}", names(&out));
    let ev = feed(&mut e, Metric::Spo2, 20.0, &[88.0]);
    assert!(has(&ev, "raised:spo2_low"));
}

#[test]
fn high_physiological_alarms_latch_until_acknowledged() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[84.0]);
    let ev = feed(&mut e, Metric::Spo2, 1.0, &[97.0]);
    assert!(has(&ev, "latched:spo2_low"));
    let a = current(&e, "spo2_low").unwrap();
    assert_eq!(a.state, AlarmState::Latched);
    let mut out = Vec::new();
    e.acknowledge(a.id, "nurse", t(2.0), &mut out).unwrap();
    assert_eq!(names(&out), ["acknowledged:spo2_low", "cleared:spo2_low"]);
    assert_eq!(out[0].actor.as_deref(), Some("nurse"));
    assert!(current(&e, "spo2_low").is_none());
}

#[test]
fn medium_and_technical_alarms_do_not_latch() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[88.0; 11]);
    let ev = feed(&mut e, Metric::Spo2, 11.0, &[95.0]);
    assert!(has(&ev, "cleared:spo2_low"));
    let mut out = Vec::new();
    let now = t(12.0);
    e.device_link(OXI, false, now, &mut out);
    e.device_link(OXI, true, t(13.0), &mut out);
    // Valid data for the stable time ends it: cleared, never latched.
    for i in 0..=10 {
        let at = t(13.0 + f64::from(i));
        e.observe(&obs(Metric::Spo2, 96.0, Flags::default(), at), at, &mut out);
    }
    assert!(has(&out, "cleared:device_disconnected"));
    assert!(!has(&out, "latched:device_disconnected"));
}

#[test]
fn acknowledging_an_active_alarm_silences_it_but_it_stays_until_the_condition_ends() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[84.0]);
    let id = current(&e, "spo2_low").unwrap().id;
    let mut out = Vec::new();
    e.acknowledge(id, "nurse", t(1.0), &mut out).unwrap();
    let a = current(&e, "spo2_low").unwrap();
    assert_eq!(
        (a.state, a.audio),
        (AlarmState::Acknowledged, Audio::Silenced)
    );
    e.acknowledge(id, "nurse", t(1.5), &mut out).unwrap();
    let ev = feed(&mut e, Metric::Spo2, 2.0, &[97.0]);
    assert!(
        has(&ev, "cleared:spo2_low"),
        "acknowledged alarms clear, not latch"
    );
    assert_eq!(
        e.acknowledge(id, "nurse", t(3.0), &mut out),
        Err(AlarmError::UnknownAlarm(id))
    );
}

fn engine_with(policy: Policy) -> BedAlarms {
    BedAlarms::with_policy(
        BED,
        spec(),
        parse_limits(PRESET).unwrap(),
        &AlarmIds::new(1000),
        policy,
    )
    .unwrap()
}

fn breakthrough(b: Breakthrough) -> Policy {
    let mut p = Policy::default();
    p.audio.breakthrough = b;
    p
}

#[test]
fn pause_defaults_to_two_minutes_is_capped_and_expires() {
    let mut e = engine_with(breakthrough(Breakthrough::High));
    let mut out = Vec::new();
    assert_eq!(
        e.pause_audio(None, "nurse", t(0.0), &mut out),
        Ok(Duration::from_secs(120))
    );
    assert_eq!(
        e.pause_audio(Some(Duration::from_secs(3600)), "nurse", t(0.0), &mut out),
        Ok(Duration::from_secs(600))
    );
    assert_eq!(
        e.pause_audio(Some(Duration::ZERO), "nurse", t(0.0), &mut out),
        Err(AlarmError::ZeroPause(Duration::ZERO))
    );
    assert_eq!(e.audio_paused_until(), Some(t(600.0).mono));
    // With "high only", a medium alarm raised during the pause is paused; it sounds when the
    // pause expires.
    let ev = feed(&mut e, Metric::PulseRate, 0.0, &[130.0; 11]);
    assert!(has(&ev, "raised:pulse_rate_high"));
    assert_eq!(current(&e, "pulse_rate_high").unwrap().audio, Audio::Paused);
    out.clear();
    e.tick(t(599.9), &mut out);
    assert!(!has(&out, "audio_resumed:-"));
    e.tick(t(600.0), &mut out);
    assert!(has(&out, "audio_resumed:-"));
    assert_eq!(
        current(&e, "pulse_rate_high").unwrap().audio,
        Audio::Sounding
    );
    assert_eq!(e.audio_paused_until(), None);
}

#[test]
fn a_new_high_alarm_breaks_through_a_pause() {
    let mut e = engine_with(breakthrough(Breakthrough::High));
    let mut out = Vec::new();
    e.pause_audio(None, "nurse", t(0.0), &mut out).unwrap();
    feed(&mut e, Metric::Spo2, 1.0, &[80.0]);
    assert_eq!(current(&e, "spo2_low").unwrap().audio, Audio::Sounding);
}

#[test]
fn by_default_a_new_medium_alarm_sounds_through_a_pause_and_a_low_one_does_not() {
    let mut e = engine();
    let mut out = Vec::new();
    e.pause_audio(None, "nurse", t(0.0), &mut out).unwrap();
    // A new nibp_sys_rise (medium) during the pause: heard at once.
    let b = Baseline {
        sys: Some(110.0),
        dia: None,
        pulse_rate: None,
        spo2: None,
    };
    e.set_baseline(b, "nurse", t(0.5), &mut out).unwrap();
    feed(&mut e, Metric::NibpSys, 1.0, &[155.0]);
    assert_eq!(current(&e, "nibp_sys_rise").unwrap().audio, Audio::Sounding);
    let low = Flags::EMPTY.with(Flag::LowBattery);
    e.observe(&obs(Metric::Spo2, 97.0, low, t(2.0)), t(2.0), &mut out);
    assert_eq!(current(&e, "low_battery").unwrap().audio, Audio::Paused);
}

#[test]
fn with_breakthrough_all_every_new_condition_sounds_through_a_pause() {
    let mut e = engine_with(breakthrough(Breakthrough::All));
    let mut out = Vec::new();
    e.pause_audio(None, "nurse", t(0.0), &mut out).unwrap();
    let low = Flags::EMPTY.with(Flag::LowBattery);
    e.observe(&obs(Metric::Spo2, 97.0, low, t(1.0)), t(1.0), &mut out);
    assert_eq!(current(&e, "low_battery").unwrap().audio, Audio::Sounding);
}

#[test]
fn breakthrough_names_the_lowest_priority_that_sounds() {
    use Priority::{High, Low, Medium};
    let sounds = |b: Breakthrough| [Low, Medium, High].map(|p| b.sounds(p));
    assert_eq!(sounds(Breakthrough::High), [false, false, true]);
    assert_eq!(sounds(Breakthrough::Medium), [false, true, true]);
    assert_eq!(sounds(Breakthrough::All), [true, true, true]);
}

#[test]
fn pausing_pauses_sounding_alarms_and_cancel_restores_them() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[80.0]);
    let mut out = Vec::new();
    e.pause_audio(None, "nurse", t(1.0), &mut out).unwrap();
    assert_eq!(current(&e, "spo2_low").unwrap().audio, Audio::Paused);
    e.cancel_pause("nurse", t(2.0), &mut out).unwrap();
    assert_eq!(current(&e, "spo2_low").unwrap().audio, Audio::Sounding);
    assert_eq!(
        e.cancel_pause("nurse", t(3.0), &mut out),
        Err(AlarmError::NotPaused)
    );
}

#[test]
fn an_unacknowledged_high_alarm_renotifies_and_escalates_on_schedule() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[80.0]);
    let mut levels = Vec::new();
    for s in 1..=660 {
        let mut out = Vec::new();
        e.observe(
            &obs(Metric::Spo2, 80.0, Flags::EMPTY, t(s as f64)),
            t(s as f64),
            &mut out,
        );
        e.tick(t(s as f64), &mut out);
        for ev in out {
            if let (EventKind::Notify { level }, Some(a)) = (&ev.kind, ev.alarm)
                && a.condition.to_string() == "spo2_low"
            {
                let level = *level;
                levels.push((s, level));
            }
        }
    }
    // Every 2 min, and one level up at 5 and 10 min.
    assert_eq!(
        levels,
        [(120, 0), (240, 0), (300, 1), (420, 1), (540, 1), (600, 2)]
    );
}

/// The notify events of `condition` as (second, level) while `metric` stays at `v`, fed at
/// 1 Hz from 1 s to `until` s.
fn pages(e: &mut BedAlarms, metric: Metric, v: f64, until: u32, cond: &str) -> Vec<(u32, u8)> {
    let mut levels = Vec::new();
    for s in 1..=until {
        let mut out = Vec::new();
        let now = t(f64::from(s));
        e.observe(&obs(metric, v, Flags::EMPTY, now), now, &mut out);
        e.tick(now, &mut out);
        for ev in out {
            if let (EventKind::Notify { level }, Some(a)) = (&ev.kind, ev.alarm)
                && a.condition.to_string() == cond
            {
                levels.push((s, *level));
            }
        }
    }
    levels
}

#[test]
fn acknowledge_stops_notifications() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[80.0]);
    let id = current(&e, "spo2_low").unwrap().id;
    let mut out = Vec::new();
    e.acknowledge(id, "nurse", t(1.0), &mut out).unwrap();
    let ev = feed(&mut e, Metric::Spo2, 2.0, &[80.0; 900]);
    assert!(page_times(&ev, "spo2_low").is_empty(), "{ev:?}");
}

#[test]
fn an_unacknowledged_medium_alarm_renotifies_every_three_minutes_and_escalates_at_ten() {
    let mut e = engine();
    // pulse_rate 130 from 1 s: medium after its 10 s delay (raised at 11 s).
    let got = pages(&mut e, Metric::PulseRate, 130.0, 1300, "pulse_rate_high");
    assert_eq!(
        got,
        [
            (11, 0),
            (191, 0),
            (371, 0),
            (551, 0),
            (611, 1),
            (791, 1),
            (971, 1),
            (1151, 1),
            (1211, 2)
        ]
    );
}

#[test]
fn a_low_alarm_is_not_paged_by_default_and_is_when_configured() {
    let low = Flags::EMPTY.with(Flag::LowBattery);
    let run = |policy: Policy| {
        let mut e = engine_with(policy);
        let mut out = Vec::new();
        for s in 0..400 {
            let now = t(f64::from(s));
            e.observe(&obs(Metric::Spo2, 97.0, low, now), now, &mut out);
            e.tick(now, &mut out);
        }
        names(&out)
            .into_iter()
            .filter(|n| n == "notify:low_battery")
            .count()
    };
    assert_eq!(run(Policy::default()), 0);
    let mut p = Policy::default();
    p.escalation.low = PriorityEscalation {
        notify: true,
        renotify_every: None,
        escalate_after: None,
        levels: 1,
    };
    assert_eq!(run(p), 1, "page once");
}

#[test]
fn the_schedule_per_priority_follows_the_policy_with_time_as_a_parameter() {
    let p = EscalationPolicy::default();
    let m = |s: u64| Duration::from_secs(s);
    let at = |v: Vec<(Duration, u8)>| {
        v.into_iter()
            .map(|(d, l)| (d.as_secs(), l))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        at(p.high.schedule(m(660))),
        [
            (0, 0),
            (120, 0),
            (240, 0),
            (300, 1),
            (420, 1),
            (540, 1),
            (600, 2)
        ]
    );
    assert_eq!(
        at(p.medium.schedule(m(1300))),
        [
            (0, 0),
            (180, 0),
            (360, 0),
            (540, 0),
            (600, 1),
            (780, 1),
            (960, 1),
            (1140, 1),
            (1200, 2)
        ]
    );
    assert!(p.low.schedule(m(3600)).is_empty());
    let once = PriorityEscalation {
        notify: true,
        renotify_every: None,
        escalate_after: None,
        levels: 3,
    };
    assert_eq!(at(once.schedule(m(3600))), [(0, 0)]);
    let levels_only = PriorityEscalation {
        renotify_every: None,
        escalate_after: Some(m(60)),
        ..once
    };
    assert_eq!(
        at(levels_only.schedule(m(3600))),
        [(0, 0), (60, 1), (120, 2)]
    );
}

/// Seconds (from `t(0)`) of the pages of `cond` in `out`.
fn page_times(out: &[AlarmEvent], cond: &str) -> Vec<i64> {
    out.iter()
        .filter(|ev| {
            matches!(ev.kind, EventKind::Notify { .. })
                && ev.alarm.is_some_and(|a| a.condition.to_string() == cond)
        })
        .map(|ev| (ev.at_ms - t(0.0).wall_ms) / 1000)
        .collect()
}

#[test]
fn a_flapping_condition_is_paged_at_most_once_per_page_interval() {
    let mut e = engine();
    let mut out = Vec::new();
    // Systolic results alternate above and below the 160 limit (medium, no delay) every
    // second for 100 s: the alarm is raised and cleared 50 times.
    for s in 0..100 {
        let now = t(f64::from(s));
        let v = if s % 2 == 0 { 170.0 } else { 150.0 };
        e.observe(&obs(Metric::NibpSys, v, Flags::EMPTY, now), now, &mut out);
        e.tick(now, &mut out);
    }
    let raised = names(&out)
        .iter()
        .filter(|n| *n == "raised:nibp_sys_high")
        .count();
    assert_eq!(raised, 50);
    assert_eq!(
        page_times(&out, "nibp_sys_high"),
        [0, 60],
        "one page per minute; a held page dies with its alarm"
    );
    // Held back, not lost: an alarm raised inside the window that stays is paged when the
    // window ends.
    let mut out = Vec::new();
    let now = t(105.0);
    e.observe(
        &obs(Metric::NibpSys, 170.0, Flags::EMPTY, now),
        now,
        &mut out,
    );
    for s in 106..=200 {
        e.tick(t(f64::from(s)), &mut out);
    }
    assert_eq!(page_times(&out, "nibp_sys_high"), [120]);
}

#[test]
fn relative_limits_are_inactive_until_a_baseline_is_set() {
    let mut e = engine();
    let status = e.limits();
    let rise = status
        .iter()
        .find(|s| s.condition.to_string() == "nibp_sys_rise")
        .unwrap();
    assert!(!rise.active);
    assert!(rise.note.unwrap().contains("without a baseline"));
    let ev = feed(&mut e, Metric::NibpSys, 0.0, &[155.0]);
    assert!(!has(&ev, "raised:nibp_sys_rise"));
    let mut out = Vec::new();
    let b = Baseline {
        sys: Some(110.0),
        dia: Some(70.0),
        pulse_rate: None,
        spo2: None,
    };
    e.set_baseline(b, "nurse", t(1.0), &mut out).unwrap();
    assert!(has(&out, "baseline_set:-"));
    let rise = e
        .limits()
        .into_iter()
        .find(|s| s.condition.to_string() == "nibp_sys_rise")
        .unwrap();
    assert_eq!(rise.effective, Some(150.0));
    let ev = feed(&mut e, Metric::NibpSys, 2.0, &[155.0]);
    assert!(has(&ev, "raised:nibp_sys_rise"));
    let bad = Baseline {
        sys: Some(f64::NAN),
        ..b
    };
    assert!(matches!(
        e.set_baseline(bad, "nurse", t(3.0), &mut out),
        Err(AlarmError::BadBaseline { field: "sys", .. })
    ));
}

#[test]
fn nibp_readings_are_judged_each_on_their_own() {
    let mut e = engine();
    let table = [
        (165.0, Some(Priority::Medium)),
        (150.0, None),
        (185.0, Some(Priority::High)),
        (85.0, None),
    ];
    for (i, (v, want)) in table.into_iter().enumerate() {
        feed(&mut e, Metric::NibpSys, i as f64 * 600.0, &[v]);
        assert_eq!(
            current(&e, "nibp_sys_high")
                .map(|a| a.priority)
                .filter(|_| { current(&e, "nibp_sys_high").unwrap().state != AlarmState::Latched }),
            want,
            "at {v}"
        );
    }
    assert!(current(&e, "nibp_sys_low").is_some(), "85 is below 90");
}

#[test]
fn recent_median_uses_the_last_fifteen_valid_values() {
    let mut e = engine();
    assert_eq!(e.recent_median(Metric::PulseRate), None);
    feed(&mut e, Metric::PulseRate, 0.0, &[60.0, 70.0]);
    assert_eq!(e.recent_median(Metric::PulseRate), Some(65.0));
    let mut out = Vec::new();
    e.observe(&invalid(Metric::PulseRate, t(2.0)), t(2.0), &mut out);
    let vals: Vec<f64> = (0..20).map(|i| 100.0 + f64::from(i)).collect();
    feed(&mut e, Metric::PulseRate, 3.0, &vals[..19]);
    // Last 15 of 100..=118 are 104..=118; median 111.
    assert_eq!(e.recent_median(Metric::PulseRate), Some(111.0));
}

#[test]
fn a_silent_device_raises_no_data_and_a_reading_clears_it() {
    let mut e = engine();
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    e.tick(t(6.0), &mut out);
    assert!(!has(&out, "raised:no_data"));
    e.tick(t(6.1), &mut out);
    assert!(has(&out, "raised:no_data"));
    let a = current(&e, "no_data").unwrap();
    assert_eq!((a.device, a.priority), (Some(OXI), Priority::Medium));
    out.clear();
    e.observe(&invalid(Metric::Spo2, t(7.0)), t(7.0), &mut out);
    assert!(
        has(&out, "cleared:no_data"),
        "an invalid reading is still data"
    );
}

#[test]
fn a_polled_cuff_that_answers_between_measurements_is_not_no_data() {
    // A SunTech-like cuff: polled every second or two, measurements only every 10 min.
    let mut sp = spec();
    sp.devices[1].expected_period = Duration::from_secs(1);
    let mut e =
        BedAlarms::new(BED, sp, parse_limits(PRESET).unwrap(), &AlarmIds::new(1000)).unwrap();
    let cuff_no_data = |e: &BedAlarms| {
        e.alarms()
            .any(|a| a.device == Some(CUFF) && a.condition.to_string() == "no_data")
    };
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    for i in 1..=30 {
        let now = t(f64::from(i) * 2.0);
        e.device_heard(CUFF, now, &mut out);
        e.tick(now, &mut out);
        assert!(!cuff_no_data(&e), "a cuff that answers is alive (at {i})");
    }
    // It stops answering: no_data after its period plus the grace.
    e.tick(t(70.0), &mut out);
    assert!(cuff_no_data(&e));
    e.device_heard(CUFF, t(71.0), &mut out);
    assert!(!cuff_no_data(&e));
}

#[test]
fn a_disconnect_raises_at_once_replaces_no_data_and_reconnect_clears_it() {
    let mut e = engine();
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    e.tick(t(7.0), &mut out);
    assert!(current(&e, "no_data").is_some());
    out.clear();
    e.device_link(OXI, false, t(8.0), &mut out);
    assert_eq!(
        names(&out),
        [
            "raised:device_disconnected",
            "notify:device_disconnected",
            "cleared:no_data"
        ]
    );
    e.tick(t(30.0), &mut out);
    assert!(
        current(&e, "no_data").is_none(),
        "no no_data while disconnected"
    );
    out.clear();
    e.device_link(OXI, true, t(31.0), &mut out);
    assert!(
        !has(&out, "cleared:device_disconnected"),
        "held until valid data has flowed for the stable time"
    );
    e.tick(t(36.0), &mut out);
    assert!(
        current(&e, "no_data").is_none(),
        "the no-data clock restarts on reconnect"
    );
    for i in 0..=10 {
        let at = t(31.0 + f64::from(i));
        e.observe(&obs(Metric::Spo2, 96.0, Flags::default(), at), at, &mut out);
    }
    assert!(has(&out, "cleared:device_disconnected"));
}

/// The oximeter's link goes down at `down`, comes back at `up` and delivers one valid
/// reading a second from `up` until (excluding) `until`. Returns the events.
fn flap(e: &mut BedAlarms, down: f64, up: f64, until: f64) -> Vec<AlarmEvent> {
    let mut out = Vec::new();
    e.device_link(OXI, false, t(down), &mut out);
    e.tick(t(down + 0.1), &mut out);
    e.device_link(OXI, true, t(up), &mut out);
    let mut at = up;
    while at < until {
        e.observe(
            &obs(Metric::Spo2, 96.0, Flags::default(), t(at)),
            t(at),
            &mut out,
        );
        e.tick(t(at + 0.5), &mut out);
        at += 1.0;
    }
    out
}

#[test]
fn a_flapping_link_is_one_alarm_held_until_data_has_flowed_for_the_stable_time() {
    let mut e = engine();
    let mut out = Vec::new();
    e.observe(
        &obs(Metric::Spo2, 96.0, Flags::default(), t(0.0)),
        t(0.0),
        &mut out,
    );
    // Twenty flaps: down, back after 1 s, 3 s of data, down again.
    let mut events = Vec::new();
    for i in 0..20 {
        let base = 1.0 + f64::from(i) * 5.0;
        events.extend(flap(&mut e, base, base + 1.0, base + 4.0));
    }
    let n = |what: &str| names(&events).iter().filter(|n| *n == what).count();
    assert_eq!(n("raised:device_disconnected"), 1, "{:?}", names(&events));
    assert_eq!(
        n("notify:device_disconnected"),
        1,
        "one page for the whole flapping"
    );
    assert_eq!(n("cleared:device_disconnected"), 0);
    assert!(current(&e, "device_disconnected").is_some());
    // Then it stays up: data for 9 s is not enough, 10 s is.
    let last = 1.0 + 20.0 * 5.0;
    let ev = flap(&mut e, last, last + 1.0, last + 10.0);
    assert!(!has(&ev, "cleared:device_disconnected"));
    let mut out = Vec::new();
    let at = t(last + 11.0);
    e.observe(&obs(Metric::Spo2, 96.0, Flags::default(), at), at, &mut out);
    assert_eq!(names(&out), ["cleared:device_disconnected"]);
}

#[test]
fn a_break_in_the_data_restarts_the_stable_time() {
    let mut e = engine();
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    e.device_link(OXI, false, t(1.0), &mut out);
    e.device_link(OXI, true, t(2.0), &mut out);
    // 8 s of data, a 7 s gap (beyond period + grace), then data again.
    for i in 0..8 {
        let at = t(2.0 + f64::from(i));
        e.observe(&obs(Metric::Spo2, 96.0, Flags::default(), at), at, &mut out);
    }
    e.tick(t(16.0), &mut out);
    out.clear();
    for i in 0..10 {
        let at = t(17.0 + f64::from(i));
        e.observe(&obs(Metric::Spo2, 96.0, Flags::default(), at), at, &mut out);
        e.tick(at, &mut out);
    }
    assert!(
        !has(&out, "cleared:device_disconnected"),
        "9 s since the gap is not stable yet"
    );
    e.observe(
        &obs(Metric::Spo2, 96.0, Flags::default(), t(27.0)),
        t(27.0),
        &mut out,
    );
    assert!(has(&out, "cleared:device_disconnected"));
}

#[test]
fn a_polled_cuff_whose_answers_flow_releases_its_held_disconnect() {
    let mut e = engine();
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    e.device_link(CUFF, false, t(1.0), &mut out);
    assert!(has(&out, "raised:device_disconnected"));
    e.device_link(CUFF, true, t(2.0), &mut out);
    out.clear();
    for i in 0..6 {
        let at = t(2.0 + f64::from(i) * 2.0);
        e.device_heard(CUFF, at, &mut out);
        e.tick(at, &mut out);
    }
    let cleared: Vec<_> = out
        .iter()
        .filter(|ev| ev.kind == EventKind::Cleared)
        .filter_map(|ev| ev.alarm)
        .map(|a| (a.device, a.condition.to_string()))
        .collect();
    assert_eq!(cleared, [(Some(CUFF), "device_disconnected".to_owned())]);
}

#[test]
fn an_acknowledged_disconnect_stays_acknowledged_through_flaps() {
    let mut e = engine();
    let mut out = Vec::new();
    e.device_link(OXI, false, t(1.0), &mut out);
    let id = current(&e, "device_disconnected").unwrap().id;
    e.acknowledge(id, "nurse", t(2.0), &mut out).unwrap();
    out.clear();
    let ev = flap(&mut e, 3.0, 4.0, 6.0);
    assert!(ev.is_empty(), "{:?}", names(&ev));
    let a = current(&e, "device_disconnected").unwrap();
    assert_eq!((a.id, a.state), (id, AlarmState::Acknowledged));
}

#[test]
fn a_watched_link_leaves_silence_to_its_source_and_no_data_is_only_a_backstop() {
    let mut e = engine();
    e.watch_link(OXI);
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    // Never heard: the source reports the first-connect failure, not the engine.
    e.tick(t(30.0), &mut out);
    assert!(!has(&out, "raised:no_data"), "{:?}", names(&out));
    e.observe(
        &obs(Metric::Spo2, 96.0, Flags::default(), t(31.0)),
        t(31.0),
        &mut out,
    );
    // Silent: the source closes the link at period + grace (6 s); the backstop is later.
    e.tick(t(37.5), &mut out);
    assert!(!has(&out, "raised:no_data"));
    e.tick(t(39.1), &mut out);
    assert!(has(&out, "raised:no_data"));
}

#[test]
fn nibp_overdue_follows_the_bp_interval_plus_grace() {
    let mut e = engine();
    let mut out = Vec::new();
    e.tick(t(0.0), &mut out);
    feed(&mut e, Metric::NibpSys, 100.0, &[120.0]);
    e.tick(t(820.0), &mut out);
    assert!(!has(&out, "raised:nibp_overdue"));
    e.tick(t(820.5), &mut out);
    assert!(has(&out, "raised:nibp_overdue"));
    assert_eq!(current(&e, "nibp_overdue").unwrap().priority, Priority::Low);
    let ev = feed(&mut e, Metric::NibpSys, 821.0, &[120.0]);
    assert!(has(&ev, "cleared:nibp_overdue"));
}

#[test]
fn flags_raise_technical_alarms_after_their_delays() {
    let table: [(Flag, &str, f64, Priority); 5] = [
        (Flag::SensorOff, "sensor_off", 10.0, Priority::Medium),
        (Flag::NoFinger, "no_finger", 10.0, Priority::Medium),
        (
            Flag::ProbeUnplugged,
            "probe_unplugged",
            10.0,
            Priority::Medium,
        ),
        (Flag::LowPerfusion, "low_perfusion", 30.0, Priority::Low),
        (
            Flag::Searching,
            "searching_too_long",
            30.0,
            Priority::Medium,
        ),
    ];
    for (flag, name, delay, prio) in table {
        let mut e = engine();
        let mut out = Vec::new();
        let f = Flags::EMPTY.with(flag);
        let mut s = 0.0;
        while s < delay {
            e.observe(&obs(Metric::Spo2, 97.0, f, t(s)), t(s), &mut out);
            e.tick(t(s), &mut out);
            s += 1.0;
        }
        assert!(!has(&out, &format!("raised:{name}")), "{name} early");
        e.observe(&obs(Metric::Spo2, 97.0, f, t(delay)), t(delay), &mut out);
        assert!(has(&out, &format!("raised:{name}")), "{name}");
        assert_eq!(current(&e, name).unwrap().priority, prio);
        out.clear();
        e.observe(
            &obs(Metric::Spo2, 97.0, Flags::EMPTY, t(delay + 1.0)),
            t(delay + 1.0),
            &mut out,
        );
        assert!(has(&out, &format!("cleared:{name}")), "{name} clears");
    }
}

#[test]
fn device_reported_searching_too_long_and_low_battery_alarm_at_once() {
    let mut e = engine();
    let mut out = Vec::new();
    let f = Flags::EMPTY
        .with(Flag::SearchingTooLong)
        .with(Flag::LowBattery);
    e.observe(&obs(Metric::PulseRate, 70.0, f, t(0.0)), t(0.0), &mut out);
    assert!(has(&out, "raised:searching_too_long"));
    assert!(has(&out, "raised:low_battery"));
}

#[test]
fn a_cuff_error_is_raised_by_a_result_and_cleared_by_the_next_good_one() {
    let mut e = engine();
    let mut out = Vec::new();
    let mut f = Flags::EMPTY;
    f.set_cuff_error(87);
    let mut o = invalid(Metric::NibpSys, t(0.0));
    o.device = CUFF;
    o.m.flags = f;
    e.observe(&o, t(0.0), &mut out);
    assert!(has(&out, "raised:cuff_error"));
    assert_eq!(current(&e, "cuff_error").unwrap().device, Some(CUFF));
    let ev = feed(&mut e, Metric::NibpSys, 60.0, &[120.0]);
    assert!(has(&ev, "cleared:cuff_error"));
}

#[test]
fn set_limits_keeps_alarms_of_kept_conditions_and_clears_the_others() {
    let mut e = engine();
    feed(&mut e, Metric::Spo2, 0.0, &[80.0]);
    feed(&mut e, Metric::PulseRate, 1.0, &[160.0]);
    let mut limits = parse_limits(PRESET).unwrap();
    limits.rules.retain(|r| r.metric == Metric::Spo2);
    let mut out = Vec::new();
    e.set_limits(limits, "admin", t(2.0), &mut out).unwrap();
    assert_eq!(names(&out), ["limits_changed:-", "cleared:pulse_rate_high"]);
    assert!(current(&e, "spo2_low").is_some());
}

#[test]
fn the_watchdog_alarms_when_no_dashboard_is_alive_while_beds_are_monitored() {
    let ids = AlarmIds::new(1);
    let mut w = Watchdog::new(&ids, Watchdog::DEFAULT_TIMEOUT, EscalationPolicy::default());
    let mut out = Vec::new();
    w.tick(t(0.0), true, &mut out);
    w.tick(t(30.0), true, &mut out);
    assert!(out.is_empty());
    w.tick(t(30.1), true, &mut out);
    assert_eq!(names(&out), ["raised:no_dashboard", "notify:no_dashboard"]);
    let a = w.alarm().unwrap();
    assert_eq!((a.bed, a.priority), (None, Priority::High));
    out.clear();
    w.tick(t(150.1), true, &mut out);
    assert_eq!(names(&out), ["notify:no_dashboard"]);
    out.clear();
    w.dashboard_alive(t(151.0), &mut out);
    assert_eq!(names(&out), ["cleared:no_dashboard"]);
    out.clear();
    w.tick(t(500.0), false, &mut out);
    assert!(out.is_empty(), "no beds monitored, no alarm");
}

#[test]
fn alarm_events_serialize_with_stable_snake_case_names() {
    let mut e = engine();
    let ev = feed(&mut e, Metric::Spo2, 0.0, &[80.0]);
    let v = serde_json::to_value(&ev[0]).unwrap();
    assert_eq!(v["event"], "raised");
    assert_eq!(v["bed"], 0);
    assert_eq!(v["alarm"]["condition"], "spo2_low");
    assert_eq!(v["alarm"]["kind"], "physiological");
    assert_eq!(v["alarm"]["priority"], "high");
    assert_eq!(v["alarm"]["state"], "active");
    assert_eq!(v["alarm"]["audio"], "sounding");
    assert_eq!(v["alarm"]["value"], 80.0);
    assert_eq!(v["alarm"]["limit"], 90.0);
    assert_eq!(v["alarm"]["id"], 1000);
    let n = serde_json::to_value(&ev[1]).unwrap();
    assert_eq!(
        (n["event"].as_str(), n["level"].as_u64()),
        (Some("notify"), Some(0))
    );
}

#[test]
fn observing_an_in_range_reading_emits_nothing() {
    let mut e = engine();
    let mut out = Vec::with_capacity(8);
    for s in 0..100 {
        let now = t(f64::from(s) * 0.5);
        e.observe(&obs(Metric::Spo2, 97.0, Flags::EMPTY, now), now, &mut out);
        e.observe(
            &obs(Metric::PulseRate, 72.0, Flags::EMPTY, now),
            now,
            &mut out,
        );
    }
    assert!(out.is_empty());
    assert_eq!(e.alarms().count(), 0);
}

#[test]
fn a_disconnect_still_within_its_delay_ends_when_the_link_comes_up() {
    let mut policy = Policy::default();
    policy.technical.rules[TechCondition::DeviceDisconnected.index()].delay =
        Duration::from_secs(5);
    let mut e = BedAlarms::with_policy(
        BED,
        spec(),
        parse_limits(PRESET).unwrap(),
        &AlarmIds::new(1000),
        policy,
    )
    .unwrap();
    let mut out = Vec::new();
    e.device_link(OXI, false, t(1.0), &mut out);
    e.tick(t(3.0), &mut out);
    e.device_link(OXI, true, t(4.0), &mut out);
    e.tick(t(7.0), &mut out);
    assert!(
        !has(&out, "raised:device_disconnected"),
        "{:?}",
        names(&out)
    );
    // Down again for longer than the delay: raised then, and held as usual.
    e.device_link(OXI, false, t(8.0), &mut out);
    e.tick(t(13.1), &mut out);
    assert!(has(&out, "raised:device_disconnected"));
}
