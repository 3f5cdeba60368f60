//! Starting and stopping the service: bind, migrate, serve, drain on SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::hub_shell::Bus;
use crate::routes;
use crate::state::AppState;
use crate::store::{Store, now_ms};
use crate::viewer::ViewerKey;

/// Runs `gongkai serve` until a shutdown signal.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    crate::store::private_dir(&settings.data_dir).with_context(|| {
        format!(
            "cannot create data directory {}",
            settings.data_dir.display()
        )
    })?;
    let store = Store::open(&settings.database_url())
        .await
        .context("cannot open the database")?;
    tracing::info!(backend = ?store.backend(), "database ready");
    let listener = TcpListener::bind(settings.listen)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen))?;
    let shutdown = CancellationToken::new();
    let grace = Duration::from_secs(settings.shutdown_timeout_secs);
    let viewer_key = ViewerKey::new(
        &store
            .secret_or_create("viewer_cookie_hmac", &crate::auth::new_secret(), now_ms())
            .await?,
    );
    let bus = match &settings.nats_url {
        Some(url) => {
            let bus = Bus::connect_nats(url)
                .await
                .with_context(|| format!("cannot connect to NATS at {url}"))?;
            tracing::info!("hub bus: NATS");
            bus
        }
        None => Bus::local(),
    };
    let state = AppState::with_bus(settings, store.clone(), viewer_key, shutdown.clone(), bus)?;
    let hub = state.hub.clone();
    tracing::info!(node = %hub.node().0, "hub node");
    let local = listener.local_addr()?;
    spawn_housekeeping(state.clone());
    crate::ceremony::playout::resume_all(&state)
        .await
        .context("cannot resume draw play-outs")?;
    crate::ceremony::playout::spawn_watchdog(state.clone());
    routes::media::spawn_recording_catalogue(&state);
    crate::on_air::spawn(&state)
        .await
        .context("cannot start on-air control")?;
    let media_state = state.clone();

    let app = routes::router(state).into_make_service_with_connect_info::<SocketAddr>();
    // Chat frames are small and latency-bound: without TCP_NODELAY, a frame written while
    // the previous one is unacknowledged waits for the peer's delayed ACK (up to 40 ms on
    // Linux). axum leaves Nagle's algorithm on.
    let listener = listener.tap_io(|tcp| {
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
    });
    let server = axum::serve(listener, app).with_graceful_shutdown({
        let shutdown = shutdown.clone();
        async move { shutdown.cancelled().await }
    });
    // Signal handlers are in place before the ready line: a SIGTERM sent the moment a
    // supervisor sees the line must still drain gracefully, not kill the process.
    let signals = ShutdownSignals::install().context("cannot install signal handlers")?;
    // The one line on stdout: scripts and the test harness wait for it.
    println!("gongkai listening on http://{local}");
    tracing::info!(%local, "listening");

    let signal_task = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            signals.recv().await;
            tracing::info!("shutdown requested: draining connections");
            shutdown.cancel();
        }
    });
    let server = tokio::spawn(async move { server.await });
    tokio::select! {
        result = server => { result??; }
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(seconds = grace.as_secs(), "in-flight requests did not finish in time; exiting");
        }
    }
    signal_task.abort();
    // Media peers closed, recordings finished (duration, cues) and catalogued.
    for segment in media_state.sfu.close_all().await {
        routes::media::save_recording(&media_state, segment).await;
    }
    drop(media_state);
    // Rooms saw the cancellation: sockets get 1001, the last rows are written.
    hub.drain(Duration::from_secs(5)).await;
    store.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT and SIGTERM, registered eagerly (tokio registers `ctrl_c()` only when first
/// polled, which would leave a window where the default action kills the process).
struct ShutdownSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    #[cfg(unix)]
    fn install() -> std::io::Result<ShutdownSignals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(ShutdownSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    #[cfg(not(unix))]
    fn install() -> std::io::Result<ShutdownSignals> {
        Ok(ShutdownSignals {})
    }

    #[cfg(unix)]
    async fn recv(mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn recv(self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Periodic clean-up: expired sessions, idle rate-limit keys.
fn spawn_housekeeping(state: AppState) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(300));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = state.shutdown.cancelled() => return,
            }
            match state.store.delete_expired_sessions(now_ms()).await {
                Ok(n) if n > 0 => tracing::debug!(removed = n, "expired sessions removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "session clean-up failed"),
            }
            state.login_per_ip.prune();
            state.login_per_user.prune();
            state.login_per_account.prune();
            state.ceremony.lookup_per_ip.prune();
            state.ceremony.lookup_per_child.prune();
            state.ceremony.apply_per_ip.prune();
            state.ceremony.apply_per_child.prune();
        }
    });
}
