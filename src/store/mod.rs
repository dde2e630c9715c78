//! The durable record: one SQLite file (WAL) holding every reading, every alarm event and action,
//! and the sessions (admission to discharge) with their dosing, notes and phase changes.
//!
//! # Durability contract (docs/storage.md)
//! - [`StoreHandle::reading`] never blocks on I/O and never awaits: it pushes the observation
//!   (a `Copy` value) into a bounded buffer. A dedicated writer thread, which owns the only
//!   write connection, drains the buffer in one transaction every [`READINGS_INTERVAL`] (at most
//!   [`BATCH_MAX`] readings each; a fuller buffer is written in rounds back to back), so a
//!   reading is committed well within 200 ms of arrival while the store keeps up.
//! - Acknowledgements, limit/baseline changes and session changes are committed in their own
//!   transaction, fsynced (`synchronous=FULL` for that transaction), before
//!   [`StoreHandle::alarm_event`], the action or the session call returns. Engine alarm events
//!   recorded without a waiter, the latest alarm state per bed and the notifier's outbox changes
//!   are group-committed: one fsynced transaction for all of them, at most one per
//!   [`BATCH_INTERVAL`] (the first record after a quiet round is committed at once, the ones
//!   that follow it within a round of the last commit), however many there are.
//! - Readings are committed with `synchronous=NORMAL` in WAL mode: a commit is in the operating
//!   system's hands when it returns, so it survives `kill -9` of the daemon (tested against the
//!   real binary); it does not survive a power cut of the last second or so (no fsync per batch).
//! - When the file cannot be written (disk full, size limit, read-only, removed), readings stay
//!   in the buffer (bounded by [`StoreOptions::buffer_cap`]) and are written when it recovers.
//!   The bound is shared fairly between devices (`fair`): past it the device with the most
//!   buffered loses its oldest first, counted in [`StoreHealth::dropped_by_device`], and for
//!   [`DROPPING_FOR`] the store reports itself not writable (`store_unwritable`, `/healthz`).
//!
//! # Layout
//! - `schema`: tables and versioned migrations (`PRAGMA user_version`).
//! - `writer`: the writer thread.
//! - `fair`: the reading buffer, shared fairly between devices.
//! - [`query`]: reads (history, alarm history, sessions, export data), on a separate connection.
//! - [`session`]: session types and their validation and writes.
//! - [`readiness`]: the pure discharge-readiness function.
//! - [`export`]: CSV, FHIR R4 Bundle and the printable HTML report.
//! - [`outbox`]: the notifier's undelivered pages, group-committed by the writer thread.
//! - [`hl7_outbox`]: HL7 messages not yet acknowledged (src/hl7), group-committed likewise.

pub mod export;
mod fair;
pub mod hl7_outbox;
pub mod outbox;
pub mod query;
pub mod readiness;
pub mod schema;
pub mod session;
mod writer;

pub use query::{HistoryPoint, StoredAlarmEvent, StoredReading};
pub use readiness::{Readiness, ReadinessMargins};
pub use session::{Admit, Phase, Session, SessionEvent, SessionEventRow};

use crate::model::{Metric, Observation};
use rusqlite::Connection;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// The writer's round: the alarm path's records (events, states, outbox changes) are
/// group-committed at most this long after they are recorded, and at most once per round: each
/// commit is an fsync and rewrites the alarm tables' last pages, so committing at once for every
/// event (300 fsyncs a second at 25 000 lines/s with 5 % alarm lines) cost the live path its
/// tail latency and ~10 % of the daemon's CPU.
pub const BATCH_INTERVAL: Duration = Duration::from_millis(25);
/// Buffered readings are committed this often (one transaction for all of them): rarer than
/// the rounds, because every commit rewrites the tables' and index's last pages into the WAL
/// (and the checkpoint copies them again), whatever it holds; at 25 000 lines/s committing
/// every 25 ms cost ~8 % of the daemon's CPU. A reading is still committed within ~125 ms.
pub const READINGS_INTERVAL: Duration = Duration::from_millis(100);
/// A writer round writes at most this many readings (one transaction); more are written in
/// the rounds right after, without waiting. Bounds the memory of the batch being written.
pub const BATCH_MAX: usize = 25_000;
/// Default bound of the reading buffer: about 20 minutes of two recliners at full pleth rate.
pub const DEFAULT_BUFFER_CAP: usize = 200_000;
/// After a reading is dropped, the store reports itself not writable for this long.
pub const DROPPING_FOR: Duration = Duration::from_secs(5);
/// Bound of the alarm events held while the store is unwritable.
pub const EVENT_BUFFER_CAP: usize = 10_000;
/// Commands waiting for the writer at which the alarm path's consumer waits for room
/// ([`StoreHandle::wait_room`]): its backlog then waits, coalescing, in the hub's queue.
pub const COMMAND_CAP: usize = 1_024;
/// The store file's name inside the configured data dir.
pub const FILE_NAME: &str = "vitalsd.sqlite";

/// What can go wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused (disk full, read-only, corrupt file, constraint).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The file was written by a newer vitalsd (or is not a vitalsd store).
    #[error("store schema version {found} is not supported, expected at most {supported}")]
    Schema { found: i64, supported: u32 },
    /// The store cannot be written right now; the request was not recorded.
    #[error("store is not writable: {0}")]
    Unwritable(String),
    /// The writer thread is gone (daemon shutting down).
    #[error("store writer has stopped")]
    Stopped,
    /// A request carried a bad value.
    #[error("{field}: {value:?} is not valid, expected {expected}")]
    Invalid {
        field: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Nothing with that key.
    #[error("{what} {key:?} not found")]
    NotFound { what: &'static str, key: String },
    /// The request conflicts with the record (a second open session for a bed, ...).
    #[error("{0}")]
    Conflict(String),
    /// A background query task failed.
    #[error("query task failed: {0}")]
    Task(String),
}

/// One alarm-system event to record: an engine event (raised, cleared, ...) or a nurse's or
/// admin's action (acknowledged, audio paused, limits changed, baseline set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    /// When it happened, Unix ms.
    pub at_ms: i64,
    /// The bed, e.g. `room1/A`; None for bed-less alarms (`no_dashboard`).
    pub bed: Option<String>,
    /// The event kind (`raised`, `acknowledged`, `limits_changed`, ...).
    pub kind: String,
    /// The alarm it is about, if any.
    pub alarm_id: Option<u64>,
    /// The alarm condition (`spo2_low`, ...), if any.
    pub condition: Option<String>,
    /// `high`, `medium` or `low`, if about an alarm.
    pub priority: Option<String>,
    /// Who did it (user name), for actions.
    pub actor: Option<String>,
    /// The whole wire message, as sent to dashboards.
    pub json: String,
}

/// One bed's saved alarm state (a row of `alarm_state`); the hub publishes it.
pub use crate::model::StoredState;

/// The store's health, for the `store_unwritable` technical alarm and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreHealth {
    /// The last write attempt succeeded and no reading was dropped within [`DROPPING_FOR`].
    pub writable: bool,
    /// Readings not yet committed.
    pub backlog: usize,
    /// Readings dropped because the buffer overflowed (the store unwritable for long, or not
    /// keeping up).
    pub dropped: u64,
    /// A reading was dropped within the last [`DROPPING_FOR`]: the store then reports itself
    /// not writable (`store_unwritable` is raised, `/healthz` answers 503).
    pub dropping: bool,
    /// Readings dropped, by device id (only devices that lost some).
    pub dropped_by_device: std::collections::BTreeMap<String, u64>,
    /// Alarm events dropped for the same reason (never expected; counted all the same).
    pub dropped_events: u64,
    /// Commands (alarm events, states, outbox changes, session writes) waiting for the writer.
    pub pending_commands: usize,
    /// The most commands ever seen waiting (high-water mark).
    pub peak_commands: usize,
    /// The depth at which the alarm path stops handing over commands ([`COMMAND_CAP`]).
    pub command_cap: usize,
    /// Fsynced group commits of the alarm path's records (events, states, outbox changes
    /// recorded without a waiter) since start: at most one per [`BATCH_INTERVAL`].
    pub group_commits: u64,
    /// The last write error, until a write succeeds again.
    pub last_error: Option<String>,
    /// The last error since the store was opened, kept after recovery (for the log and
    /// `/healthz`: a removed file that was recreated is noticed even though writes succeed).
    pub last_incident: Option<String>,
}

/// Tunables of [`Store::open_with`].
#[derive(Debug, Clone, Copy)]
pub struct StoreOptions {
    /// Readings held in memory at most (while the store is unwritable).
    pub buffer_cap: usize,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            buffer_cap: DEFAULT_BUFFER_CAP,
        }
    }
}

/// Names of beds and devices by index, so that the buffer holds plain `Observation`s.
#[derive(Debug, Default, Clone)]
pub(crate) struct Topology {
    pub beds: Vec<String>,
    pub devices: Vec<String>,
}

pub(crate) type Job = Box<dyn FnOnce(&mut Connection) + Send>;

pub(crate) enum Cmd {
    Event(
        StoredEvent,
        Option<tokio::sync::oneshot::Sender<Result<i64, StoreError>>>,
    ),
    Flush(tokio::sync::oneshot::Sender<Result<(), StoreError>>),
    Job(Job),
    /// A change to the HL7 outbox; those of one wake-up share a transaction.
    Hl7(hl7_outbox::Hl7Op),
    /// A bed's alarm state, written without a waiter; the writer keeps only the latest per bed
    /// and writes them together (group commit).
    State(StoredState),
    /// An action's events and the bed's state after it, in one fsynced transaction.
    Commit(
        Vec<StoredEvent>,
        Option<StoredState>,
        tokio::sync::oneshot::Sender<Result<(), StoreError>>,
    ),
}

impl Cmd {
    /// Someone waits for the answer (a job reads what was recorded before it): the writer runs
    /// it at once, after writing everything recorded before it. The others (alarm events and
    /// states without a waiter, HL7 outbox changes) wait for the next group commit.
    pub(crate) fn waited_for(&self) -> bool {
        matches!(
            self,
            Cmd::Job(_) | Cmd::Flush(_) | Cmd::Commit(..) | Cmd::Event(_, Some(_))
        )
    }
}

pub(crate) struct Queue {
    pub readings: fair::FairBuffer,
    pub cmds: VecDeque<Cmd>,
    /// The notifier's outbox changes, beside the commands and outside their bound
    /// (coalesced per row: see `outbox`).
    pub outbox: outbox::OutboxChanges,
    pub stop: bool,
}

impl Queue {
    /// Alarm-path records (commands, outbox changes) wait for the writer.
    pub fn has_records(&self) -> bool {
        !self.cmds.is_empty() || !self.outbox.is_empty()
    }
}

pub(crate) struct Shared {
    pub q: Mutex<Queue>,
    pub wake: Condvar,
    pub dropped: AtomicU64,
    pub dropped_events: AtomicU64,
    pub writable: AtomicBool,
    /// When a reading was last dropped, and whose.
    pub last_drop: Mutex<Option<(std::time::Instant, crate::model::DeviceIdx)>>,
    pub inflight: AtomicUsize,
    /// The most commands ever waiting.
    pub cmd_peak: AtomicUsize,
    /// Group commits made (see [`StoreHealth::group_commits`]).
    pub group_commits: AtomicU64,
    /// Signalled by the writer each time it takes the waiting commands.
    pub room: tokio::sync::Notify,
    pub last_error: Mutex<Option<String>>,
    pub last_incident: Mutex<Option<String>>,
    pub topology: RwLock<Arc<Topology>>,
}

impl Shared {
    pub fn queue(&self) -> MutexGuard<'_, Queue> {
        self.q.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts `n` readings dropped (the latest of `device`): logged once per episode.
    pub fn dropped_readings(&self, n: u64, device: crate::model::DeviceIdx) {
        if n == 0 {
            return;
        }
        self.dropped.fetch_add(n, Ordering::Relaxed);
        let now = std::time::Instant::now();
        let mut last = self.last_drop.lock().unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|(t, _)| now.duration_since(t) >= DROPPING_FOR) {
            tracing::error!(
                device = device.0,
                "store buffer full: readings dropped (the device with the most buffered loses its oldest first)"
            );
        }
        *last = Some((now, device));
    }

    pub fn set_error(&self, e: Option<String>) {
        self.writable.store(e.is_none(), Ordering::Release);
        if let Some(e) = &e {
            *self.last_incident.lock().unwrap_or_else(|e| e.into_inner()) = Some(e.clone());
        }
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = e;
    }
}

/// The open store: owns the writer thread. Dropping it without [`Store::close`] stops the
/// writer after it has written what is buffered.
pub struct Store {
    handle: StoreHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// A cheap, cloneable handle for recording and querying; safe to use from any thread.
#[derive(Clone)]
pub struct StoreHandle {
    shared: Arc<Shared>,
    reader: Arc<Mutex<Connection>>,
    path: Arc<PathBuf>,
}

impl Store {
    /// Opens (creating the data dir and file if needed) and migrates the store at `path`, and
    /// starts its writer thread.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        Store::open_with(path, StoreOptions::default())
    }

    /// [`Store::open`] with options.
    pub fn open_with(path: &Path, opts: StoreOptions) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
                path: dir.to_owned(),
                source,
            })?;
        }
        let mut conn = open_connection(path)?;
        schema::migrate(&mut conn, schema::VERSION)?;
        let reader = open_connection(path)?;
        let shared = Arc::new(Shared {
            q: Mutex::new(Queue {
                readings: fair::FairBuffer::new(opts.buffer_cap),
                cmds: VecDeque::new(),
                outbox: outbox::OutboxChanges::default(),
                stop: false,
            }),
            wake: Condvar::new(),
            dropped: AtomicU64::new(0),
            dropped_events: AtomicU64::new(0),
            writable: AtomicBool::new(true),
            last_drop: Mutex::new(None),
            inflight: AtomicUsize::new(0),
            cmd_peak: AtomicUsize::new(0),
            group_commits: AtomicU64::new(0),
            room: tokio::sync::Notify::new(),
            last_error: Mutex::new(None),
            last_incident: Mutex::new(None),
            topology: RwLock::new(Arc::new(Topology::default())),
        });
        let thread = writer::spawn(shared.clone(), conn, path.to_owned())?;
        Ok(Store {
            handle: StoreHandle {
                shared,
                reader: Arc::new(Mutex::new(reader)),
                path: Arc::new(path.to_owned()),
            },
            thread: Some(thread),
        })
    }

    /// Opens the store of a config: `<data_dir>/vitalsd.sqlite`, with the config's bed and
    /// device names.
    pub fn open_for(cfg: &crate::config::Config) -> Result<Store, StoreError> {
        let store = Store::open_with(
            &cfg.data_dir.join(FILE_NAME),
            StoreOptions {
                buffer_cap: cfg.store_buffer_cap.unwrap_or(DEFAULT_BUFFER_CAP),
            },
        )?;
        store.handle.set_topology(
            cfg.beds.iter().map(|b| b.id.clone()).collect(),
            cfg.devices.iter().map(|d| d.id.clone()).collect(),
        );
        Ok(store)
    }

    /// A handle for recording and querying.
    pub fn handle(&self) -> StoreHandle {
        self.handle.clone()
    }

    /// Writes everything buffered, then stops the writer thread and waits for it.
    pub async fn close(mut self) -> Result<(), StoreError> {
        let flushed = self.handle.flush().await;
        self.stop_writer();
        if let Some(t) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        flushed
    }

    fn stop_writer(&self) {
        let mut q = self.handle.shared.queue();
        q.stop = true;
        drop(q);
        self.handle.shared.wake.notify_one();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.stop_writer();
    }
}

/// Opens one connection with the store's settings.
pub(crate) fn open_connection(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %path.display(), mode, "store is not in WAL mode");
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    Ok(conn)
}

/// Opens an existing store file for reading and exporting (the `export` command), migrating it
/// if it is older. Does not start a writer.
pub fn open_existing(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::NotFound {
            what: "store file",
            key: path.display().to_string(),
        });
    }
    let mut conn = open_connection(path)?;
    schema::migrate(&mut conn, schema::VERSION)?;
    Ok(conn)
}

impl StoreHandle {
    /// The store file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sets the names that bed and device indices of observations stand for.
    pub fn set_topology(&self, beds: Vec<String>, devices: Vec<String>) {
        *self
            .shared
            .topology
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(Topology { beds, devices });
    }

    /// Records a reading. Never blocks on I/O and never awaits: a short lock and a push into the
    /// bounded buffer (no allocation once the buffer has grown). When the buffer is full (the
    /// store has been unwritable for a long time, or cannot keep up) the oldest reading of the
    /// device with the most buffered is dropped and counted (`store::fair`), and the store
    /// reports itself not writable for [`DROPPING_FOR`].
    pub fn reading(&self, obs: &Observation) {
        let mut q = self.shared.queue();
        let lost = q.readings.push(*obs);
        drop(q);
        if let Some(d) = lost {
            self.shared.dropped_readings(1, d);
        }
    }

    /// Records the readings of one device read, in order, under one lock (as [`Self::reading`]
    /// each).
    pub fn readings(&self, obs: &[Observation]) {
        let mut q = self.shared.queue();
        let mut lost = Vec::new();
        for o in obs {
            if let Some(d) = q.readings.push(*o) {
                lost.push(d);
            }
        }
        drop(q);
        for d in lost {
            self.shared.dropped_readings(1, d);
        }
    }

    /// Records an alarm event and returns its row id once it is committed (fsynced).
    pub async fn alarm_event(&self, ev: StoredEvent) -> Result<i64, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Cmd::Event(ev, Some(tx)))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Records an alarm event without waiting (the alarm path). Events keep their order; while
    /// the store is unwritable they are held (bounded) and written when it recovers.
    pub fn alarm_event_nowait(&self, ev: StoredEvent) {
        if self.send(Cmd::Event(ev, None)).is_err() {
            self.shared.dropped_events.fetch_add(1, Ordering::Relaxed);
            tracing::error!("alarm event not recorded: the store writer has stopped");
        }
    }

    /// Saves a bed's alarm state without waiting (the alarm path). Only the latest state per
    /// bed is written; while the store is unwritable the latest is held and written when it
    /// recovers.
    pub fn save_state_nowait(&self, state: StoredState) {
        if self.send(Cmd::State(state)).is_err() {
            tracing::error!("alarm state not saved: the store writer has stopped");
        }
    }

    /// Commits an action: its events and (if given) the bed's state after it, in one fsynced
    /// transaction, after everything recorded before. An error means nothing of it is written.
    pub async fn commit(
        &self,
        events: Vec<StoredEvent>,
        state: Option<StoredState>,
    ) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Cmd::Commit(events, state, tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Every bed's saved alarm state (restored at start).
    pub async fn alarm_states(&self) -> Result<Vec<StoredState>, StoreError> {
        self.read(|c| {
            let mut st = c.prepare("SELECT bed, updated_ms, json FROM alarm_state ORDER BY bed")?;
            let rows = st.query_map([], |r| {
                Ok(StoredState {
                    bed: r.get(0)?,
                    at_ms: r.get(1)?,
                    json: r.get(2)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await
    }

    /// The store's health.
    pub fn health(&self) -> StoreHealth {
        let (backlog, by_device, pending_commands) = {
            let q = self.shared.queue();
            let by: Vec<(usize, u64)> = q
                .readings
                .dropped()
                .iter()
                .copied()
                .enumerate()
                .filter(|(_, n)| *n > 0)
                .collect();
            (
                q.readings.len() + self.shared.inflight.load(Ordering::Acquire),
                by,
                q.cmds.len(),
            )
        };
        let topo = self
            .shared
            .topology
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let name = |i: usize| {
            topo.devices
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("device#{i}"))
        };
        let dropped = self.shared.dropped.load(Ordering::Relaxed);
        let dropped_events = self.shared.dropped_events.load(Ordering::Relaxed);
        let dropping = self
            .shared
            .last_drop
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .filter(|(t, _)| t.elapsed() < DROPPING_FOR)
            .map(|(_, d)| d);
        let mut last_error = self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if last_error.is_none()
            && let Some(d) = dropping
        {
            last_error = Some(format!(
                "readings dropped: the store cannot keep up ({dropped} dropped so far, the latest of {})",
                name(usize::from(d.0))
            ));
        }
        StoreHealth {
            writable: self.shared.writable.load(Ordering::Acquire) && dropping.is_none(),
            dropping: dropping.is_some(),
            backlog,
            dropped,
            dropped_by_device: by_device.into_iter().map(|(i, n)| (name(i), n)).collect(),
            dropped_events,
            pending_commands,
            peak_commands: self.shared.cmd_peak.load(Ordering::Relaxed),
            command_cap: COMMAND_CAP,
            group_commits: self.shared.group_commits.load(Ordering::Relaxed),
            last_error,
            last_incident: self
                .shared
                .last_incident
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }

    /// Commits everything recorded before this call; an error if the store is unwritable.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Cmd::Flush(tx))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Caps the file's size (a disk quota for the store): past it, writes fail as on a full
    /// disk and readings are held. `None` lifts the cap. The cap is rounded to pages and never
    /// below the current size.
    pub async fn set_size_limit(&self, bytes: Option<u64>) -> Result<(), StoreError> {
        self.write(move |conn| {
            let page: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let pages = match bytes {
                Some(b) => (i64::try_from(b).unwrap_or(i64::MAX) / page.max(1)).max(1),
                None => 0xFFFF_FFFE,
            };
            conn.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok(())
        })
        .await
    }

    /// Runs `f` on the writer thread, in order with everything recorded before, and returns its
    /// result. `f` opens its own transaction.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = tx.send(f(conn));
        });
        self.send(Cmd::Job(job))?;
        rx.await.map_err(|_| StoreError::Stopped)?
    }

    /// Runs `f` on the read connection in a blocking task.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|e| e.into_inner());
            f(&conn)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    /// History of one metric of one bed over `[from_ms, to_ms]`: every reading, or when there
    /// are more than `max_points`, min/max/avg per time bucket.
    pub async fn history(
        &self,
        bed: &str,
        metric: Metric,
        from_ms: i64,
        to_ms: i64,
        max_points: usize,
    ) -> Result<Vec<HistoryPoint>, StoreError> {
        let bed = bed.to_owned();
        self.read(move |c| query::history(c, &bed, metric, from_ms, to_ms, max_points))
            .await
    }

    /// Alarm events, newest first, optionally for one bed.
    pub async fn alarm_history(
        &self,
        bed: Option<&str>,
        limit: usize,
    ) -> Result<Vec<StoredAlarmEvent>, StoreError> {
        let bed = bed.map(str::to_owned);
        self.read(move |c| query::alarm_history(c, bed.as_deref(), limit))
            .await
    }

    /// Admits a patient to `bed` (committed before it returns).
    pub async fn admit(
        &self,
        bed: &str,
        req: Admit,
        actor: Option<String>,
    ) -> Result<Session, StoreError> {
        let bed = bed.to_owned();
        let at = crate::clock::wall_ms();
        self.write(move |c| session::admit(c, &bed, &req, actor.as_deref(), at))
            .await
    }

    /// Discharges the open session of `bed` (committed before it returns).
    pub async fn discharge(&self, bed: &str, actor: Option<String>) -> Result<Session, StoreError> {
        let bed = bed.to_owned();
        let at = crate::clock::wall_ms();
        self.write(move |c| session::discharge(c, &bed, actor.as_deref(), at))
            .await
    }

    /// Records an event in the open session of `bed` (committed before it returns).
    pub async fn session_event(
        &self,
        bed: &str,
        ev: SessionEvent,
        actor: Option<String>,
    ) -> Result<SessionEventRow, StoreError> {
        let bed = bed.to_owned();
        let at = crate::clock::wall_ms();
        self.write(move |c| session::add_event(c, &bed, &ev, actor.as_deref(), at))
            .await
    }

    /// The open session of `bed`.
    pub async fn current_session(&self, bed: &str) -> Result<Option<Session>, StoreError> {
        let bed = bed.to_owned();
        self.read(move |c| session::current(c, &bed)).await
    }

    /// A session by id, with its events.
    pub async fn session(&self, id: i64) -> Result<Session, StoreError> {
        self.read(move |c| session::get(c, id)).await
    }

    /// Sessions, newest first (without events).
    pub async fn sessions(
        &self,
        bed: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Session>, StoreError> {
        let bed = bed.map(str::to_owned);
        self.read(move |c| session::list(c, bed.as_deref(), limit))
            .await
    }

    /// Discharge readiness of `bed` now: the open session's baseline against the readings since
    /// admission (at most the last two hours).
    pub async fn readiness(
        &self,
        bed: &str,
        margins: ReadinessMargins,
    ) -> Result<Readiness, StoreError> {
        let bed = bed.to_owned();
        let now = crate::clock::wall_ms();
        self.read(move |c| {
            let current = session::current(c, &bed)?;
            let from = current.as_ref().map_or(now - 2 * 3_600_000, |s| {
                s.admitted_ms.max(now - 2 * 3_600_000)
            });
            let samples = query::recent_values(c, &bed, &readiness::METRICS, from)?;
            let baseline = current.as_ref().and_then(Session::baseline);
            let mut r = readiness::readiness(baseline.as_ref(), &samples, &margins, now);
            if current.is_none() {
                r.ready = false;
                r.reasons.insert(0, "no patient admitted".to_owned());
            }
            Ok(r)
        })
        .await
    }

    /// Renders a session for export and marks the session exported. `devices` gives vendor and
    /// model per device id (from the config) for the FHIR Device resources; `zone` is the
    /// report's time zone.
    pub async fn export(
        &self,
        id: i64,
        format: export::Format,
        devices: std::collections::BTreeMap<String, (String, String)>,
        zone: export::Zone,
    ) -> Result<String, StoreError> {
        let now = crate::clock::wall_ms();
        let mut rec = self.read(move |c| export::load(c, id, now)).await?;
        rec.devices = devices;
        rec.zone = zone;
        let body = export::render(&rec, format);
        self.write(move |c| session::mark_exported(c, id, now))
            .await?;
        Ok(body)
    }

    /// Retention: see [`session::prune`].
    pub async fn prune(
        &self,
        older_than_ms: i64,
        force: bool,
    ) -> Result<session::Pruned, StoreError> {
        self.write(move |c| session::prune(c, older_than_ms, force))
            .await
    }

    /// Records a change to the notifier's outbox without waiting: the writer commits the
    /// changes queued together in one transaction (`synchronous=NORMAL`, as readings: it
    /// survives `kill -9`), in order.
    pub fn outbox(&self, op: outbox::OutboxOp) {
        let mut q = self.shared.queue();
        if q.stop {
            drop(q);
            tracing::error!("outbox change not recorded: the store writer has stopped");
            return;
        }
        let wake = !q.has_records();
        q.outbox.add(op);
        drop(q);
        // As for a command without a waiter (`send`).
        if wake {
            self.shared.wake.notify_one();
        }
    }

    /// The pages left in the outbox, oldest first.
    pub async fn outbox_load(&self) -> Result<Vec<outbox::OutboxRow>, StoreError> {
        self.read(outbox::load).await
    }

    /// Records a change to the HL7 outbox without waiting: the writer commits the changes
    /// queued together in one transaction (`synchronous=NORMAL`, as readings: it survives
    /// `kill -9`), in order.
    pub fn hl7(&self, op: hl7_outbox::Hl7Op) {
        if self.send(Cmd::Hl7(op)).is_err() {
            tracing::error!("HL7 outbox change not recorded: the store writer has stopped");
        }
    }

    /// The HL7 messages left in the outbox, oldest first, and the highest control id ever
    /// handed out.
    pub async fn hl7_load(&self) -> Result<(Vec<hl7_outbox::Hl7Row>, i64), StoreError> {
        self.read(hl7_outbox::load).await
    }

    fn send(&self, cmd: Cmd) -> Result<(), StoreError> {
        let mut q = self.shared.queue();
        if q.stop {
            return Err(StoreError::Stopped);
        }
        // The writer is woken for a command someone waits for, and for the first record of a
        // quiet moment (committed at once if the last group commit is a round old); records
        // that follow it wait for the group commit the writer has already planned.
        let wake = cmd.waited_for() || !q.has_records();
        q.cmds.push_back(cmd);
        let depth = q.cmds.len();
        drop(q);
        self.shared.cmd_peak.fetch_max(depth, Ordering::Relaxed);
        if wake {
            self.shared.wake.notify_one();
        }
        Ok(())
    }

    /// Waits until fewer than [`COMMAND_CAP`] commands wait for the writer (at once when
    /// they do). The alarm path's consumer calls it before taking the next message, so the
    /// store's command queue stays bounded and a backlog waits, coalescing, upstream.
    pub async fn wait_room(&self) {
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let q = self.shared.queue();
                if q.cmds.len() < COMMAND_CAP || q.stop {
                    return;
                }
            }
            // The writer signals each round; the timeout only guards against a missed one.
            let _ = tokio::time::timeout(BATCH_INTERVAL * 2, room).await;
        }
    }
}

#[cfg(test)]
mod tests;
