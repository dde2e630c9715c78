//! `GET /metrics`: Prometheus text exposition (format 0.0.4) of the counters in
//! [`crate::metrics`] and of the state the hub, the store and the queues keep, read at each
//! scrape. Served on the main listener with a viewer's token (`Authorization: Bearer`, as
//! Prometheus's `authorization` scrape setting sends it). Every metric: docs/metrics.md.
//!
//! Encoded with prometheus-client (the Prometheus project's own Rust client): a [`Collector`]
//! writes each family through its encoder, which takes care of names, `# HELP`/`# TYPE`
//! lines, label escaping and histogram buckets.

use super::ApiState;
use super::auth::RequireViewer;
use crate::hub::wire::DeviceStatus;
use crate::metrics::{Metrics, QUEUE_NOTIFY};
use crate::model::DeviceIdx;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::Ordering;

/// The route.
pub fn routes() -> Router<ApiState> {
    Router::new().route("/metrics", get(scrape))
}

async fn scrape(State(s): State<ApiState>, _: RequireViewer) -> Response {
    match render(&s) {
        Ok(body) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            body,
        )
            .into_response(),
        Err(e) => super::auth::ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("metrics could not be encoded: {e}"),
        )
        .into_response(),
    }
}

/// The exposition text.
pub fn render(s: &ApiState) -> Result<String, fmt::Error> {
    let mut registry = Registry::with_prefix("vitalsd");
    registry.register_collector(Box::new(Scrape::take(s)));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)?;
    Ok(out)
}

/// Everything one scrape reports, read once from its owners.
struct Scrape {
    metrics: &'static Metrics,
    /// (device id, bed id, status, readings, bad frames, reconnects)
    devices: Vec<(String, String, DeviceStatus, u64, u64, u64)>,
    /// Current alarms: (condition, priority, state) -> how many.
    active: BTreeMap<(String, String, String), u64>,
    /// Each WebSocket client: (id, priority messages pending, readings pending, coalesced).
    clients: Vec<(u64, usize, usize, u64)>,
    dashboards: crate::alarm::DashboardCounts,
    store: Option<crate::store::StoreHealth>,
    last_seq: u64,
    /// Each HL7 endpoint (the hub's link counters, kept by src/hl7).
    hl7: Vec<std::sync::Arc<crate::hub::link::LinkStats>>,
    /// The hub's alarm-event queue to the store: (depth, high-water mark, coalesced, dropped).
    dispatch: (u64, u64, u64, u64),
}

impl fmt::Debug for Scrape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scrape")
            .field("devices", &self.devices.len())
            .finish_non_exhaustive()
    }
}

impl Scrape {
    fn take(s: &ApiState) -> Scrape {
        let metrics = crate::metrics::global();
        let cfg = s.hub.config();
        // Configured targets show (at 0) before their first page.
        for t in &cfg.notify {
            metrics.queue(QUEUE_NOTIFY, &t.name);
        }
        let counters = metrics.devices();
        let devices = cfg
            .devices
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let c = counters.get(i);
                let n =
                    |f: fn(&crate::metrics::DeviceCounters) -> &std::sync::atomic::AtomicU64| {
                        c.map_or(0, |c| f(c).load(Ordering::Relaxed))
                    };
                let idx = DeviceIdx(u16::try_from(i).unwrap_or(u16::MAX));
                (
                    d.id.clone(),
                    cfg.bed(d.bed).id.clone(),
                    s.hub.status_of(idx),
                    n(|c| &c.readings),
                    n(|c| &c.bad_frames),
                    n(|c| &c.reconnects),
                )
            })
            .collect();
        let mut active = BTreeMap::new();
        if let Some(list) = s.hub.alarms_json()["alarms"].as_array() {
            for a in list {
                let text = |k: &str| a[k].as_str().unwrap_or("unknown").to_owned();
                *active
                    .entry((text("condition"), text("priority"), text("state")))
                    .or_insert(0) += 1;
            }
        }
        let clients = s
            .hub
            .client_queues()
            .iter()
            .map(|(id, q)| {
                let (p, r) = q.pending();
                (*id, p, r, q.coalesced())
            })
            .collect();
        Scrape {
            metrics,
            devices,
            active,
            clients,
            dashboards: s.hub.dashboard_counts(),
            store: s.store.as_ref().map(|st| st.health()),
            last_seq: s.hub.last_seq(),
            hl7: s.hub.hl7_links().to_vec(),
            dispatch: {
                let d = &s.overload.dispatch;
                (
                    d.depth.load(Ordering::Relaxed) as u64,
                    d.peak.load(Ordering::Relaxed) as u64,
                    d.coalesced.load(Ordering::Relaxed),
                    d.dropped.load(Ordering::Relaxed),
                )
            },
        }
    }
}

/// Writes one family: its descriptor, then one sample per label set.
fn family<L, V>(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result
where
    L: prometheus_client::encoding::EncodeLabelSet,
    V: Sample,
{
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        let mut e = m.encode_family(&labels)?;
        v.write(&mut e, kind)?;
    }
    Ok(())
}

/// A sample value, as a counter or a gauge.
trait Sample {
    fn write(
        &self,
        e: &mut prometheus_client::encoding::MetricEncoder<'_>,
        kind: MetricType,
    ) -> fmt::Result;
}

impl Sample for u64 {
    fn write(
        &self,
        e: &mut prometheus_client::encoding::MetricEncoder<'_>,
        kind: MetricType,
    ) -> fmt::Result {
        match kind {
            MetricType::Counter => e.encode_counter::<NoLabelSet, u64, f64>(self, None),
            _ => e.encode_gauge(self),
        }
    }
}

impl Sample for f64 {
    fn write(
        &self,
        e: &mut prometheus_client::encoding::MetricEncoder<'_>,
        kind: MetricType,
    ) -> fmt::Result {
        match kind {
            MetricType::Counter => e.encode_counter::<NoLabelSet, f64, f64>(self, None),
            _ => e.encode_gauge(self),
        }
    }
}

fn one<V>(v: V) -> [(Vec<(&'static str, String)>, V); 1] {
    [(Vec::new(), v)]
}

impl Collector for Scrape {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        use MetricType::{Counter, Gauge};
        let m = self.metrics;
        let e = &mut enc;
        let dev = |id: &String, bed: &String| vec![("device", id.clone()), ("bed", bed.clone())];
        // Devices.
        family(
            e,
            "device_readings",
            "Measurements decoded from the device and handed to the alarm engine.",
            Counter,
            self.devices.iter().map(|d| (dev(&d.0, &d.1), d.3)),
        )?;
        family(
            e,
            "device_bad_frames",
            "Frames from the device that the decoder rejected (checksum, length, garbage).",
            Counter,
            self.devices.iter().map(|d| (dev(&d.0, &d.1), d.4)),
        )?;
        family(
            e,
            "device_reconnects",
            "Times the device's link was lost or a connection attempt failed and the daemon connected again.",
            Counter,
            self.devices.iter().map(|d| (dev(&d.0, &d.1), d.5)),
        )?;
        family(
            e,
            "device_status",
            "1 for the device's current link status (connecting, connected, disconnected), 0 for the others.",
            Gauge,
            self.devices.iter().flat_map(|d| {
                ["connecting", "connected", "disconnected"]
                    .into_iter()
                    .map(move |st| {
                        let mut l = dev(&d.0, &d.1);
                        l.push(("status", st.to_owned()));
                        (l, u64::from(status_name(d.2) == st))
                    })
            }),
        )?;
        family(
            e,
            "device_connected",
            "1 while valid data flows from the device, else 0.",
            Gauge,
            self.devices
                .iter()
                .map(|d| (dev(&d.0, &d.1), u64::from(d.2 == DeviceStatus::Connected))),
        )?;
        // Alarms.
        family(
            e,
            "alarms_raised",
            "Alarms raised since the daemon started, by condition and priority.",
            Counter,
            m.alarms_raised()
                .into_iter()
                .map(|((c, p), n)| (vec![("condition", c), ("priority", p.to_owned())], n)),
        )?;
        family(
            e,
            "alarms_active",
            "Current alarms (active, acknowledged or latched), by condition, priority and state.",
            Gauge,
            self.active.iter().map(|((c, p, st), n)| {
                (
                    vec![
                        ("condition", c.clone()),
                        ("priority", p.clone()),
                        ("state", st.clone()),
                    ],
                    *n,
                )
            }),
        )?;
        let d = &self.dashboards;
        family(
            e,
            "dashboards",
            "Dashboard pages by what their heartbeat says: live (armed, can sound), hidden (live but not visible), not_armed (cannot sound).",
            Gauge,
            [
                ("live", d.live),
                ("hidden", d.hidden),
                ("not_armed", d.not_armed),
            ]
            .into_iter()
            .map(|(k, v)| (vec![("state", k.to_owned())], v as u64)),
        )?;
        // WebSocket delivery.
        family(
            e,
            "websocket_clients",
            "Connected WebSocket clients (dashboards and scripts).",
            Gauge,
            one(self.clients.len() as u64),
        )?;
        family(
            e,
            "websocket_queue_depth",
            "Messages waiting in a WebSocket client's queue, by client and class (priority: alarms and device status; reading).",
            Gauge,
            self.clients.iter().flat_map(|c| {
                [("priority", c.1), ("reading", c.2)]
                    .into_iter()
                    .map(|(class, n)| {
                        (
                            vec![("client", c.0.to_string()), ("class", class.to_owned())],
                            n as u64,
                        )
                    })
            }),
        )?;
        family(
            e,
            "websocket_queue_depth_max",
            "The deepest WebSocket client queue now (both classes).",
            Gauge,
            one(self
                .clients
                .iter()
                .map(|c| (c.1 + c.2) as u64)
                .max()
                .unwrap_or(0)),
        )?;
        let coalesced = self.clients.iter().map(|c| c.3).sum::<u64>()
            + m.coalesced_gone.load(Ordering::Relaxed);
        family(
            e,
            "websocket_coalesced",
            "Readings coalesced away for slow WebSocket clients (each such client got the latest value per device and metric instead).",
            Counter,
            one(coalesced),
        )?;
        family(
            e,
            "messages_published",
            "Sequence number of the latest message published to clients.",
            Counter,
            one(self.last_seq),
        )?;
        // Store.
        if let Some(h) = &self.store {
            family(
                e,
                "store_writable",
                "1 while the store's last write succeeded.",
                Gauge,
                one(u64::from(h.writable)),
            )?;
            family(
                e,
                "store_backlog",
                "Readings accepted but not yet committed to the store.",
                Gauge,
                one(h.backlog as u64),
            )?;
            family(
                e,
                "store_dropped_readings",
                "Readings dropped because the store's buffer overflowed while it could not write.",
                Counter,
                one(h.dropped),
            )?;
            family(
                e,
                "store_dropped_events",
                "Alarm events dropped for the same reason (never expected).",
                Counter,
                one(h.dropped_events),
            )?;
            family(
                e,
                "store_pending_commands",
                "Commands (alarm events, states, outbox and session writes) waiting for the store's writer.",
                Gauge,
                one(h.pending_commands as u64),
            )?;
            family(
                e,
                "store_pending_commands_max",
                "The most commands ever waiting for the store's writer (high-water mark).",
                Gauge,
                one(h.peak_commands as u64),
            )?;
            family(
                e,
                "store_group_commits",
                "Fsynced group commits of alarm events, states and outbox changes recorded without a waiter (at most one per 25 ms).",
                Counter,
                one(h.group_commits),
            )?;
        }
        // The alarm path's queue to the store and the notifier (hub::dispatch).
        let (depth, peak, coalesced, dropped) = self.dispatch;
        family(
            e,
            "dispatch_queue_depth",
            "Alarm events and saved states waiting between the alarm path and the store and notifier.",
            Gauge,
            one(depth),
        )?;
        family(
            e,
            "dispatch_queue_depth_max",
            "The most ever waiting in that queue (high-water mark).",
            Gauge,
            one(peak),
        )?;
        family(
            e,
            "dispatch_coalesced",
            "Superseded alarm updates and saved states replaced by a newer one in that queue.",
            Counter,
            one(coalesced),
        )?;
        family(
            e,
            "dispatch_dropped",
            "Alarm transitions dropped because that queue was full (raises store_unwritable; never expected).",
            Counter,
            one(dropped),
        )?;
        // Outbound queues: webhook targets.
        let queues = m.queues();
        for kind in [QUEUE_NOTIFY] {
            let of_kind: Vec<_> = queues.iter().filter(|q| q.0 == kind).collect();
            if of_kind.is_empty() {
                continue;
            }
            let what = "webhook target";
            let label = |q: &(&str, String, _)| vec![("target", q.1.clone())];
            family(
                e,
                &format!("{kind}_queue_depth"),
                &format!("Messages waiting for delivery to the {what}."),
                Gauge,
                of_kind
                    .iter()
                    .map(|q| (label(q), q.2.depth.load(Ordering::Relaxed))),
            )?;
            family(
                e,
                &format!("{kind}_failures"),
                &format!("Failed delivery attempts to the {what}."),
                Counter,
                of_kind
                    .iter()
                    .map(|q| (label(q), q.2.failures.load(Ordering::Relaxed))),
            )?;
            family(
                e,
                &format!("{kind}_delivered"),
                &format!("Messages delivered to the {what}."),
                Counter,
                of_kind
                    .iter()
                    .map(|q| (label(q), q.2.delivered.load(Ordering::Relaxed))),
            )?;
            family(
                e,
                &format!("{kind}_failing"),
                &format!("1 while the {what} is failing (its technical alarm is raised)."),
                Gauge,
                of_kind
                    .iter()
                    .map(|q| (label(q), u64::from(q.2.failing.load(Ordering::Relaxed)))),
            )?;
        }
        // HL7 endpoints (their sender keeps these in the hub's link counters).
        if !self.hl7.is_empty() {
            let label = |l: &crate::hub::link::LinkStats| vec![("target", l.name.clone())];
            let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
            family(
                e,
                "hl7_queue_depth",
                "HL7 messages waiting for their ACK from the endpoint (in the store's outbox).",
                Gauge,
                self.hl7.iter().map(|l| (label(l), n(&l.queued))),
            )?;
            family(
                e,
                "hl7_failures",
                "Failed attempts to the HL7 endpoint: no connection, connection lost, no ACK in time, AR.",
                Counter,
                self.hl7.iter().map(|l| (label(l), n(&l.failures))),
            )?;
            family(
                e,
                "hl7_delivered",
                "HL7 messages the endpoint accepted (AA/CA).",
                Counter,
                self.hl7.iter().map(|l| (label(l), n(&l.sent))),
            )?;
            family(
                e,
                "hl7_rejected",
                "HL7 messages given up after repeated AE answers.",
                Counter,
                self.hl7.iter().map(|l| (label(l), n(&l.rejected))),
            )?;
            family(
                e,
                "hl7_failing",
                "1 while the HL7 endpoint's link is down (not connected or its last message refused).",
                Gauge,
                self.hl7.iter().map(|l| (label(l), u64::from(!l.is_up()))),
            )?;
        }
        // Latency.
        m.decision.encode(e.encode_descriptor(
            "alarm_decision_seconds",
            "Device bytes read -> alarm decision made and its events queued to every client.",
            None,
            MetricType::Histogram,
        )?)?;
        m.delivery.encode(e.encode_descriptor(
            "websocket_delivery_seconds",
            "Message published (alarm decision made) -> written to a WebSocket client, per client.",
            None,
            MetricType::Histogram,
        )?)?;
        m.store_commit.encode(e.encode_descriptor(
            "store_commit_seconds",
            "One group commit of readings to the store (transaction begin to commit).",
            None,
            MetricType::Histogram,
        )?)?;
        family(
            e,
            "start_time_seconds",
            "When the daemon started, Unix time.",
            Gauge,
            one(m.started_ms as f64 / 1000.0),
        )?;
        Ok(())
    }
}

fn status_name(s: DeviceStatus) -> &'static str {
    match s {
        DeviceStatus::Connecting => "connecting",
        DeviceStatus::Connected => "connected",
        DeviceStatus::Disconnected => "disconnected",
    }
}
