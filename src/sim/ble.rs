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
use super::devices::{DeviceSim, whole};
use super::physiology::{Faults, Vitals};
use crate::config::{Binding, BleMode, BleProfile, Endpoint, parse_ble_uuid};
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

/// IEEE 11073 SFLOAT of `v` with `decimals` decimals, or NaN (0x07FF) for `None`.
pub fn sfloat(v: Option<f64>, decimals: u8) -> u16 {
    let Some(v) = v.filter(|v| v.is_finite()) else {
        return 0x07ff;
    };
    let mut exp = -i32::from(decimals);
    let mut m = (v * 10f64.powi(i32::from(decimals))).round();
    while m.abs() > 2045.0 && exp < 7 {
        m = (m / 10.0).round();
        exp += 1;
    }
    let m = (m as i32).clamp(-2045, 2045);
    (((exp & 0xf) as u16) << 12) | ((m & 0xfff) as u16)
}

/// CRC-8, polynomial 0x07, init 0 (Viatom; devices.md §5.2).
pub fn crc8(bytes: &[u8]) -> u8 {
    let mut crc: u8 = 0;
    for b in bytes {
        crc ^= b;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x07
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A PLX Continuous Measurement (0x2A5F) with measurement status, device & sensor status and
/// PAI (devices.md §2.2-2.4).
pub fn plx_continuous(v: &Vitals, f: &Faults) -> Vec<u8> {
    let no_numbers = f.finger_out || f.probe_unplugged || f.searching;
    let (meas, ds) = plx_status(v, f);
    let mut out = vec![0x1c];
    let spo2 = (!no_numbers).then(|| v.spo2.round());
    let pr = (!no_numbers).then(|| v.pulse_rate.round());
    out.extend_from_slice(&sfloat(spo2, 0).to_le_bytes());
    out.extend_from_slice(&sfloat(pr, 0).to_le_bytes());
    out.extend_from_slice(&meas.to_le_bytes());
    out.extend_from_slice(&ds.to_le_bytes()[..3]);
    let pai = (!no_numbers).then_some(v.perfusion_index);
    out.extend_from_slice(&sfloat(pai, 1).to_le_bytes());
    out
}

/// A PLX Spot-Check Measurement (0x2A5E) with measurement and device & sensor status.
pub fn plx_spot_check(v: &Vitals, f: &Faults) -> Vec<u8> {
    let no_numbers = f.finger_out || f.probe_unplugged || f.searching;
    let (meas, ds) = plx_status(v, f);
    let mut out = vec![0x06];
    out.extend_from_slice(&sfloat((!no_numbers).then(|| v.spo2.round()), 0).to_le_bytes());
    out.extend_from_slice(&sfloat((!no_numbers).then(|| v.pulse_rate.round()), 0).to_le_bytes());
    out.extend_from_slice(&meas.to_le_bytes());
    out.extend_from_slice(&ds.to_le_bytes()[..3]);
    out
}

fn plx_status(v: &Vitals, f: &Faults) -> (u16, u32) {
    let mut meas: u16 = 0;
    let mut ds: u32 = 0;
    if f.finger_out {
        meas |= 1 << 13;
        ds |= 1 << 11;
    }
    if f.probe_unplugged {
        meas |= 1 << 13;
        ds |= 1 << 15;
    }
    if f.searching {
        meas |= 1 << 5;
        ds |= 1 << 9;
    }
    if f.motion {
        ds |= 1 << 6;
    }
    if v.perfusion_index < 0.3 {
        ds |= 1 << 5;
    }
    (meas, ds)
}

/// A Blood Pressure Measurement (0x2A35) in mmHg with pulse rate and measurement status; NaN
/// values when the cuff failed (BLS has no error code: devices.md §3).
pub fn bls_measurement(v: &Vitals, f: &Faults) -> Vec<u8> {
    let failed = f.cuff_error.is_some();
    let num = |x: f64| (!failed).then(|| x.round());
    let mut status: u16 = 0;
    if f.motion {
        status |= 1;
    }
    if f.cuff_error == Some(87) {
        status |= 1 << 1;
    }
    let mut out = vec![0x14];
    out.extend_from_slice(&sfloat(num(v.sys), 0).to_le_bytes());
    out.extend_from_slice(&sfloat(num(v.dia), 0).to_le_bytes());
    out.extend_from_slice(&sfloat(num(v.map), 0).to_le_bytes());
    out.extend_from_slice(&sfloat(num(v.pulse_rate), 0).to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out
}

/// An Intermediate Cuff Pressure (0x2A36): the current pressure, diastolic and MAP NaN.
pub fn bls_cuff_pressure(mmhg: f64) -> Vec<u8> {
    let mut out = vec![0x00];
    out.extend_from_slice(&sfloat(Some(mmhg.round()), 0).to_le_bytes());
    out.extend_from_slice(&0x07ff_u16.to_le_bytes());
    out.extend_from_slice(&0x07ff_u16.to_le_bytes());
    out
}

/// A Heart Rate Measurement (0x2A37): uint8 rate, sensor contact supported and detected
/// (not detected while the finger is out).
pub fn hrs(v: &Vitals, f: &Faults) -> Vec<u8> {
    let contact = if f.finger_out || f.probe_unplugged {
        0x04
    } else {
        0x06
    };
    let hr = if f.finger_out || f.probe_unplugged {
        0
    } else {
        whole::<u8>(v.pulse_rate).unwrap_or(0)
    };
    vec![contact, hr]
}

/// One BerryMed BCI packet (devices.md §5.1): sync bit, signal strength, pleth, PR, SpO2.
pub fn berrymed_packet(v: &Vitals, f: &Faults, pleth: u8) -> [u8; 5] {
    let no_numbers = f.finger_out || f.probe_unplugged || f.searching;
    let mut b1: u8 = 0x80 | if no_numbers { 0 } else { 6 };
    if f.finger_out || f.searching {
        b1 |= 0x10;
    }
    if f.probe_unplugged {
        b1 |= 0x20;
    }
    let pr: u8 = if no_numbers {
        0xff
    } else {
        whole::<u8>(v.pulse_rate).unwrap_or(0xff)
    };
    let spo2: u8 = if no_numbers {
        0x7f
    } else {
        whole::<u8>(v.spo2).unwrap_or(0x7f).min(0x7f)
    };
    let mut b3: u8 = if no_numbers { 0 } else { 5 };
    if f.finger_out {
        b3 |= 0x10;
    }
    if f.searching {
        b3 |= 0x20;
    }
    b3 |= (pr & 0x80) >> 1;
    [b1, pleth.clamp(1, 0x7f), b3, pr & 0x7f, spo2]
}

/// Nonin Continuous Oximetry (devices.md §5.3): 10 bytes, big-endian.
pub fn nonin_ble(v: &Vitals, f: &Faults, counter: u16) -> Vec<u8> {
    let no_numbers = f.finger_out || f.probe_unplugged || f.searching;
    let mut status: u8 = 0x01;
    if v.perfusion_index < 0.3 {
        status |= 0x02;
    }
    if f.searching {
        status |= 0x08;
    }
    if !(f.finger_out || f.probe_unplugged) {
        status |= 0x10;
    }
    if f.low_battery {
        status |= 0x20;
    }
    let pai = if no_numbers {
        0
    } else {
        whole::<u16>(v.perfusion_index * 100.0).unwrap_or(0)
    };
    let spo2: u8 = if no_numbers {
        127
    } else {
        whole(v.spo2).unwrap_or(127)
    };
    let pr: u16 = if no_numbers {
        511
    } else {
        whole(v.pulse_rate).unwrap_or(511)
    };
    let battery = if f.low_battery { 24 } else { 30 };
    let mut out = vec![10, status, battery];
    out.extend_from_slice(&pai.to_be_bytes());
    out.extend_from_slice(&counter.to_be_bytes());
    out.push(spo2);
    out.extend_from_slice(&pr.to_be_bytes());
    out
}

/// The Viatom answer to READ_SENSORS (0x17): `55 00 FF`, block 0, length 13, payload, CRC-8
/// (devices.md §5.2). No finger: SpO2, PR and flag 0xFF.
pub fn viatom_sensors(v: &Vitals, f: &Faults) -> Vec<u8> {
    let no_numbers = f.finger_out || f.probe_unplugged || f.searching;
    let mut payload = [0u8; 13];
    if no_numbers {
        payload[0] = 0xff;
        payload[1] = 0xff;
        payload[2] = 0xff;
    } else {
        payload[0] = whole(v.spo2).unwrap_or(0xff);
        payload[1] = whole(v.pulse_rate).unwrap_or(0xff);
    }
    payload[7] = if f.low_battery { 9 } else { 80 };
    payload[9] = u8::from(f.motion) * 5;
    payload[10] = whole::<u8>(v.perfusion_index * 10.0).unwrap_or(0);
    payload[11] = u8::from(!(f.finger_out || f.probe_unplugged));
    let mut out = vec![0x55, 0x00, 0xff, 0x00, 0x00, 13, 0x00];
    out.extend_from_slice(&payload);
    out.push(crc8(&out));
    out
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
                // A 20-byte MTU: the 21-byte answer comes in two notifications.
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
                "hrs" if second => values.push((*uuid, hrs(&v, &f))),
                "nonin-ble" if second => values.push((*uuid, nonin_ble(&v, &f, counter))),
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
                            bytes.extend_from_slice(&berrymed_packet(&v, &f, p.pleth(t + dt)));
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
                    values.push((*uuid, bls_cuff_pressure(p)));
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

    #[test]
    fn sfloat_encodes_whole_and_decimal_values_and_nan() {
        // 97 % -> mantissa 97, exponent 0; 3.5 % -> mantissa 35, exponent -1 (0xF).
        assert_eq!(sfloat(Some(97.0), 0), 0x0061);
        assert_eq!(sfloat(Some(3.5), 1), 0xf023);
        assert_eq!(sfloat(None, 0), 0x07ff);
        assert_eq!(sfloat(Some(f64::NAN), 0), 0x07ff);
    }

    #[test]
    fn crc8_matches_the_published_viatom_vectors() {
        // devices.md §5.2: CRC(00)=00, CRC(01)=07, CRC(FF)=F3, CRC(55 17)=28,
        // CRC(AA 17 E8 00 00 00 00)=1B.
        assert_eq!(crc8(&[0x00]), 0x00);
        assert_eq!(crc8(&[0x01]), 0x07);
        assert_eq!(crc8(&[0xff]), 0xf3);
        assert_eq!(crc8(&[0x55, 0x17]), 0x28);
        assert_eq!(crc8(&[0xaa, 0x17, 0xe8, 0, 0, 0, 0]), 0x1b);
    }
}
