//! The fake BlueZ's D-Bus objects: the adapter, a Device1 per simulated device, and on connect
//! its GATT services, characteristics and CCC descriptors.

use super::{ADAPTER_PATH, DeviceShared, Written};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use uuid::Uuid;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{Connection, ObjectServer, OwnedObjectPath, OwnedVariant, fdo, interface};

/// Ends every notify session of `dev`'s characteristics.
pub(super) async fn link_lost(server: &ObjectServer, dev: &DeviceShared) {
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
pub(super) enum BluezError {
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

pub(super) fn failed(message: &str) -> BluezError {
    BluezError::Failed(message.to_owned())
}

/// `org.bluez.Adapter1` at `/org/bluez/hci0`.
pub(super) struct Adapter {
    pub(super) powered: bool,
    /// The clients (unique bus names) with a discovery session, as BlueZ keeps them.
    pub(super) sessions: BTreeSet<String>,
    /// Each client's discovery filter: service UUIDs (empty: every device).
    pub(super) filters: HashMap<String, Vec<Uuid>>,
    pub(super) devices: Vec<Arc<DeviceShared>>,
}

/// The sender of a method call, or "" (never for calls over a bus).
pub(super) fn sender(header: &Header<'_>) -> String {
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
pub(super) struct Device {
    pub(super) shared: Arc<DeviceShared>,
    pub(super) connected: bool,
    pub(super) services_resolved: bool,
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
pub(super) async fn resolve_services(
    conn: &Connection,
    dev: &Arc<DeviceShared>,
) -> zbus::Result<()> {
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
pub(super) async fn export_gatt(
    server: &ObjectServer,
    dev: &Arc<DeviceShared>,
) -> zbus::Result<()> {
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

pub(super) fn object_path(p: &str) -> OwnedObjectPath {
    OwnedObjectPath::try_from(p).unwrap_or_default()
}

/// `org.bluez.GattService1`.
pub(super) struct Service {
    pub(super) uuid: Uuid,
    pub(super) device: String,
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
pub(super) struct Characteristic {
    pub(super) uuid: Uuid,
    pub(super) service: String,
    pub(super) flags: Vec<&'static str>,
    pub(super) value: Vec<u8>,
    pub(super) notifying: bool,
    pub(super) shared: Arc<DeviceShared>,
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
pub(super) struct Descriptor {
    pub(super) characteristic: String,
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
