//! HL7 v2 to the clinic's other systems over MLLP (docs/hl7.md): IHE PCD-01 observation
//! reports (`ORU^R01`) to the EHR's interface engine, and IHE PCD-04 alert reports
//! (`ORU^R40`) to an alarm manager (IHE ACM), each on its own `[[hl7]]` endpoint.
//!
//! An edge like the notifier and the MQTT bridge: one more hub subscriber (the messages a
//! dashboard gets), off the alarm path; nothing upstream imports it.
//!
//! - [`writer`]: a small ER7 writer (escaping, trailing delimiters), [`mllp`]: framing and
//!   ACKs, [`pcd`]: the two messages, [`feed`]: hub messages to reports. All pure.
//! - [`link`]: one sender per endpoint (TCP or TLS), one message in flight, its ACK awaited.
//! - **Durable and in order.** Every message is put in the store's `hl7_outbox` (written by
//!   the store's thread, group-committed) before it is sent, and removed when its ACK
//!   accepted it; at start the rows left are sent first, in order. The row id is the
//!   message control id (MSH-10), never reused (`hl7_counter`).
//! - **A failing endpoint is an alarm.** Each sender keeps its state and counters in the
//!   hub's [`LinkStats`](crate::hub::link::LinkStats) (queue depth, failures); the hub raises
//!   `hl7_down` (medium, bed-less) when any endpoint stays down longer than its `down_after`.

pub mod feed;
pub mod link;
pub mod mllp;
pub mod pcd;
pub mod writer;

use crate::clock::wall_ms;
use crate::config::{Config, Hl7Endpoint, Hl7Kind};
use crate::hub::Hub;
use crate::hub::queue::Next;
use crate::store::StoreHandle;
use crate::store::hl7_outbox::{Hl7Op, Hl7Row};
use feed::{BedReport, Feed};
use pcd::{AlarmReport, Envelope, Patient};
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

/// How often pending NIBP measurements and due periodic reports are looked at.
const TICK: Duration = Duration::from_millis(250);

fn envelope(ep: &Hl7Endpoint) -> Envelope {
    Envelope {
        sending_application: ep.sending_application.clone(),
        sending_facility: ep.sending_facility.clone(),
        receiving_application: ep.receiving_application.clone(),
        receiving_facility: ep.receiving_facility.clone(),
    }
}

/// The endpoints' queues: builds messages, records them, hands them to the senders.
struct Out {
    endpoints: Vec<Hl7Endpoint>,
    senders: Vec<UnboundedSender<Hl7Row>>,
    ids: Arc<AtomicI64>,
    store: StoreHandle,
}

impl Out {
    /// Records `body(control_id)` for endpoint `i` and queues it.
    fn put(&self, i: usize, body: impl FnOnce(String) -> String) {
        let (Some(ep), Some(tx)) = (self.endpoints.get(i), self.senders.get(i)) else {
            return;
        };
        let id = self.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let row = Hl7Row {
            id,
            endpoint: ep.name.clone(),
            body: body(id.to_string()),
            created_ms: wall_ms(),
            attempts: 0,
            last_error: None,
        };
        // Recorded before it is tried, so a crash during delivery loses nothing.
        self.store.hl7(Hl7Op::Put(row.clone()));
        if tx.send(row).is_err() {
            tracing::error!(endpoint = %ep.name, "HL7 sender stopped; the message stays in the outbox");
        }
    }

    fn observation(&self, i: usize, r: &BedReport, patient: Option<&Patient>) {
        let Some(ep) = self.endpoints.get(i) else {
            return;
        };
        let env = envelope(ep);
        self.put(i, |id| {
            pcd::observation_report(&env, &r.clone().into_report(id, patient.cloned()))
        });
    }

    fn alarm(&self, a: &AlarmReport, patient: Option<&Patient>) {
        for (i, ep) in self.endpoints.iter().enumerate() {
            if ep.kind != Hl7Kind::Pcd04 {
                continue;
            }
            let env = envelope(ep);
            self.put(i, |id| {
                pcd::alarm_report(
                    &env,
                    &AlarmReport {
                        control_id: id,
                        patient: patient.cloned(),
                        ..a.clone()
                    },
                )
            });
        }
    }
}

async fn patient(store: &StoreHandle, bed: &str) -> Option<Patient> {
    match store.current_session(bed).await {
        Ok(s) => s.map(|s| Patient {
            label: s.label,
            mrn: s.mrn,
        }),
        Err(e) => {
            tracing::warn!(bed, error = %e, "HL7: cannot read the bed's session; sent without patient");
            None
        }
    }
}

/// Runs the HL7 edge until cancelled: one sender per `[[hl7]]` endpoint, and the feed.
pub async fn run(hub: Arc<Hub>, store: StoreHandle, cancel: CancellationToken) {
    let cfg: Arc<Config> = hub.config().clone();
    if cfg.hl7.is_empty() {
        return;
    }
    let (rows, last) = match store.hl7_load().await {
        Ok(x) => x,
        Err(e) => {
            // Ids from the clock, so they cannot repeat those of rows we could not read.
            tracing::error!(error = %e, "cannot read the HL7 outbox; starting control ids from the clock");
            (Vec::new(), wall_ms().saturating_mul(1000))
        }
    };
    for r in rows
        .iter()
        .filter(|r| !cfg.hl7.iter().any(|e| e.name == r.endpoint))
    {
        tracing::warn!(endpoint = %r.endpoint, control_id = r.id, "HL7 message for an endpoint no longer configured; dropped");
        store.hl7(Hl7Op::Remove(r.id));
    }
    let mut tasks = tokio::task::JoinSet::new();
    let mut senders = Vec::with_capacity(cfg.hl7.len());
    for (i, ep) in cfg.hl7.iter().enumerate() {
        let queue: VecDeque<Hl7Row> = rows
            .iter()
            .filter(|r| r.endpoint == ep.name)
            .cloned()
            .collect();
        let stats = match hub.hl7_links().get(i) {
            Some(s) => s.clone(),
            None => Arc::new(crate::hub::link::LinkStats::new(&ep.name)),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let l = link::Link::new(ep.clone(), stats, store.clone(), hub.clone(), queue);
        tasks.spawn(l.run(rx, cancel.clone()));
        senders.push(tx);
    }
    let out = Out {
        endpoints: cfg.hl7.clone(),
        senders,
        ids: Arc::new(AtomicI64::new(last)),
        store: store.clone(),
    };
    feed_loop(&cfg, &hub, &store, &out, &cancel).await;
    drop(out);
    while tasks.join_next().await.is_some() {}
}

async fn feed_loop(
    cfg: &Config,
    hub: &Hub,
    store: &StoreHandle,
    out: &Out,
    cancel: &CancellationToken,
) {
    let mut feed = Feed::default();
    let mut sub = hub.subscribe(None);
    let start = tokio::time::Instant::now();
    let mut due: Vec<Option<tokio::time::Instant>> = cfg
        .hl7
        .iter()
        .map(|e| (e.kind == Hl7Kind::Pcd01).then(|| start + e.interval))
        .collect();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        loop {
            match sub.queue.pop() {
                Next::Send(m) => {
                    // Waveform samples are most of the traffic and never reported: not parsed.
                    if is_waveform(&m) {
                        continue;
                    }
                    let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&m) else {
                        continue;
                    };
                    let (nibp, alarm) = feed.on_message(cfg, &msg, wall_ms());
                    for r in nibp {
                        send_nibp(cfg, store, out, &r).await;
                    }
                    if let Some((bed, a)) = alarm {
                        let p = match &bed {
                            Some(b) => patient(store, b).await,
                            None => None,
                        };
                        out.alarm(&a, p.as_ref());
                    }
                }
                Next::Empty => break,
                Next::Closed(why) => {
                    tracing::warn!(reason = %why, "HL7: the hub cut the feed off; subscribing again");
                    hub.unsubscribe(sub.id);
                    sub = hub.subscribe(None);
                    break;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = sub.queue.notified() => {}
            _ = tick.tick() => {
                let now = wall_ms();
                for r in feed.due_nibp(cfg, now) {
                    send_nibp(cfg, store, out, &r).await;
                }
                let t = tokio::time::Instant::now();
                for (i, ep) in cfg.hl7.iter().enumerate() {
                    let Some(Some(at)) = due.get(i).copied() else { continue };
                    if t < at {
                        continue;
                    }
                    // The next one on the interval's grid: no burst of catch-up reports after a stall.
                    let mut next = at + ep.interval;
                    while next <= t {
                        next += ep.interval;
                    }
                    due[i] = Some(next);
                    let window = i64::try_from(ep.interval.as_millis()).unwrap_or(i64::MAX);
                    for r in feed.periodic(cfg, now, window) {
                        let p = patient(store, &r.bed).await;
                        out.observation(i, &r, p.as_ref());
                    }
                }
            }
        }
    }
    hub.unsubscribe(sub.id);
}

/// A `reading` message of a waveform sample (pleth), told by its bytes (the hub serializes
/// compactly).
fn is_waveform(msg: &[u8]) -> bool {
    const PLETH: &[u8] = b"\"metric\":\"pleth\"";
    msg.windows(PLETH.len()).any(|w| w == PLETH)
}

async fn send_nibp(cfg: &Config, store: &StoreHandle, out: &Out, r: &BedReport) {
    let p = patient(store, &r.bed).await;
    for (i, ep) in cfg.hl7.iter().enumerate() {
        if ep.kind == Hl7Kind::Pcd01 {
            out.observation(i, r, p.as_ref());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Flags, Measurement, Metric};

    #[test]
    fn waveform_samples_are_told_from_their_bytes_as_the_hub_serializes_them() {
        let json = |m: Metric| serde_json::to_vec(&Measurement::new(m, 1.0, Flags::EMPTY)).unwrap();
        assert!(is_waveform(&json(Metric::Pleth)));
        assert!(!is_waveform(&json(Metric::Spo2)));
        assert!(!is_waveform(&json(Metric::PerfusionIndex)));
    }
}
