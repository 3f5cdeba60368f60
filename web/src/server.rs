//! Starting and stopping the service: bind, migrate, serve, drain on SIGINT/SIGTERM.

use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

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

    let timeouts = Timeouts {
        header: Duration::from_secs(media_state.settings.limits.header_timeout_secs),
        body: Duration::from_secs(media_state.settings.limits.body_timeout_secs),
    };
    let server = accept_loop(listener, routes::router(state), timeouts, shutdown.clone());
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
    let server = tokio::spawn(server);
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

/// The slow-client limits of `[limits]`.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    /// A request's header must arrive within this long of the connection opening or of
    /// the previous response; an idle keep-alive connection is closed after it too.
    header: Duration,
    /// A request's body must arrive within this long of its header.
    body: Duration,
}

/// Accepts connections and serves HTTP/1.1 on each (hyper directly, for the header-read
/// timeout that `axum::serve` does not expose) until `shutdown`; then waits for the
/// requests in flight. Upgraded connections (WebSockets) belong to the hub by then.
async fn accept_loop(
    listener: TcpListener,
    router: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let connections = TaskTracker::new();
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors and the like: wait a little rather than spin.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        // Chat frames are small and latency-bound: without TCP_NODELAY, a frame written
        // while the previous one is unacknowledged waits for the peer's delayed ACK (up
        // to 40 ms on Linux).
        if let Err(error) = tcp.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let router = router.clone();
        let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
            let (mut parts, body) = request.into_parts();
            parts.extensions.insert(ConnectInfo(peer));
            let body = crate::limits::deadline_body(Body::new(body), timeouts.body);
            router
                .clone()
                .oneshot(hyper::Request::from_parts(parts, body))
        });
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(timeouts.header)
                .keep_alive(true);
            let connection = builder
                .serve_connection(TokioIo::new(tcp), service)
                .with_upgrades();
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    connections.close();
    connections.wait().await;
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
            state.viewers_per_ip.prune();
            state
                .whep_per_ip
                .prune(|event, session| state.sfu.is_viewer_session(event, session));
        }
    });
}
