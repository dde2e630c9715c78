//! The serial oximeters of issue 15 end to end: the simulator plays each model on a
//! pseudo-terminal in its own protocol and layout, the daemon reads it through the model's
//! profile, and a WebSocket client sees the simulated values.

use crate::util::{Rig, is_reading, scenario};
use std::time::Duration;
use vitalsd::config::load_config_str;

const SOON: Duration = Duration::from_secs(20);

/// The simulator and the daemon for one recliner, room1/A, whose only device is a simulated
/// `profile` on a pty. The scenario's patient in A: SpO2 97, pulse 72, PI 3.5, noise-free.
async fn one_oximeter(profile: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{dir}/data"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"

[[rooms.recliners.devices]]
id = "room1-A-oximeter"
profile = "{profile}"
port = "{dir}/room1-A-oximeter"
simulated = true
"#,
        dir = dir.path().display()
    );
    let cfg = load_config_str(&text, &dir.path().join("test.toml")).unwrap();
    Rig::start_loaded(dir, cfg, scenario("", "")).await
}

/// Waits for a valid reading of each `(metric, value)` from room1/A.
async fn expect_values(rig: &Rig, want: &[(&str, f64)]) {
    let mut c = rig.client().await;
    for (metric, value) in want {
        let m = c
            .wait_for(&format!("A {metric} = {value}"), SOON, |m| {
                is_reading(m, "room1/A", metric) && m["value"].is_number()
            })
            .await;
        assert_eq!(m["value"].as_f64(), Some(*value), "{m}");
        assert_eq!(m["simulated"], true, "{m}");
    }
    c.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_radical_7_color_on_a_pty_gives_its_values_through_masimo_ascii() {
    let rig = one_oximeter("masimo-radical7").await;
    expect_values(
        &rig,
        &[
            ("spo2", 97.0),
            ("pulse_rate", 72.0),
            ("perfusion_index", 3.5),
        ],
    )
    .await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contec_with_old_firmware_on_a_pty_gives_its_values_through_contec_legacy() {
    let rig = one_oximeter("contec-cms50d-legacy").await;
    expect_values(&rig, &[("spo2", 97.0), ("pulse_rate", 72.0)]).await;
    rig.stop().await;
}

/// The V7 device talks only after the daemon's start command and stops after 30 s without
/// its keep-alive: readings still flowing 40 s in prove the daemon sends both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contec_v7_on_a_pty_is_started_and_kept_alive_by_the_daemon() {
    let rig = one_oximeter("contec-cms50d-v7").await;
    let want = [
        ("spo2", 97.0),
        ("pulse_rate", 72.0),
        ("perfusion_index", 3.5),
    ];
    expect_values(&rig, &want).await;
    // A fixed wait on purpose: the device stops after 30 s without a keep-alive, so only real
    // time passing beyond that shows the daemon sends it.
    tokio::time::sleep(Duration::from_secs(40)).await;
    expect_values(&rig, &want).await;
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nonins_in_formats_7_and_8_on_ptys_give_their_values() {
    for profile in ["nonin-oem3-format7", "nonin-3150-format8"] {
        let rig = one_oximeter(profile).await;
        expect_values(&rig, &[("spo2", 97.0), ("pulse_rate", 72.0)]).await;
        rig.stop().await;
    }
}
