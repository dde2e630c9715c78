//! A deterministic, bounded fuzz run of the config loader (`load_config_str`) and the scenario
//! loader (`Scenario::load`): the shipped config and scenario files, mutated (bytes flipped,
//! inserted, deleted; lines deleted, duplicated, swapped; values replaced by odd ones). A loader
//! must never panic, and every error must name the file and a line in it (issue 11).
//!
//! The run is seeded, so a failure is reproducible; it prints the text. A longer run:
//! `VITALSD_FUZZ_CASES=20000 VITALSD_FUZZ_SEED=7 cargo test --release --test tests config_fuzz::`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use vitalsd::config::{ConfigError, load_config_str};
use vitalsd::sim::scenario::Scenario;

fn cases() -> usize {
    std::env::var("VITALSD_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(400)
}

fn seed() -> u64 {
    std::env::var("VITALSD_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(11)
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Odd values a mutation puts where a value was.
const ODD: &[&str] = &[
    "\"\"",
    "0",
    "-1",
    "1e309",
    "nan",
    "inf",
    "-0.0",
    "99999999999999999999",
    "true",
    "[]",
    "{}",
    "\"0s\"",
    "\"-5m\"",
    "\"100000h\"",
    "\"\u{1F600}\"",
    "\"\\u0000\"",
    "[[]]",
    "{ a = 1 }",
    "\"room1/A\"",
    "\"x\"",
];

/// One mutation of `text`.
fn mutate(rng: &mut StdRng, text: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    match rng.random_range(0..7) {
        0 if !lines.is_empty() => {
            lines.remove(rng.random_range(0..lines.len()));
        }
        1 if !lines.is_empty() => {
            let i = rng.random_range(0..lines.len());
            let l = lines[i].clone();
            lines.insert(rng.random_range(0..=lines.len()), l);
        }
        2 if lines.len() > 1 => {
            let (a, b) = (
                rng.random_range(0..lines.len()),
                rng.random_range(0..lines.len()),
            );
            lines.swap(a, b);
        }
        3 if !lines.is_empty() => {
            // Replace a value (what follows the first `=` of a line).
            let i = rng.random_range(0..lines.len());
            if let Some(eq) = lines[i].find('=') {
                let line = &mut lines[i];
                let odd = ODD[rng.random_range(0..ODD.len())];
                *line = format!("{}= {odd}", &line[..eq]);
            }
        }
        _ => {
            // Byte-level: flip, insert or delete a few bytes.
            let mut bytes = lines.join("\n").into_bytes();
            for _ in 0..rng.random_range(1..4) {
                if bytes.is_empty() {
                    break;
                }
                let at = rng.random_range(0..bytes.len());
                match rng.random_range(0..3) {
                    0 => bytes[at] = rng.random(),
                    1 => bytes.insert(at, b"=[]{}\"#.,\n0a"[rng.random_range(0..12)]),
                    _ => {
                        bytes.remove(at);
                    }
                }
            }
            return String::from_utf8_lossy(&bytes).into_owned();
        }
    }
    lines.join("\n")
}

/// Mutates 1 to 3 times.
fn mutated(rng: &mut StdRng, text: &str) -> String {
    let mut t = text.to_owned();
    for _ in 0..rng.random_range(1..=3) {
        t = mutate(rng, &t);
    }
    t
}

/// Whether every `tcp = "..."` in the text is an address literal: a name would be resolved at
/// load (DNS), which a fuzz run must not wait for.
fn resolves_nothing(text: &str) -> bool {
    text.lines().all(|l| {
        let Some((key, value)) = l.split_once('=') else {
            return true;
        };
        !key.contains("tcp") || value.trim().trim_matches('"').parse::<SocketAddr>().is_ok()
    })
}

#[test]
fn mutated_configs_never_panic_and_errors_name_file_and_line() {
    let mut rng = StdRng::seed_from_u64(seed());
    let seeds: Vec<(PathBuf, String)> = ["config/vitalsd.toml", "config/demo.toml"]
        .iter()
        .map(|p| (repo(p), std::fs::read_to_string(repo(p)).unwrap()))
        .collect();
    // The seeds themselves load.
    for (origin, text) in &seeds {
        if let Err(e) = load_config_str(text, origin) {
            panic!("the seed {} does not load: {e}", origin.display());
        }
    }
    let (mut tried, mut refused) = (0, 0);
    for case in 0..cases() {
        let (origin, text) = &seeds[case % seeds.len()];
        let text = mutated(&mut rng, text);
        if !resolves_nothing(&text) {
            continue;
        }
        tried += 1;
        let result = std::panic::catch_unwind(|| load_config_str(&text, origin));
        let result = result.unwrap_or_else(|_| {
            panic!(
                "case {case}: the config loader panicked on (seed {}):\n{text}",
                seed()
            )
        });
        match result {
            Ok(_) => {}
            Err(ConfigError::Invalid {
                path, line, column, ..
            }) => {
                refused += 1;
                let e = format!("{path:?}:{line}:{column}");
                assert!(line >= 1 && column >= 1, "case {case}: {e} for:\n{text}");
                if path == *origin {
                    let lines = text.lines().count().max(1);
                    assert!(
                        line <= lines + 1,
                        "case {case}: line {line} of {lines} for:\n{text}"
                    );
                }
            }
            Err(e) => {
                // Io: a file or directory named by the config could not be read.
                refused += 1;
                let msg = e.to_string();
                assert!(msg.contains('/'), "case {case}: no file named: {msg}");
            }
        }
    }
    assert!(tried > cases() / 2, "only {tried} cases tried");
    assert!(
        refused > 0,
        "no mutation was refused: the harness mutates nothing"
    );
}

#[test]
fn mutated_scenarios_never_panic_and_errors_name_file_and_line() {
    let mut rng = StdRng::seed_from_u64(seed());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scenario.toml");
    let seeds: Vec<String> = ["config/scenarios/demo.toml", "config/scenarios/steady.toml"]
        .iter()
        .map(|p| std::fs::read_to_string(repo(p)).unwrap())
        .collect();
    for text in &seeds {
        Scenario::parse(text).expect("the seed scenario parses");
    }
    let mut refused = 0;
    for case in 0..cases() {
        let text = mutated(&mut rng, &seeds[case % seeds.len()]);
        std::fs::write(&file, &text).unwrap();
        let result = std::panic::catch_unwind(|| Scenario::load(&file)).unwrap_or_else(|_| {
            panic!(
                "case {case}: the scenario loader panicked on (seed {}):\n{text}",
                seed()
            )
        });
        if let Err(e) = result {
            refused += 1;
            let msg = e.to_string();
            assert!(
                msg.starts_with(&file.display().to_string()),
                "case {case}: the file is not named: {msg}"
            );
            assert!(
                msg.contains("line "),
                "case {case}: no line named: {msg}\nfor:\n{text}"
            );
        }
    }
    assert!(
        refused > 0,
        "no mutation was refused: the harness mutates nothing"
    );
}
