//! Wires the daemon together: hub, one source task per device, the HTTP/WebSocket server, the
//! console summary; and shuts it down in order on a signal (mini-redis style: one cancel token,
//! one task tracker).

use crate::alarm::EventKind;
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::hub::dispatch::{DispatchQueue, StateSaves};
use crate::hub::{Dispatch, Dispatched, Hub, OpenSession};
use crate::model::DeviceIdx;
use crate::notify;
use crate::sources::{self, SourceCtx};
use crate::store::{Store, StoreHandle};
use anyhow::Context;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Options that are not part of the clinic's config.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Print a one-line summary per bed every this often (None: never).
    pub summary_every: Option<Duration>,
    /// Overrides the configured listen address (tests use port 0).
    pub listen: Option<SocketAddr>,
}

/// A running daemon.
pub struct Running {
    /// Where the API and WebSocket listen.
    pub addr: SocketAddr,
    /// Whether the listener serves HTTPS/WSS.
    pub tls: bool,
    pub hub: Arc<Hub>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    store: Option<Store>,
    /// The data dir's lock, held until the store is closed (one daemon per data dir).
    lock: Option<DataDirLock>,
}

impl Running {
    /// A token that stops everything when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// The store's handle.
    pub fn store(&self) -> Option<StoreHandle> {
        self.store.as_ref().map(Store::handle)
    }

    /// Stops every task and waits for them, then writes everything the store holds.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        self.tracker.close();
        if tokio::time::timeout(Duration::from_secs(10), self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("some tasks did not stop within 10 s");
        }
        if let Some(store) = self.store.take()
            && let Err(e) = store.close().await
        {
            tracing::error!(error = %e, "store could not write everything at shutdown");
        }
        drop(self.lock.take());
    }
}

/// The name of the lock file inside the data dir.
pub const LOCK_FILE: &str = "vitalsd.lock";

/// An exclusive lock on a data dir: held while the daemon runs, released when dropped (or
/// when the process ends, however it ends). The file holds the holder's pid.
#[derive(Debug)]
pub struct DataDirLock {
    _file: std::fs::File,
}

/// Locks `dir` for this process, or says which process holds it.
pub fn lock_data_dir(dir: &std::path::Path) -> anyhow::Result<DataDirLock> {
    use std::io::{Read, Seek, Write};
    let path = dir.join(LOCK_FILE);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .with_context(|| format!("cannot open the lock file {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            let holder = match text.trim().parse::<u32>() {
                Ok(pid) => format!("vitalsd pid {pid}"),
                Err(_) => "another vitalsd".to_owned(),
            };
            anyhow::bail!(
                "data_dir {} is in use by {holder} (lock file {}); one daemon per data dir",
                dir.display(),
                path.display()
            );
        }
        Err(std::fs::TryLockError::Error(e)) => {
            return Err(e).with_context(|| format!("cannot lock {}", path.display()));
        }
    }
    // Best effort: the pid only makes the message of a second daemon clearer.
    let _ = file
        .set_len(0)
        .and_then(|()| file.rewind())
        .and_then(|()| writeln!(file, "{}", std::process::id()))
        .and_then(|()| file.flush());
    Ok(DataDirLock { _file: file })
}

/// Starts the daemon: binds the listener, then starts every device source.
pub async fn start(cfg: Arc<Config>, opts: Options) -> anyhow::Result<Running> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("cannot create data_dir {}", cfg.data_dir.display()))?;
    let lock = lock_data_dir(&cfg.data_dir)?;
    let store = Store::open_for(&cfg).with_context(|| {
        format!(
            "cannot open the store in {} (data_dir)",
            cfg.data_dir.display()
        )
    })?;
    let overload = Arc::new(crate::overload::Overload::new(cfg.devices.len()));
    // Alarm events off the alarm path, to the store and the notifier: bounded, coalescing
    // superseded updates under a backlog (hub::dispatch).
    let events = Arc::new(DispatchQueue::new(
        crate::hub::dispatch::TRANSITION_CAP,
        overload.clone(),
    ));
    // Pages off the alarm path, to the notifier as the hub pushes them: never behind the
    // store (a stalled disk does not delay a page).
    // Bounded and coalescing per alarm (notify::inbox); with no `[[notify]]` target nothing
    // is queued at all.
    let notify_inbox = Arc::new(notify::inbox::Inbox::new(
        notify::QUEUE_CAP,
        Some(overload.clone()),
    ));
    if !cfg.notify.is_empty() {
        let inbox = notify_inbox.clone();
        events.forward_events_to(Box::new(move |d| to_notifier(&inbox, d)));
    }
    let hub = Arc::new(Hub::new(cfg.clone(), Some(events.clone())).context("bad alarm limits")?);
    hub.set_recorder(store.handle());
    // What the alarm system knew before a restart, back before any device byte is read and
    // before any client is served.
    restore(&hub, &store.handle(), &cfg).await?;
    // Alarm timers: delays, stale data, NIBP overdue, pause expiry, escalation, watchdog.
    {
        let hub = hub.clone();
        let stop = cancel.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(ALARM_TICK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => hub.tick(),
                }
            }
        });
    }
    tracker.spawn(notify::run(
        cfg.notify.clone(),
        cfg.data_dir.clone(),
        store.handle(),
        hub.clone(),
        notify_inbox.clone(),
        cancel.clone(),
    ));
    // The MQTT bridge: one more hub subscriber, off the alarm path (src/mqtt).
    if let Some(m) = cfg.mqtt.clone() {
        tracker.spawn(crate::mqtt::run(
            m,
            hub.clone(),
            store.handle(),
            cfg.data_dir.clone(),
            cancel.clone(),
        ));
    }
    // HL7 over MLLP (src/hl7): one more hub subscriber, off the alarm path.
    if !cfg.hl7.is_empty() {
        tracker.spawn(crate::hl7::run(hub.clone(), store.handle(), cancel.clone()));
    }
    tracker.spawn(dispatch(
        events,
        hub.clone(),
        (!cfg.notify.is_empty()).then_some(notify_inbox),
        store.handle(),
        cancel.clone(),
    ));
    // Retention: once an hour, prune discharged sessions older than the configured time.
    if let Some(keep) = cfg.retention {
        let store = store.handle();
        let stop = cancel.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let before =
                    crate::clock::wall_ms() - i64::try_from(keep.as_millis()).unwrap_or(i64::MAX);
                match store.prune(before, false).await {
                    Ok(p) if p.sessions > 0 => tracing::info!(
                        sessions = p.sessions,
                        readings = p.readings,
                        "retention: pruned old sessions"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "retention: nothing pruned"),
                }
            }
        });
    }
    // Room for [api] max_connections plus device links, the store and the notifier: the
    // connection cap leaves a reserve of file descriptors (api::serve::connection_cap).
    let mut max_connections = cfg.api.max_connections;
    if let Some((before, after)) = api::serve::raise_fd_limit() {
        let open_now = api::serve::open_fds().unwrap_or(32);
        max_connections =
            api::serve::connection_cap(cfg.api.max_connections, after, open_now, cfg.devices.len());
        if max_connections < cfg.api.max_connections {
            tracing::warn!(
                limit = after,
                max_connections,
                configured = cfg.api.max_connections,
                "the open-file limit leaves room for fewer API connections than [api] max_connections once device links, the store and the notifier have theirs; raise `ulimit -n` (LimitNOFILE=) or lower max_connections"
            );
        } else if after > before {
            tracing::debug!(before, after, "open-file limit raised");
        }
    }
    let listen = opts.listen.unwrap_or(cfg.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("listener has no address")?;
    let app = api::router(ApiState {
        hub: hub.clone(),
        cancel: cancel.clone(),
        store: Some(store.handle()),
        overload: overload.clone(),
    });
    // Host/Origin/Content-Type checks, body limit, request timeout, security headers.
    let app = api::guard::layer(
        app,
        api::guard::Guard::new(&cfg.api, addr, cfg.tls.is_some()),
    );
    let tls = match &cfg.tls {
        Some(t) => Some(Arc::new(api::serve::tls_config(&t.cert, &t.key)?)),
        None => None,
    };
    let limits = api::serve::Limits {
        header_timeout: cfg.api.header_timeout,
        max_connections,
        tls,
    };
    tracker.spawn(api::serve::serve(
        listener,
        app,
        limits,
        cancel.clone(),
        tracker.clone(),
    ));
    for i in 0..cfg.devices.len() {
        let Ok(idx) = u16::try_from(i) else { break };
        let ctx = SourceCtx {
            hub: hub.clone(),
            cancel: cancel.clone(),
            overload: overload.clone(),
        };
        tracker.spawn(sources::run_device(ctx, DeviceIdx(idx)));
    }
    if let Some(every) = opts.summary_every {
        let hub = hub.clone();
        let stop = cancel.clone();
        tracker.spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        for line in hub.summary_lines() {
                            println!("{line}");
                        }
                    }
                }
            }
        });
    }
    Ok(Running {
        addr,
        tls: cfg.tls.is_some(),
        hub,
        cancel,
        tracker,
        store: Some(store),
        lock: Some(lock),
    })
}

/// Restores the hub from the store: every bed's saved alarm state and its open session.
async fn restore(hub: &Hub, store: &StoreHandle, cfg: &Config) -> anyhow::Result<()> {
    let saved = store
        .alarm_states()
        .await
        .context("cannot read the saved alarm state")?;
    let mut open = Vec::new();
    for bed in &cfg.beds {
        let session = store
            .current_session(&bed.id)
            .await
            .with_context(|| format!("cannot read the open session of {}", bed.id))?;
        if let Some(s) = session {
            open.push(OpenSession {
                bed: bed.id.clone(),
                dosed: s.events.iter().any(|e| e.kind == "dose"),
                baseline: s.baseline(),
            });
        }
    }
    let sum = hub.restore(&saved, &open);
    for why in &sum.skipped {
        tracing::warn!(reason = %why, "saved alarm state not restored");
    }
    if sum.beds > 0 || !open.is_empty() {
        tracing::info!(
            beds = sum.beds,
            alarms = sum.alarms,
            pauses = sum.pauses,
            sessions = open.len(),
            "alarm state restored"
        );
    }
    Ok(())
}

/// How often the alarm timers run: an alarm whose condition delay elapses is raised at most
/// this much later.
pub const ALARM_TICK: Duration = Duration::from_millis(100);

/// Hands alarm events to the store off the alarm path, one at a time and only while the
/// store's command queue has room: a backlog waits in the hub's queue, where superseded
/// updates coalesce (hub::dispatch). Engine events reached the notifier as they were pushed;
/// an action's events reach it here, once committed.
async fn dispatch(
    queue: Arc<DispatchQueue>,
    hub: Arc<Hub>,
    notify: Option<Arc<notify::inbox::Inbox<notify::NotifyMsg>>>,
    store: StoreHandle,
    cancel: CancellationToken,
) {
    let forward = |d: &Dispatched| {
        if let Some(inbox) = notify.as_ref() {
            to_notifier(inbox, d);
        }
    };
    // A bed's state is saved at once after a quiet spell, then at most every STATE_SAVE_GAP
    // while it keeps changing (serialized as it is when saved).
    let mut saves = StateSaves::new(hub.config().beds.len());
    let save = |bed| {
        if let Some(state) = hub.saved_state(bed) {
            store.save_state_nowait(state);
        }
    };
    loop {
        let due = saves.next_due();
        let msg = tokio::select! {
            biased;
            // First, so that a busy queue cannot hold a deferred save back.
            _ = tokio::time::sleep_until(due.map_or_else(tokio::time::Instant::now, Into::into)), if due.is_some() => {
                store.wait_room().await;
                saves.take_due(Some(tokio::time::Instant::now().into_std())).into_iter().for_each(save);
                continue;
            }
            m = async {
                store.wait_room().await;
                queue.pop().await
            } => Some(m),
            // At shutdown: take what is already queued, then stop.
            _ = cancel.cancelled() => queue.try_pop(),
        };
        let Some(msg) = msg else {
            // Shutting down: the deferred saves now, before the store stops.
            saves.take_due(None).into_iter().for_each(save);
            return;
        };
        match msg {
            Dispatch::Event(d) => {
                crate::metrics::global().event(&d.event);
                // Already handed to the notifier as it was pushed (forward_events_to).
                store.alarm_event_nowait(stored(hub.config(), &d));
            }
            Dispatch::Commit(events, state, done) => {
                let rows = events.iter().map(|d| stored(hub.config(), d)).collect();
                let result = store.commit(rows, state).await.map_err(|e| e.to_string());
                // Only what is committed takes effect, and only that is notified.
                if result.is_ok() {
                    events.iter().for_each(forward);
                }
                let _ = done.send(result);
            }
            Dispatch::State(bed) => {
                // Serialized when saved, once for however many events it stood for.
                if saves.changed(bed, tokio::time::Instant::now().into_std()) {
                    save(bed);
                }
            }
        }
    }
}

/// Hands the notifier what it acts on: pages, and the end or acknowledgement of an alarm
/// (which cancels its pending pages). Never waits (the inbox is bounded and coalescing).
fn to_notifier(inbox: &notify::inbox::Inbox<notify::NotifyMsg>, d: &Dispatched) {
    let body = || String::from_utf8_lossy(&d.json).into_owned();
    let msg = match (&d.event.kind, d.event.alarm) {
        (EventKind::Notify { level }, a) => Some(notify::NotifyMsg::Page {
            level: *level,
            priority: a.map_or(0, |a| a.priority as u8),
            alarm_id: a.map(|a| a.id.0),
            except: a.and_then(|a| a.target),
            body: body(),
        }),
        (EventKind::Acknowledged | EventKind::Cleared, Some(a)) => {
            Some(notify::NotifyMsg::Resolved {
                alarm_id: a.id.0,
                body: body(),
            })
        }
        _ => None,
    };
    if let Some(msg) = msg {
        inbox.push(msg);
    }
}

/// The store's row for an alarm-system event: the wire message plus indexable fields (taken
/// from the event itself, not parsed back out of the message).
fn stored(cfg: &Config, d: &Dispatched) -> crate::store::StoredEvent {
    use crate::hub::wire::{bed_id, event_name};
    let alarm = d.event.alarm;
    crate::store::StoredEvent {
        at_ms: d.event.at_ms,
        bed: bed_id(cfg, d.event.bed).map(str::to_owned),
        kind: event_name(&d.event.kind).to_owned(),
        alarm_id: alarm.map(|a| a.id.0),
        condition: alarm.map(|a| a.condition.to_string()),
        priority: alarm.map(|a| crate::metrics::priority_label(a.priority).to_owned()),
        actor: d.event.actor.as_deref().map(str::to_owned),
        json: String::from_utf8_lossy(&d.json).into_owned(),
    }
}

/// Runs until `shutdown` resolves, then stops in order.
pub async fn run(
    cfg: Arc<Config>,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut shutdown = std::pin::pin!(shutdown);
    // Poll the signal future once first: that installs the handlers, so a SIGTERM that comes
    // right after we say we are up stops us in order instead of killing us.
    let early = tokio::select! {
        biased;
        _ = &mut shutdown => true,
        _ = std::future::ready(()) => false,
    };
    if early {
        return Ok(());
    }
    let running = start(cfg, opts).await?;
    print_endpoints(running.addr, running.tls);
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Tells the user where to look.
pub fn print_endpoints(addr: SocketAddr, tls: bool) {
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    println!("vitalsd listening on {http}://{addr}/");
    println!("  WebSocket:  {ws}://{addr}/ws");
    println!("  API:        {http}://{addr}/api/rooms");
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// The store is the hub's durable record: the hub hands it readings and watches its health
/// without naming it (the hub sits above the store).
impl crate::hub::Recorder for crate::store::StoreHandle {
    fn readings(&self, obs: &[crate::model::Observation]) {
        crate::store::StoreHandle::readings(self, obs);
    }

    fn writable(&self) -> bool {
        self.health().writable
    }
}
