//! The `vitalsd` command line. `main.rs` only calls [`main`]; every command is a function here
//! that returns an error chain, which `main` prints whole (ripgrep style).

use crate::app::{self, Options};
use crate::config;
use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

mod demo;

/// Watches the vital signs of both patients of every recliner and raises alarms.
#[derive(Debug, Parser)]
#[command(name = "vitalsd", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon against the devices bound in a config file.
    Run {
        /// The clinic's config file.
        #[arg(long, default_value = "config/vitalsd.toml")]
        config: PathBuf,
    },
    /// Run the daemon and the device simulator in one process (one room, recliners A and B).
    Demo {
        /// The demo config (its devices must be marked `simulated = true`); default: the
        /// built-in copy of config/demo.toml (the binary needs no repository). Without it, the
        /// demo tells its story: it plays the nurse (admits,
        /// doses, phases) on a fresh store per run. With it, the demo runs that config as given:
        /// its `data_dir`, no scripted sessions (for integrators and tests that drive the API
        /// themselves), unless `--story` is given too.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Tell the story (scripted nurse, fresh store) also with `--config`.
        #[arg(long)]
        story: bool,
        /// The scenario the simulator plays; default: the built-in copy of
        /// config/scenarios/demo.toml.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Listen here instead of the config's address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep the store here (and keep its patients across runs). Default: a fresh
        /// directory under the system's temp dir per run, removed at exit (with `--config`:
        /// the config's `data_dir`).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Serve HTTPS and WSS with a self-signed certificate generated for this run (written
        /// to `<data_dir>/demo-tls/`; the command prints how to trust it).
        #[arg(long)]
        tls: bool,
        /// Publish the site to this MQTT broker (`mqtt://host:port`, docs/mqtt.md); overrides
        /// the config's `[mqtt]` url.
        #[arg(long, value_name = "URL", requires = "site")]
        mqtt: Option<String>,
        /// The site's name in the MQTT topics (with `--mqtt`).
        #[arg(long, value_name = "NAME", requires = "mqtt")]
        site: Option<String>,
        /// Send IHE PCD-01 observation reports (HL7 v2 ORU^R01) to this MLLP endpoint
        /// (`mllp://host:port`, docs/hl7.md), once a minute per bed and every NIBP
        /// measurement.
        #[arg(long, value_name = "URL")]
        hl7: Option<String>,
        /// Send IHE PCD-04 alert reports (HL7 v2 ORU^R40) of every alarm event to this MLLP
        /// endpoint (`mllp://host:port`, docs/hl7.md).
        #[arg(long, value_name = "URL")]
        hl7_alarms: Option<String>,
    },
    /// Run only the simulator for the devices marked `simulated = true` in a config, and print
    /// where each one is (tty path or host:port).
    Simulate {
        /// The config; default: the built-in copy of config/demo.toml.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The scenario to play (default: steady baseline values).
        #[arg(long)]
        scenario: Option<PathBuf>,
    },
    /// Run the central view of several sites: subscribe to their topic trees on an MQTT
    /// broker and serve one dashboard, `/ws` and read API for all of them (docs/mqtt.md).
    Central {
        /// The central's config file: broker, users, TLS, the sites allowed.
        #[arg(long, default_value = "config/central.toml")]
        config: PathBuf,
        /// The broker (`mqtt://host:port`); overrides the config's `[mqtt]` url.
        #[arg(long, value_name = "URL")]
        mqtt: Option<String>,
        /// Listen here instead of the config's address.
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate a config file (and its device profiles) and exit.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Export one session from the store: CSV (every reading), a FHIR R4 Bundle, or a printable
    /// HTML report. Works while the daemon runs.
    Export {
        /// The clinic's config file (its `data_dir` holds the store).
        #[arg(long, default_value = "config/vitalsd.toml")]
        config: PathBuf,
        /// The session id (see `GET /api/sessions`).
        #[arg(long)]
        session: i64,
        /// csv, fhir or html.
        #[arg(long, default_value = "csv")]
        format: String,
        /// Write here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Scan for Bluetooth LE devices nearby and list them with the device profile that fits,
    /// to bind a new recliner's devices (`address = ...` in the config).
    Scan {
        /// How long to scan.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Also use the profiles in this directory (a config's `devices_dir`).
        #[arg(long)]
        devices: Option<PathBuf>,
    },
    /// Read an API token from standard input (one line) and print the `token_sha256 = "..."`
    /// line to put in its `[[users]]` table instead of `token`, so the config holds no token.
    HashToken,
    /// Decode captured frames (hex) and print one JSON object per observation. Exits non-zero
    /// when no complete frame decodes.
    Decode {
        /// Protocol name (the list below).
        #[arg(long)]
        protocol: String,
        /// The bytes, in hex; several arguments are joined.
        #[arg(required = true)]
        hex: Vec<String>,
    },
}

/// Parses the command line, runs the command, prints the error chain on failure.
pub fn main() -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let protocols = format!("Protocols: {}", crate::protocol::PROTOCOLS.join(", "));
    let matches = Cli::command()
        .mut_subcommand("decode", |c| c.after_help(protocols))
        .get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vitalsd: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VITALSD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run { config } => {
            let cfg = load(&config)?;
            for warning in config::absent_ports(&cfg) {
                tracing::warn!("{warning}; the device shows as disconnected until it appears");
            }
            runtime()?.block_on(app::run(
                Arc::new(cfg),
                Options::default(),
                app::shutdown_signal(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Demo {
            config,
            story: story_flag,
            scenario,
            listen,
            data_dir,
            tls,
            mqtt,
            site,
            hl7,
            hl7_alarms,
        } => {
            // A config given by the user is run as given (its data_dir, no scripted nurse),
            // unless --story asks for the story too.
            let scripted = config.is_none() || story_flag;
            let mut cfg = match &config {
                Some(path) => load(path)?,
                None => builtin_demo_config()?,
            };
            // The demo's certificate stays in --data-dir, the config's data dir, or (built-in
            // config) the user's state dir, so a browser that accepted it once keeps accepting it.
            let cert_dir = match (&data_dir, &config) {
                (Some(d), _) => d.clone(),
                (None, Some(_)) => cfg.data_dir.clone(),
                (None, None) => demo_state_dir(),
            };
            // A fresh store per run, so a second run never shows the first run's patients and
            // dose markers; `--data-dir` keeps one across runs (leftover sessions are then
            // discharged at start). A config given with --config keeps its own data_dir.
            let fresh = data_dir.is_none() && scripted;
            cfg.data_dir = match data_dir {
                Some(dir) => dir,
                None if !scripted => cfg.data_dir.clone(),
                None => std::env::temp_dir().join(format!(
                    "vitalsd-demo-{}-{}",
                    std::process::id(),
                    crate::clock::wall_ms()
                )),
            };
            // The built-in config's fixed places are kept when free, else this run takes free
            // ones (another demo, or a test, may hold them).
            let mut listen = listen;
            let places = if config.is_none() {
                Some(demo_places(&mut cfg, &mut listen)?)
            } else {
                None
            };
            if tls {
                let at = listen.unwrap_or(cfg.listen);
                cfg.tls = Some(demo_certificate(&cert_dir, at)?);
            }
            if let (Some(url), Some(site)) = (mqtt, site) {
                let mut m = config::MqttSettings::new(&url, &site)
                    .map_err(|e| anyhow::anyhow!("--mqtt/--site: {e}"))?;
                // The rest of a configured [mqtt] (keepalive, credentials) still applies.
                if let Some(c) = cfg.mqtt.take() {
                    m = config::MqttSettings {
                        username: c.username,
                        password: c.password,
                        keepalive: c.keepalive,
                        down_after: c.down_after,
                        command_secret: c.command_secret,
                        tls: if m.tls.is_some() {
                            c.tls.or(m.tls)
                        } else {
                            None
                        },
                        ..m
                    };
                }
                println!(
                    "publishing to {} as site {:?} (docs/mqtt.md)",
                    m.url, m.site
                );
                cfg.mqtt = Some(m);
            }
            for (url, kind, flag) in [
                (hl7, config::Hl7Kind::Pcd01, "--hl7"),
                (hl7_alarms, config::Hl7Kind::Pcd04, "--hl7-alarms"),
            ] {
                let Some(url) = url else { continue };
                let mut ep = config::Hl7Endpoint::new(kind, &url)
                    .map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
                ep.tls = url.trim().starts_with("mllps://");
                // Another endpoint of that name in the config: the flag's address replaces it.
                cfg.hl7.retain(|e| e.name != ep.name);
                println!(
                    "sending HL7 {} to {} (docs/hl7.md)",
                    match kind {
                        config::Hl7Kind::Pcd01 => "PCD-01 observations (ORU^R01)",
                        config::Hl7Kind::Pcd04 => "PCD-04 alarms (ORU^R40)",
                    },
                    ep.address()
                );
                cfg.hl7.push(ep);
            }
            let cfg = Arc::new(cfg);
            let scenario = match scenario {
                Some(path) => crate::sim::scenario::Scenario::load(&path)
                    .with_context(|| format!("cannot load scenario {}", path.display()))?,
                None => crate::sim::scenario::Scenario::parse(DEMO_SCENARIO)
                    .context("the built-in demo scenario")?,
            };
            let bus = simulated_ble_bus(&cfg)?;
            runtime()?.block_on(async move {
                let story = demo::Story::of(&scenario);
                let sim = crate::sim::start_with(&cfg, scenario, bus)
                    .await
                    .context("cannot start the simulator")?;
                println!("vitalsd demo: simulated devices (data flagged simulated):");
                for (id, at) in sim.endpoints() {
                    println!("  {id:<20} {at}");
                }
                let opts = Options {
                    summary_every: Some(Duration::from_secs(5)),
                    listen,
                };
                let running = app::start(cfg.clone(), opts).await?;
                let addr = running.addr;
                let scheme = if cfg.tls.is_some() { "https" } else { "http" };
                app::print_endpoints(addr, cfg.tls.is_some());
                println!(
                    "store: {} ({})",
                    cfg.data_dir.display(),
                    if fresh {
                        "fresh for this run, removed at exit; --data-dir DIR keeps one"
                    } else if !scripted {
                        "the config's data_dir; no scripted sessions with --config (add --story)"
                    } else {
                        "given with --data-dir"
                    }
                );
                for u in &cfg.users {
                    let role = format!("{:?}", u.role).to_lowercase();
                    match &u.token {
                        Some(t) => {
                            println!("{role:<6} {:<12} {scheme}://{addr}/#token={t}", u.name)
                        }
                        None => println!(
                            "{role:<6} {:<12} (token_sha256: its token is not in the config)",
                            u.name
                        ),
                    }
                }
                let cancel = running.cancel_token();
                let token = cfg
                    .users
                    .iter()
                    .find(|u| u.role == config::Role::Nurse && u.token.is_some())
                    .or_else(|| {
                        cfg.users
                            .iter()
                            .find(|u| u.role == config::Role::Admin && u.token.is_some())
                    })
                    .and_then(|u| u.token.clone());
                let base = format!("{scheme}://{addr}");
                let alarms = tokio::spawn(demo::print_alarms(
                    base.clone(),
                    token.clone(),
                    crate::store::export::Zone::of(&cfg),
                    cancel.clone(),
                ));
                let told = scripted.then(|| tokio::spawn(story.tell(base, token, cancel)));
                app::shutdown_signal().await;
                if let Some(told) = told {
                    told.abort();
                }
                // In order: the daemon's sources and its BlueZ session, then the simulator (its
                // fake BlueZ leaving the bus is then no session lost).
                running.shutdown().await;
                crate::transport::ble::close_shared();
                let _ = alarms.await;
                sim.shutdown().await;
                if let Some(places) = places {
                    places.remove();
                }
                if fresh && let Err(e) = std::fs::remove_dir_all(&cfg.data_dir) {
                    eprintln!(
                        "vitalsd demo: cannot remove {}: {e}",
                        cfg.data_dir.display()
                    );
                }
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate { config, scenario } => {
            let cfg = match &config {
                Some(path) => load(path)?,
                None => builtin_demo_config()?,
            };
            let config = config.unwrap_or_else(|| PathBuf::from("config/demo.toml"));
            let scenario = match scenario {
                Some(p) => crate::sim::scenario::Scenario::load(&p)
                    .with_context(|| format!("cannot load scenario {}", p.display()))?,
                None => crate::sim::scenario::Scenario::steady(
                    &cfg.beds.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
                ),
            };
            if !cfg.devices.iter().any(|d| d.simulated) {
                bail!(
                    "{}: no device is marked `simulated = true`; the simulator only plays \
                     devices marked so, so that their data is flagged simulated",
                    config.display()
                );
            }
            runtime()?.block_on(async move {
                let sim = crate::sim::start(&cfg, scenario).await?;
                for (id, at) in sim.endpoints() {
                    println!("{id}\t{at}");
                }
                if let Some(address) = sim.dbus_address() {
                    println!("DBUS_SYSTEM_BUS_ADDRESS={address}");
                }
                app::shutdown_signal().await;
                sim.shutdown().await;
                anyhow::Ok(())
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Central {
            config,
            mqtt,
            listen,
        } => {
            let mut cfg = config::load_central(&config)?;
            if let Some(url) = mqtt {
                let (host, port) =
                    config::parse_mqtt_url(&url).map_err(|e| anyhow::anyhow!("--mqtt: {e}"))?;
                if config::is_mqtts(&url) != cfg.mqtt.tls.is_some() {
                    cfg.mqtt.tls = config::is_mqtts(&url).then(config::MqttTls::default);
                }
                cfg.mqtt.url = url;
                cfg.mqtt.host = host;
                cfg.mqtt.port = port;
            }
            let listen = listen.unwrap_or(cfg.listen);
            if !listen.ip().is_loopback() && (cfg.users.is_empty() || cfg.tls.is_none()) {
                bail!(
                    "--listen {listen}: not on loopback, expected [[users]] and [tls] in {} (tokens never travel in clear)",
                    config.display()
                );
            }
            runtime()?.block_on(crate::central::run(
                Arc::new(cfg),
                listen,
                app::shutdown_signal(),
            ))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::CheckConfig { file } => {
            let cfg = load(&file)?;
            let absent = config::absent_ports(&cfg);
            if !absent.is_empty() {
                for a in &absent {
                    eprintln!("vitalsd: {a}");
                }
                bail!(
                    "{}: {} serial port(s) not present",
                    file.display(),
                    absent.len()
                );
            }
            println!(
                "{}: ok ({} rooms, {} recliners, {} devices)",
                file.display(),
                cfg.rooms.len(),
                cfg.beds.len(),
                cfg.devices.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Export {
            config,
            session,
            format,
            out,
        } => {
            export(&config, session, &format, out.as_deref())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Scan { seconds, devices } => {
            let profiles = config::load_profiles(devices.as_deref())?;
            let seen = runtime()?.block_on(crate::transport::ble::scan(Duration::from_secs(
                seconds.clamp(1, 600),
            )))?;
            print_scan(&seen, &profiles);
            Ok(ExitCode::SUCCESS)
        }
        Command::HashToken => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the token from standard input")?;
            let token = line.trim_end_matches(['\r', '\n']);
            if !config::token_is_valid(token) {
                bail!(
                    "the token on standard input is too short or has spaces ({} character(s)), \
                     expected at least 16 characters without spaces on one line",
                    token.chars().count()
                );
            }
            println!(
                "token_sha256 = \"{}\"",
                hex::encode(config::token_sha256(token))
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Decode { protocol, hex } => {
            let (ms, report) = crate::protocol::decode_hex(&protocol, &hex)?;
            for m in &ms {
                println!("{}", serde_json::to_string(m)?);
            }
            if report.frames == 0 {
                bail!(
                    "nothing decoded: no complete {protocol} frame ({} byte(s) skipped, {} bad \
                     frame(s)); expected at least one whole frame or line, line end included",
                    report.skipped_bytes,
                    report.bad_frames
                );
            }
            if report.skipped_bytes > 0 || report.bad_frames > 0 {
                eprintln!(
                    "vitalsd: {} frame(s) decoded, {} byte(s) skipped, {} bad frame(s)",
                    report.frames, report.skipped_bytes, report.bad_frames
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// When `cfg` simulates a BLE device: the simulator's private D-Bus, spawned now, with
/// `DBUS_SYSTEM_BUS_ADDRESS` pointing at it, so that the daemon in this process finds the fake
/// BlueZ. Called before the async runtime starts: the environment is process-wide, and no
/// other thread exists yet to read it while it changes.
fn simulated_ble_bus(cfg: &config::Config) -> anyhow::Result<Option<crate::sim::bluez::Bus>> {
    let ble = cfg
        .devices
        .iter()
        .any(|d| d.simulated && matches!(d.endpoint, config::Endpoint::Ble { .. }));
    if !ble {
        return Ok(None);
    }
    let bus = crate::sim::bluez::Bus::spawn().context("cannot start the simulator's D-Bus")?;
    // SAFETY: single-threaded here (before the runtime is built), so nothing reads the
    // environment concurrently.
    unsafe { std::env::set_var("DBUS_SYSTEM_BUS_ADDRESS", bus.address()) };
    Ok(Some(bus))
}

/// The `scan` table: one line per device, strongest first.
fn print_scan(
    seen: &[crate::transport::ble::Seen],
    profiles: &std::collections::BTreeMap<String, Arc<config::Profile>>,
) {
    let mut seen: Vec<_> = seen.iter().collect();
    seen.sort_by_key(|s| std::cmp::Reverse(s.rssi.unwrap_or(i16::MIN)));
    println!(
        "{:<17}  {:>4}  {:<24}  {:<18}  SERVICES",
        "ADDRESS", "RSSI", "NAME", "PROFILE"
    );
    for s in &seen {
        let matching = crate::transport::ble::matching_profiles(s, profiles.values().map(|p| &**p));
        let services: Vec<String> = s.services.iter().map(short_uuid).collect();
        println!(
            "{:<17}  {:>4}  {:<24}  {:<18}  {}",
            s.address,
            s.rssi.map_or("?".to_owned(), |r| r.to_string()),
            s.name.as_deref().unwrap_or("-"),
            if matching.is_empty() {
                "-".to_owned()
            } else {
                matching.join(",")
            },
            if services.is_empty() {
                "-".to_owned()
            } else {
                services.join(" ")
            }
        );
    }
    println!("{} device(s)", seen.len());
}

/// A SIG UUID as its 16-bit number (`0x1822`), others in full.
fn short_uuid(u: &uuid::Uuid) -> String {
    let n = u.as_u128();
    let base = 0x0000_0000_0000_1000_8000_0080_5f9b_34fb_u128;
    if n & !(0xffff_u128 << 96) == base {
        format!("0x{:04X}", (n >> 96) as u16)
    } else {
        u.to_string()
    }
}

/// Generates a self-signed certificate for `vitalsd demo --tls` (names: localhost, the loopback
/// addresses and the listen address), writes it and its key as PEM under
/// `<data_dir>/demo-tls/`, and says how to trust it.
fn demo_certificate(
    data_dir: &std::path::Path,
    listen: SocketAddr,
) -> anyhow::Result<config::TlsSettings> {
    let mut names = vec![
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ];
    let ip = listen.ip();
    if !ip.is_unspecified() && !names.contains(&ip.to_string()) {
        names.push(ip.to_string());
    }
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(names.clone())
            .context("cannot generate the demo's self-signed certificate")?;
    let dir = data_dir.join("demo-tls");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.pem())
        .with_context(|| format!("cannot write {}", cert_path.display()))?;
    write_private(&key_path, signing_key.serialize_pem().as_bytes())
        .with_context(|| format!("cannot write {}", key_path.display()))?;
    println!(
        "vitalsd demo: TLS with a self-signed certificate for {} (new at every start)",
        names.join(", ")
    );
    println!("  certificate: {}", cert_path.display());
    println!(
        "  trust it:    curl --cacert {} https://localhost:{}/healthz",
        cert_path.display(),
        listen.port()
    );
    println!(
        "               browsers: import it as an authority (Chromium: Settings > Privacy and security > Security > Manage certificates), or accept the warning once"
    );
    Ok(config::TlsSettings {
        cert: cert_path,
        key: key_path,
    })
}

/// Writes a file only its owner can read (a private key).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(data)
}

fn load(path: &std::path::Path) -> anyhow::Result<config::Config> {
    Ok(config::load_config(path)?)
}

/// config/demo.toml, built into the binary: `vitalsd demo` runs from any directory.
pub const DEMO_CONFIG: &str = include_str!("../config/demo.toml");
/// config/scenarios/demo.toml, built into the binary.
pub const DEMO_SCENARIO: &str = include_str!("../config/scenarios/demo.toml");

/// The built-in demo config (its relative paths resolve against the working directory, but
/// the demo replaces its `data_dir` and its device profiles and presets are built in).
fn builtin_demo_config() -> anyhow::Result<config::Config> {
    Ok(config::load_config_str(
        DEMO_CONFIG,
        std::path::Path::new("config/demo.toml"),
    )?)
}

/// What [`demo_places`] holds for the run: the locks on the serial links' directories, and
/// the directory made for this run (removed at exit).
struct DemoPlaces {
    _locks: Vec<std::fs::File>,
    own_dir: Option<PathBuf>,
}

impl DemoPlaces {
    /// Removes the directory made for this run (the simulator has removed its links).
    fn remove(self) {
        if let Some(dir) = &self.own_dir {
            let _ = std::fs::remove_file(dir.join(DEMO_LOCK));
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The lock file in a directory of the demo's serial links, held while a demo uses it.
const DEMO_LOCK: &str = ".vitalsd-demo.lock";

/// The built-in demo's fixed places (the listen address, the simulated cuff's TCP port, the
/// serial links under `/tmp/vitalsd-demo/`) are kept when free; one that another demo (or
/// anything else) holds is replaced by a free one for this run, and the change printed: a
/// free port on the same address, a directory of the run's own for the serial links.
fn demo_places(
    cfg: &mut config::Config,
    listen: &mut Option<SocketAddr>,
) -> anyhow::Result<DemoPlaces> {
    use std::collections::BTreeSet;
    use std::path::Path;
    let free_port_at = |ip: std::net::IpAddr| -> anyhow::Result<SocketAddr> {
        let l = std::net::TcpListener::bind(SocketAddr::new(ip, 0))
            .with_context(|| format!("cannot find a free port on {ip}"))?;
        Ok(l.local_addr()?)
    };
    if listen.is_none() && std::net::TcpListener::bind(cfg.listen).is_err() {
        let at = free_port_at(cfg.listen.ip())?;
        println!(
            "vitalsd demo: {} is taken; listening on {at} instead",
            cfg.listen
        );
        *listen = Some(at);
    }
    for d in cfg.devices.iter_mut().filter(|d| d.simulated) {
        let config::Endpoint::Tcp { addr } = &mut d.endpoint else {
            continue;
        };
        let Ok(at) = addr.parse::<SocketAddr>() else {
            continue;
        };
        if std::net::TcpListener::bind(at).is_err() {
            let free = free_port_at(at.ip())?;
            println!(
                "vitalsd demo: {at} is taken; {} serves on {free} instead",
                d.id
            );
            *addr = free.to_string();
        }
    }
    // The serial links' directories: one whose lock another demo holds, or with a link to a
    // live pseudo-terminal (a demo of an older version), is left to it.
    let dirs: BTreeSet<PathBuf> = cfg
        .devices
        .iter()
        .filter(|d| d.simulated)
        .filter_map(|d| match &d.endpoint {
            config::Endpoint::Serial { path } => path.parent().map(Path::to_path_buf),
            _ => None,
        })
        .collect();
    let lock = |dir: &Path| -> anyhow::Result<Option<std::fs::File>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(DEMO_LOCK);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(file.try_lock().is_ok().then_some(file))
    };
    let mut places = DemoPlaces {
        _locks: Vec::new(),
        own_dir: None,
    };
    for dir in dirs {
        let live_link = cfg.devices.iter().any(|d| match &d.endpoint {
            config::Endpoint::Serial { path } => {
                d.simulated
                    && path.parent() == Some(dir.as_path())
                    && std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
                    && std::fs::metadata(path).is_ok()
            }
            _ => false,
        });
        if !live_link && let Some(file) = lock(&dir).unwrap_or(None) {
            places._locks.push(file);
            continue;
        }
        let own = std::env::temp_dir().join(format!("vitalsd-demo-ports-{}", std::process::id()));
        let file = lock(&own)?
            .with_context(|| format!("{} is locked by another process", own.display()))?;
        places._locks.push(file);
        println!(
            "vitalsd demo: {} is in use by another demo; serial ports under {} instead",
            dir.display(),
            own.display()
        );
        for d in cfg.devices.iter_mut().filter(|d| d.simulated) {
            if let config::Endpoint::Serial { path } = &mut d.endpoint
                && path.parent() == Some(dir.as_path())
                && let Some(name) = path.file_name()
            {
                *path = own.join(name);
            }
        }
        places.own_dir = Some(own);
    }
    Ok(places)
}

/// Where the demo keeps what should outlive a run without `--data-dir` (its TLS certificate):
/// `$XDG_STATE_HOME/vitalsd/demo`, else `~/.local/state/vitalsd/demo`, else the temp dir.
fn demo_state_dir() -> PathBuf {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
                .map(|h| h.join(".local/state"))
        })
        .unwrap_or_else(std::env::temp_dir);
    base.join("vitalsd").join("demo")
}

fn export(
    config: &std::path::Path,
    session: i64,
    format: &str,
    out: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    use crate::store::{self, export};
    let cfg = load(config)?;
    let format = export::Format::parse(format)?;
    let path = cfg.data_dir.join(store::FILE_NAME);
    let conn = store::open_existing(&path)
        .with_context(|| format!("cannot open the store {}", path.display()))?;
    let now = crate::clock::wall_ms();
    let mut rec = export::load(&conn, session, now)?;
    rec.devices = export::device_info(&cfg);
    rec.zone = export::Zone::of(&cfg);
    let body = export::render(&rec, format);
    match out {
        Some(p) => {
            std::fs::write(p, &body).with_context(|| format!("cannot write {}", p.display()))?
        }
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(body.as_bytes())
                .context("cannot write to standard output")?;
        }
    }
    if let Err(e) = store::session::mark_exported(&conn, session, now) {
        tracing::warn!(error = %e, session, "session exported but not marked exported");
    }
    Ok(())
}
