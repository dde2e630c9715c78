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
//! values the client writes ([`FakeBluez::take_writes`]).//!
//! The bus is in `bus`; the D-Bus objects (adapter, devices, GATT tree) in `objects`.

mod bus;
mod objects;

pub use bus::Bus;
use objects::{Adapter, Characteristic, Device, link_lost};

use anyhow::{Context, bail};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use uuid::Uuid;
use zbus::{Connection, fdo};

/// The adapter's object path.
pub const ADAPTER_PATH: &str = "/org/bluez/hci0";

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
