//! Operator actions (acknowledge, pause, limits, baseline): commit, then apply; and the
//! restore of the alarm state at start.

use super::state::{SavedBed, saved_state};
use super::{Dispatch, Dispatched, Hub, Stamp, lock, wire};
use crate::alarm::{
    AlarmError, AlarmEvent, AlarmId, Baseline, BedAlarms, BedLimits, LimitsError, Now, RuleStatus,
    Watchdog,
};
use crate::model::{BedIdx, Metric, StoredState};
use bytes::Bytes;

/// What the store knows about a bed's open session, for [`Hub::restore`].
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSession {
    /// The bed, e.g. `room1/A`.
    pub bed: String,
    /// The session has a `dose` event.
    pub dosed: bool,
    /// Its latest `baseline` event.
    pub baseline: Option<Baseline>,
}

/// What [`Hub::restore`] put back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RestoreSummary {
    /// Beds whose saved state was restored.
    pub beds: usize,
    /// Alarms restored (with their ids).
    pub alarms: usize,
    /// Audio pauses restored (not yet expired).
    pub pauses: usize,
    /// Saved alarms or beds that could not be restored, with why.
    pub skipped: Vec<String>,
}

/// Why an alarm action was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// No bed has a current alarm with this id.
    #[error("no current alarm with id {0}")]
    UnknownAlarm(u64),
    /// The alarm cannot be acknowledged (system alarms end when their cause does).
    #[error(
        "alarm {0} cannot be acknowledged: it ends when its cause does (a dashboard alive again, the store writable again)"
    )]
    NotAcknowledgeable(u64),
    /// The engine refused it.
    #[error(transparent)]
    Alarm(#[from] AlarmError),
    /// The limits are not valid.
    #[error(transparent)]
    Limits(#[from] LimitsError),
    /// A baseline from recent readings was asked for, but there are none yet.
    #[error("no recent valid readings of {0} to take a baseline from, expected some first")]
    NoRecent(&'static str),
    /// The store did not commit the action's record, so the action did not take effect.
    #[error("not confirmed, nothing changed: {0}")]
    NotCommitted(String),
}

impl Hub {
    /// Hands the events of an API action and the bed's state after it to the store and waits
    /// until they are committed.
    async fn commit(
        &self,
        events: Vec<Dispatched>,
        state: Option<StoredState>,
    ) -> Result<(), String> {
        let Some(sink) = self.sink.clone() else {
            return Ok(());
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        if sink.push(Dispatch::Commit(events, state, tx)) == super::dispatch::Pushed::Dropped {
            return Err(format!(
                "the alarm-event queue to the store is full ({} waiting); try again",
                sink.len()
            ));
        }
        rx.await
            .map_err(|_| "the event store stopped before committing".to_owned())?
    }

    /// Commit, then apply: runs `action` on a copy of the bed's engine (a refusal changes
    /// nothing), commits the events and the resulting state, and only then runs it on the bed's
    /// engine at the same instant and publishes what it caused. Actions on one bed run one at a
    /// time. Returns the action's value and the published events.
    async fn act<T>(
        &self,
        bed: BedIdx,
        action: impl Fn(&mut BedAlarms, Now, &mut Vec<AlarmEvent>) -> Result<T, ActionError>,
    ) -> Result<(T, Vec<Dispatched>), ActionError> {
        let Some(serial) = self.actions.get(usize::from(bed.0)) else {
            return Err(ActionError::NotCommitted(format!("no bed #{}", bed.0)));
        };
        let _one_at_a_time = serial.lock().await;
        let now = Stamp::now().as_now();
        let (record, state) = {
            let mut copy = self.bed(bed).alarms.clone();
            let mut events = Vec::new();
            action(&mut copy, now, &mut events)?;
            let record: Vec<Dispatched> = events
                .into_iter()
                .filter_map(|e| {
                    // Committed before it is published, so it has no sequence number yet.
                    let json = serde_json::to_vec(&wire::AlarmMsg::new(&self.cfg, 0, &e)).ok()?;
                    Some(Dispatched {
                        event: e,
                        json: Bytes::from(json),
                        seq: 0,
                    })
                })
                .collect();
            (record, saved_state(&self.cfg, &copy, now))
        };
        self.commit(record, state)
            .await
            .map_err(ActionError::NotCommitted)?;
        let mut g = self.bed(bed);
        let b = &mut *g;
        match action(&mut b.alarms, now, &mut b.em.events) {
            Ok(v) => Ok((v, self.publish_bed(b, false))),
            Err(e) => {
                // The bed changed between the dry run and now (the alarm cleared meanwhile).
                b.em.events.clear();
                tracing::warn!(bed = %self.cfg.bed(bed).id, error = %e,
                    "action committed but no longer applicable");
                Err(e)
            }
        }
    }

    /// Puts back what the alarm system knew before a restart: each bed's saved state (limits,
    /// baseline, current alarms with their ids, audio pause, escalation progress), then what the
    /// open sessions say (dosed; the session baseline if the bed has none). Call once, before
    /// any device is read and before clients are served.
    pub fn restore(&self, saved: &[StoredState], open: &[OpenSession]) -> RestoreSummary {
        let now = Stamp::now().as_now();
        let mut sum = RestoreSummary::default();
        for st in saved {
            let Some(bed) = self.bed_by_id(&st.bed) else {
                sum.skipped
                    .push(format!("bed {:?}: not in the config any more", st.bed));
                continue;
            };
            let mut saved: SavedBed = match serde_json::from_str(&st.json) {
                Ok(s) => s,
                Err(e) => {
                    sum.skipped
                        .push(format!("bed {:?}: unreadable saved state: {e}", st.bed));
                    continue;
                }
            };
            for a in &mut saved.snapshot.alarms {
                a.device = a
                    .device
                    .and_then(|d| saved.devices.get(usize::from(d)))
                    .and_then(|id| self.cfg.devices.iter().position(|d| d.id == *id))
                    .and_then(|i| u16::try_from(i).ok());
            }
            match self.bed(bed).alarms.restore(&saved.snapshot, now) {
                Ok(r) => {
                    sum.beds += 1;
                    sum.alarms += r.alarms;
                    sum.pauses += usize::from(r.paused);
                    sum.skipped.extend(r.dropped.into_iter().map(|c| {
                        format!("bed {:?}: alarm {c}: its rule or device is gone", st.bed)
                    }));
                }
                Err(e) => sum
                    .skipped
                    .push(format!("bed {:?}: saved limits refused: {e}", st.bed)),
            }
        }
        for (i, bed) in self.beds.iter().enumerate() {
            let mut g = lock(bed);
            let b = &mut *g;
            let id = &self.cfg.beds[i].id;
            let session = open.iter().find(|o| o.bed == *id);
            let dosed = session.is_some_and(|s| s.dosed);
            if b.alarms.dosed() != dosed {
                b.alarms.set_dosed(dosed, now, &mut b.em.events);
            }
            let none = b
                .alarms
                .baseline()
                .fields()
                .iter()
                .all(|(_, v)| v.is_none());
            if let Some(base) = session.and_then(|s| s.baseline)
                && none
                && let Err(e) = b
                    .alarms
                    .set_baseline(base, "session record", now, &mut b.em.events)
            {
                sum.skipped
                    .push(format!("bed {id:?}: session baseline refused: {e}"));
            }
            self.publish_bed(b, true);
        }
        sum
    }

    /// Acknowledges an alarm once the acknowledgement is committed; returns the events it
    /// caused (sent to clients after the commit).
    pub async fn acknowledge(&self, id: u64, actor: &str) -> Result<Vec<Dispatched>, ActionError> {
        if lock(&self.sys).targets.owns(AlarmId(id)) {
            return self.acknowledge_target_alarm(id, actor).await;
        }
        let bed = {
            let g = lock(&self.sys);
            if g.watchdog.alarm().is_some_and(|a| a.id.0 == id)
                || g.store_watch.alarm().is_some_and(|a| a.id.0 == id)
                || g.mqtt_watch
                    .as_ref()
                    .and_then(|(w, _)| w.alarm())
                    .is_some_and(|a| a.id.0 == id)
                || g.hl7_watch
                    .as_ref()
                    .and_then(Watchdog::alarm)
                    .is_some_and(|a| a.id.0 == id)
            {
                return Err(ActionError::NotAcknowledgeable(id));
            }
            drop(g);
            self.beds
                .iter()
                .position(|b| lock(b).alarms.alarms().any(|a| a.id.0 == id))
                .and_then(|i| u16::try_from(i).ok())
                .map(BedIdx)
                .ok_or(ActionError::UnknownAlarm(id))?
        };
        let (_, events) = self
            .act(bed, |e, now, out| {
                Ok(e.acknowledge(AlarmId(id), actor, now, out)?)
            })
            .await?;
        Ok(events)
    }

    /// Acknowledges a `notify_failed` alarm: committed (the event), then applied.
    async fn acknowledge_target_alarm(
        &self,
        id: u64,
        actor: &str,
    ) -> Result<Vec<Dispatched>, ActionError> {
        let now = Stamp::now().as_now();
        let record = {
            let mut copy = lock(&self.sys).targets.clone();
            let mut events = Vec::new();
            copy.acknowledge(AlarmId(id), actor, now, &mut events)?;
            events
                .into_iter()
                .filter_map(|e| {
                    let json = serde_json::to_vec(&wire::AlarmMsg::new(&self.cfg, 0, &e)).ok()?;
                    Some(Dispatched {
                        event: e,
                        json: Bytes::from(json),
                        seq: 0,
                    })
                })
                .collect()
        };
        self.commit(record, None)
            .await
            .map_err(ActionError::NotCommitted)?;
        let mut g = lock(&self.sys);
        let sys = &mut *g;
        sys.targets
            .acknowledge(AlarmId(id), actor, now, &mut sys.em.events)?;
        Ok(self.publish_sys(sys, false))
    }

    /// Pauses a bed's alarm audio (time-limited) once committed; returns the granted length
    /// and the events.
    pub async fn pause_audio(
        &self,
        bed: BedIdx,
        for_: Option<std::time::Duration>,
        actor: &str,
    ) -> Result<(std::time::Duration, Vec<Dispatched>), ActionError> {
        self.act(bed, |e, now, out| Ok(e.pause_audio(for_, actor, now, out)?))
            .await
    }

    /// Ends a bed's audio pause early, once committed.
    pub async fn cancel_pause(
        &self,
        bed: BedIdx,
        actor: &str,
    ) -> Result<Vec<Dispatched>, ActionError> {
        let (_, events) = self
            .act(bed, |e, now, out| Ok(e.cancel_pause(actor, now, out)?))
            .await?;
        Ok(events)
    }

    /// Replaces a bed's limit rules, once committed.
    pub async fn set_limits(
        &self,
        bed: BedIdx,
        limits: BedLimits,
        actor: &str,
    ) -> Result<Vec<Dispatched>, ActionError> {
        let (_, events) = self
            .act(bed, |e, now, out| {
                Ok(e.set_limits(limits.clone(), actor, now, out)?)
            })
            .await?;
        Ok(events)
    }

    /// Sets a bed's pre-dose baseline, once committed: the given values, or (`from_recent`)
    /// the median of the bed's recent valid readings for every value not given.
    pub async fn set_baseline(
        &self,
        bed: BedIdx,
        given: Baseline,
        from_recent: bool,
        actor: &str,
    ) -> Result<(Baseline, Vec<Dispatched>), ActionError> {
        self.act(bed, |engine, now, out| {
            let mut b = given;
            if from_recent {
                let fill = |v: &mut Option<f64>, m: Metric| {
                    if v.is_none() {
                        *v = engine.recent_median(m);
                    }
                };
                fill(&mut b.sys, Metric::NibpSys);
                fill(&mut b.dia, Metric::NibpDia);
                fill(&mut b.pulse_rate, Metric::PulseRate);
                fill(&mut b.spo2, Metric::Spo2);
                if b.sys.is_none() && b.dia.is_none() && b.pulse_rate.is_none() && b.spo2.is_none()
                {
                    return Err(ActionError::NoRecent("sys, dia, pulse_rate or spo2"));
                }
            }
            engine.set_baseline(b, actor, now, out)?;
            Ok(engine.baseline())
        })
        .await
    }

    /// A bed's limit rules with what is in force, and its baseline.
    pub fn limits_of(&self, bed: BedIdx) -> (Vec<RuleStatus>, Baseline) {
        let g = self.bed(bed);
        (g.alarms.limits(), g.alarms.baseline())
    }
}
