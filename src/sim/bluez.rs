//! A fake BlueZ on a private D-Bus, so that btleplug (and so the daemon) talks to simulated BLE
//! devices exactly as it talks to real ones, without a radio.
//!
//! - [`Bus`]: a `dbus-daemon --nofork` child process with a permissive bus config. The simulator
//!   owns it: dropping the [`Bus`] kills and reaps the child (a forked daemon would leave a
//!   zombie). Its address is what the daemon under test gets as `DBUS_SYSTEM_BUS_ADDRESS`.
//! - [`FakeBluez`]: a zbus service that owns `org.bluez` on that bus and exports what btleplug
//!   needs: an ObjectManager at `/`, the adapter `/org/bluez/hci0` (Adapter1 with a Modalias that
//!   parses, Powered settable, discovery methods), one Device1 per simulated device (exported when
//!   a discovery starts, so the client sees `InterfacesAdded`), and, on `Connect`, the device's
//!   GATT services, characteristics and CCC descriptors at BlueZ-like paths
//!   (`.../dev_AA_BB_CC_DD_EE_FF/service000a/char000b/desc000d`), then `ServicesResolved`.
//!   A notification is a `PropertiesChanged` of the characteristic's `Value`, as BlueZ sends it.
//!
//! The simulator's device players ([`super::ble`]) drive it: [`FakeBluez::notify`],
//! [`FakeBluez::set_value`], [`FakeBluez::drop_connection`], [`FakeBluez::set_in_range`], and the
//! values the client writes ([`FakeBluez::take_writes`]).

use anyhow::{Context, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use uuid::Uuid;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectServer, OwnedObjectPath, OwnedVariant, fdo, interface};

/// The adapter's object path.
pub const ADAPTER_PATH: &str = "/org/bluez/hci0";

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

/// A GATT characteristic of a simulated device.
#[derive(Debug, Clone)]
pub struct CharSpec {
    /// Its UUID.
    pub uuid: Uuid,
    /// BlueZ flag names: `read`, `write`, `write-without-response`, `notify`, `indicate`.
    pub flags: Vec<&'static str>,
    /// What `ReadValue` returns until the player changes it.
    pub value: Vec<u8>,
}

/// A GATT service of a simulated device.
#[derive(Debug, Clone)]
pub struct ServiceSpec {
    /// Its UUID.
    pub uuid: Uuid,
    /// Its characteristics.
    pub characteristics: Vec<CharSpec>,
}

/// A simulated BLE device as BlueZ would show it.
#[derive(Debug, Clone)]
pub struct DeviceSpec {
    /// `AA:BB:CC:DD:EE:FF`, upper case.
    pub address: String,
    /// Advertised name.
    pub name: String,
    /// Signal strength shown while discovering, dBm.
    pub rssi: i16,
    /// Service UUIDs in the advertisement (BlueZ's `UUIDs`).
    pub advertised: Vec<Uuid>,
    /// GATT services, exported on connect.
    pub services: Vec<ServiceSpec>,
}

/// `dev_AA_BB_CC_DD_EE_FF` under the adapter.
pub fn device_path(address: &str) -> String {
    format!(
        "{ADAPTER_PATH}/dev_{}",
        address.to_ascii_uppercase().replace(':', "_")
    )
}

/// A value written by the client to a characteristic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The characteristic.
    pub uuid: Uuid,
    /// The bytes.
    pub value: Vec<u8>,
}

/// What the fake knows about one device, shared by its D-Bus objects and the simulator.
#[derive(Debug)]
struct DeviceShared {
    spec: DeviceSpec,
    path: String,
    /// False while the scenario keeps the device away: `Connect` fails.
    in_range: AtomicBool,
    /// Its Device1 object is exported (it has been discovered).
    exported: AtomicBool,
    /// Its GATT objects are exported.
    gatt_exported: AtomicBool,
    /// Characteristic UUID -> object path.
    char_paths: BTreeMap<Uuid, String>,
    /// Characteristic UUID -> what `ReadValue` returns, kept while the GATT tree is not
    /// exported.
    values: Mutex<BTreeMap<Uuid, Vec<u8>>>,
    /// Values the client wrote, for the player.
    writes: mpsc::UnboundedSender<Written>,
}

/// The fake BlueZ service on a [`Bus`].
pub struct FakeBluez {
    conn: Connection,
    devices: HashMap<String, Arc<DeviceShared>>,
    writes: Mutex<HashMap<String, mpsc::UnboundedReceiver<Written>>>,
}

impl std::fmt::Debug for FakeBluez {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeBluez")
            .field("devices", &self.devices.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl FakeBluez {
    /// Connects to the bus at `address`, exports the ObjectManager and the adapter, and owns
    /// `org.bluez` (in that order, so that a client that sees the name finds the adapter).
    pub async fn start(address: &str, devices: Vec<DeviceSpec>) -> anyhow::Result<FakeBluez> {
        let mut shared = HashMap::new();
        let mut receivers = HashMap::new();
        for spec in devices {
            let path = device_path(&spec.address);
            let mut char_paths = BTreeMap::new();
            let mut values = BTreeMap::new();
            let mut handle = 0x000a_u16;
            for s in &spec.services {
                let spath = format!("{path}/service{handle:04x}");
                handle += 1;
                for c in &s.characteristics {
                    char_paths.insert(c.uuid, format!("{spath}/char{handle:04x}"));
                    values.insert(c.uuid, c.value.clone());
                    // A characteristic takes its declaration, its value and its CCC descriptor.
                    handle += 3;
                }
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let key = spec.address.to_ascii_uppercase();
            receivers.insert(key.clone(), rx);
            shared.insert(
                key,
                Arc::new(DeviceShared {
                    spec,
                    path,
                    in_range: AtomicBool::new(true),
                    exported: AtomicBool::new(false),
                    gatt_exported: AtomicBool::new(false),
                    char_paths,
                    values: Mutex::new(values),
                    writes: tx,
                }),
            );
        }
        let all: Vec<Arc<DeviceShared>> = shared.values().cloned().collect();
        let conn = zbus::connection::Builder::address(address)
            .serve_at("/", fdo::ObjectManager)
            .serve_at(
                ADAPTER_PATH,
                Adapter {
                    powered: true,
                    sessions: BTreeSet::new(),
                    filters: HashMap::new(),
                    devices: all,
                },
            )
            .name("org.bluez")
            .build()
            .await
            .with_context(|| format!("cannot connect to the simulator's D-Bus at {address}"))?;
        Ok(FakeBluez {
            conn,
            devices: shared,
            writes: Mutex::new(receivers),
        })
    }

    fn device(&self, address: &str) -> anyhow::Result<&Arc<DeviceShared>> {
        self.devices
            .get(&address.to_ascii_uppercase())
            .with_context(|| format!("no simulated BLE device {address}"))
    }

    /// The receiver of the values the client writes to `address`'s characteristics. Once.
    pub fn take_writes(&self, address: &str) -> Option<mpsc::UnboundedReceiver<Written>> {
        self.writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&address.to_ascii_uppercase())
    }

    /// Whether a client is connected to `address`.
    pub async fn is_connected(&self, address: &str) -> bool {
        let Ok(dev) = self.device(address) else {
            return false;
        };
        if !dev.exported.load(Ordering::SeqCst) {
            return false;
        }
        match self
            .conn
            .object_server()
            .interface::<_, Device>(dev.path.as_str())
            .await
        {
            Ok(iface) => iface.get().await.connected,
            Err(_) => false,
        }
    }

    /// Sends a notification (or indication) of `value` on characteristic `uuid`, if the device
    /// is connected and the client subscribed to it. Returns whether it was sent.
    pub async fn notify(&self, address: &str, uuid: Uuid, value: &[u8]) -> anyhow::Result<bool> {
        let dev = self.device(address)?;
        let Some(path) = dev.char_paths.get(&uuid) else {
            bail!("device {address} has no characteristic {uuid}");
        };
        if !dev.gatt_exported.load(Ordering::SeqCst) {
            return Ok(false);
        }
        let iface = self
            .conn
            .object_server()
            .interface::<_, Characteristic>(path.as_str())
            .await?;
        {
            let mut c = iface.get_mut().await;
            if !c.notifying {
                return Ok(false);
            }
            c.value = value.to_vec();
        }
        iface
            .get()
            .await
            .value_changed(iface.signal_emitter())
            .await?;
        Ok(true)
    }

    /// Sets what `ReadValue` on characteristic `uuid` returns (no notification).
    pub async fn set_value(&self, address: &str, uuid: Uuid, value: &[u8]) -> anyhow::Result<()> {
        let dev = self.device(address)?;
        let Some(path) = dev.char_paths.get(&uuid) else {
            bail!("device {address} has no characteristic {uuid}");
        };
        dev.values
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(uuid, value.to_vec());
        if dev.gatt_exported.load(Ordering::SeqCst) {
            let iface = self
                .conn
                .object_server()
                .interface::<_, Characteristic>(path.as_str())
                .await?;
            iface.get_mut().await.value = value.to_vec();
        }
        Ok(())
    }

    /// Whether the device can be connected to. Out of range, `Connect` fails as BlueZ's does
    /// when the device does not answer.
    pub fn set_in_range(&self, address: &str, in_range: bool) -> anyhow::Result<()> {
        self.device(address)?
            .in_range
            .store(in_range, Ordering::SeqCst);
        Ok(())
    }

    /// Plays a BlueZ restart (bluetoothd crashed and came back) on a bus that stays up: gives
    /// up the name `org.bluez`, drops every link, and takes the name again after `away`.
    /// (Unlike a real restart, the devices' objects stay exported.)
    pub async fn restart(&self, away: std::time::Duration) -> anyhow::Result<()> {
        self.conn
            .release_name("org.bluez")
            .await
            .context("releasing org.bluez")?;
        for address in self.devices.keys() {
            self.drop_connection(address).await?;
        }
        tokio::time::sleep(away).await;
        self.conn
            .request_name("org.bluez")
            .await
            .context("taking org.bluez again")?;
        Ok(())
    }

    /// Drops the link as a device that goes out of range does: `Connected` and
    /// `ServicesResolved` become false and every subscription ends.
    pub async fn drop_connection(&self, address: &str) -> anyhow::Result<()> {
        let dev = self.device(address)?.clone();
        if !dev.exported.load(Ordering::SeqCst) {
            return Ok(());
        }
        let server = self.conn.object_server();
        let iface = server.interface::<_, Device>(dev.path.as_str()).await?;
        {
            let mut d = iface.get_mut().await;
            if !d.connected {
                return Ok(());
            }
            d.connected = false;
            d.services_resolved = false;
        }
        link_lost(server, &dev).await;
        let d = iface.get().await;
        let emitter = iface.signal_emitter();
        d.services_resolved_changed(emitter).await?;
        d.connected_changed(emitter).await?;
        Ok(())
    }
}

/// Ends every notify session of `dev`'s characteristics.
async fn link_lost(server: &ObjectServer, dev: &DeviceShared) {
    for path in dev.char_paths.values() {
        if let Ok(c) = server.interface::<_, Characteristic>(path.as_str()).await {
            let was = std::mem::replace(&mut c.get_mut().await.notifying, false);
            if was {
                let _ = c.get().await.notifying_changed(c.signal_emitter()).await;
            }
        }
    }
}

/// BlueZ's errors (`org.bluez.Error.*`), as clients match on their names.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "org.bluez.Error")]
enum BluezError {
    /// A D-Bus level error.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// `org.bluez.Error.Failed`.
    Failed(String),
    /// `org.bluez.Error.InProgress`.
    InProgress(String),
    /// `org.bluez.Error.NotReady`.
    NotReady(String),
    /// `org.bluez.Error.NotSupported`.
    NotSupported(String),
    /// `org.bluez.Error.NotPermitted`.
    NotPermitted(String),
    /// `org.bluez.Error.InvalidArguments`.
    InvalidArguments(String),
}

impl From<fdo::Error> for BluezError {
    fn from(e: fdo::Error) -> Self {
        BluezError::ZBus(zbus::Error::FDO(Box::new(e)))
    }
}

fn failed(message: &str) -> BluezError {
    BluezError::Failed(message.to_owned())
}

/// `org.bluez.Adapter1` at `/org/bluez/hci0`.
struct Adapter {
    powered: bool,
    /// The clients (unique bus names) with a discovery session, as BlueZ keeps them.
    sessions: BTreeSet<String>,
    /// Each client's discovery filter: service UUIDs (empty: every device).
    filters: HashMap<String, Vec<Uuid>>,
    devices: Vec<Arc<DeviceShared>>,
}

/// The sender of a method call, or "" (never for calls over a bus).
fn sender(header: &Header<'_>) -> String {
    header.sender().map(|s| s.to_string()).unwrap_or_default()
}

impl Adapter {
    /// Reports (exports) every device in range that the filter lets through and that was not
    /// reported before. By a task of its own: registering an object takes the object tree's
    /// write lock, which must never be awaited while this interface's lock is held (a
    /// concurrent GetManagedObjects holds the tree and waits for this interface: a deadlock).
    fn announce(&self, conn: &Connection, client: &str) {
        let filter = self.filters.get(client).cloned().unwrap_or_default();
        let found: Vec<Arc<DeviceShared>> = self
            .devices
            .iter()
            .filter(|dev| {
                (filter.is_empty() || dev.spec.advertised.iter().any(|u| filter.contains(u)))
                    && dev.in_range.load(Ordering::SeqCst)
                    && !dev.exported.swap(true, Ordering::SeqCst)
            })
            .cloned()
            .collect();
        if found.is_empty() {
            return;
        }
        let conn = conn.clone();
        tokio::spawn(async move {
            for dev in found {
                // Registering under the ObjectManager emits InterfacesAdded(Device1): the
                // client's "device discovered".
                let device = Device {
                    shared: dev.clone(),
                    connected: false,
                    services_resolved: false,
                };
                if let Err(e) = conn.object_server().at(dev.path.as_str(), device).await {
                    tracing::warn!(address = %dev.spec.address, error = %e, "fake BlueZ cannot export a device");
                }
            }
        });
    }
}

#[interface(name = "org.bluez.Adapter1")]
impl Adapter {
    #[zbus(property)]
    fn address(&self) -> String {
        "00:1A:7D:DA:71:13".to_owned()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".to_owned()
    }

    #[zbus(property)]
    fn name(&self) -> String {
        "vitalsd-sim".to_owned()
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        "vitalsd-sim".to_owned()
    }

    /// BlueZ's own `usb:v1D6Bp0246d0537` (Linux Foundation, BlueZ 5.55): btleplug refuses an
    /// adapter whose Modalias does not parse.
    #[zbus(property)]
    fn modalias(&self) -> String {
        "usb:v1D6Bp0246d0537".to_owned()
    }

    #[zbus(property)]
    fn powered(&self) -> bool {
        self.powered
    }

    #[zbus(property)]
    fn set_powered(&mut self, powered: bool) {
        self.powered = powered;
    }

    #[zbus(property)]
    fn discovering(&self) -> bool {
        !self.sessions.is_empty()
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        Vec::new()
    }

    /// Replaces the caller's filter; during its discovery, devices that the new filter lets
    /// through are reported at once (BlueZ keeps one filter per client and applies a new one
    /// immediately).
    fn set_discovery_filter(
        &mut self,
        filter: HashMap<String, OwnedVariant>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
    ) -> Result<(), BluezError> {
        let client = sender(&header);
        let mut uuids = Vec::new();
        if let Some(v) = filter.get("UUIDs") {
            let given = Vec::<String>::try_from(v.clone())
                .map_err(|e| BluezError::InvalidArguments(format!("UUIDs: {e}")))?;
            for u in given {
                uuids.push(
                    Uuid::parse_str(&u)
                        .map_err(|e| BluezError::InvalidArguments(format!("UUID {u:?}: {e}")))?,
                );
            }
        }
        self.filters.insert(client.clone(), uuids);
        if self.sessions.contains(&client) {
            self.announce(conn, &client);
        }
        Ok(())
    }

    async fn start_discovery(
        &mut self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        if !self.powered {
            return Err(BluezError::NotReady("Resource Not Ready".to_owned()));
        }
        let client = sender(&header);
        if self.sessions.contains(&client) {
            // BlueZ allows one discovery session per client.
            return Err(BluezError::InProgress(
                "Operation already in progress".to_owned(),
            ));
        }
        let was = !self.sessions.is_empty();
        self.sessions.insert(client.clone());
        if !was {
            self.discovering_changed(&emitter).await?;
        }
        self.announce(conn, &client);
        Ok(())
    }

    async fn stop_discovery(
        &mut self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        let client = sender(&header);
        if !self.sessions.remove(&client) {
            return Err(failed("No discovery started"));
        }
        if self.sessions.is_empty() {
            self.discovering_changed(&emitter).await?;
        }
        Ok(())
    }

    async fn remove_device(&mut self, _device: OwnedObjectPath) -> Result<(), BluezError> {
        Err(failed("not supported by the simulator"))
    }
}

/// `org.bluez.Device1`.
struct Device {
    shared: Arc<DeviceShared>,
    connected: bool,
    services_resolved: bool,
}

#[interface(name = "org.bluez.Device1")]
impl Device {
    #[zbus(property)]
    fn address(&self) -> String {
        self.shared.spec.address.to_ascii_uppercase()
    }

    #[zbus(property)]
    fn address_type(&self) -> String {
        "public".to_owned()
    }

    #[zbus(property)]
    fn name(&self) -> String {
        self.shared.spec.name.clone()
    }

    #[zbus(property)]
    fn alias(&self) -> String {
        self.shared.spec.name.clone()
    }

    #[zbus(property)]
    fn paired(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn bonded(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn trusted(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn blocked(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn legacy_pairing(&self) -> bool {
        false
    }

    #[zbus(property)]
    fn connected(&self) -> bool {
        self.connected
    }

    #[zbus(property)]
    fn services_resolved(&self) -> bool {
        self.services_resolved
    }

    #[zbus(property, name = "RSSI")]
    fn rssi(&self) -> i16 {
        self.shared.spec.rssi
    }

    #[zbus(property, name = "UUIDs")]
    fn uuids(&self) -> Vec<String> {
        self.shared
            .spec
            .advertised
            .iter()
            .map(|u| u.to_string())
            .collect()
    }

    #[zbus(property)]
    fn adapter(&self) -> OwnedObjectPath {
        OwnedObjectPath::try_from(ADAPTER_PATH).unwrap_or_default()
    }

    async fn connect(
        &mut self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        if self.connected {
            return Ok(());
        }
        if !self.shared.in_range.load(Ordering::SeqCst) {
            // What BlueZ answers when the device does not respond to the connection request.
            return Err(failed("le-connection-abort-by-local"));
        }
        self.connected = true;
        self.connected_changed(&emitter).await?;
        // Services are resolved after Connect returns, as with BlueZ, by a task of its own (it
        // registers objects: see start_discovery for why not here).
        let conn = conn.clone();
        let dev = self.shared.clone();
        tokio::spawn(async move {
            if let Err(e) = resolve_services(&conn, &dev).await {
                tracing::warn!(address = %dev.spec.address, error = %e, "fake BlueZ cannot resolve services");
            }
        });
        Ok(())
    }

    async fn disconnect(
        &mut self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        if !self.connected {
            return Ok(());
        }
        self.connected = false;
        self.services_resolved = false;
        self.services_resolved_changed(&emitter).await?;
        self.connected_changed(&emitter).await?;
        let conn = conn.clone();
        let dev = self.shared.clone();
        tokio::spawn(async move { link_lost(conn.object_server(), &dev).await });
        Ok(())
    }

    fn pair(&mut self) -> Result<(), BluezError> {
        Err(failed("pairing is not simulated"))
    }

    fn cancel_pairing(&mut self) -> Result<(), BluezError> {
        Ok(())
    }
}

/// Exports the GATT tree of `dev` (once), then sets `ServicesResolved` if still connected.
async fn resolve_services(conn: &Connection, dev: &Arc<DeviceShared>) -> zbus::Result<()> {
    let server = conn.object_server();
    if !dev.gatt_exported.load(Ordering::SeqCst) {
        export_gatt(server, dev).await?;
        dev.gatt_exported.store(true, Ordering::SeqCst);
    }
    let iface = server.interface::<_, Device>(dev.path.as_str()).await?;
    {
        let mut d = iface.get_mut().await;
        if !d.connected || d.services_resolved {
            return Ok(());
        }
        d.services_resolved = true;
    }
    iface
        .get()
        .await
        .services_resolved_changed(iface.signal_emitter())
        .await
}

/// Exports the GATT tree of `dev` under its device path.
async fn export_gatt(server: &ObjectServer, dev: &Arc<DeviceShared>) -> zbus::Result<()> {
    let mut handle = 0x000a_u16;
    for s in &dev.spec.services {
        let spath = format!("{}/service{handle:04x}", dev.path);
        handle += 1;
        for c in &s.characteristics {
            let cpath = format!("{spath}/char{handle:04x}");
            let value = dev
                .values
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&c.uuid)
                .cloned()
                .unwrap_or_default();
            let dpath = format!("{cpath}/desc{:04x}", handle + 2);
            handle += 3;
            server
                .at(
                    cpath.as_str(),
                    Characteristic {
                        uuid: c.uuid,
                        service: spath.clone(),
                        flags: c.flags.clone(),
                        value,
                        notifying: false,
                        shared: dev.clone(),
                    },
                )
                .await?;
            server
                .at(
                    dpath.as_str(),
                    Descriptor {
                        characteristic: cpath.clone(),
                    },
                )
                .await?;
        }
        server
            .at(
                spath.as_str(),
                Service {
                    uuid: s.uuid,
                    device: dev.path.clone(),
                },
            )
            .await?;
    }
    Ok(())
}

fn object_path(p: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(p).unwrap_or_default()
}

/// `org.bluez.GattService1`.
struct Service {
    uuid: Uuid,
    device: String,
}

#[interface(name = "org.bluez.GattService1")]
impl Service {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.to_string()
    }

    #[zbus(property)]
    fn primary(&self) -> bool {
        true
    }

    #[zbus(property)]
    fn device(&self) -> OwnedObjectPath {
        object_path(&self.device)
    }
}

/// `org.bluez.GattCharacteristic1`.
struct Characteristic {
    uuid: Uuid,
    service: String,
    flags: Vec<&'static str>,
    value: Vec<u8>,
    notifying: bool,
    shared: Arc<DeviceShared>,
}

#[interface(name = "org.bluez.GattCharacteristic1")]
impl Characteristic {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        self.uuid.to_string()
    }

    #[zbus(property)]
    fn service(&self) -> OwnedObjectPath {
        object_path(&self.service)
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        self.value.clone()
    }

    #[zbus(property)]
    fn notifying(&self) -> bool {
        self.notifying
    }

    #[zbus(property)]
    fn flags(&self) -> Vec<String> {
        self.flags.iter().map(|f| (*f).to_owned()).collect()
    }

    #[zbus(property, name = "MTU")]
    fn mtu(&self) -> u16 {
        247
    }

    fn read_value(&self, _options: HashMap<String, OwnedVariant>) -> Result<Vec<u8>, BluezError> {
        if !self.flags.contains(&"read") {
            return Err(BluezError::NotPermitted("Read not permitted".to_owned()));
        }
        Ok(self.value.clone())
    }

    fn write_value(
        &mut self,
        value: Vec<u8>,
        _options: HashMap<String, OwnedVariant>,
    ) -> Result<(), BluezError> {
        if !self.flags.contains(&"write") && !self.flags.contains(&"write-without-response") {
            return Err(BluezError::NotPermitted("Write not permitted".to_owned()));
        }
        let _ = self.shared.writes.send(Written {
            uuid: self.uuid,
            value,
        });
        Ok(())
    }

    async fn start_notify(
        &mut self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        if !self.flags.contains(&"notify") && !self.flags.contains(&"indicate") {
            return Err(BluezError::NotSupported(
                "Operation is not supported".to_owned(),
            ));
        }
        if !self.notifying {
            self.notifying = true;
            self.notifying_changed(&emitter).await?;
        }
        Ok(())
    }

    async fn stop_notify(
        &mut self,
        #[zbus(signal_emitter)] emitter: SignalEmitter<'_>,
    ) -> Result<(), BluezError> {
        if !self.notifying {
            return Err(failed("No notify session started"));
        }
        self.notifying = false;
        self.notifying_changed(&emitter).await?;
        Ok(())
    }
}

/// `org.bluez.GattDescriptor1`: the Client Characteristic Configuration (0x2902).
struct Descriptor {
    characteristic: String,
}

#[interface(name = "org.bluez.GattDescriptor1")]
impl Descriptor {
    #[zbus(property, name = "UUID")]
    fn uuid(&self) -> String {
        "00002902-0000-1000-8000-00805f9b34fb".to_owned()
    }

    #[zbus(property)]
    fn characteristic(&self) -> OwnedObjectPath {
        object_path(&self.characteristic)
    }

    #[zbus(property)]
    fn value(&self) -> Vec<u8> {
        vec![0, 0]
    }

    fn read_value(&self, _options: HashMap<String, OwnedVariant>) -> Vec<u8> {
        vec![0, 0]
    }
}
