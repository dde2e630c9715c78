//! Wires the daemon together: hub, one source task per device, the HTTP/WebSocket server, the
//! console summary; and shuts it down in order on a signal (mini-redis style: one cancel token,
//! one task tracker).

use crate::api::{self, ApiState};
use crate::config::Config;
use crate::hub::Hub;
use crate::model::DeviceIdx;
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
    pub hub: Arc<Hub>,
    cancel: CancellationToken,
    tracker: TaskTracker,
    store: Option<Store>,
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
    }
}

/// Starts the daemon: binds the listener, then starts every device source.
pub async fn start(cfg: Arc<Config>, opts: Options) -> anyhow::Result<Running> {
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let hub = Arc::new(Hub::new(cfg.clone()));
    let store = Store::open_for(&cfg).with_context(|| {
        format!(
            "cannot open the store in {} (data_dir)",
            cfg.data_dir.display()
        )
    })?;
    hub.set_store(store.handle());
    let listen = opts.listen.unwrap_or(cfg.listen);
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    let addr = listener.local_addr().context("listener has no address")?;
    let app = api::router(ApiState {
        hub: hub.clone(),
        cancel: cancel.clone(),
        store: Some(store.handle()),
    });
    let stop = cancel.clone();
    tracker.spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "http server failed");
        }
    });
    for i in 0..cfg.devices.len() {
        let Ok(idx) = u16::try_from(i) else { break };
        let ctx = SourceCtx {
            hub: hub.clone(),
            cancel: cancel.clone(),
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
        hub,
        cancel,
        tracker,
        store: Some(store),
    })
}

/// Runs until `shutdown` resolves, then stops in order.
pub async fn run(
    cfg: Arc<Config>,
    opts: Options,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let running = start(cfg, opts).await?;
    print_endpoints(running.addr);
    shutdown.await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// Tells the user where to look.
pub fn print_endpoints(addr: SocketAddr) {
    println!("vitalsd listening on http://{addr}/");
    println!("  WebSocket:  ws://{addr}/ws");
    println!("  API:        http://{addr}/api/rooms");
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
