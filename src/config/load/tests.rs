use super::*;
use crate::config::check::is_valid_id;
use crate::config::profiles::{BUILTIN_PROFILES, load_profile, load_profiles};
use crate::config::topology::{DEFAULT_BP_INTERVAL, absent_ports};
use crate::config::values::check_tcp;
use crate::config::values::{normalize_address, parse_ble_uuid};
use crate::config::{BleCharacteristic, Endpoint, LinkSettings, TransportKind};
use crate::model::{BedIdx, DeviceIdx, Metric};

/// A valid config; the bad-config table edits one line of it. Line numbers matter.
const BASE: &str = r#"listen = "127.0.0.1:8080"
data_dir = "data"

[[rooms]]
id = "room1"
name = "Room 1"

[[rooms.recliners]]
id = "A"
bp_interval = "5m"

[[rooms.recliners.devices]]
id = "room1-A-oximeter"
profile = "masimo-rad8"
port = "/dev/ttyUSB0"

[[rooms.recliners.devices]]
id = "room1-A-nibp"
profile = "suntech-advantage"
tcp = "192.168.10.21:4001"

[[rooms.recliners]]
id = "B"

[[rooms.recliners.devices]]
id = "room1-B-oximeter"
profile = "nonin-oem3"
port = "/dev/ttyUSB1"
"#;

fn origin() -> &'static Path {
    Path::new("config/test.toml")
}

fn edited(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

#[test]
fn the_shipped_profiles_and_configs_load() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let profiles = load_profiles(Some(&root.join("devices"))).unwrap();
    let names: Vec<&str> = profiles.keys().map(String::as_str).collect();
    assert_eq!(
        names,
        [
            "berrymed-bm1000",
            "contec-cms50d-legacy",
            "contec-cms50d-v7",
            "generic-bls",
            "generic-hrs",
            "generic-plx",
            "masimo-rad8",
            "masimo-radical7",
            "nonin-3150-format8",
            "nonin-3230",
            "nonin-oem3",
            "nonin-oem3-format7",
            "suntech-advantage",
            "wellue-o2ring"
        ]
    );
    for p in profiles.values() {
        assert_eq!(
            p.ble.is_some(),
            p.transport == TransportKind::Ble,
            "{}",
            p.name
        );
    }
    let plx = profiles["generic-plx"].ble.as_ref().unwrap();
    assert_eq!(plx.service, parse_ble_uuid("1822").unwrap());
    assert_eq!(
        plx.characteristics[0],
        BleCharacteristic {
            uuid: parse_ble_uuid("00002a5f-0000-1000-8000-00805f9b34fb").unwrap(),
            protocol: "plx-continuous".to_owned(),
            mode: super::super::BleMode::Notify,
        }
    );
    assert_eq!(profiles["generic-plx"].protocol, "plx-continuous");
    let o2 = profiles["wellue-o2ring"].ble.as_ref().unwrap();
    let poll = o2.poll.as_ref().unwrap();
    assert_eq!(poll.command, [0xaa, 0x17, 0xe8, 0, 0, 0, 0, 0x1b]);
    assert_eq!(poll.every, Duration::from_secs(2));
    let rad8 = &profiles["masimo-rad8"];
    assert_eq!(rad8.protocol, "masimo-ascii");
    assert_eq!(rad8.expected_period, Duration::from_secs(1));
    assert_eq!(
        rad8.link,
        LinkSettings {
            baud: 9600,
            data_bits: 8,
            parity: super::super::Parity::None,
            stop_bits: 1,
            flow_control: super::super::FlowControl::None,
        }
    );
    assert_eq!(
        profiles["nonin-oem3"].metrics,
        [Metric::Spo2, Metric::PulseRate, Metric::Pleth]
    );
    let cuff = &profiles["suntech-advantage"];
    assert_eq!(cuff.kind, super::super::DeviceKind::Bp);
    assert_eq!(cuff.protocol, "suntech");
    assert_eq!(cuff.metrics.len(), 5);

    let real = load_config(&root.join("config/vitalsd.toml")).unwrap();
    assert_eq!(real.beds.len(), 2);
    assert_eq!(real.devices.len(), 4);
    assert!(
        real.devices
            .iter()
            .any(|d| matches!(d.endpoint, Endpoint::Tcp { .. }))
    );

    let demo = load_config(&root.join("config/demo.toml")).unwrap();
    assert_eq!(demo.listen, "127.0.0.1:8080".parse::<SocketAddr>().unwrap());
    assert_eq!(demo.data_dir, root.join("config").join("../data/demo"));
    let ids: Vec<(&str, &str, String)> = demo
        .devices
        .iter()
        .map(|d| {
            (
                d.id.as_str(),
                d.profile.name.as_str(),
                d.endpoint.to_string(),
            )
        })
        .collect();
    assert_eq!(
        ids,
        [
            (
                "room1-A-oximeter",
                "masimo-rad8",
                "serial /tmp/vitalsd-demo/room1-A-oximeter".to_owned()
            ),
            (
                "room1-A-nibp",
                "suntech-advantage",
                "tcp 127.0.0.1:4101".to_owned()
            ),
            (
                "room1-A-hr",
                "generic-hrs",
                "ble 00:1C:05:A1:00:0A".to_owned()
            ),
            (
                "room1-B-oximeter",
                "generic-plx",
                "ble 00:1C:05:B1:00:0B".to_owned()
            ),
            (
                "room1-B-nibp",
                "suntech-advantage",
                "serial /tmp/vitalsd-demo/room1-B-nibp".to_owned()
            ),
        ]
    );
    assert!(
        demo.beds
            .iter()
            .all(|b| b.bp_interval == Duration::from_secs(60))
    );
}

#[test]
fn every_file_in_devices_is_built_in() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("devices");
    let mut on_disk: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .map(|p| p.file_stem().unwrap().to_str().unwrap().to_owned())
        .collect();
    on_disk.sort();
    let built_in: Vec<String> = BUILTIN_PROFILES
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    assert_eq!(on_disk, built_in);
    for (name, text) in BUILTIN_PROFILES {
        let on_disk = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("devices/{name}.toml")),
        )
        .unwrap();
        assert_eq!(&on_disk, text, "{name}");
    }
}

#[test]
fn a_valid_config_is_flattened_in_config_order_with_defaults() {
    let cfg = load_config_str(BASE, origin()).unwrap();
    assert_eq!(cfg.source, origin());
    assert_eq!(cfg.data_dir, Path::new("config/data"));
    assert_eq!(cfg.rooms.len(), 1);
    assert_eq!(cfg.rooms[0].beds, [BedIdx(0), BedIdx(1)]);
    let a = cfg.bed(BedIdx(0));
    assert_eq!(
        (a.id.as_str(), a.recliner.as_str(), a.label.as_str(), a.room),
        ("room1/A", "A", "Room 1 / A", 0)
    );
    assert_eq!(a.devices, [DeviceIdx(0), DeviceIdx(1)]);
    let b = cfg.bed(BedIdx(1));
    assert_eq!(b.bp_interval, DEFAULT_BP_INTERVAL);
    assert_eq!(b.devices, [DeviceIdx(2)]);
    let nibp = cfg.device(DeviceIdx(1));
    assert_eq!(nibp.bed, BedIdx(0));
    assert_eq!(
        nibp.endpoint,
        Endpoint::Tcp {
            addr: "192.168.10.21:4001".to_owned()
        }
    );
    assert_eq!(cfg.device(DeviceIdx(2)).profile.name, "nonin-oem3");

    let no_listen = load_config_str(&edited("listen = \"127.0.0.1:8080\"\n", ""), origin());
    assert_eq!(
        no_listen.unwrap().listen,
        DEFAULT_LISTEN.parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn bad_configs_name_the_line_key_and_expectation() {
    // (what, replace, by, line, column, key, message fragments)
    type Case<'a> = (
        &'a str,
        &'a str,
        &'a str,
        usize,
        usize,
        &'a str,
        &'a [&'a str],
    );
    let table: &[Case<'_>] = &[
        (
            "unknown key",
            "id = \"A\"\n",
            "id = \"A\"\nalarm = 1\n",
            10,
            1,
            "rooms[0].recliners[0].alarm",
            &["unknown field `alarm`", "expected one of `id`, `label`"],
        ),
        (
            "bad listen",
            "listen = \"127.0.0.1:8080\"",
            "listen = \"localhost:8080\"",
            1,
            10,
            "listen",
            &[
                "\"localhost:8080\" is not a socket address",
                "expected an IP address and port",
            ],
        ),
        (
            "bad id",
            "id = \"room1\"",
            "id = \"room 1\"",
            5,
            6,
            "rooms[0].id",
            &[
                "\"room 1\" is not a valid id",
                "expected 1 to 64 characters",
            ],
        ),
        (
            "duplicate device id",
            "id = \"room1-B-oximeter\"",
            "id = \"room1-A-oximeter\"",
            26,
            6,
            "rooms[0].recliners[1].devices[0].id",
            &[
                "duplicate device id \"room1-A-oximeter\" (first used on line 13)",
                "expected an id unique",
            ],
        ),
        (
            "both port and tcp",
            "port = \"/dev/ttyUSB0\"",
            "port = \"/dev/ttyUSB0\"\ntcp = \"10.0.0.1:4001\"",
            16,
            7,
            "rooms[0].recliners[0].devices[0].tcp",
            &["has both port and tcp", "expected exactly one of them"],
        ),
        (
            "neither port nor tcp",
            "tcp = \"192.168.10.21:4001\"",
            "",
            17,
            1,
            "rooms[0].recliners[0].devices[1]",
            &[
                "\"room1-A-nibp\" has neither port nor tcp",
                "expected exactly one of port",
            ],
        ),
        (
            "unknown profile",
            "profile = \"masimo-rad8\"",
            "profile = \"masimo-rad9\"",
            14,
            11,
            "rooms[0].recliners[0].devices[0].profile",
            &[
                "unknown profile \"masimo-rad9\", expected one of: berrymed-bm1000, contec-cms50d-legacy, contec-cms50d-v7, generic-bls, generic-hrs, generic-plx, masimo-rad8, masimo-radical7, nonin-3150-format8, nonin-3230, nonin-oem3, nonin-oem3-format7, suntech-advantage, wellue-o2ring",
            ],
        ),
        (
            "bad duration",
            "bp_interval = \"5m\"",
            "bp_interval = \"5 minutes\"",
            10,
            15,
            "rooms[0].recliners[0].bp_interval",
            &["expected a duration such as", "\"5 minutes\""],
        ),
        (
            "duration out of range",
            "bp_interval = \"5m\"",
            "bp_interval = \"1s\"",
            10,
            15,
            "rooms[0].recliners[0].bp_interval",
            &["\"1s\" is out of range, expected a duration between 5s and 24h"],
        ),
        (
            "duplicate port",
            "port = \"/dev/ttyUSB1\"",
            "port = \"/dev/ttyUSB0\"",
            28,
            8,
            "rooms[0].recliners[1].devices[0].port",
            &[
                "serial port \"/dev/ttyUSB0\" of device \"room1-B-oximeter\" is already bound to device \"room1-A-oximeter\" (rooms[0].recliners[0].devices[0]) at ",
                ":15, expected each port or device server bound to one device",
            ],
        ),
        (
            "duplicate tcp address",
            "port = \"/dev/ttyUSB1\"",
            "tcp = \"192.168.10.21:4001\"",
            28,
            7,
            "rooms[0].recliners[1].devices[0].tcp",
            &[
                "tcp address \"192.168.10.21:4001\" of device \"room1-B-oximeter\" is already bound to device \"room1-A-nibp\"",
            ],
        ),
        (
            "bad tcp",
            "tcp = \"192.168.10.21:4001\"",
            "tcp = \"192.168.10.21:0\"",
            20,
            7,
            "rooms[0].recliners[0].devices[1].tcp",
            &[
                "\"192.168.10.21:0\" is not host:port",
                "expected a host and a port 1..65535",
            ],
        ),
        (
            "tcp without a port",
            "tcp = \"192.168.10.21:4001\"",
            "tcp = \"192.168.10.21\"",
            20,
            7,
            "rooms[0].recliners[0].devices[1].tcp",
            &["is not host:port"],
        ),
        (
            "wrong type",
            "bp_interval = \"5m\"",
            "bp_interval = 300",
            10,
            15,
            "rooms[0].recliners[0].bp_interval",
            &["invalid type: integer `300`, expected a string"],
        ),
        (
            "missing key",
            "profile = \"nonin-oem3\"\n",
            "",
            25,
            1,
            "rooms[0].recliners[1].devices[0].profile",
            &["missing field `profile`", "expected this key to be set"],
        ),
        (
            "duplicate recliner",
            "id = \"B\"",
            "id = \"A\"",
            23,
            6,
            "rooms[0].recliners[1].id",
            &["duplicate recliner id \"A\" in room \"room1\" (first used on line 9)"],
        ),
        (
            "room without recliners",
            "[[rooms.recliners]]\nid = \"A\"",
            "[[rooms]]\nid = \"room2\"\nname = \"Room 2\"\n[[rooms.recliners]]\nid = \"A\"",
            4,
            1,
            "rooms[0].recliners",
            &["room \"room1\" has no recliners", "expected at least one"],
        ),
        (
            "recliner without devices",
            "[[rooms.recliners.devices]]\nid = \"room1-B-oximeter\"\nprofile = \"nonin-oem3\"\nport = \"/dev/ttyUSB1\"\n",
            "",
            22,
            1,
            "rooms[0].recliners[1].devices",
            &["recliner \"B\" has no devices", "expected at least one"],
        ),
        (
            "misspelt table",
            "[[rooms]]",
            "[[roms]]",
            4,
            3,
            "roms",
            &["unknown field `roms`"],
        ),
        (
            "syntax error",
            "name = \"Room 1\"",
            "name = \"Room 1",
            6,
            15,
            "",
            &["invalid basic string"],
        ),
    ];
    for (what, from, to, line, column, key, fragments) in table {
        let err = load_config_str(&edited(from, to), origin()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("config/test.toml:{line}:{column}: ")),
            "{what}: {text}"
        );
        assert_eq!(err.key(), Some(*key), "{what}: {text}");
        for f in *fragments {
            assert!(text.contains(f), "{what}: {text:?} lacks {f:?}");
        }
    }
}

#[test]
fn a_config_without_rooms_is_rejected() {
    let err = load_config_str("data_dir = \"d\"\n", origin()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "config/test.toml:1:1: rooms: no rooms, expected at least one [[rooms]] table"
    );
}

#[test]
fn the_error_display_has_file_line_column_key_and_message() {
    let err = load_config_str(
        &edited("profile = \"masimo-rad8\"", "profile = \"masimo-rad9\""),
        Path::new("config/vitalsd.toml"),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "config/vitalsd.toml:14:11: rooms[0].recliners[0].devices[0].profile: unknown profile \"masimo-rad9\", expected one of: berrymed-bm1000, contec-cms50d-legacy, contec-cms50d-v7, generic-bls, generic-hrs, generic-plx, masimo-rad8, masimo-radical7, nonin-3150-format8, nonin-3230, nonin-oem3, nonin-oem3-format7, suntech-advantage, wellue-o2ring"
    );
}

const PROFILE: &str = r#"vendor = "Acme"
model = "Ox-1"
kind = "oximeter"
transport = "serial"
protocol = "masimo-ascii"
metrics = ["spo2", "pulse_rate"]
expected_period = "1s"
no_signal = "dashes"
[link]
baud = 9600
data_bits = 8
parity = "none"
stop_bits = 1
flow_control = "none"
"#;

/// A valid BLE profile; the bad-BLE-profile table edits one line of it.
const BLE_PROFILE: &str = r#"vendor = "Acme"
model = "Ring-1"
kind = "oximeter"
transport = "ble"
metrics = ["spo2", "pulse_rate"]
expected_period = "2s"
no_signal = "0xFF"
[ble]
service = "14839ac4-7d7e-415c-9a42-167340cf2339"
write = "8b00ace7-eb0b-49b0-bbe9-9aee0a26e1a3"
poll_command = "aa17e8000000001b"
poll_every = "2s"
[[ble.characteristics]]
uuid = "0734594a-a8e7-4b1a-a6b1-cd5243059a57"
protocol = "viatom-o2"
mode = "poll"
[[ble.characteristics]]
uuid = "2a19"
protocol = "battery"
mode = "read"
"#;

#[test]
fn ble_uuids_are_full_or_16_bit_sig_numbers() {
    let plx = uuid::Uuid::parse_str("00001822-0000-1000-8000-00805f9b34fb").unwrap();
    for s in [
        "1822",
        "0x1822",
        "0X1822",
        " 1822 ",
        "00001822-0000-1000-8000-00805F9B34FB",
    ] {
        assert_eq!(parse_ble_uuid(s), Some(plx), "{s:?}");
    }
    for s in [
        "",
        "182",
        "18220",
        "0x18g2",
        "49535343-fe7d-4ae5-8fa9",
        "hello",
    ] {
        assert_eq!(parse_ble_uuid(s), None, "{s:?}");
    }
}

#[test]
fn bluetooth_addresses_are_six_hex_pairs_normalized_to_upper_case() {
    assert_eq!(
        normalize_address("00:1c:05:ff:4e:2a").as_deref(),
        Some("00:1C:05:FF:4E:2A")
    );
    for bad in [
        "00:1C:05:FF:4E",
        "00-1C-05-FF-4E-2A",
        "001C05FF4E2A",
        "00:1C:05:FF:4E:2G",
        "",
    ] {
        assert_eq!(normalize_address(bad), None, "{bad:?}");
    }
}

#[test]
fn bad_ble_profiles_name_the_line_key_and_expectation() {
    let ok = load_profile("acme-ring1", BLE_PROFILE, Path::new("x.toml")).unwrap();
    assert_eq!(ok.protocol, "viatom-o2");
    assert_eq!(ok.ble.as_ref().unwrap().characteristics.len(), 2);
    let table: &[(&str, &str, usize, &str, &str)] = &[
        (
            "service = \"14839ac4-7d7e-415c-9a42-167340cf2339\"",
            "service = \"14839\"",
            9,
            "ble.service",
            "\"14839\" is not a UUID, expected a 16-bit SIG number",
        ),
        (
            "protocol = \"viatom-o2\"",
            "protocol = \"viatom\"",
            15,
            "ble.characteristics[0].protocol",
            "unknown protocol \"viatom\", expected one of:",
        ),
        (
            "mode = \"poll\"",
            "mode = \"stream\"",
            16,
            "ble.characteristics[0].mode",
            "unknown variant `stream`",
        ),
        (
            "poll_command = \"aa17e8000000001b\"",
            "poll_command = \"aa17e8zz\"",
            11,
            "ble.poll_command",
            "is not hex bytes",
        ),
        (
            "poll_every = \"2s\"",
            "poll_every = \"10ms\"",
            12,
            "ble.poll_every",
            "expected a duration between 200ms and 60s",
        ),
        (
            "write = \"8b00ace7-eb0b-49b0-bbe9-9aee0a26e1a3\"\n",
            "",
            8,
            "ble",
            "write, poll_command and poll_every go together",
        ),
        (
            "uuid = \"2a19\"",
            "uuid = \"0734594a-a8e7-4b1a-a6b1-cd5243059a57\"",
            18,
            "ble.characteristics[1].uuid",
            "is listed twice",
        ),
        (
            "transport = \"ble\"",
            "transport = \"ble\"\nprotocol = \"viatom-o2\"",
            5,
            "protocol",
            "a BLE profile names a protocol per characteristic",
        ),
        (
            "transport = \"ble\"",
            "transport = \"serial\"",
            4,
            "protocol",
            "a serial profile has no protocol",
        ),
    ];
    for (from, to, line, key, fragment) in table {
        assert!(BLE_PROFILE.contains(from), "{from}");
        let text = BLE_PROFILE.replacen(from, to, 1);
        let err = load_profile("acme-ring1", &text, Path::new("x.toml")).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.key(), Some(*key), "{msg}");
        assert_eq!(err.line(), Some(*line), "{msg}");
        assert!(msg.contains(fragment), "{msg:?} lacks {fragment:?}");
    }
    let no_ble = BLE_PROFILE.split("[ble]").next().unwrap().to_owned();
    let err = load_profile("acme-ring1", &no_ble, Path::new("x.toml")).unwrap_err();
    assert_eq!(err.key(), Some("ble"), "{err}");
    assert!(
        err.to_string().contains("a BLE profile has no [ble] table"),
        "{err}"
    );
}

#[test]
fn ble_bindings_take_an_address_and_an_optional_name_pattern() {
    let ble = edited(
        "profile = \"nonin-oem3\"\nport = \"/dev/ttyUSB1\"",
        "profile = \"generic-plx\"\naddress = \"00:1c:05:ff:4e:2a\"\nname = \"PLX*\"",
    );
    let cfg = load_config_str(&ble, origin()).unwrap();
    assert_eq!(
        cfg.devices[2].endpoint,
        Endpoint::Ble {
            address: "00:1C:05:FF:4E:2A".to_owned(),
            name: Some("PLX*".to_owned()),
        }
    );
    assert_eq!(cfg.devices[2].endpoint.to_string(), "ble 00:1C:05:FF:4E:2A");
    let table: &[(&str, &str, usize, &str, &str)] = &[
        (
            "address = \"00:1c:05:ff:4e:2a\"",
            "address = \"00:1c:05:ff:4e\"",
            28,
            "rooms[0].recliners[1].devices[0].address",
            "is not a Bluetooth address, expected six hex pairs",
        ),
        (
            "address = \"00:1c:05:ff:4e:2a\"\nname = \"PLX*\"",
            "port = \"/dev/ttyUSB9\"",
            28,
            "rooms[0].recliners[1].devices[0].port",
            "is a Bluetooth LE device, expected address",
        ),
        (
            "profile = \"generic-plx\"",
            "profile = \"nonin-oem3\"",
            28,
            "rooms[0].recliners[1].devices[0].address",
            "is a serial device, expected port",
        ),
        (
            "address = \"00:1c:05:ff:4e:2a\"",
            "address = \"00:1c:05:ff:4e:2a\"\nport = \"/dev/ttyUSB9\"",
            28,
            "rooms[0].recliners[1].devices[0].address",
            "has both port and address, expected exactly one of them",
        ),
        (
            "address = \"00:1c:05:ff:4e:2a\"\n",
            "",
            28,
            "rooms[0].recliners[1].devices[0].name",
            "has a name pattern but no address",
        ),
    ];
    for (from, to, line, key, fragment) in table {
        assert!(ble.contains(from), "{from}");
        let text = ble.replacen(from, to, 1);
        let err = load_config_str(&text, origin()).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.key(), Some(*key), "{msg}");
        assert_eq!(err.line(), Some(*line), "{msg}");
        assert!(msg.contains(fragment), "{msg:?} lacks {fragment:?}");
    }
    // One device per address.
    let twice = ble.replace("/dev/ttyUSB0", "/dev/ttyUSB7").replacen(
        "profile = \"masimo-rad8\"\nport = \"/dev/ttyUSB7\"",
        "profile = \"generic-plx\"\naddress = \"00:1C:05:FF:4E:2A\"",
        1,
    );
    let err = load_config_str(&twice, origin()).unwrap_err();
    assert!(
        err.to_string()
            .contains("is already bound to device \"room1-A-oximeter\""),
        "{err}"
    );
}

#[test]
fn bad_profiles_name_the_line_key_and_expectation() {
    let table: &[(&str, &str, usize, &str, &str)] = &[
        (
            "protocol = \"masimo-ascii\"",
            "protocol = \"masimo\"",
            5,
            "protocol",
            "unknown protocol \"masimo\", expected one of: masimo-ascii, nonin-format2, suntech",
        ),
        (
            "\"pulse_rate\"]",
            "\"pulse\"]",
            6,
            "metrics[1]",
            "unknown metric \"pulse\", expected one of: spo2, pulse_rate,",
        ),
        (
            "baud = 9600",
            "baud = 0",
            10,
            "link.baud",
            "expected a baud rate above 0",
        ),
        (
            "data_bits = 8",
            "data_bits = 9",
            11,
            "link.data_bits",
            "9 is out of range, expected 5 to 8",
        ),
        (
            "stop_bits = 1",
            "stop_bits = 3",
            13,
            "link.stop_bits",
            "3 is out of range, expected 1 or 2",
        ),
        (
            "parity = \"none\"",
            "parity = \"mark\"",
            12,
            "link.parity",
            "unknown variant `mark`, expected one of `none`, `odd`, `even`",
        ),
        (
            "kind = \"oximeter\"",
            "kind = \"ecg\"",
            3,
            "kind",
            "unknown variant `ecg`",
        ),
        (
            "expected_period = \"1s\"",
            "expected_period = \"1h\"",
            7,
            "expected_period",
            "expected a duration between 100ms and 10m",
        ),
        (
            "no_signal",
            "no_signal_text",
            8,
            "no_signal_text",
            "unknown field `no_signal_text`",
        ),
    ];
    for (from, to, line, key, fragment) in table {
        let text = PROFILE.replacen(from, to, 1);
        let err = load_profile("acme-ox1", &text, Path::new("devices/acme-ox1.toml")).unwrap_err();
        let shown = err.to_string();
        assert!(
            shown.starts_with(&format!("devices/acme-ox1.toml:{line}:")),
            "{to}: {shown}"
        );
        assert_eq!(err.key(), Some(*key), "{to}: {shown}");
        assert!(shown.contains(fragment), "{to}: {shown}");
    }
    let ok = load_profile("acme-ox1", PROFILE, Path::new("x.toml")).unwrap();
    assert_eq!(ok.name, "acme-ox1");
}

#[test]
fn a_devices_dir_adds_and_replaces_profiles() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("devices");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("acme-ox1.toml"), PROFILE).unwrap();
    let slow = PROFILE.replace("expected_period = \"1s\"", "expected_period = \"2s\"");
    std::fs::write(dir.join("masimo-rad8.toml"), slow).unwrap();
    std::fs::write(dir.join("README.md"), "not a profile").unwrap();
    let profiles = load_profiles(Some(&dir)).unwrap();
    assert_eq!(profiles.len(), BUILTIN_PROFILES.len() + 1);
    assert_eq!(profiles["acme-ox1"].vendor, "Acme");
    assert_eq!(
        profiles["masimo-rad8"].expected_period,
        Duration::from_secs(2)
    );

    let cfg_path = root.path().join("vitalsd.toml");
    let text = format!(
        "devices_dir = \"devices\"\n{}",
        edited("\"masimo-rad8\"", "\"acme-ox1\"")
    );
    std::fs::write(&cfg_path, text).unwrap();
    let cfg = load_config(&cfg_path).unwrap();
    assert_eq!(cfg.device(DeviceIdx(0)).profile.model, "Ox-1");

    std::fs::write(dir.join("bad name.toml"), PROFILE).unwrap();
    let err = load_profiles(Some(&dir)).unwrap_err();
    assert!(
        err.to_string().contains("is not a valid profile name"),
        "{err}"
    );
}

#[test]
fn a_missing_devices_dir_or_config_file_is_an_io_error_naming_it() {
    let err = load_config_str(
        &format!("devices_dir = \"no-such-dir\"\n{BASE}"),
        Path::new("/nonexistent/vitalsd.toml"),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Io {
                what: "devices_dir",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "/nonexistent/no-such-dir: cannot read devices_dir"
    );
    let err = load_config(Path::new("/nonexistent/vitalsd.toml")).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/nonexistent/vitalsd.toml: cannot read config file"
    );
}

#[test]
fn absent_serial_ports_are_listed_and_present_ones_and_tcp_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let present = dir.path().join("ttyFAKE0");
    std::fs::write(&present, "").unwrap();
    let text = edited("/dev/ttyUSB0", present.to_str().unwrap())
        .replace("/dev/ttyUSB1", "/nonexistent/ttyUSB1");
    let cfg = load_config_str(&text, origin()).unwrap();
    assert_eq!(
        absent_ports(&cfg),
        [
            "config/test.toml: device \"room1-B-oximeter\" of bed room1/B: serial port /nonexistent/ttyUSB1 does not exist"
        ]
    );
}

#[test]
fn tcp_addresses_accept_host_names_and_bracketed_ipv6_only_with_a_port() {
    let table = [
        ("192.168.10.21:4001", true),
        ("moxa-1.clinic.lan:4001", true),
        ("[fe80::1]:4001", true),
        ("host:65535", true),
        ("host:65536", false),
        ("host:0", false),
        ("host:", false),
        (":4001", false),
        ("fe80::1:4001", false),
        ("host:+80", false),
        ("ho st:80", false),
        ("host", false),
    ];
    for (addr, ok) in table {
        assert_eq!(check_tcp(addr), ok, "{addr}");
    }
}

#[test]
fn ids_allow_only_safe_characters_up_to_64() {
    let long = "a".repeat(64);
    let too_long = "a".repeat(65);
    let table = [
        ("room1", true),
        ("room1-A_oximeter", true),
        (long.as_str(), true),
        (too_long.as_str(), false),
        ("", false),
        ("room/1", false),
        ("räum", false),
    ];
    for (id, ok) in table {
        assert_eq!(is_valid_id(id), ok, "{id}");
    }
}

#[test]
fn line_and_column_count_characters_not_bytes() {
    assert_eq!(line_col("a = 1\nbé = 2", 10), (2, 4));
    assert_eq!(line_col("x", 99), (1, 2));
    assert_eq!(line_col("é", 1), (1, 1));
}

#[test]
fn retention_is_optional_in_days_and_at_least_a_day() {
    assert_eq!(load_config_str(BASE, origin()).unwrap().retention, None);
    let with = BASE.replacen(
        "[[rooms]]",
        "[storage]\nretention = \"30d\"\n\n[[rooms]]",
        1,
    );
    assert_eq!(
        load_config_str(&with, origin()).unwrap().retention,
        Some(Duration::from_secs(30 * 86_400))
    );
    let short = BASE.replacen("[[rooms]]", "[storage]\nretention = \"1h\"\n\n[[rooms]]", 1);
    let err = load_config_str(&short, origin()).unwrap_err().to_string();
    assert!(
        err.contains("storage.retention") && err.contains("1d"),
        "{err}"
    );
}

#[test]
fn the_report_time_zone_is_an_iana_name_or_the_systems() {
    assert_eq!(
        load_config_str(BASE, origin()).unwrap().report_time_zone,
        None
    );
    let with = BASE.replacen(
        "[[rooms]]",
        "[report]\ntime_zone = \"Europe/Berlin\"\n\n[[rooms]]",
        1,
    );
    assert_eq!(
        load_config_str(&with, origin())
            .unwrap()
            .report_time_zone
            .as_deref(),
        Some("Europe/Berlin")
    );
    let bad = BASE.replacen(
        "[[rooms]]",
        "[report]\ntime_zone = \"Europe/Berlyn\"\n\n[[rooms]]",
        1,
    );
    let err = load_config_str(&bad, origin()).unwrap_err().to_string();
    assert!(
        err.contains("report.time_zone")
            && err.contains("\"Europe/Berlyn\"")
            && err.contains("expected an IANA name"),
        "{err}"
    );
    let unknown_key = BASE.replacen("[[rooms]]", "[report]\ntimezone = \"UTC\"\n\n[[rooms]]", 1);
    assert!(load_config_str(&unknown_key, origin()).is_err());
}

fn with_alarms(alarms: &str) -> Result<Config, ConfigError> {
    let text = BASE.replacen("[[rooms]]", &format!("{alarms}\n\n[[rooms]]"), 1);
    load_config_str(&text, origin())
}

#[test]
fn escalation_is_per_priority_with_documented_defaults_and_overrides() {
    use crate::model::{Breakthrough, PriorityEscalation};
    let d = load_config_str(BASE, origin()).unwrap().alarms.policy;
    assert_eq!(
        d.escalation.medium.renotify_every,
        Some(Duration::from_secs(180))
    );
    assert_eq!(
        d.escalation.medium.escalate_after,
        Some(Duration::from_secs(600))
    );
    assert!(!d.escalation.low.notify);
    assert_eq!(d.escalation.page_interval, Duration::from_secs(60));
    assert_eq!(d.audio.breakthrough, Breakthrough::Medium);
    let cfg = with_alarms(
        "[alarms]\nrenotify_every = \"1m\"\npage_interval = \"0s\"\npause_breakthrough = \"all\"\n\n\
         [alarms.escalation.medium]\nrenotify_every = \"never\"\nescalate_after = \"30s\"\nlevels = 2\n\n\
         [alarms.escalation.low]\nnotify = true\n",
    )
    .unwrap();
    let p = cfg.alarms.policy;
    assert_eq!(
        p.escalation.high.renotify_every,
        Some(Duration::from_secs(60))
    );
    assert_eq!(
        p.escalation.medium,
        PriorityEscalation {
            notify: true,
            renotify_every: None,
            escalate_after: Some(Duration::from_secs(30)),
            levels: 2
        }
    );
    assert!(p.escalation.low.notify);
    assert_eq!(p.escalation.page_interval, Duration::ZERO);
    assert_eq!(p.audio.breakthrough, Breakthrough::All);
}

#[test]
fn bad_escalation_keys_name_the_line_key_and_expectation() {
    let cases = [
        (
            "[alarms]\nrepeat_medium = true\n",
            "alarms.repeat_medium",
            "unknown field",
        ),
        (
            "[alarms.escalation.medium]\nrenotify_every = \"5s\"\n",
            "alarms.escalation.medium.renotify_every",
            "between 10s and 1h (or \"never\")",
        ),
        (
            "[alarms.escalation.high]\nlevels = 0\n",
            "alarms.escalation.high.levels",
            "expected 1 to 10",
        ),
        (
            "[alarms.escalation.urgent]\nlevels = 2\n",
            "alarms.escalation.urgent",
            "unknown field",
        ),
        (
            "[alarms]\nrenotify_every = \"1m\"\n\n[alarms.escalation.high]\nrenotify_every = \"2m\"\n",
            "alarms.escalation.high.renotify_every",
            "set twice",
        ),
        (
            "[alarms]\npause_breakthrough = \"low\"\n",
            "alarms.pause_breakthrough",
            "expected one of: high, medium, all",
        ),
        (
            "[alarms]\npage_interval = \"1h\"\n",
            "alarms.page_interval",
            "between 0s and 10m",
        ),
    ];
    for (alarms, key, want) in cases {
        let err = with_alarms(alarms).unwrap_err();
        let text = err.to_string();
        assert_eq!(err.key(), Some(key), "{text}");
        assert!(text.contains(want), "{text}");
        assert!(err.line().is_some_and(|l| l > 1), "{text}");
    }
}

#[test]
fn one_device_server_written_as_aliases_of_loopback_cannot_be_bound_twice() {
    let first = edited("tcp = \"192.168.10.21:4001\"", "tcp = \"127.0.0.1:4001\"");
    for alias in [
        "localhost:4001",
        "127.1:4001",
        "[::1]:4001",
        "LOCALHOST:4001",
    ] {
        let text = first.replacen("port = \"/dev/ttyUSB1\"", &format!("tcp = \"{alias}\""), 1);
        let err = load_config_str(&text, origin()).unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.line(), Some(28), "{msg}");
        assert_eq!(
            err.key(),
            Some("rooms[0].recliners[1].devices[0].tcp"),
            "{msg}"
        );
        assert!(
            msg.contains(
                "of device \"room1-B-oximeter\" is already bound to device \"room1-A-nibp\""
            ) && msg.contains("config/test.toml:20"),
            "{alias}: {msg}"
        );
    }
    // Another port on the same host is another device server.
    let text = first.replacen("port = \"/dev/ttyUSB1\"", "tcp = \"localhost:4002\"", 1);
    assert!(load_config_str(&text, origin()).is_ok());
}

#[test]
fn the_nibp_overdue_grace_is_configurable_and_bounded() {
    let text = BASE.replacen(
        "[[rooms]]",
        "[alarms]\nnibp_overdue_grace = \"5m\"\n\n[[rooms]]",
        1,
    );
    let cfg = load_config_str(&text, origin()).unwrap();
    assert_eq!(cfg.alarms.policy.nibp_grace, Duration::from_secs(300));
    let cfg = load_config_str(BASE, origin()).unwrap();
    assert_eq!(cfg.alarms.policy.nibp_grace, Duration::from_secs(120));
    for bad in ["\"5s\"", "\"2h\"", "\"soon\""] {
        let text = BASE.replacen(
            "[[rooms]]",
            &format!("[alarms]\nnibp_overdue_grace = {bad}\n\n[[rooms]]"),
            1,
        );
        let err = load_config_str(&text, origin()).unwrap_err();
        assert_eq!(err.key(), Some("alarms.nibp_overdue_grace"), "{err}");
        assert_eq!(err.line(), Some(5), "{err}");
    }
}

#[test]
fn hl7_endpoints_are_read_with_defaults_and_their_errors_name_the_file_line_and_key() {
    assert!(load_config_str(BASE, origin()).unwrap().hl7.is_empty());
    let with = |table: &str| BASE.replacen("[[rooms]]", &format!("{table}\n\n[[rooms]]"), 1);
    let cfg = load_config_str(
        &with(
            "[[hl7]]\nkind = \"pcd01\"\nendpoint = \"mllp://ehr:2575\"\ninterval = \"30s\"\n\
             receiving_application = \"EHR\"\n\n[[hl7]]\nname = \"acm\"\nkind = \"pcd04\"\n\
             endpoint = \"mllps://[::1]:6661\"",
        ),
        origin(),
    )
    .unwrap();
    let (a, b) = (&cfg.hl7[0], &cfg.hl7[1]);
    assert_eq!(
        (a.name.as_str(), a.kind),
        ("hl7-pcd01-1", super::super::Hl7Kind::Pcd01)
    );
    assert_eq!((a.host.as_str(), a.port, a.tls), ("ehr", 2575, false));
    assert_eq!(a.interval, Duration::from_secs(30));
    assert_eq!(a.ack_timeout, Duration::from_secs(10));
    assert_eq!(a.down_after, Duration::from_secs(30));
    assert_eq!(a.sending_application, "vitalsd");
    assert_eq!(a.receiving_application, "EHR");
    assert_eq!(
        (b.name.as_str(), b.host.as_str(), b.port, b.tls),
        ("acm", "::1", 6661, true)
    );
    for (table, key, line, says) in [
        (
            "[[hl7]]\nkind = \"pcd02\"\nendpoint = \"e:1\"",
            "hl7[0].kind",
            5,
            "pcd01",
        ),
        (
            "[[hl7]]\nkind = \"pcd01\"\nendpoint = \"ehr\"",
            "hl7[0].endpoint",
            6,
            "no port",
        ),
        (
            "[[hl7]]\nkind = \"pcd01\"\nendpoint = \"e:1\"\ninterval = \"1s\"",
            "hl7[0].interval",
            7,
            "5s",
        ),
        (
            "[[hl7]]\nkind = \"pcd04\"\nendpoint = \"e:1\"\ninterval = \"1m\"",
            "hl7[0].interval",
            7,
            "pcd01",
        ),
        (
            "[[hl7]]\nkind = \"pcd01\"\nendpoint = \"e:1\"\nca = \"ca.pem\"",
            "hl7[0].ca",
            7,
            "tls = true",
        ),
        (
            "[[hl7]]\nkind = \"pcd01\"\nendpoint = \"e:1\"\nsending_facility = \" \"",
            "hl7[0].sending_facility",
            7,
            "empty",
        ),
        (
            "[[hl7]]\nname = \"x\"\nkind = \"pcd01\"\nendpoint = \"e:1\"\n\n\
             [[hl7]]\nname = \"x\"\nkind = \"pcd04\"\nendpoint = \"e:2\"",
            "hl7[1].name",
            10,
            "duplicate",
        ),
    ] {
        let err = load_config_str(&with(table), origin()).unwrap_err();
        assert_eq!(err.key(), Some(key), "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(err.to_string().contains("config/test.toml"), "{err}");
    }
    let unknown = load_config_str(
        &with("[[hl7]]\nkind = \"pcd01\"\nendpoint = \"e:1\"\nport = 2"),
        origin(),
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("port"), "{unknown}");
}

#[test]
fn mqtt_is_optional_and_its_errors_name_the_file_line_and_key() {
    assert_eq!(load_config_str(BASE, origin()).unwrap().mqtt, None);
    let with = |table: &str| BASE.replacen("[[rooms]]", &format!("{table}\n\n[[rooms]]"), 1);
    let ok = load_config_str(
        &with("[mqtt]\nurl = \"mqtt://broker:1884\"\nsite = \"north\"\nkeepalive = \"10s\""),
        origin(),
    )
    .unwrap()
    .mqtt
    .expect("[mqtt] read");
    assert_eq!((ok.host.as_str(), ok.port), ("broker", 1884));
    assert_eq!(ok.client_id, "vitalsd-north");
    assert_eq!(ok.keepalive, Duration::from_secs(10));
    assert_eq!(ok.down_after, Duration::from_secs(30));
    for (table, key, line, says) in [
        (
            "[mqtt]\nurl = \"http://b\"\nsite = \"n\"",
            "mqtt.url",
            5,
            "mqtt://",
        ),
        (
            "[mqtt]\nurl = \"mqtt://b\"\nsite = \"n\"\nca = \"ca.pem\"",
            "mqtt.ca",
            7,
            "mqtts://",
        ),
        (
            "[mqtt]\nurl = \"mqtts://b\"\nsite = \"n\"\ncert = \"test.toml\"",
            "mqtt.cert",
            7,
            "key",
        ),
        (
            "[mqtt]\nurl = \"mqtt://b\"\nsite = \"a/b\"",
            "mqtt.site",
            6,
            "topic level",
        ),
        (
            "[mqtt]\nurl = \"mqtt://b\"\nsite = \"n\"\nkeepalive = \"1s\"",
            "mqtt.keepalive",
            7,
            "5s",
        ),
        (
            "[mqtt]\nurl = \"mqtt://b\"\nsite = \"n\"\npassword = \"p\"",
            "mqtt.password",
            7,
            "username",
        ),
    ] {
        let err = load_config_str(&with(table), origin()).unwrap_err();
        assert_eq!(err.key(), Some(key), "{err}");
        assert_eq!(err.line(), Some(line), "{err}");
        assert!(err.to_string().contains(says), "{err}");
        assert!(err.to_string().contains("config/test.toml"), "{err}");
    }
    let unknown = load_config_str(
        &with("[mqtt]\nurl = \"mqtt://b\"\nsite = \"n\"\ncertificate = \"x\""),
        origin(),
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("cert"), "{unknown}");
}
