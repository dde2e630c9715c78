//! The simulator's Bluetooth LE devices: each binding with `address = ...` and
//! `simulated = true` becomes a device of the fake BlueZ ([`super::bluez`]) with its profile's
//! GATT layout, and a player task that sends what the real model sends, from the bed's
//! simulated patient: PLX continuous measurements at 1 Hz (and spot-checks), Blood Pressure
//! measurements with intermediate cuff pressure on the bed's NIBP interval, heart rate, battery
//! level, the BerryMed BCI stream (5-byte packets, 4 per notification, split across
//! notifications now and then), Nonin's big-endian frame, and the Viatom answer to each 0x17
//! request (over two notifications, as a 20-byte MTU forces).
//!
//! Scenario faults map to each protocol's own "no value" codes and status bits; `disconnect`
//! drops the link and refuses connections until it ends; `garbage` sends malformed
//! notifications (values cut short; bytes without the sync bit in the BerryMed stream) between
//! good ones.

use super::bluez::{CharSpec, DeviceSpec, FakeBluez, ServiceSpec, Written};
use super::device_sim::DeviceSim;
use super::physiology::{Faults, Vitals};
use crate::config::{Binding, BleMode, BleProfile, Endpoint, parse_ble_uuid};
use crate::model::{Flag, Flags};
use crate::protocol::sfloat::encode_sfloat;
use crate::protocol::{berrymed, bls, hrs, nonin_ble, plx, viatom};
use rand::Rng;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use uuid::Uuid;

/// A 16-bit SIG UUID on the Bluetooth base.
fn sig(n: u16) -> Uuid {
    parse_ble_uuid(&format!("{n:04x}")).unwrap_or_default()
}

/// Battery Service 0x180F.
const BATTERY_SERVICE: u16 = 0x180f;
/// Battery Level 0x2A19.
const BATTERY_LEVEL: u16 = 0x2a19;

/// The advertised name of a simulated device: the binding's pattern with `*` filled in, or the
/// profile's first name, or its model; with the address's last two bytes, as devices do.
pub fn device_name(binding: &Binding) -> String {
    let Endpoint::Ble { address, name } = &binding.endpoint else {
        return binding.profile.model.clone();
    };
    let tail: String = address.replace(':', "").chars().skip(8).collect();
    if let Some(pattern) = name {
        return pattern.replace('*', &tail);
    }
    let base = binding
        .profile
        .ble
        .as_ref()
        .and_then(|b| b.names.first().cloned())
        .unwrap_or_else(|| format!("{}-", binding.profile.name));
    format!("{base}{tail}")
}

/// The fake BlueZ's view of a simulated binding: advertised service, GATT layout from the
/// profile (battery level in its own Battery Service, as real devices have it).
pub fn device_spec(binding: &Binding) -> Option<DeviceSpec> {
    let (Endpoint::Ble { address, .. }, Some(ble)) = (&binding.endpoint, &binding.profile.ble)
    else {
        return None;
    };
    let mut main = ServiceSpec {
        uuid: ble.service,
        characteristics: Vec::new(),
    };
    let mut battery = ServiceSpec {
        uuid: sig(BATTERY_SERVICE),
        characteristics: Vec::new(),
    };
    for c in &ble.characteristics {
        let flags = match c.mode {
            BleMode::Notify | BleMode::Poll => vec!["notify"],
            BleMode::Indicate => vec!["indicate"],
            BleMode::Read if c.protocol == "battery" => vec!["read", "notify"],
            BleMode::Read => vec!["read"],
        };
        let spec = CharSpec {
            uuid: c.uuid,
            flags,
            value: initial_value(&c.protocol),
        };
        if c.uuid == sig(BATTERY_LEVEL) {
            battery.characteristics.push(spec);
        } else {
            main.characteristics.push(spec);
        }
    }
    if let Some(p) = &ble.poll
        && !main.characteristics.iter().any(|c| c.uuid == p.write)
    {
        main.characteristics.push(CharSpec {
            uuid: p.write,
            flags: vec!["write", "write-without-response"],
            value: Vec::new(),
        });
    }
    let mut services = vec![main];
    if !battery.characteristics.is_empty() {
        services.push(battery);
    }
    Some(DeviceSpec {
        address: address.clone(),
        name: device_name(binding),
        rssi: -58,
        advertised: vec![ble.service],
        services,
    })
}

/// What a read-once characteristic holds before the player updates it.
fn initial_value(protocol: &str) -> Vec<u8> {
    match protocol {
        "battery" => vec![87],
        // Supported features: measurement status and device & sensor status supported, then
        // which status bits the device can set (§2.5).
        "plx-features" => {
            let meas: u16 = (1 << 5) | (1 << 9) | (1 << 13) | (1 << 15);
            let ds: u32 = (1 << 3) | (1 << 5) | (1 << 6) | (1 << 11) | (1 << 15);
            let mut v = vec![0x03, 0x00];
            v.extend_from_slice(&meas.to_le_bytes());
            v.extend_from_slice(&ds.to_le_bytes()[..3]);
            v
        }
        _ => Vec::new(),
    }
}

/// The device flags a BLE device reports for the scenario's faults (each encoder sends the
/// ones its protocol can express).
fn device_flags(v: &Vitals, f: &Faults) -> Flags {
    let mut flags = Flags::EMPTY;
    flags.set_if(Flag::NoFinger, f.finger_out);
    flags.set_if(Flag::ProbeUnplugged, f.probe_unplugged);
    flags.set_if(Flag::Searching, f.searching);
    flags.set_if(Flag::Artifact, f.motion);
    flags.set_if(Flag::LowPerfusion, v.perfusion_index < 0.3);
    flags.set_if(Flag::LowBattery, f.low_battery);
    flags
}

/// Whether the oximeter shows no numbers (the finger is out, the probe unplugged, or it
/// searches for a pulse): the encoders then send the protocol's "no value" codes.
fn no_numbers(f: &Faults) -> bool {
    f.finger_out || f.probe_unplugged || f.searching
}

/// SpO2, pulse rate and perfusion index as the oximeter shows them.
fn oximeter_numbers(v: &Vitals, f: &Faults) -> (Option<f64>, Option<f64>, Option<f64>) {
    if no_numbers(f) {
        (None, None, None)
    } else {
        (
            Some(v.spo2.round()),
            Some(v.pulse_rate.round()),
            Some((v.perfusion_index * 100.0).round() / 100.0),
        )
    }
}

/// A PLX Continuous Measurement (0x2A5F), through [`plx::encode_continuous`].
pub fn plx_continuous(v: &Vitals, f: &Faults) -> Vec<u8> {
    let (spo2, pr, pi) = oximeter_numbers(v, f);
    plx::encode_continuous(spo2, pr, pi, device_flags(v, f))
}

/// A PLX Spot-Check Measurement (0x2A5E): SpO2 and PR, with the measurement status (b13
/// measurement unavailable when there are no numbers). devices.md §2.1.
pub fn plx_spot_check(v: &Vitals, f: &Faults) -> Vec<u8> {
    let (spo2, pr, _) = oximeter_numbers(v, f);
    let status: u16 = if no_numbers(f) { 1 << 13 } else { 0 };
    let mut out = vec![0x02];
    out.extend_from_slice(&encode_sfloat(spo2, 0).to_le_bytes());
    out.extend_from_slice(&encode_sfloat(pr, 0).to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// A Blood Pressure Measurement (0x2A35), through [`bls::encode_measurement`]: NaN values when
/// the cuff failed (BLS has no error code: devices.md §3); SunTech's loose-cuff code 87 as the
/// cuff-fit bit, motion as body movement.
pub fn bls_measurement(v: &Vitals, f: &Faults) -> Vec<u8> {
    let failed = f.cuff_error.is_some();
    let num = |x: f64| (!failed).then(|| x.round());
    let mut flags = Flags::EMPTY;
    flags.set_if(Flag::BodyMovement, f.motion);
    flags.set_if(Flag::CuffLoose, f.cuff_error == Some(87));
    bls::encode_measurement(
        num(v.sys),
        num(v.dia),
        num(v.map),
        num(v.pulse_rate),
        None,
        flags,
    )
}

/// A Heart Rate Measurement (0x2A37), through [`hrs::encode`]: no skin contact while the
/// sensor is off.
pub fn heart_rate(v: &Vitals, f: &Faults) -> Vec<u8> {
    let contact = !(f.finger_out || f.probe_unplugged);
    let rate = if contact { v.pulse_rate } else { 0.0 };
    hrs::encode(rate, Some(contact))
}

/// The Viatom answer to READ_SENSORS, through [`viatom::encode_read_sensors_response`].
pub fn viatom_sensors(v: &Vitals, f: &Faults) -> Vec<u8> {
    let (spo2, pr, _) = oximeter_numbers(v, f);
    let battery = if f.low_battery { 9 } else { 80 };
    viatom::encode_read_sensors_response(spo2, pr, battery, device_flags(v, f))
}

/// Whether `value` is Viatom's READ_SENSORS request (`AA 17 E8 ...`).
fn is_viatom_read_sensors(value: &[u8]) -> bool {
    value.len() >= 8 && value[0] == 0xaa && value[1] == 0x17 && value[2] == 0xe8
}

/// Plays one BLE device on `fake` until cancelled.
pub(super) async fn serve_ble(
    mut sim: DeviceSim,
    fake: Arc<FakeBluez>,
    address: String,
    ble: BleProfile,
    bp_interval: Duration,
    mut writes: mpsc::UnboundedReceiver<Written>,
) {
    const TICK: Duration = Duration::from_millis(40);
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let protocols: Vec<(Uuid, String)> = ble
        .characteristics
        .iter()
        .map(|c| (c.uuid, c.protocol.clone()))
        .collect();
    let mut away = false;
    let mut next_second = Instant::now();
    let mut counter: u16 = 0;
    // The BLE cuff: the first measurement 2 s after the start, then every bp_interval.
    let mut next_bp = Instant::now() + Duration::from_secs(2);
    let mut cuff: Option<(Instant, Vitals, Faults)> = None;
    // A BCI packet split across notifications: the rest goes first in the next one.
    let mut bci_carry: Vec<u8> = Vec::new();
    loop {
        tokio::select! {
            _ = sim.cancel.cancelled() => return,
            _ = tick.tick() => {}
            w = writes.recv() => {
                let Some(w) = w else { continue };
                let (v, f, _) = sim.now();
                if away || !is_viatom_read_sensors(&w.value) {
                    continue;
                }
                let Some((uuid, _)) = protocols.iter().find(|(_, p)| p == "viatom-o2") else {
                    continue;
                };
                let answer = viatom_sensors(&v, &f);
                // A 20-byte MTU: the answer comes in two notifications.
                let (a, b) = answer.split_at(answer.len().min(20));
                for part in [a, b] {
                    if !part.is_empty() {
                        let _ = fake.notify(&address, *uuid, part).await;
                    }
                }
                continue;
            }
        }
        let (v, f, t) = sim.now();
        if f.disconnected {
            if !away {
                away = true;
                let _ = fake.set_in_range(&address, false);
                if let Err(e) = fake.drop_connection(&address).await {
                    tracing::warn!(device = %sim.id, error = %format!("{e:#}"), "simulator cannot drop the BLE link");
                }
            }
            continue;
        }
        if away {
            away = false;
            let _ = fake.set_in_range(&address, true);
        }
        if !fake.is_connected(&address).await {
            continue;
        }
        let now = Instant::now();
        let second = now >= next_second;
        if second {
            next_second = now + Duration::from_secs(1);
            counter = counter.wrapping_add(1);
        }
        let mut values: Vec<(Uuid, Vec<u8>)> = Vec::new();
        for (uuid, protocol) in &protocols {
            match protocol.as_str() {
                "plx-continuous" if second => values.push((*uuid, plx_continuous(&v, &f))),
                "plx-spot-check" if second && counter % 30 == 1 => {
                    values.push((*uuid, plx_spot_check(&v, &f)));
                }
                "hrs" if second => values.push((*uuid, heart_rate(&v, &f))),
                "nonin-ble" if second => {
                    let (spo2, pr, pi) = oximeter_numbers(&v, &f);
                    let volts = if f.low_battery { 2.4 } else { 3.0 };
                    let frame =
                        nonin_ble::encode(spo2, pr, pi, volts, counter, device_flags(&v, &f));
                    values.push((*uuid, frame.to_vec()));
                }
                "battery" if second && counter % 10 == 1 => {
                    let level = if f.low_battery { 9 } else { 87 };
                    let _ = fake.set_value(&address, *uuid, &[level]).await;
                    values.push((*uuid, vec![level]));
                }
                "berrymed-bci" => {
                    let mut bytes = std::mem::take(&mut bci_carry);
                    {
                        let mut p = sim.patient.lock().unwrap_or_else(|e| e.into_inner());
                        for i in 0..4u64 {
                            let dt = sim.scenario.scenario_time(Duration::from_millis(10 * i));
                            let (spo2, pr, _) = oximeter_numbers(&v, &f);
                            let flags = device_flags(&v, &f);
                            bytes.extend_from_slice(&berrymed::encode_bci(
                                spo2,
                                pr,
                                p.pleth(t + dt),
                                flags,
                            ));
                        }
                    }
                    // Now and then a packet straddles two notifications, as over a UART bridge.
                    if sim.rng.random_range(0..8) == 0 {
                        let cut = bytes.len() - sim.rng.random_range(1..5);
                        bci_carry = bytes.split_off(cut);
                    }
                    values.push((*uuid, bytes));
                }
                "bls-cuff-pressure" | "bls-measurement" => {}
                _ => {}
            }
        }
        // The cuff: inflate for 4 s to 30 above systolic, deflate for 6 s, then the result.
        if protocols
            .iter()
            .any(|(_, p)| p == "bls-measurement" || p == "bls-cuff-pressure")
        {
            if cuff.is_none() && now >= next_bp {
                cuff = Some((now, v, f));
                next_bp = now + bp_interval;
            }
            if let Some((since, cv, cf)) = cuff {
                let el = now.duration_since(since).as_secs_f64();
                let peak = cv.sys + 30.0;
                if el >= 10.0 {
                    cuff = None;
                    if let Some((uuid, _)) = protocols.iter().find(|(_, p)| p == "bls-measurement")
                    {
                        values.push((*uuid, bls_measurement(&cv, &cf)));
                    }
                } else if second
                    && let Some((uuid, _)) =
                        protocols.iter().find(|(_, p)| p == "bls-cuff-pressure")
                {
                    let p = if el < 4.0 {
                        peak * el / 4.0
                    } else {
                        peak - (peak - 10.0) * (el - 4.0) / 6.0
                    };
                    values.push((*uuid, bls::encode_cuff_pressure(p.round(), Flags::EMPTY)));
                }
            }
        }
        for (uuid, value) in values {
            if f.garbage && sim.rng.random_range(0..2) == 0 {
                // A malformed notification ahead of the good one: a value cut short (shorter
                // than any valid PDU of these protocols), or, in the BerryMed byte stream,
                // bytes without the sync bit.
                let bci = protocols
                    .iter()
                    .any(|(u, p)| *u == uuid && p == "berrymed-bci");
                let bad = if bci {
                    sim.garbage().iter().map(|b| b & 0x7f).collect()
                } else if value.len() > 1 {
                    value[..sim.rng.random_range(1..value.len().min(5))].to_vec()
                } else {
                    Vec::new()
                };
                if !bad.is_empty() {
                    let _ = fake.notify(&address, uuid, &bad).await;
                }
            }
            if let Err(e) = fake.notify(&address, uuid, &value).await {
                tracing::debug!(device = %sim.id, error = %format!("{e:#}"), "simulator notification failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Metric, Value};
    use crate::protocol::{Decoder, decoder_for};

    fn vitals() -> Vitals {
        Vitals {
            spo2: 97.0,
            pulse_rate: 72.0,
            perfusion_index: 3.5,
            sys: 122.0,
            dia: 78.0,
            map: 92.7,
        }
    }

    /// What a fresh decoder of `protocol` makes of `bytes`: (metric, value) pairs.
    fn decode(protocol: &str, bytes: &[u8]) -> Vec<(Metric, Value)> {
        let mut d: Box<dyn Decoder> = decoder_for(protocol).unwrap();
        let mut out = Vec::new();
        let r = d.feed(bytes, &mut out);
        assert_eq!(r.bad_frames, 0, "{protocol}: {}", hex::encode(bytes));
        out.iter().map(|m| (m.metric, m.value)).collect()
    }

    fn value(got: &[(Metric, Value)], metric: Metric) -> Value {
        got.iter()
            .find(|(m, _)| *m == metric)
            .map(|(_, v)| *v)
            .unwrap_or_else(|| panic!("no {metric:?} in {got:?}"))
    }

    #[test]
    fn what_the_simulator_sends_decodes_to_the_patients_values() {
        let v = vitals();
        let ok = Faults::default();
        type Case = (&'static str, Vec<u8>, Vec<(Metric, f64)>);
        let cases: Vec<Case> = vec![
            (
                "plx-continuous",
                plx_continuous(&v, &ok),
                vec![
                    (Metric::Spo2, 97.0),
                    (Metric::PulseRate, 72.0),
                    (Metric::PerfusionIndex, 3.5),
                ],
            ),
            (
                "plx-spot-check",
                plx_spot_check(&v, &ok),
                vec![(Metric::Spo2, 97.0), (Metric::PulseRate, 72.0)],
            ),
            (
                "bls-measurement",
                bls_measurement(&v, &ok),
                vec![
                    (Metric::NibpSys, 122.0),
                    (Metric::NibpDia, 78.0),
                    (Metric::NibpMean, 93.0),
                ],
            ),
            ("hrs", heart_rate(&v, &ok), vec![(Metric::HeartRate, 72.0)]),
            (
                "viatom-o2",
                viatom_sensors(&v, &ok),
                vec![(Metric::Spo2, 97.0), (Metric::PulseRate, 72.0)],
            ),
        ];
        for (protocol, bytes, want) in cases {
            let got = decode(protocol, &bytes);
            for (metric, number) in want {
                assert_eq!(
                    value(&got, metric),
                    Value::Valid(number),
                    "{protocol} {metric:?}"
                );
            }
        }
    }

    #[test]
    fn a_finger_out_is_sent_as_no_value_never_a_number() {
        let v = vitals();
        let out = Faults {
            finger_out: true,
            ..Faults::default()
        };
        for (protocol, bytes) in [
            ("plx-continuous", plx_continuous(&v, &out)),
            ("plx-spot-check", plx_spot_check(&v, &out)),
            ("viatom-o2", viatom_sensors(&v, &out)),
        ] {
            let got = decode(protocol, &bytes);
            assert!(
                value(&got, Metric::Spo2).number().is_none(),
                "{protocol}: {got:?}"
            );
        }
    }
}
