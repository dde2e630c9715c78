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
        /// The demo config (its devices must be marked `simulated = true`).
        #[arg(long, default_value = "config/demo.toml")]
        config: PathBuf,
        /// The scenario the simulator plays.
        #[arg(long, default_value = "config/scenarios/demo.toml")]
        scenario: PathBuf,
        /// Listen here instead of the config's address.
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Keep the store here instead of the config's `data_dir`.
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
    },
    /// Run only the simulator for the devices marked `simulated = true` in a config, and print
    /// where each one is (tty path or host:port).
    Simulate {
        #[arg(long, default_value = "config/demo.toml")]
        config: PathBuf,
        /// The scenario to play (default: steady baseline values).
        #[arg(long)]
        scenario: Option<PathBuf>,
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
            scenario,
            listen,
            data_dir,
            tls,
            mqtt,
            site,
        } => {
            let mut cfg = load(&config)?;
            if let Some(dir) = data_dir {
                cfg.data_dir = dir;
            }
            if tls {
                let at = listen.unwrap_or(cfg.listen);
                cfg.tls = Some(demo_certificate(&cfg.data_dir, at)?);
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
                        ..m
                    };
                }
                println!(
                    "publishing to {} as site {:?} (docs/mqtt.md)",
                    m.url, m.site
                );
                cfg.mqtt = Some(m);
            }
            let cfg = Arc::new(cfg);
            let scenario = crate::sim::scenario::Scenario::load(&scenario)
                .with_context(|| format!("cannot load scenario {}", scenario.display()))?;
            let bus = simulated_ble_bus(&cfg)?;
            runtime()?.block_on(async move {
                let sim = crate::sim::start_with(&cfg, scenario, bus)
                    .await
                    .context("cannot start the simulator")?;
                println!("vitalsd demo: simulated devices (data flagged simulated):");
                for (id, at) in sim.endpoints() {
                    println!("  {id:<20} {at}");
                }
                let listen_at = listen.unwrap_or(cfg.listen);
                let scheme = if cfg.tls.is_some() { "https" } else { "http" };
                if let Some((nurse, token)) = cfg
                    .users
                    .iter()
                    .filter(|u| u.role == config::Role::Nurse)
                    .find_map(|u| u.token.as_ref().map(|t| (u, t)))
                {
                    println!(
                        "dashboard as {}: {scheme}://{listen_at}/#token={token}",
                        nurse.name
                    );
                }
                let opts = Options {
                    summary_every: Some(Duration::from_secs(5)),
                    listen,
                };
                let result = app::run(cfg, opts, app::shutdown_signal()).await;
                sim.shutdown().await;
                result
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Simulate { config, scenario } => {
            let cfg = load(&config)?;
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
