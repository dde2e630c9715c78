//! The simulator's private D-Bus: a `dbus-daemon --nofork` child process.

use anyhow::{Context, bail};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A private D-Bus message bus: a `dbus-daemon --nofork` child process that this value owns.
///
/// The child dies with the simulator however the simulator ends: dropping the [`Bus`] kills and
/// reaps it, and if the simulator is killed outright (`kill -9`, a crash) the kernel kills it
/// too (`PR_SET_PDEATHSIG`). The parent-death signal fires when the *thread* that forked the
/// child exits, so the child is forked by a keeper thread that lives exactly as long as the
/// [`Bus`] (and reaps the child), never by a pooled thread that may retire while the bus is in
/// use.
#[derive(Debug)]
pub struct Bus {
    address: String,
    dir: PathBuf,
    pid: u32,
    /// Tells the keeper thread to kill and reap the child (sent, or dropped, on drop).
    stop: Option<std::sync::mpsc::Sender<()>>,
    keeper: Option<std::thread::JoinHandle<()>>,
}

/// The bus config: a socket in our own directory, and a policy that lets anyone own any name
/// and send anything (a test bus: BlueZ's real policy would reject our fake).
const BUS_CONFIG: &str = r#"<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path=@SOCKET@</listen>
  <auth>EXTERNAL</auth>
  <limit name="max_match_rules_per_connection">4096</limit>
  <limit name="max_replies_per_connection">1024</limit>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
"#;

/// What the keeper thread hands back once the child runs.
type Spawned = std::io::Result<(
    u32,
    Option<std::process::ChildStdout>,
    Option<std::process::ChildStderr>,
)>;

impl Bus {
    /// Starts `dbus-daemon --nofork --print-address` on a socket in a fresh directory under the
    /// temp dir, and waits for it to print its address (it listens from then on). Blocking:
    /// call it before an async runtime starts, or from `spawn_blocking`.
    pub fn spawn() -> anyhow::Result<Bus> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vitalsd-bus-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        Bus::spawn_in(&dir)
    }

    /// [`Bus::spawn`] with the socket in `dir` (created if missing): a bus started again in
    /// the same directory has the same address, as a system bus restarted after a crash has,
    /// so that clients configured with it find it again.
    pub fn spawn_in(dir: &Path) -> anyhow::Result<Bus> {
        let dir = dir.to_path_buf();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
        let socket = dir.join("system_bus_socket");
        let config = dir.join("bus.conf");
        std::fs::write(
            &config,
            BUS_CONFIG.replace("@SOCKET@", &socket.display().to_string()),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let (spawned_tx, spawned_rx) = std::sync::mpsc::channel::<Spawned>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let parent = std::process::id();
        let keeper = std::thread::Builder::new()
            .name("dbus-daemon keeper".to_owned())
            .spawn(move || {
                let mut command = Command::new("dbus-daemon");
                // Its own process group: a Ctrl-C in the terminal (or `timeout`, which signals
                // the whole group) must not kill the bus under the daemon before the daemon has
                // let go of it; the simulator kills it last, on shutdown or drop.
                command
                    .process_group(0)
                    .arg("--nofork")
                    .arg("--print-address")
                    .arg(format!("--config-file={}", config.display()))
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
                // SAFETY: between fork and exec only async-signal-safe calls (prctl, getppid,
                // raise), no allocation.
                unsafe {
                    command.pre_exec(move || {
                        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                        // The simulator died between fork and prctl: follow it now.
                        if libc::getppid() as u32 != parent {
                            libc::raise(libc::SIGKILL);
                        }
                        Ok(())
                    });
                }
                let mut child = match command.spawn() {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = spawned_tx.send(Err(e));
                        return;
                    }
                };
                let _ = spawned_tx.send(Ok((child.id(), child.stdout.take(), child.stderr.take())));
                // Reap the child if it dies on its own (killed from outside); kill and reap it
                // when the Bus is dropped.
                loop {
                    match stop_rx.recv_timeout(std::time::Duration::from_millis(500)) {
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            if let Ok(Some(_)) = child.try_wait() {
                                let _ = stop_rx.recv();
                                return;
                            }
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            return;
                        }
                    }
                }
            })
            .context("cannot start the dbus-daemon keeper thread")?;
        let (pid, stdout, stderr) = match spawned_rx.recv() {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                let _ = keeper.join();
                return Err(e).context(
                    "cannot start dbus-daemon (the simulator's BLE devices need it: \
                     install Debian's dbus-daemon package)",
                );
            }
            Err(_) => {
                let _ = keeper.join();
                bail!("the dbus-daemon keeper thread ended before starting it");
            }
        };
        let mut bus = Bus {
            address: String::new(),
            dir,
            pid,
            stop: Some(stop_tx),
            keeper: Some(keeper),
        };
        let mut line = String::new();
        if let Some(out) = stdout {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        // `unix:path=...,guid=...`: without the guid, so that a client given this address
        // also accepts a bus restarted on the same socket (libdbus refuses a server whose guid
        // differs from the one in the address).
        let address = line
            .trim()
            .split(',')
            .filter(|part| !part.starts_with("guid="))
            .collect::<Vec<_>>()
            .join(",");
        if address.is_empty() {
            let mut why = String::new();
            if let Some(mut err) = stderr {
                let _ = err.read_to_string(&mut why);
            }
            bail!("dbus-daemon printed no address (it said: {:?})", why.trim());
        }
        // Drain stderr so that the daemon never blocks on a full pipe.
        if let Some(err) = stderr {
            std::thread::spawn(move || {
                let mut sink = Vec::new();
                let _ = BufReader::new(err).read_to_end(&mut sink);
            });
        }
        bus.address = address;
        Ok(bus)
    }

    /// The bus address, e.g. `unix:path=/tmp/vitalsd-bus-123-0/system_bus_socket`.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The directory holding the socket and config.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The dbus-daemon's process id (tests kill it to play a crashed system bus).
    pub fn pid(&self) -> u32 {
        self.pid
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(keeper) = self.keeper.take() {
            let _ = keeper.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
