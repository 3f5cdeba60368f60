//! Shared state handed to every handler.

use std::ops::Deref;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::auth::KeyedLimiter;
use crate::config::Settings;
use crate::hub_shell::{Bus, Hub, HubOptions};
use crate::pages::Pages;
use crate::store::Store;
use crate::telemetry_metrics::Metrics;
use crate::viewer::ViewerKey;

#[derive(Debug, Clone)]
pub struct AppState(Arc<AppStateInner>);

#[derive(Debug)]
pub struct AppStateInner {
    pub settings: Settings,
    pub store: Store,
    pub pages: Pages,
    pub metrics: Metrics,
    /// Keyed by username and client IP.
    pub login_per_user: KeyedLimiter,
    /// Keyed by username alone: the softer ceiling over all addresses.
    pub login_per_account: KeyedLimiter,
    pub login_per_ip: KeyedLimiter,
    pub viewer_key: ViewerKey,
    /// Cancelled on SIGINT/SIGTERM: long-lived connections (WebSockets) close with
    /// "going away" when it fires.
    pub shutdown: CancellationToken,
    /// This node's live-event rooms.
    pub hub: Hub,
    /// WebRTC publishers and viewers (WHIP/WHEP).
    pub sfu: Arc<streaming::sfu::Sfu>,
    /// Draw ceremonies: keys, lookup limits, parsed transcripts.
    pub ceremony: crate::ceremony::Ceremony,
    /// Viewer identities minted per client IP (`POST /api/v1/viewer`).
    pub viewers_per_ip: KeyedLimiter,
    /// Open event WebSockets per client IP.
    pub websockets_per_ip: crate::limits::IpSlots,
    /// Open WHEP viewer sessions per client IP.
    pub whep_per_ip: crate::limits::MediaSessions,
}

impl AppState {
    pub fn new(
        settings: Settings,
        store: Store,
        viewer_key: ViewerKey,
        shutdown: CancellationToken,
    ) -> anyhow::Result<AppState> {
        AppState::with_bus(settings, store, viewer_key, shutdown, Bus::local())
    }

    /// As `new`, with the hub on `bus` (NATS for several nodes).
    pub fn with_bus(
        settings: Settings,
        store: Store,
        viewer_key: ViewerKey,
        shutdown: CancellationToken,
        bus: Bus,
    ) -> anyhow::Result<AppState> {
        let options = HubOptions::from_settings(&settings.hub, bus.is_shared())?;
        let hub = Hub::new(store.clone(), bus, options, shutdown.clone());
        let login_per_user = KeyedLimiter::per_minute(settings.auth.login_per_user_per_minute);
        let login_per_account =
            KeyedLimiter::per_minute(settings.auth.login_per_account_per_minute);
        let login_per_ip = KeyedLimiter::per_minute(settings.auth.login_per_ip_per_minute);
        let sfu = crate::routes::media::sfu_from_settings(&settings)?;
        let ceremony = crate::ceremony::Ceremony::from_settings(&settings);
        let limits = &settings.limits;
        let viewers_per_ip = KeyedLimiter::per_hour(limits.viewer_identities_per_ip_per_hour);
        let websockets_per_ip = crate::limits::IpSlots::new(limits.websockets_per_ip);
        let whep_per_ip = crate::limits::MediaSessions::new(limits.whep_sessions_per_ip);
        Ok(AppState(Arc::new(AppStateInner {
            sfu,
            ceremony,
            pages: Pages::new()?,
            metrics: Metrics::install(),
            settings,
            store,
            login_per_user,
            login_per_account,
            login_per_ip,
            viewer_key,
            shutdown,
            hub,
            viewers_per_ip,
            websockets_per_ip,
            whep_per_ip,
        })))
    }
}

impl Deref for AppState {
    type Target = AppStateInner;
    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}
