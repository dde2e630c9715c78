//! The writer thread: the only connection that writes. It wakes every [`BATCH_INTERVAL`] (at
//! once for a command someone waits for), writes the buffered readings in one transaction
//! (every [`READINGS_INTERVAL`], or with a command someone waits for), runs commands in order,
//! and group-commits the alarm path's records at most once per [`BATCH_INTERVAL`] (the first
//! after a quiet round at once). On a failed write the readings go back to the front of the
//! buffer and alarm events queued without a waiter are held, in order, until a write succeeds.

use super::{
    BATCH_INTERVAL, BATCH_MAX, COMMAND_CAP, Cmd, EVENT_BUFFER_CAP, READINGS_INTERVAL, Shared,
    StoreError, StoredEvent, StoredState, Topology,
};
use crate::model::{DeviceTime, Observation};
use rusqlite::{Connection, params};
use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// How long to wait before retrying after a failed write.
const RETRY_AFTER: Duration = Duration::from_millis(500);
/// How often to check that the file at the path is still the one open.
const IDENTITY_EVERY: Duration = Duration::from_secs(1);

/// While it inserts a batch of readings, the writer yields the CPU every this many rows
/// (~100-200 µs of work), so that a tokio worker that became ready meanwhile (a device line,
/// an alarm to send) runs then rather than after the batch (a yield with nothing else ready
/// returns at once; with [`WRITER_NICENESS`], the writer's share of a busy CPU stays a weighted
/// one: it only stops holding a core through a whole batch). Measured at 25 000 lines/s on 2 cores
/// (`OVERLOAD_REPEAT=4 OVERLOAD_RATES=25000 cargo bench --bench overload`, alternating): the
/// daemon's p99 1.40-3.12 ms (median 1.86 ms, 8 runs) against 2.35-5.62 ms (median 3.4 ms)
/// without; at 100 000 lines/s the store still kept up. docs/storage.md, "Durability contract".
const YIELD_EVERY_ROWS: usize = 100;

/// How much nicer than the rest of the daemon the writer runs (Linux: a thread's own nice
/// value, `ps -L` shows it). The alarm path (device reads, the alarm decision, the clients'
/// writes) runs on the tokio workers at the daemon's own priority; the writer's work (readings
/// in batches, group commits) is the one that can wait a millisecond. At +10 the scheduler
/// runs a woken worker in the writer's place rather than after the writer's slice, and when
/// every core is busy gives the writer about a tenth of a worker's share; when they are not,
/// the writer takes what it needs, as before. Measured on 2 cores (`OVERLOAD_PEAKS=0
/// OVERLOAD_REPEAT=1 OVERLOAD_RATES=1000,25000 cargo bench --bench overload`, this build and
/// the one before alternating, eleven rounds): at 25 000 lines/s the daemon's p99 median 1.54
/// ms against 1.63 ms (1 000 lines/s: no difference); at 100 000 lines/s the store still kept
/// up (backlog peak 33 000-60 000 of 200 000, nothing dropped). A session note beside two
/// busy loops: median 5 ms against 3-5 ms. docs/storage.md, "Durability contract".
const WRITER_NICENESS: i32 = 10;

pub(super) fn spawn(
    shared: Arc<Shared>,
    conn: Connection,
    path: PathBuf,
) -> Result<std::thread::JoinHandle<()>, StoreError> {
    std::thread::Builder::new()
        .name("vitalsd-store".to_owned())
        .spawn(move || {
            lower_own_priority();
            Writer::new(shared, conn, path).run()
        })
        .map_err(|e| StoreError::Unwritable(format!("cannot start the writer thread: {e}")))
}

/// Makes the calling thread [`WRITER_NICENESS`] nicer than it was. Failing leaves it as it
/// was (the store works, its batches only compete with the alarm path as equals): logged.
fn lower_own_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: errno is the calling thread's own int; nice(2) changes only the calling
        // thread's nice value (a per-thread attribute under Linux, see setpriority(2)), reading
        // and writing none of our memory.
        let (now, errno) = unsafe {
            *libc::__errno_location() = 0;
            let now = libc::nice(WRITER_NICENESS);
            (now, *libc::__errno_location())
        };
        if now == -1 && errno != 0 {
            tracing::warn!(
                error = %std::io::Error::from_raw_os_error(errno),
                "cannot lower the store writer's priority; it competes with the alarm path as an equal"
            );
        } else {
            tracing::debug!(nice = now, "store writer runs nicer than the alarm path");
        }
    }
}

struct Writer {
    shared: Arc<Shared>,
    conn: Connection,
    path: PathBuf,
    identity: Option<(u64, u64)>,
    checked: Instant,
    /// Alarm events recorded without a waiter that could not be written yet, in order.
    held: VecDeque<StoredEvent>,
    bed_ids: HashMap<u16, i64>,
    device_ids: HashMap<u16, i64>,
    topology: Arc<Topology>,
    failing: bool,
    /// Outbox changes taken so far and not yet written (the latest per row).
    outbox: super::outbox::OutboxChanges,
    /// HL7 outbox changes of this wake-up (and any that could not be written yet), in order.
    hl7: Vec<super::hl7_outbox::Hl7Op>,
    /// The latest unwritten alarm state per bed (group-committed after each round of commands).
    states: HashMap<String, StoredState>,
    /// The JSON text of the reading group being written, reused.
    json: String,
    /// When the last group commit or HL7 outbox write was made (or tried): the next waits a
    /// round after it.
    grouped_at: Option<Instant>,
}

fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }
    #[cfg(not(unix))]
    {
        std::fs::metadata(path).ok().map(|_| (0, 0))
    }
}

impl Writer {
    fn new(shared: Arc<Shared>, conn: Connection, path: PathBuf) -> Writer {
        Writer {
            identity: identity(&path),
            checked: Instant::now(),
            shared,
            conn,
            path,
            held: VecDeque::new(),
            bed_ids: HashMap::new(),
            device_ids: HashMap::new(),
            topology: Arc::new(Topology::default()),
            failing: false,
            outbox: super::outbox::OutboxChanges::default(),
            hl7: Vec::new(),
            states: HashMap::new(),
            json: String::new(),
            grouped_at: None,
        }
    }

    fn run(mut self) {
        let mut batch: Vec<Observation> = Vec::with_capacity(4096);
        // When buffered readings were last taken for writing.
        let mut readings_at = Instant::now();
        loop {
            let (cmds, stop) = {
                let mut q = self.shared.queue();
                // Wait for the first of: a command someone waits for, a full batch of readings
                // or the stop (at once); the group commit of the alarm path's records, at most
                // once per round; the readings, every READINGS_INTERVAL; the round's end.
                loop {
                    // (A full command queue holds the alarm path back: taken at once too.)
                    if q.stop
                        || q.readings.len() >= BATCH_MAX
                        || q.cmds.len() >= COMMAND_CAP
                        || q.cmds.iter().any(Cmd::waited_for)
                    {
                        break;
                    }
                    let records = q.has_records() || self.has_group() || !self.hl7.is_empty();
                    let group_in = self.group_due_in();
                    if records && group_in.is_zero() {
                        break;
                    }
                    // (While the file cannot be written, readings are retried every round.)
                    let readings_every = READINGS_INTERVAL.max(self.round());
                    let since_readings = readings_at.elapsed();
                    if !q.readings.is_empty() && since_readings >= readings_every {
                        break;
                    }
                    let mut wait = self.round();
                    if records {
                        wait = wait.min(group_in);
                    }
                    if !q.readings.is_empty() {
                        wait = wait.min(readings_every.saturating_sub(since_readings));
                    }
                    let (g, timeout) = self
                        .shared
                        .wake
                        .wait_timeout(q, wait)
                        .unwrap_or_else(|e| e.into_inner());
                    q = g;
                    // A round's end: its work (or the identity check, the retry) is due.
                    if timeout.timed_out() {
                        break;
                    }
                }
                batch.clear();
                // Readings every READINGS_INTERVAL (a full batch, a retry or the last round at
                // once); the rounds between group-commit only the alarm path's records.
                // A command that someone waits for (a job reads what was recorded before it)
                // takes the readings with it, as before.
                let waited_for = q.cmds.iter().any(Cmd::waited_for);
                if readings_at.elapsed() >= READINGS_INTERVAL
                    || q.readings.len() >= BATCH_MAX
                    || q.stop
                    || self.failing
                    || waited_for
                {
                    q.readings.drain_at_most(&mut batch, BATCH_MAX);
                    readings_at = Instant::now();
                }
                self.shared.inflight.store(batch.len(), Ordering::Release);
                self.outbox.append(&mut q.outbox);
                (std::mem::take(&mut q.cmds), q.stop)
            };
            // Room for the alarm path's consumer (`StoreHandle::wait_room`).
            self.shared.room.notify_waiters();
            self.check_identity();
            let readings_ok = self.write_batch(&batch);
            self.shared.inflight.store(0, Ordering::Release);
            if !readings_ok {
                self.requeue(&batch);
            }
            for cmd in cmds {
                match cmd {
                    Cmd::Event(ev, None) => {
                        if self.held.len() >= EVENT_BUFFER_CAP {
                            self.held.pop_front();
                            self.shared.dropped_events.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(
                                "alarm event dropped: the store has been unwritable too long"
                            );
                        }
                        self.held.push_back(ev);
                    }
                    Cmd::Event(ev, Some(reply)) => {
                        self.commit_group();
                        let r = if self.held.is_empty() {
                            self.insert_event(&ev)
                        } else {
                            Err(self.unwritable())
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::State(st) => {
                        self.states.insert(st.bed.clone(), st);
                    }
                    Cmd::Commit(events, state, reply) => {
                        self.commit_group();
                        let r = if self.held.is_empty() {
                            self.commit(&events, state.as_ref())
                        } else {
                            Err(self.unwritable())
                        };
                        if r.is_ok()
                            && let Some(st) = &state
                        {
                            // Anything queued for this bed before the action is older.
                            self.states.remove(&st.bed);
                        }
                        let _ = reply.send(r);
                    }
                    Cmd::Flush(reply) => {
                        // Everything recorded before, the outboxes' changes included, is
                        // written before the answer.
                        let readings_ok = readings_ok && self.write_buffered(&mut batch);
                        self.commit_group();
                        self.apply_hl7();
                        let pending = !self.shared.queue().readings.is_empty();
                        let unwritten = !self.held.is_empty()
                            || !self.states.is_empty()
                            || !self.outbox.is_empty()
                            || !self.hl7.is_empty();
                        let r = if unwritten || (!readings_ok && pending) {
                            Err(self.unwritable())
                        } else {
                            Ok(())
                        };
                        let _ = reply.send(r);
                    }
                    Cmd::Job(job) => {
                        // In order with everything recorded before it.
                        self.commit_group();
                        self.apply_hl7();
                        job(&mut self.conn);
                    }
                    Cmd::Hl7(op) => self.hl7.push(op),
                }
            }
            // The group commit: at most once a round (the commands above that someone waited
            // for have committed what came before them already).
            if stop || self.group_due_in().is_zero() {
                self.commit_group();
                self.apply_hl7();
            }
            if stop {
                let q = self.shared.queue();
                if q.readings.is_empty() && !q.has_records() {
                    if !self.hl7.is_empty() {
                        tracing::error!(
                            changes = self.hl7.len(),
                            "store writer stopping with HL7 outbox changes that could not be written"
                        );
                    }
                    if !self.outbox.is_empty() {
                        tracing::error!(
                            changes = self.outbox.len(),
                            "store writer stopping with notification outbox changes that could not be written"
                        );
                    }
                    break;
                }
                if self.failing {
                    tracing::error!(
                        backlog = q.readings.len(),
                        "store writer stopping with readings that could not be written"
                    );
                    break;
                }
            }
        }
        if let Err((_, e)) = self.conn.close() {
            tracing::warn!(error = %e, "store did not close cleanly");
        }
    }

    /// Writes every reading buffered now, a batch at a time (for a flush); false if a batch
    /// could not be written (it went back in front).
    fn write_buffered(&mut self, batch: &mut Vec<Observation>) -> bool {
        loop {
            batch.clear();
            self.shared.queue().readings.drain_at_most(batch, BATCH_MAX);
            if batch.is_empty() {
                return true;
            }
            self.shared.inflight.store(batch.len(), Ordering::Release);
            let ok = self.write_batch(batch);
            self.shared.inflight.store(0, Ordering::Release);
            if !ok {
                self.requeue(batch);
                return false;
            }
        }
    }

    /// The HL7 outbox changes queued so far: their own transaction, as readings (src/hl7); on
    /// failure they stay, in order, for the next round. Paced with the group commit (changes
    /// that cannot be written are tried again a round later, not at once in a spin).
    fn apply_hl7(&mut self) {
        if self.hl7.is_empty() {
            return;
        }
        self.grouped_at = Some(Instant::now());
        match super::hl7_outbox::apply(&mut self.conn, &self.hl7) {
            Ok(()) => self.hl7.clear(),
            Err(e) => {
                tracing::warn!(error = %e, pending = self.hl7.len(), "HL7 outbox not written; retrying");
            }
        }
    }

    fn unwritable(&self) -> StoreError {
        let last = self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        StoreError::Unwritable(last.unwrap_or_else(|| "earlier events are not yet written".into()))
    }

    /// Puts readings that could not be written back at the front, keeping the bound.
    fn requeue(&self, batch: &[Observation]) {
        let mut q = self.shared.queue();
        let (over, lost) = q.readings.requeue(batch);
        drop(q);
        if let Some(d) = lost {
            self.shared.dropped_readings(over, d);
        }
    }

    fn record(&mut self, r: Result<(), StoreError>) -> bool {
        match r {
            Ok(()) => {
                if self.failing {
                    tracing::info!(path = %self.path.display(), "store is writable again");
                    self.failing = false;
                    self.shared.set_error(None);
                }
                true
            }
            Err(e) => {
                let text = e.to_string();
                if !self.failing {
                    tracing::error!(path = %self.path.display(), error = %text,
                        "store cannot be written; readings are held in memory until it recovers");
                }
                self.failing = true;
                self.shared.set_error(Some(text));
                false
            }
        }
    }

    /// If the file at the path was removed or replaced, writes would go to a file nobody can
    /// open again: say so and reopen at the path.
    fn check_identity(&mut self) {
        if self.checked.elapsed() < IDENTITY_EVERY {
            return;
        }
        self.checked = Instant::now();
        let now = identity(&self.path);
        if now.is_some() && now == self.identity {
            return;
        }
        tracing::error!(path = %self.path.display(), "store file was removed or replaced; reopening it");
        let reopened = super::open_connection(&self.path).and_then(|mut c| {
            super::schema::migrate(&mut c, super::schema::VERSION)?;
            Ok(c)
        });
        match reopened {
            Ok(c) => {
                self.conn = c;
                self.identity = identity(&self.path);
                self.bed_ids.clear();
                self.device_ids.clear();
                self.record(Err(StoreError::Unwritable(format!(
                    "store file {} was removed or replaced and has been recreated",
                    self.path.display()
                ))));
            }
            Err(e) => {
                self.record(Err(e));
            }
        }
    }

    fn write_batch(&mut self, batch: &[Observation]) -> bool {
        if batch.is_empty() {
            return !self.failing || self.probe();
        }
        let began = Instant::now();
        let r = self.insert_readings(batch);
        if r.is_ok() {
            crate::metrics::global()
                .store_commit
                .observe(began.elapsed().as_secs_f64());
        }
        if r.is_err() {
            // Ids looked up in the rolled-back transaction may not exist.
            self.bed_ids.clear();
            self.device_ids.clear();
        }
        self.record(r)
    }

    /// While failing with nothing to write, tries an empty write transaction to learn whether
    /// the store recovered.
    fn probe(&mut self) -> bool {
        let r = (|| {
            let tx = self.conn.transaction()?;
            tx.execute("CREATE TABLE IF NOT EXISTS probe_ (x)", [])?;
            tx.execute("DROP TABLE probe_", [])?;
            tx.commit()?;
            Ok(())
        })();
        self.record(r)
    }

    fn insert_readings(&mut self, batch: &[Observation]) -> Result<(), StoreError> {
        let topo = self
            .shared
            .topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if !Arc::ptr_eq(&topo, &self.topology) {
            self.topology = topo;
            self.bed_ids.clear();
            self.device_ids.clear();
        }
        let tx = self.conn.transaction()?;
        {
            // One row per run of a device's consecutive readings in the batch (which holds
            // each device's readings together, oldest first: `FairBuffer::drain_at_most`):
            // the readings that share bed, device and the simulated mark, received within
            // `GROUP_SPAN_MS` of the first by both clocks (schema v7; a reading received
            // later than the first carries the difference), at most `GROUP_MAX` of them,
            // packed as JSON text built by hand.
            let mut ins = tx.prepare_cached(
                "INSERT INTO reading_groups (bed, device, received_ms, mono_ms, simulated, \
                 wave, readings) VALUES (?1,?2,?3,?4,?5,?6,?7)",
            )?;
            let mut json = std::mem::take(&mut self.json);
            // A line's readings, and a device's lines within a second, share their device
            // time: its text is made once, not once per reading.
            let mut last_time: Option<(DeviceTime, String)> = None;
            let mut rest = batch;
            let mut rows = 0usize;
            let span = 0..super::schema::GROUP_SPAN_MS;
            while let Some(first) = rest.first() {
                let mono = mono_ms(first);
                let n = rest
                    .iter()
                    .take(super::schema::GROUP_MAX)
                    .take_while(|o| {
                        o.bed == first.bed
                            && o.device == first.device
                            && o.simulated == first.simulated
                            && span.contains(&o.received_ms.saturating_sub(first.received_ms))
                            && span.contains(&mono_ms(o).saturating_sub(mono))
                    })
                    .count();
                let (group, next) = rest.split_at(n);
                rest = next;
                let bed = id_of(
                    &tx,
                    &mut self.bed_ids,
                    "beds",
                    &self.topology.beds,
                    first.bed.0,
                    "bed",
                )?;
                let dev = id_of(
                    &tx,
                    &mut self.device_ids,
                    "devices",
                    &self.topology.devices,
                    first.device.0,
                    "device",
                )?;
                // The read's vital signs in one row, its waveform samples in another, so that
                // a vital-sign query skips the waveform rows by the index (schema v6).
                for wave in [false, true] {
                    let mut members = group
                        .iter()
                        .filter(|o| o.m.metric.is_waveform() == wave)
                        .peekable();
                    if members.peek().is_none() {
                        continue;
                    }
                    json.clear();
                    json.push('[');
                    for (i, o) in members.enumerate() {
                        if i > 0 {
                            json.push(',');
                        }
                        push_reading(
                            &mut json,
                            o,
                            (o.received_ms - first.received_ms, mono_ms(o) - mono),
                            &mut last_time,
                        );
                    }
                    json.push(']');
                    ins.execute(params![
                        bed,
                        dev,
                        first.received_ms,
                        mono,
                        first.simulated,
                        wave,
                        json.as_str(),
                    ])?;
                    rows += 1;
                    if rows.is_multiple_of(YIELD_EVERY_ROWS) {
                        // Gives the CPU to a thread of the live path that is ready to run, if
                        // any (returns at once if none): see YIELD_EVERY_ROWS.
                        std::thread::yield_now();
                    }
                }
            }
            self.json = json;
        }
        tx.commit()?;
        Ok(())
    }

    /// The writer's round: [`BATCH_INTERVAL`], or [`RETRY_AFTER`] while the file cannot be
    /// written.
    fn round(&self) -> Duration {
        if self.failing {
            RETRY_AFTER
        } else {
            BATCH_INTERVAL
        }
    }

    /// How long until the next group commit (and HL7 changes) may be written: a round after the
    /// last one was made or tried; zero if that is past.
    fn group_due_in(&self) -> Duration {
        self.grouped_at.map_or(Duration::ZERO, |at| {
            self.round().saturating_sub(at.elapsed())
        })
    }

    /// Records of the alarm path taken but not yet written (the next group commit's).
    fn has_group(&self) -> bool {
        !(self.held.is_empty() && self.states.is_empty() && self.outbox.is_empty())
    }

    /// Group commit: the alarm events recorded without a waiter, the latest alarm state of each
    /// bed and the notifier's outbox changes queued so far, in one fsynced transaction (one
    /// fsync for all of them, however many alarms a round brought). On failure they all stay
    /// held, in order, and are retried with the next round.
    fn commit_group(&mut self) {
        if !self.has_group() {
            return;
        }
        self.grouped_at = Some(Instant::now());
        let (held, states, outbox) = (&self.held, &self.states, &self.outbox);
        let r = durable(&mut self.conn, |tx| {
            for ev in held {
                insert_event_tx(tx, ev)?;
            }
            for st in states.values() {
                upsert_state(tx, st)?;
            }
            super::outbox::apply_tx(tx, outbox)
        });
        match r {
            Ok(()) => {
                self.shared.group_commits.fetch_add(1, Ordering::Relaxed);
                self.held.clear();
                self.states.clear();
                self.outbox.clear();
            }
            Err(e) => {
                if !self.outbox.is_empty() {
                    tracing::warn!(error = %e, pending = self.outbox.len(), "notification outbox not written; retrying");
                }
                // A small group can fit where a batch of readings does not: only a reading
                // batch (or the probe) declares the store writable again.
                self.record(Err(StoreError::Unwritable(e.to_string())));
            }
        }
    }

    /// An action's events and state, all or nothing.
    fn commit(
        &mut self,
        events: &[StoredEvent],
        state: Option<&StoredState>,
    ) -> Result<(), StoreError> {
        let r = durable(&mut self.conn, |tx| {
            for ev in events {
                insert_event_tx(tx, ev)?;
            }
            if let Some(st) = state {
                upsert_state(tx, st)?;
            }
            Ok(())
        });
        if let Err(e) = &r {
            self.record(Err(StoreError::Unwritable(e.to_string())));
        }
        r
    }

    fn insert_event(&mut self, ev: &StoredEvent) -> Result<i64, StoreError> {
        match insert_event(&mut self.conn, ev) {
            // A small event can fit where a batch of readings does not: only a reading batch
            // (or the probe) declares the store writable again.
            Ok(id) => Ok(id),
            Err(e) => {
                self.record(Err(StoreError::Unwritable(e.to_string())));
                Err(e)
            }
        }
    }
}

/// Inserts one alarm event in its own fsynced transaction.
pub(crate) fn insert_event(conn: &mut Connection, ev: &StoredEvent) -> Result<i64, StoreError> {
    durable(conn, |tx| insert_event_tx(tx, ev))
}

/// Inserts one alarm event. Its statement (like the state's below) is prepared once per
/// connection and kept (`prepare_cached`): a burst of alarm events (100 beds' alarms changing
/// in the same tenth of a second) parsed this SQL once per event, half the cost of inserting it.
fn insert_event_tx(tx: &rusqlite::Transaction<'_>, ev: &StoredEvent) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO alarm_events (at_ms, bed, kind, alarm_id, condition, priority, actor, json) \
         VALUES (?1,?2,?3,?4,?5,?6,?7,?8)",
    )?
    .execute(params![
        ev.at_ms,
        ev.bed,
        ev.kind,
        ev.alarm_id.map(|a| i64::try_from(a).unwrap_or(i64::MAX)),
        ev.condition,
        ev.priority,
        ev.actor,
        ev.json
    ])?;
    Ok(tx.last_insert_rowid())
}

fn upsert_state(tx: &rusqlite::Transaction<'_>, st: &StoredState) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO alarm_state (bed, updated_ms, json) VALUES (?1, ?2, ?3) \
         ON CONFLICT(bed) DO UPDATE SET updated_ms = excluded.updated_ms, json = excluded.json",
    )?
    .execute(params![st.bed, st.at_ms, st.json])?;
    Ok(())
}

/// Runs `f` in a transaction committed with `synchronous=FULL` (fsynced before it returns).
pub(crate) fn durable<T>(
    conn: &mut Connection,
    f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    // The two pragmas are prepared once and kept, as the statements inside are.
    conn.prepare_cached("PRAGMA synchronous = FULL")?
        .execute([])?;
    let r = (|| {
        let tx = conn.transaction()?;
        let v = f(&tx)?;
        tx.commit()?;
        Ok(v)
    })();
    let _ = conn
        .prepare_cached("PRAGMA synchronous = NORMAL")
        .and_then(|mut s| s.execute([]));
    r
}

/// An observation's monotonic time as stored.
pub(super) fn mono_ms(o: &Observation) -> i64 {
    i64::try_from(o.mono.as_millis()).unwrap_or(i64::MAX)
}

/// Appends one reading of a group as `[metric, value, invalid, flags, device_time, bed_seq]`
/// (schema v6), followed by `null` and its received and monotonic ms after the group's
/// (`later`) when it was received later than the group's first (v7). Without allocating: the
/// device time's text is kept in `last_time` and made again only when it changes.
pub(super) fn push_reading(
    json: &mut String,
    o: &Observation,
    later: (i64, i64),
    last_time: &mut Option<(DeviceTime, String)>,
) {
    json.push('[');
    push_str(json, o.m.metric.name());
    json.push(',');
    push_number(json, o.m.value.number());
    json.push(',');
    match o.m.value.invalid() {
        Some(r) => push_str(json, r.name()),
        None => json.push_str("null"),
    }
    json.push(',');
    // The names of `Flags::names`, space-separated, `cuff_error:<code>` last: as the old
    // column held them. The names are fixed identifiers and the code a number, so nothing in
    // them needs escaping (`push_str` would escape it anyway).
    let mut any = false;
    for f in o.m.flags.iter() {
        json.push(if any { ' ' } else { '"' });
        push_str_body(json, f.name());
        any = true;
    }
    if let Some(code) = o.m.flags.cuff_error() {
        json.push(if any { ' ' } else { '"' });
        let _ = write!(json, "cuff_error:{code}");
        any = true;
    }
    json.push_str(if any { "\"" } else { "null" });
    json.push(',');
    match o.m.device_time {
        None => json.push_str("null"),
        Some(t) => {
            if last_time.as_ref().is_none_or(|(c, _)| *c != t) {
                *last_time = Some((t, t.to_string()));
            }
            if let Some((_, text)) = last_time.as_ref() {
                push_str(json, text);
            }
        }
    }
    json.push(',');
    let mut int = itoa::Buffer::new();
    json.push_str(int.format(i64::try_from(o.bed_seq).unwrap_or(i64::MAX)));
    if later != (0, 0) {
        json.push_str(",null,");
        json.push_str(int.format(later.0));
        json.push(',');
        json.push_str(int.format(later.1));
    }
    json.push(']');
}

/// A JSON string.
fn push_str(json: &mut String, s: &str) {
    json.push('"');
    push_str_body(json, s);
    json.push('"');
}

/// A JSON string's text, escaped as serde_json escapes it; the names written are plain ASCII
/// identifiers and a device time is digits, `-`, `T` and `:`, so this is the fast path's
/// single scan in practice.
pub(super) fn push_str_body(json: &mut String, s: &str) {
    if !s.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20) {
        json.push_str(s);
        return;
    }
    // Otherwise serde_json's escaping, without its quotes (a string always serializes).
    if let Ok(quoted) = serde_json::to_string(s) {
        json.push_str(quoted.get(1..quoted.len() - 1).unwrap_or_default());
    }
}

/// A value as a JSON number that SQLite reads back as REAL, the old column's type: the shortest
/// round-trip form (`ryu`, as Rust's own `{:?}` but without `core::fmt`) always has a `.` or an
/// exponent (`97.0`, `1e21`). A valid value is finite (`Measurement::new`); were one not, NaN
/// is written as null (as SQLite stores a bound NaN) and an infinity as `9e999`, SQLite's own
/// JSON text for it.
pub(super) fn push_number(json: &mut String, v: Option<f64>) {
    match v {
        Some(v) if v.is_finite() => json.push_str(ryu::Buffer::new().format_finite(v)),
        Some(v) if v.is_nan() => json.push_str("null"),
        Some(v) if v > 0.0 => json.push_str("9e999"),
        Some(_) => json.push_str("-9e999"),
        None => json.push_str("null"),
    }
}

fn id_of(
    tx: &rusqlite::Transaction<'_>,
    cache: &mut HashMap<u16, i64>,
    table: &str,
    names: &[String],
    idx: u16,
    what: &str,
) -> Result<i64, StoreError> {
    if let Some(id) = cache.get(&idx) {
        return Ok(*id);
    }
    let name = names
        .get(usize::from(idx))
        .cloned()
        .unwrap_or_else(|| format!("{what}#{idx}"));
    tx.execute(
        &format!("INSERT OR IGNORE INTO {table} (name) VALUES (?1)"),
        [&name],
    )?;
    let id: i64 = tx.query_row(
        &format!("SELECT id FROM {table} WHERE name = ?1"),
        [&name],
        |r| r.get(0),
    )?;
    cache.insert(idx, id);
    Ok(id)
}
