//! Bluetooth LE devices through btleplug (BlueZ over D-Bus on Linux; the system bus, or the one
//! named by `DBUS_SYSTEM_BUS_ADDRESS`, which is how the simulator's fake BlueZ is reached).
//!
//! One btleplug manager and adapter serve the whole daemon ([`Central::shared`]). A device task
//! calls [`connect`]: find the bound address (a scan filtered on the profile's service, shared
//! by every task that is looking), check the advertised name against the binding's pattern,
//! connect (with a timeout), discover services, subscribe to the profile's characteristics and
//! read the read-once ones (features, battery). The [`BleLink`] then yields
//! `(characteristic, value)` pairs, writes the profile's poll command on its schedule, and ends
//! with [`BleError::Disconnected`] when BlueZ reports the link gone
//! (`CentralEvent::DeviceDisconnected`). btleplug does not reconnect by itself: the caller's
//! loop does, with [`super::Backoff`].
//!
//! # A session that heals
//! btleplug (through bluez-async and dbus-tokio) gives no signal when its D-Bus connection dies:
//! it drops the task that would tell, its event streams then stay silent for ever and its calls
//! hang. So every [`Central`] has a watchdog ([`watch`]) that declares the session lost:
//! - at once when the bus goes away: the watchdog's own connection to the same bus (zbus)
//!   sees the socket close;
//! - at once when BlueZ leaves the bus (`NameOwnerChanged` for `org.bluez`, as when
//!   bluetoothd restarts or crashes);
//! - within [`PROBE_EVERY`] + [`PROBE_TIMEOUT`] (10 s) otherwise: a cheap call through
//!   btleplug's own connection (the adapter's properties) that fails or does not answer in
//!   time, as with a BlueZ that hangs or an adapter unplugged. A panic in a library task makes
//!   the watchdog probe at once ([`library_panicked`]).
//!
//! A lost session ends every link and connection attempt made on it with
//! [`BleError::SessionLost`] (each device then shows `disconnected`, with its technical alarm),
//! and the next [`Central::shared`] makes a new manager and adapter: a new D-Bus connection,
//! retried by each device's backoff until BlueZ is back.

use crate::config::{BleCharacteristic, BleProfile, Endpoint, Profile};
use btleplug::api::{
    Central as _, CentralEvent, CharPropFlags, Characteristic, Manager as _, Peripheral as _,
    ScanFilter, ValueNotification, WriteType,
};
use btleplug::platform::{Adapter, Manager, Peripheral, PeripheralId};
use futures_util::{Stream, StreamExt};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// How long a device may take to show up in a scan before the attempt counts as failed.
pub const FIND_TIMEOUT: Duration = Duration::from_secs(10);
/// How long connecting (including service discovery) may take. BlueZ's own limit is longer;
/// a patient's device that takes this long is better retried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// A device's first connection attempt's grace, counted from when the daemon starts looking for
/// it: as long as one attempt may take (a scan, then connecting). Until it has connected once,
/// or this has passed, a failed attempt raises no technical alarm (the device shows as
/// `connecting`, with the reason).
pub const FIRST_ATTEMPT_GRACE: Duration =
    Duration::from_secs(FIND_TIMEOUT.as_secs() + CONNECT_TIMEOUT.as_secs());
/// How long one GATT operation (subscribe, read, write) may take.
const OP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a BLE device could not be reached, or why its link ended. Each variant names the device.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BleError {
    /// No D-Bus system bus, or BlueZ is not on it.
    #[error("bluetooth is not available: {0}")]
    Unavailable(String),
    /// BlueZ has no adapter.
    #[error("no bluetooth adapter found, expected one powered adapter (hci0)")]
    NoAdapter,
    /// The device was not seen.
    #[error("device {address} not found within {after:?} of scanning for service {service}")]
    NotFound {
        /// The bound address.
        address: String,
        /// The profile's service, the scan filter.
        service: Uuid,
        /// How long the scan ran.
        after: Duration,
    },
    /// The device at the address advertises another name than the binding expects.
    #[error("device {address} advertises name {found:?}, expected a name matching {pattern:?}")]
    NameMismatch {
        /// The bound address.
        address: String,
        /// What it advertises (empty: nothing).
        found: String,
        /// The binding's pattern.
        pattern: String,
    },
    /// Connecting took too long.
    #[error("connecting to {address} timed out after {after:?}")]
    Timeout {
        /// The bound address.
        address: String,
        /// The limit.
        after: Duration,
    },
    /// The device lacks a characteristic its profile subscribes to.
    #[error(
        "device {address} has no characteristic {uuid} ({protocol}), expected the GATT layout of its profile"
    )]
    MissingCharacteristic {
        /// The bound address.
        address: String,
        /// The missing characteristic.
        uuid: Uuid,
        /// Its decoder, naming what it is for.
        protocol: String,
    },
    /// A btleplug/BlueZ operation failed.
    #[error("device {address}: {op} failed: {source}")]
    Btle {
        /// The bound address.
        address: String,
        /// What was being done.
        op: &'static str,
        /// btleplug's error.
        #[source]
        source: btleplug::Error,
    },
    /// The link dropped (BlueZ reported the device disconnected).
    #[error("device {address} disconnected")]
    Disconnected {
        /// The bound address.
        address: String,
    },
    /// The connection to BlueZ was lost (the bus or BlueZ went away, or stopped answering);
    /// the link cannot be trusted and is made again on a new session.
    #[error("device {address}: connection to BlueZ lost ({why})")]
    SessionLost {
        /// The bound address.
        address: String,
        /// What the watchdog saw.
        why: String,
    },
}

/// How often the watchdog checks that BlueZ answers through btleplug's own connection.
pub const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long that check may take before the session counts as lost. Reading the adapter's
/// properties is answered at once by a working BlueZ, even while it connects to devices.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Woken by [`library_panicked`].
static LIBRARY_PANIC: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Called by the panic hook when a task of the Bluetooth/D-Bus libraries panicked (a detached
/// task that unwraps a D-Bus result, as bluez-async 0.9.0's stream cleanup did): the watchdog checks the session at
/// once instead of at its next probe, and a session that does not answer is made again.
pub fn library_panicked() {
    LIBRARY_PANIC.notify_one();
}

/// The daemon's Bluetooth side: one btleplug manager and its first adapter, shared by every BLE
/// device task, and the scan they share.
pub struct Central {
    /// Kept alive for the adapter's D-Bus session.
    _manager: Manager,
    adapter: Adapter,
    /// The services of the tasks currently looking for their device (one entry per task); the
    /// scan runs while this is not empty, filtered on all of them.
    scanners: Mutex<Vec<Uuid>>,
    /// Cancelled when the session is found dead: every link and connection attempt on it ends.
    lost: CancellationToken,
    /// Why, once lost.
    why_lost: StdMutex<Option<String>>,
}

/// The process-wide [`Central`], made on first use and again after it failed.
static SHARED: StdMutex<Option<Arc<Central>>> = StdMutex::new(None);
/// Serializes the making of [`SHARED`].
static MAKING: Mutex<()> = Mutex::const_new(());

/// Ends the shared session quietly, for an orderly stop once the daemon's BLE devices have
/// stopped: BlueZ leaving the bus afterwards (the demo's simulator stopping) is then no session
/// lost. A later [`Central::shared`] makes a new session.
pub fn close_shared() {
    let central = SHARED.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some(c) = central {
        c.why_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| "closed at shutdown".to_owned());
        c.lost.cancel();
    }
}

impl Central {
    /// The shared central, connecting to BlueZ on first use and again once the previous
    /// session was lost; a new one is watched by [`watch`].
    pub async fn shared() -> Result<Arc<Central>, BleError> {
        let live = || {
            SHARED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .filter(|c| !c.lost.is_cancelled())
        };
        if let Some(c) = live() {
            return Ok(c);
        }
        let _making = MAKING.lock().await;
        if let Some(c) = live() {
            return Ok(c);
        }
        let old = SHARED.lock().unwrap_or_else(|e| e.into_inner()).take();
        let central = Arc::new(Central::new().await?);
        if old.is_some() {
            tracing::info!("new BlueZ session made after the previous one was lost");
        }
        *SHARED.lock().unwrap_or_else(|e| e.into_inner()) = Some(central.clone());
        tokio::spawn(watch(central.clone()));
        Ok(central)
    }

    /// Declares this session lost (once; later reasons are ignored): its links and connection
    /// attempts end, and the next [`Central::shared`] makes a new session.
    pub fn lose(&self, why: &str) {
        {
            let mut w = self.why_lost.lock().unwrap_or_else(|e| e.into_inner());
            if w.is_some() {
                return;
            }
            *w = Some(why.to_owned());
        }
        tracing::warn!(
            reason = why,
            "BlueZ session lost; every BLE device reconnects on a new one"
        );
        self.lost.cancel();
    }

    /// Why the session was lost (empty while it is not).
    fn why_lost(&self) -> String {
        self.why_lost
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_default()
    }

    /// A new manager and its first adapter.
    pub async fn new() -> Result<Central, BleError> {
        let manager = Manager::new()
            .await
            .map_err(|e| BleError::Unavailable(e.to_string()))?;
        let adapter = manager
            .adapters()
            .await
            .map_err(|e| BleError::Unavailable(e.to_string()))?
            .into_iter()
            .next()
            .ok_or(BleError::NoAdapter)?;
        Ok(Central {
            _manager: manager,
            adapter,
            scanners: Mutex::new(Vec::new()),
            lost: CancellationToken::new(),
            why_lost: StdMutex::new(None),
        })
    }

    /// The adapter.
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// Joins the shared scan for `service`. BlueZ keeps one discovery filter per D-Bus client,
    /// and every device task shares this client, so the filter is the union of the services
    /// of every task that is looking. The scan stops when the last [`ScanGuard`] is released
    /// with [`ScanGuard::stop`].
    async fn scan(self: &Arc<Self>, service: Uuid) -> Result<ScanGuard, btleplug::Error> {
        let mut looking = self.scanners.lock().await;
        looking.push(service);
        let mut services = looking.clone();
        services.sort();
        services.dedup();
        match self.adapter.start_scan(ScanFilter { services }).await {
            Ok(()) => {}
            // BlueZ answers InProgress when this client already discovers (another task's
            // scan, or one whose stop failed); the new filter, set before StartDiscovery, is in
            // force all the same. (Its message, "Operation already in progress", is what
            // btleplug's error displays; the error's D-Bus name is what tells.)
            Err(e) if is_in_progress(&e) => {}
            Err(e) => {
                looking.pop();
                return Err(e);
            }
        }
        Ok(ScanGuard {
            central: self.clone(),
            service,
        })
    }

    async fn peripheral_at(&self, address: &str) -> Result<Option<Peripheral>, btleplug::Error> {
        for p in self.adapter.peripherals().await? {
            if p.address().to_string().eq_ignore_ascii_case(address) {
                return Ok(Some(p));
            }
        }
        Ok(None)
    }
}

/// The session's watchdog (see the module doc): returns once the session is lost.
async fn watch(central: Arc<Central>) {
    // Our own connection to the same bus, for what btleplug's does not tell: the bus closing,
    // and BlueZ leaving it. Without it (should it fail) the probe still finds both, later.
    let bus_events = match bluez_owner_changes().await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the D-Bus connection to BlueZ; relying on the {PROBE_EVERY:?} probe");
            None
        }
    };
    let bus_gone = async {
        let Some(mut stream) = bus_events else {
            return std::future::pending::<String>().await;
        };
        loop {
            match stream.next().await {
                None => return "the D-Bus system bus connection closed".to_owned(),
                Some(Err(e)) => return format!("the D-Bus system bus connection failed: {e}"),
                Some(Ok(msg)) => {
                    // The BlueZ this session talks to left (its objects went with it), whether
                    // or not another one took its name.
                    if let Ok((name, old, _new)) =
                        msg.body().deserialize::<(String, String, String)>()
                        && name == "org.bluez"
                        && !old.is_empty()
                    {
                        return "BlueZ (org.bluez) left the D-Bus system bus".to_owned();
                    }
                }
            }
        }
    };
    tokio::pin!(bus_gone);
    let mut tick = tokio::time::interval(PROBE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = central.lost.cancelled() => return,
            why = &mut bus_gone => {
                central.lose(&why);
                return;
            }
            _ = tick.tick() => {}
            _ = LIBRARY_PANIC.notified() => {
                tracing::info!("a Bluetooth library task panicked; checking the BlueZ session now");
            }
        }
        match tokio::time::timeout(PROBE_TIMEOUT, central.adapter.adapter_info()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                central.lose(&format!("BlueZ did not answer a check of the adapter: {e}"));
                return;
            }
            Err(_) => {
                central.lose(&format!(
                    "BlueZ did not answer a check of the adapter within {PROBE_TIMEOUT:?}"
                ));
                return;
            }
        }
    }
}

/// `NameOwnerChanged` for `org.bluez` on the system bus (the one `DBUS_SYSTEM_BUS_ADDRESS`
/// names, as for btleplug), over a connection of our own; the stream ends, or yields an error,
/// when that connection closes.
async fn bluez_owner_changes() -> zbus::Result<zbus::MessageStream> {
    let conn = zbus::Connection::system().await?;
    let rule = "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
                member='NameOwnerChanged',arg0='org.bluez'";
    let stream = zbus::MessageStream::for_match_rule(rule, &conn, None).await?;
    // BlueZ may have left between btleplug's first call and this subscription.
    let owner: bool = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "NameHasOwner",
            &("org.bluez",),
        )
        .await?
        .body()
        .deserialize()?;
    if !owner {
        return Err(zbus::Error::Failure(
            "org.bluez has no owner on the bus".to_owned(),
        ));
    }
    Ok(stream)
}

/// Whether BlueZ refused a call with `org.bluez.Error.InProgress` (btleplug wraps bluez-async's
/// error, which holds the D-Bus error with its name).
fn is_in_progress(e: &btleplug::Error) -> bool {
    let btleplug::Error::Other(inner) = e else {
        return false;
    };
    matches!(
        inner.downcast_ref::<bluez_async::BluetoothError>(),
        Some(bluez_async::BluetoothError::DbusError(d)) if d.name() == Some("org.bluez.Error.InProgress")
    )
}

/// A task's share of the scan.
struct ScanGuard {
    central: Arc<Central>,
    service: Uuid,
}

impl ScanGuard {
    /// Leaves the scan: the last one out stops it; otherwise the filter narrows to the services
    /// still looked for.
    async fn stop(self) {
        let mut looking = self.central.scanners.lock().await;
        if let Some(i) = looking.iter().position(|u| *u == self.service) {
            looking.remove(i);
        }
        let adapter = &self.central.adapter;
        let done = if looking.is_empty() {
            adapter.stop_scan().await
        } else {
            let mut services = looking.clone();
            services.sort();
            services.dedup();
            match adapter.start_scan(ScanFilter { services }).await {
                Err(e) if is_in_progress(&e) => Ok(()),
                other => other,
            }
        };
        if let Err(e) = done {
            tracing::debug!(error = %e, "updating the shared BLE scan failed");
        }
    }
}

type Notifications = Pin<Box<dyn Stream<Item = ValueNotification> + Send>>;
type Events = Pin<Box<dyn Stream<Item = CentralEvent> + Send>>;

/// A connected, subscribed BLE device.
pub struct BleLink {
    address: String,
    peripheral: Peripheral,
    id: PeripheralId,
    notifications: Notifications,
    events: Events,
    /// The session's: cancelled when the session is lost.
    lost: CancellationToken,
    /// The session (for the reason it was lost).
    central: Arc<Central>,
    /// Values read at connect, handed out before any notification.
    pending: VecDeque<(Uuid, Vec<u8>)>,
    poll: Option<Poll>,
}

struct Poll {
    characteristic: Characteristic,
    command: Vec<u8>,
    write_type: WriteType,
    tick: tokio::time::Interval,
}

impl std::fmt::Debug for BleLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BleLink")
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

/// Whether `name` matches `pattern`, where `*` matches any run of characters; ASCII case is
/// ignored (devices vary the case of their names between firmware versions).
pub fn name_matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let n: Vec<char> = name.to_ascii_lowercase().chars().collect();
    // Classic wildcard matching with one backtrack point.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Finds, connects and subscribes to the device at `endpoint` (an [`Endpoint::Ble`]) with the
/// GATT layout `profile`.
pub async fn connect(endpoint: &Endpoint, profile: &BleProfile) -> Result<BleLink, BleError> {
    let Endpoint::Ble { address, name } = endpoint else {
        return Err(BleError::Unavailable(format!(
            "{endpoint} is not a Bluetooth LE device"
        )));
    };
    let central = Central::shared().await?;
    // A session lost while connecting ends the attempt at once (its calls would hang).
    tokio::select! {
        r = connect_on(&central, address, name.as_deref(), profile) => r,
        _ = central.lost.cancelled() => Err(BleError::SessionLost {
            address: address.clone(),
            why: central.why_lost(),
        }),
    }
}

async fn connect_on(
    central: &Arc<Central>,
    address: &str,
    name: Option<&str>,
    profile: &BleProfile,
) -> Result<BleLink, BleError> {
    let btle = |op: &'static str| {
        let address = address.to_owned();
        move |source| BleError::Btle {
            address,
            op,
            source,
        }
    };
    // Subscribe to adapter events first, so that no disconnect after connecting is missed.
    let events = match central.adapter.events().await {
        Ok(e) => e,
        Err(e) => {
            // The D-Bus session may be gone (bus restarted): start afresh next time.
            central.lose(&format!("listening to adapter events failed: {e}"));
            return Err(btle("listening to adapter events")(e));
        }
    };
    let peripheral = find(central, address, profile.service).await?;
    if let Some(pattern) = name {
        let found = peripheral
            .properties()
            .await
            .map_err(btle("reading advertised properties"))?
            .and_then(|p| p.local_name)
            .unwrap_or_default();
        if !name_matches(pattern, &found) {
            return Err(BleError::NameMismatch {
                address: address.to_owned(),
                found,
                pattern: pattern.to_owned(),
            });
        }
    }
    let timeout = |_| BleError::Timeout {
        address: address.to_owned(),
        after: CONNECT_TIMEOUT,
    };
    tokio::time::timeout(CONNECT_TIMEOUT, async {
        peripheral.connect().await.map_err(btle("connect"))?;
        peripheral
            .discover_services()
            .await
            .map_err(btle("service discovery"))
    })
    .await
    .map_err(timeout)??;
    match subscribe(central, address, &peripheral, profile, events).await {
        Ok(link) => Ok(link),
        Err(e) => {
            // Leave the device free for the next attempt.
            let _ = peripheral.disconnect().await;
            Err(e)
        }
    }
}

/// The peripheral at `address`: already known to BlueZ, or found by a scan for `service`.
async fn find(
    central: &Arc<Central>,
    address: &str,
    service: Uuid,
) -> Result<Peripheral, BleError> {
    let btle = |op: &'static str| {
        let address = address.to_owned();
        move |source| BleError::Btle {
            address,
            op,
            source,
        }
    };
    if let Some(p) = central
        .peripheral_at(address)
        .await
        .map_err(btle("listing devices"))?
    {
        return Ok(p);
    }
    let mut events = central
        .adapter
        .events()
        .await
        .map_err(btle("listening to adapter events"))?;
    let scan = central
        .scan(service)
        .await
        .map_err(btle("starting a scan"))?;
    let found = tokio::time::timeout(FIND_TIMEOUT, async {
        while let Some(ev) = events.next().await {
            if let CentralEvent::DeviceDiscovered(id) = ev
                && let Ok(p) = central.adapter.peripheral(&id).await
                && p.address().to_string().eq_ignore_ascii_case(address)
            {
                return Some(p);
            }
        }
        None
    })
    .await;
    scan.stop().await;
    match found {
        Ok(Some(p)) => Ok(p),
        // Discovered between the first look and the scan's start: look again.
        _ => central
            .peripheral_at(address)
            .await
            .map_err(btle("listing devices"))?
            .ok_or_else(|| BleError::NotFound {
                address: address.to_owned(),
                service,
                after: FIND_TIMEOUT,
            }),
    }
}

async fn subscribe(
    central: &Arc<Central>,
    address: &str,
    peripheral: &Peripheral,
    profile: &BleProfile,
    events: Events,
) -> Result<BleLink, BleError> {
    let btle = |op: &'static str| {
        let address = address.to_owned();
        move |source| BleError::Btle {
            address,
            op,
            source,
        }
    };
    let op_timeout = |_| BleError::Timeout {
        address: address.to_owned(),
        after: OP_TIMEOUT,
    };
    let chars = peripheral.characteristics();
    let lookup = |uuid: Uuid| chars.iter().find(|c| c.uuid == uuid).cloned();
    // The stream first, so that the first value after subscribing is not missed.
    let notifications = peripheral
        .notifications()
        .await
        .map_err(btle("opening the notification stream"))?;
    let mut pending = VecDeque::new();
    let mut subscribed = 0;
    let mut first_missing: Option<&BleCharacteristic> = None;
    for spec in &profile.characteristics {
        let BleCharacteristic {
            uuid,
            protocol,
            mode,
        } = spec;
        let Some(c) = lookup(*uuid) else {
            // Optional parts (spot-check next to continuous, battery, features) that this unit
            // does not have; a unit with none of the subscribed ones is refused below.
            tracing::info!(address, %uuid, protocol, "device lacks a characteristic of its profile");
            if mode.subscribes() {
                first_missing.get_or_insert(spec);
            }
            continue;
        };
        if mode.subscribes() {
            tokio::time::timeout(OP_TIMEOUT, peripheral.subscribe(&c))
                .await
                .map_err(op_timeout)?
                .map_err(btle("subscribe"))?;
            subscribed += 1;
        } else {
            let value = tokio::time::timeout(OP_TIMEOUT, peripheral.read(&c))
                .await
                .map_err(op_timeout)?
                .map_err(btle("read"))?;
            pending.push_back((*uuid, value));
        }
    }
    if subscribed == 0
        && let Some(missing) = first_missing
    {
        return Err(BleError::MissingCharacteristic {
            address: address.to_owned(),
            uuid: missing.uuid,
            protocol: missing.protocol.clone(),
        });
    }
    let poll = match &profile.poll {
        None => None,
        Some(p) => {
            let Some(c) = lookup(p.write) else {
                return Err(BleError::MissingCharacteristic {
                    address: address.to_owned(),
                    uuid: p.write,
                    protocol: "poll command".to_owned(),
                });
            };
            let write_type = if c.properties.contains(CharPropFlags::WRITE_WITHOUT_RESPONSE) {
                WriteType::WithoutResponse
            } else {
                WriteType::WithResponse
            };
            let mut tick = tokio::time::interval(p.every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            Some(Poll {
                characteristic: c,
                command: p.command.clone(),
                write_type,
                tick,
            })
        }
    };
    Ok(BleLink {
        address: address.to_owned(),
        id: peripheral.id(),
        peripheral: peripheral.clone(),
        notifications,
        events,
        lost: central.lost.clone(),
        central: central.clone(),
        pending,
        poll,
    })
}

impl BleLink {
    /// The next value: a characteristic read at connect, a notification or indication; writes
    /// the poll command when due. Ends with [`BleError::Disconnected`] when the link drops.
    pub async fn next(&mut self) -> Result<(Uuid, Vec<u8>), BleError> {
        if let Some(v) = self.pending.pop_front() {
            return Ok(v);
        }
        loop {
            let poll_due = async {
                match &mut self.poll {
                    Some(p) => {
                        p.tick.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = self.lost.cancelled() => {
                    return Err(BleError::SessionLost {
                        address: self.address.clone(),
                        why: self.central.why_lost(),
                    });
                }
                n = self.notifications.next() => match n {
                    Some(n) => return Ok((n.uuid, n.value)),
                    None => return Err(self.lost()),
                },
                e = self.events.next() => match e {
                    Some(CentralEvent::DeviceDisconnected(id)) if id == self.id => {
                        return Err(self.lost());
                    }
                    Some(_) => {}
                    None => return Err(self.lost()),
                },
                _ = poll_due => {
                    if let Some(p) = &self.poll {
                        let write = self.peripheral.write(&p.characteristic, &p.command, p.write_type);
                        match tokio::time::timeout(OP_TIMEOUT, write).await {
                            Ok(Ok(())) => {}
                            Ok(Err(source)) => {
                                return Err(BleError::Btle {
                                    address: self.address.clone(),
                                    op: "writing the poll command",
                                    source,
                                });
                            }
                            Err(_) => {
                                return Err(BleError::Timeout {
                                    address: self.address.clone(),
                                    after: OP_TIMEOUT,
                                });
                            }
                        }
                    }
                }
            }
        }
    }

    fn lost(&self) -> BleError {
        BleError::Disconnected {
            address: self.address.clone(),
        }
    }

    /// Disconnects (at shutdown), so that the device is free for its own app or another host.
    /// Waits 2 s at most: an unresponsive BlueZ must not hold up the daemon's shutdown.
    pub async fn disconnect(self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.peripheral.disconnect()).await;
    }
}

/// A device seen by [`scan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `AA:BB:CC:DD:EE:FF`.
    pub address: String,
    /// Advertised (or BlueZ alias) name, if any.
    pub name: Option<String>,
    /// Last signal strength, dBm.
    pub rssi: Option<i16>,
    /// Advertised service UUIDs.
    pub services: Vec<Uuid>,
}

/// Scans for `duration` (no filter) and lists every device BlueZ knows then, by address.
pub async fn scan(duration: Duration) -> Result<Vec<Seen>, BleError> {
    let central = Arc::new(Central::new().await?);
    let adapter = central.adapter();
    let err = |op: &'static str| {
        move |source| BleError::Btle {
            address: "(scan)".to_owned(),
            op,
            source,
        }
    };
    adapter
        .start_scan(ScanFilter::default())
        .await
        .map_err(err("starting a scan"))?;
    tokio::time::sleep(duration).await;
    let _ = adapter.stop_scan().await;
    let mut seen = Vec::new();
    for p in adapter
        .peripherals()
        .await
        .map_err(err("listing devices"))?
    {
        let props = p.properties().await.ok().flatten();
        let (name, rssi, services) = match props {
            Some(pr) => (pr.local_name, pr.rssi, pr.services),
            None => (None, None, Vec::new()),
        };
        seen.push(Seen {
            address: p.address().to_string(),
            name,
            rssi,
            services,
        });
    }
    seen.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(seen)
}

/// The names of the profiles that fit a device seen in a scan: those whose service it
/// advertises or whose name prefix its name starts with; when both kinds match, only the
/// profiles that match on both (a BerryMed advertising nothing standard, a PLXS oximeter that
/// also has a vendor name).
pub fn matching_profiles<'a>(
    seen: &Seen,
    profiles: impl IntoIterator<Item = &'a Profile>,
) -> Vec<&'a str> {
    let name = seen.name.as_deref().unwrap_or("").to_ascii_lowercase();
    let mut by_service = Vec::new();
    let mut by_both = Vec::new();
    for p in profiles {
        let Some(ble) = &p.ble else { continue };
        let service = seen.services.contains(&ble.service);
        let named = !name.is_empty()
            && ble
                .names
                .iter()
                .any(|n| name.starts_with(&n.to_ascii_lowercase()));
        if service && named {
            by_both.push(p.name.as_str());
        } else if service || named {
            by_service.push(p.name.as_str());
        }
    }
    if by_both.is_empty() {
        by_service
    } else {
        by_both
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scanned_devices_match_profiles_by_service_and_name() {
        let profiles = crate::config::load_profiles(None).unwrap();
        let uuid = |s: &str| crate::config::parse_ble_uuid(s).unwrap();
        let seen = |name: &str, services: Vec<Uuid>| Seen {
            address: "AA:BB:CC:DD:EE:FF".to_owned(),
            name: (!name.is_empty()).then(|| name.to_owned()),
            rssi: Some(-60),
            services,
        };
        let cases = [
            (seen("PLX-1", vec![uuid("1822")]), vec!["generic-plx"]),
            (seen("", vec![uuid("1810")]), vec!["generic-bls"]),
            (seen("Polar H10", vec![uuid("180D")]), vec!["generic-hrs"]),
            (seen("BerryMed", vec![]), vec!["berrymed-bm1000"]),
            (
                seen(
                    "BerryMed",
                    vec![uuid("49535343-fe7d-4ae5-8fa9-9fafd205e455")],
                ),
                vec!["berrymed-bm1000"],
            ),
            (
                seen(
                    "Nonin3230_501234567",
                    vec![uuid("46a970e0-0d5f-11e2-8b5e-0002a5d5c51b")],
                ),
                vec!["nonin-3230"],
            ),
            (seen("O2Ring 2043", vec![]), vec!["wellue-o2ring"]),
            (seen("Kettle", vec![uuid("180F")]), vec![]),
        ];
        for (s, want) in cases {
            assert_eq!(
                matching_profiles(&s, profiles.values().map(|p| &**p)),
                want,
                "{s:?}"
            );
        }
    }

    #[test]
    fn name_patterns_match_with_stars_and_ignore_case() {
        let cases = [
            ("BerryMed", "BerryMed", true),
            ("berrymed", "BERRYMED", true),
            ("BerryMed*", "BerryMed 1000", true),
            ("*O2Ring*", "Wellue O2Ring 1234", true),
            ("Nonin3230_*", "Nonin3230_502345678", true),
            ("Nonin3230_*", "Nonin3150_502345678", false),
            ("*", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("PLX", "PLX2", false),
            ("", "PLX", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(name_matches(pattern, name), want, "{pattern:?} vs {name:?}");
        }
    }
}
