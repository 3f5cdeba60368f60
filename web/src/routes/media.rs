//! WHIP (RFC 9725) and WHEP: the HTTP shell around `streaming::sfu`.
//!
//! Handlers only check the event, the credentials and the body, hand the SDP offer to the
//! SFU and turn its answer into a `201 Created` session resource. Forwarding, peers and
//! their lifetimes live in the SFU.
//!
//! # Layout
//! - `POST /whip/{event_id}`: publish (`Authorization: Bearer <publish token>`, or the
//!   broadcaster page's short-lived publish credential).
//! - `POST /whep/{event_id}`: watch (public events: anyone; unlisted events: `Authorization:
//!   Bearer <viewer token>`, see `viewer::ViewerKey::sign_view_token`; the event's staff:
//!   `Bearer <preview credential>`, which may watch a rehearsal).
//!
//! The event's status decides (see `crate::on_air`): while `scheduled` the publisher
//! rehearses and only staff may watch (the public gets 409 `not_live`); after the end
//! every session is closed and new offers get 409 `ended`.
//! - `DELETE /whip|whep/{event_id}/{session}`: end the session; `PATCH`: 405 (no trickle:
//!   answers carry every candidate); `OPTIONS`: CORS preflight with the ICE servers.
//! - `GET /api/v1/events/{id}/media`: publishing/paused/viewers for the player and pages.
//! - `GET /api/v1/events/{id}/recordings`: the recorded segments; `GET
//!   /recordings/{event_id}/{segment}.webm` serves one (Range requests, 206/416).
//!   [`spawn_recording_catalogue`] writes the SFU's recording events to the store.
//! - `GET /staff/events/{id}/broadcast`: the broadcaster page (`broadcast.js`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use streaming::sfu::air::Audience;
use streaming::sfu::record::RecordingSegment;
use streaming::sfu::{IceServer, Sfu, SfuConfig, SfuError, SfuEvent};

use crate::auth::secret_hash;
use crate::config::Settings;
use crate::domain::event::{Event, EventId, EventStatus, Visibility};
use crate::error::ApiError;
use crate::state::AppState;
use crate::viewer::{Grant, GrantError};

/// An error response on its way out (boxed: a `Response` is large for a `Result`).
type Failed = Box<Response>;

fn failed(response: Response) -> Failed {
    Box::new(cors(response))
}

/// Seconds a player or publisher should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "2";
/// Bounds of the `Retry-After` of a `not_live` answer (the time to the scheduled start,
/// within these): players learn of the start from the event's WebSocket anyway.
const NOT_LIVE_RETRY_MIN: Duration = Duration::from_secs(5);
const NOT_LIVE_RETRY_MAX: Duration = Duration::from_secs(600);

/// Builds the SFU from `[media]` (and the recordings directory).
pub fn sfu_from_settings(settings: &Settings) -> Result<Arc<Sfu>, streaming::sfu::SfuError> {
    let media = &settings.media;
    let urls = media.ice_server_urls();
    let ice_servers = urls
        .into_iter()
        .map(|url| {
            let turn = url.starts_with("turn");
            IceServer {
                urls: vec![url],
                username: if turn {
                    media.turn_username.clone()
                } else {
                    String::new()
                },
                credential: if turn {
                    media.turn_credential.clone()
                } else {
                    String::new()
                },
            }
        })
        .collect();
    let udp_ports = (media.udp_port_min != 0).then_some((media.udp_port_min, media.udp_port_max));
    Sfu::new(SfuConfig {
        bind_ip: media.bind_ip,
        udp_port: (media.udp_port != 0).then_some(media.udp_port),
        udp_ports,
        public_ip: media.public_ip,
        ice_servers,
        turn_rest: media
            .turn_secret
            .as_ref()
            .map(|secret| streaming::sfu::turn::TurnRest::new(secret.clone(), media.turn_ttl_secs)),
        recordings_dir: media.recording.then(|| settings.recordings_dir()),
        direct_send: media.direct_send,
    })
}

/// Keeps the recordings catalogue: every segment the SFU starts or finishes becomes a row.
/// Rows a previous process left unfinished (it died while recording) are closed first,
/// with the file's size.
pub fn spawn_recording_catalogue(state: &AppState) {
    let mut events = state.sfu.subscribe();
    let state = state.clone();
    tokio::spawn(async move {
        close_unfinished_recordings(&state).await;
        loop {
            let segment = match events.recv().await {
                Ok(SfuEvent::RecordingStarted(segment) | SfuEvent::RecordingFinished(segment)) => {
                    segment
                }
                Ok(_) => continue,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "recording catalogue fell behind the SFU's events");
                    continue;
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            };
            save_recording(&state, segment).await;
        }
    });
}

/// Stores one segment's row (started or finished; the later state wins).
pub async fn save_recording(state: &AppState, segment: RecordingSegment) {
    let Some(event_id) = EventId::parse(&segment.event_id) else {
        return;
    };
    let row = crate::store::Recording {
        segment: i64::from(segment.segment),
        file_name: segment.file_name,
        codecs: segment.codecs,
        started_ms: segment.started_ms,
        ended_ms: segment.ended_ms,
        duration_ms: i64::try_from(segment.duration_ms).unwrap_or(i64::MAX),
        bytes: i64::try_from(segment.bytes).unwrap_or(i64::MAX),
        dropped_packets: i64::try_from(segment.dropped_packets).unwrap_or(i64::MAX),
    };
    if let Err(error) = state.store.save_recording(&event_id, &row).await {
        tracing::warn!(%error, event_id = %event_id, "could not save a recording's row");
    }
}

async fn close_unfinished_recordings(state: &AppState) {
    let unfinished = match state.store.unfinished_recordings().await {
        Ok(rows) => rows,
        Err(error) => {
            tracing::warn!(%error, "could not list unfinished recordings");
            return;
        }
    };
    for (event_id, mut row) in unfinished {
        let Some(path) = recording_path(state, &event_id, &row.file_name) else {
            continue;
        };
        let Ok(metadata) = tokio::fs::metadata(&path).await else {
            continue;
        };
        row.bytes = i64::try_from(metadata.len()).unwrap_or(i64::MAX);
        row.ended_ms = Some(
            metadata
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .and_then(|d| i64::try_from(d.as_millis()).ok())
                .unwrap_or(row.started_ms),
        );
        // The file is a live-stream WebM without a duration; estimate it from the clock.
        row.duration_ms = row.ended_ms.unwrap_or(row.started_ms) - row.started_ms;
        tracing::info!(event_id = %event_id, segment = row.segment, "closing a recording left unfinished");
        let _ = state.store.save_recording(&event_id, &row).await;
    }
}

/// The file of a segment, from parsed ids and a stored file name (never request text).
fn recording_path(
    state: &AppState,
    event_id: &EventId,
    file_name: &str,
) -> Option<std::path::PathBuf> {
    // Names come from the SFU (`0001.webm`); checked again because they name a file.
    let safe = !file_name.is_empty()
        && file_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
        && !file_name.starts_with('.');
    safe.then(|| {
        state
            .settings
            .recordings_dir()
            .join(event_id.as_str())
            .join(file_name)
    })
}

/// Sets the media gauges and counters for a `/metrics` scrape (values live in the SFU).
/// Public events are labelled by id; unlisted events, whose id is their secret, are
/// summed under `event="unlisted"`.
pub async fn record_metrics(state: &AppState) {
    let mut by_label: std::collections::BTreeMap<String, MediaTotals> = Default::default();
    for (event, status) in state.sfu.statuses() {
        let public = match EventId::parse(&event) {
            Some(id) => matches!(
                state.store.event(&id).await,
                Ok(Some(e)) if e.visibility == Visibility::Public
            ),
            None => false,
        };
        let label = if public { event } else { "unlisted".to_owned() };
        by_label.entry(label).or_default().add(&status);
    }
    for (event, t) in by_label {
        metrics::gauge!("gongkai_media_publishing", "event" => event.clone()).set(t.publishing);
        metrics::gauge!("gongkai_media_viewers", "event" => event.clone()).set(t.viewers);
        metrics::gauge!("gongkai_media_viewers_direct", "event" => event.clone())
            .set(t.direct_viewers);
        metrics::counter!("gongkai_media_packets_retransmitted_total", "event" => event.clone())
            .absolute(t.packets_retransmitted);
        metrics::counter!("gongkai_media_ingest_bytes_total", "event" => event.clone())
            .absolute(t.ingest_bytes);
        metrics::counter!("gongkai_media_packets_forwarded_total", "event" => event.clone())
            .absolute(t.packets_forwarded);
        metrics::counter!("gongkai_media_packets_dropped_total", "event" => event.clone())
            .absolute(t.packets_dropped);
        metrics::counter!("gongkai_media_viewer_keyframe_requests_total", "event" => event.clone())
            .absolute(t.viewer_keyframe_requests);
        metrics::counter!("gongkai_media_keyframe_requests_sent_total", "event" => event)
            .absolute(t.keyframe_requests_sent);
    }
}

/// One label's media figures (one event, or every unlisted event together).
#[derive(Default)]
struct MediaTotals {
    publishing: f64,
    viewers: f64,
    direct_viewers: f64,
    packets_retransmitted: u64,
    ingest_bytes: u64,
    packets_forwarded: u64,
    packets_dropped: u64,
    viewer_keyframe_requests: u64,
    keyframe_requests_sent: u64,
}

impl MediaTotals {
    fn add(&mut self, status: &streaming::sfu::MediaStatus) {
        self.publishing += if status.publishing { 1.0 } else { 0.0 };
        self.viewers += status.viewers as f64;
        self.direct_viewers += status.direct_viewers as f64;
        self.packets_retransmitted += status.packets_retransmitted;
        self.ingest_bytes += status.ingest_bytes;
        self.packets_forwarded += status.packets_forwarded;
        self.packets_dropped += status.packets_dropped;
        self.viewer_keyframe_requests += status.viewer_keyframe_requests;
        self.keyframe_requests_sent += status.keyframe_requests_sent;
    }
}

/// Routes outside `/api/v1` (WHIP/WHEP clients expect plain endpoint URLs).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/whip/{event_id}", post(whip).options(preflight))
        .route(
            "/whip/{event_id}/{session}",
            axum::routing::delete(end_whip)
                .patch(no_trickle)
                .options(preflight_resource),
        )
        .route("/whep/{event_id}", post(whep).options(preflight))
        .route("/staff/events/{id}/broadcast", get(broadcast_page))
        .route("/recordings/{event_id}/{file}", get(recording_file))
        .route(
            "/whep/{event_id}/{session}",
            axum::routing::delete(end_whep)
                .patch(no_trickle)
                .options(preflight_resource),
        )
}

/// The broadcaster page (staff who may run the event).
async fn broadcast_page(
    State(state): State<AppState>,
    crate::auth::PageCaller(caller): crate::auth::PageCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let lang = crate::pages::Lang::negotiate(None, &headers);
    let Some(caller) = caller else {
        return axum::response::Redirect::to(&format!("/login?next=/staff/events/{id}/broadcast"))
            .into_response();
    };
    let event = match super::events::load(&state, &id).await {
        Ok(event) => event,
        Err(ApiError::NotFound(_)) => {
            return super::page_error(&state, lang, StatusCode::NOT_FOUND);
        }
        Err(error) => return error.into_response(),
    };
    if super::events::may_run(&caller, &event).is_err() {
        return super::page_error(&state, lang, StatusCode::FORBIDDEN);
    }
    let ctx = minijinja::context! {
        user => minijinja::Value::from_serialize(&caller.user),
        csrf_token => caller.csrf_token(),
        event => minijinja::Value::from_serialize(&event),
    };
    state
        .pages
        .respond(StatusCode::OK, "broadcast.html", lang, ctx)
}

/// Routes under `/api/v1`.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/events/{id}/media", get(media_status))
        .route("/events/{id}/recordings", get(recordings))
        .route("/events/{id}/replay-access", post(replay_access))
}

/// The event's recorded segments, finished ones with a URL to play.
async fn recordings(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let event = match load(&state, &id).await {
        Ok(event) => event,
        Err(response) => return *response,
    };
    match recording_list(&state, &event).await {
        Ok(list) => axum::Json(json!({ "recordings": list })).into_response(),
        Err(error) => error.into_response(),
    }
}

/// The segments as the API and the event page show them.
pub async fn recording_list(
    state: &AppState,
    event: &Event,
) -> Result<Vec<serde_json::Value>, ApiError> {
    let rows = state.store.recordings(&event.id).await?;
    Ok(rows
        .into_iter()
        .map(|r| {
            json!({
                "segment": r.segment,
                "url": format!("/recordings/{}/{}", event.id.as_str(), r.file_name),
                "content_type": "video/webm",
                "codecs": r.codecs,
                "started_ms": r.started_ms,
                "ended_ms": r.ended_ms,
                "recording": r.ended_ms.is_none(),
                "duration_ms": r.duration_ms,
                "bytes": r.bytes,
            })
        })
        .collect())
}

/// One segment's file, with Range support (206, `Content-Range`, 416) from `ServeFile`.
async fn recording_file(
    State(state): State<AppState>,
    Path((event_id, file)): Path<(String, String)>,
    request: axum::extract::Request,
) -> Response {
    use tower::ServiceExt as _;

    let not_found = || ApiError::NotFound("recording".into()).into_response();
    let Ok(event) = load(&state, &event_id).await else {
        return not_found();
    };
    // `{segment}.webm`: only the number is taken from the request.
    let Some(segment) = file
        .strip_suffix(".webm")
        .filter(|n| !n.is_empty() && n.len() <= 9 && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse::<i64>().ok())
    else {
        return not_found();
    };
    let row = match state.store.recording(&event.id, segment).await {
        Ok(Some(row)) => row,
        Ok(None) => return not_found(),
        Err(error) => return ApiError::from(error).into_response(),
    };
    let Some(path) = recording_path(&state, &event.id, &row.file_name) else {
        return not_found();
    };
    // An unlisted event's video is for holders of a viewer token, recorded or live.
    let unlisted = event.visibility == Visibility::Unlisted;
    if unlisted {
        let token = bearer(request.headers())
            .map(str::to_owned)
            .or_else(|| replay_cookie(request.headers()));
        if let Err(response) = check_grant(&state, &event, token.as_deref()) {
            return *response;
        }
    }
    // The `.webm` extension gives `Content-Type: video/webm`.
    let service = tower_http::services::ServeFile::new(path);
    match service.oneshot(request).await {
        Ok(response) if response.status() == StatusCode::NOT_FOUND => not_found(),
        Ok(response) => {
            let mut response = response.map(axum::body::Body::new);
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(if unlisted {
                    "private, max-age=300"
                } else {
                    "public, max-age=300"
                }),
            );
            response
        }
        Err(infallible) => match infallible {},
    }
}

/// The cookie that carries a viewer token to an unlisted event's recordings: a `<video>`
/// element sends no `Authorization` header, and a token in the URL would land in proxies'
/// logs. Set by `POST /api/v1/events/{id}/replay-access`, sent only to the event's
/// recordings.
const REPLAY_COOKIE: &str = "gongkai_replay";

/// The cookie's token (path-scoped to one event's recordings, and checked as a grant for
/// that event all the same).
fn replay_cookie(headers: &HeaderMap) -> Option<String> {
    let jar = axum_extra::extract::CookieJar::from_headers(headers);
    Some(jar.get(REPLAY_COOKIE)?.value().to_owned())
}

/// `POST /api/v1/events/{id}/replay-access` with `Authorization: Bearer <viewer token>`:
/// 204 and the cookie that lets this browser's player fetch the unlisted event's
/// recordings, for as long as the token lives.
async fn replay_access(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let event = match load(&state, &id).await {
        Ok(event) => event,
        Err(response) => return *response,
    };
    let token = bearer(&headers);
    if let Err(response) = check_grant(&state, &event, token) {
        return *response;
    }
    let Some(token) = token else {
        return ApiError::Unauthorized("a viewer token is required".into()).into_response();
    };
    let expires = token
        .split('.')
        .nth(1)
        .and_then(|e| e.parse::<i64>().ok())
        .unwrap_or(0);
    let max_age = (expires - crate::store::now_ms() / 1000).max(0);
    let cookie = axum_extra::extract::cookie::Cookie::build((REPLAY_COOKIE, token.to_owned()))
        .path(format!("/recordings/{}/", event.id.as_str()))
        .http_only(true)
        .same_site(axum_extra::extract::cookie::SameSite::Strict)
        .secure(state.settings.https())
        .max_age(time::Duration::seconds(max_age))
        .build();
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Ok(value) = HeaderValue::from_str(&cookie.to_string()) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[tracing::instrument(skip_all, fields(event_id = %event_id))]
async fn whip(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        let event = load(&state, &event_id).await?;
        check_publish_token(&state, &event, &headers).await?;
        if event.status == EventStatus::Ended {
            return Err(failed(ended().into_response()));
        }
        let offer = sdp_body(&state, &headers, body)?;
        // A rehearsal while scheduled (recorded and shown to the public only from the
        // start); an event that follows its publisher goes live when it connects
        // (`crate::on_air`).
        let session = state
            .sfu
            .publish(event.id.as_str(), offer, crate::on_air::air_of(&event))
            .await
            .map_err(|e| Box::new(sfu_error(e)))?;
        Ok(created(&state, "whip", &event, session))
    }
    .await;
    result.unwrap_or_else(|response: Failed| *response)
}

#[tracing::instrument(skip_all, fields(event_id = %event_id))]
async fn whep(
    State(state): State<AppState>,
    Path(event_id): Path<String>,
    crate::auth::ClientIp(ip): crate::auth::ClientIp,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let result = async {
        // At most `[limits] whep_sessions_per_ip` open viewer sessions per address.
        let place = state
            .whep_per_ip
            .reserve(ip, |event, session| {
                state.sfu.is_viewer_session(event, session)
            })
            .ok_or_else(|| {
                failed(cors(
                    ApiError::TooManyRequests {
                        retry_after: crate::limits::RETRY_AFTER,
                    }
                    .into_response(),
                ))
            })?;
        let event = load(&state, &event_id).await?;
        let audience = audience(&state, &event, &headers)?;
        // Refused before any WebRTC work: most such offers are players on a page that
        // opened early or late.
        match (event.status, audience) {
            (EventStatus::Ended, _) => return Err(failed(ended().into_response())),
            (EventStatus::Scheduled, Audience::Public) => {
                return Err(failed(not_live(&event).into_response()));
            }
            _ => {}
        }
        let offer = sdp_body(&state, &headers, body)?;
        let session = state
            .sfu
            .view(
                event.id.as_str(),
                offer,
                audience,
                crate::on_air::air_of(&event),
            )
            .await
            .map_err(|e| match e {
                SfuError::NotLive => Box::new(cors(not_live(&event).into_response())),
                other => Box::new(sfu_error(other)),
            })?;
        place.confirm(event.id.as_str(), &session.id);
        Ok(created(&state, "whep", &event, session))
    }
    .await;
    result.unwrap_or_else(|response: Failed| *response)
}

async fn end_whip(
    State(state): State<AppState>,
    Path((event_id, session)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let result = async {
        let event = load(&state, &event_id).await?;
        check_publish_token(&state, &event, &headers).await?;
        if !state.sfu.is_publisher_session(event.id.as_str(), &session) {
            return Err(Box::new(
                ApiError::NotFound("WHIP session".into()).into_response(),
            ));
        }
        state
            .sfu
            .end(event.id.as_str(), &session)
            .await
            .map_err(|e| Box::new(sfu_error(e)))?;
        Ok(cors(StatusCode::OK.into_response()))
    }
    .await;
    result.unwrap_or_else(|response: Failed| *response)
}

async fn end_whep(
    State(state): State<AppState>,
    Path((event_id, session)): Path<(String, String)>,
) -> Response {
    let result = async {
        let event = load(&state, &event_id).await?;
        if state.sfu.is_publisher_session(event.id.as_str(), &session) {
            return Err(Box::new(
                ApiError::NotFound("WHEP session".into()).into_response(),
            ));
        }
        state
            .sfu
            .end(event.id.as_str(), &session)
            .await
            .map_err(|e| Box::new(sfu_error(e)))?;
        Ok(cors(StatusCode::OK.into_response()))
    }
    .await;
    result.unwrap_or_else(|response: Failed| *response)
}

/// Answers carry every candidate, so there is nothing to trickle (RFC 9725 §4.3.1: 405).
async fn no_trickle() -> Response {
    let mut response = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "trickle ICE is not supported: the answer carries all candidates",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("DELETE, OPTIONS"));
    cors(response)
}

async fn preflight(State(state): State<AppState>) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    add_ice_links(&state, headers);
    cors(response)
}

async fn preflight_resource() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("DELETE, PATCH, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, If-Match"),
    );
    cors(response)
}

async fn media_status(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let event = match load(&state, &id).await {
        Ok(event) => event,
        Err(response) => return *response,
    };
    let status = state.sfu.status(event.id.as_str());
    axum::Json(json!({
        "publishing": status.publishing,
        "paused": status.paused,
        "viewers": status.viewers,
        "event_status": event.status.as_str(),
        "on_air": event.status == EventStatus::Live && status.publishing,
    }))
    .into_response()
}

async fn load(state: &AppState, id: &str) -> Result<Event, Failed> {
    let not_found = || Box::new(ApiError::NotFound("event".into()).into_response());
    let id = EventId::parse(id).ok_or_else(not_found)?;
    let event = state
        .store
        .event(&id)
        .await
        .map_err(|e| Box::new(ApiError::from(e).into_response()))?
        .ok_or_else(not_found)?;
    if event.status == EventStatus::Cancelled {
        return Err(not_found());
    }
    Ok(event)
}

async fn check_publish_token(
    state: &AppState,
    event: &Event,
    headers: &HeaderMap,
) -> Result<(), Failed> {
    let token = bearer(headers).ok_or_else(|| {
        failed(
            ApiError::Unauthorized("Authorization: Bearer <publish token> required".into())
                .into_response(),
        )
    })?;
    // The broadcaster page's short-lived credential (`POST .../publish-credential`).
    if token.starts_with(Grant::Publish.prefix()) {
        let now = u64::try_from(crate::store::now_ms() / 1000).unwrap_or(0);
        return match state
            .viewer_key
            .verify_grant(Grant::Publish, event.id.as_str(), token, now)
        {
            Ok(()) => Ok(()),
            Err(GrantError::Expired) => Err(failed(
                ApiError::Forbidden("the publish credential has expired".into()).into_response(),
            )),
            Err(GrantError::Invalid) => Err(failed(
                ApiError::Forbidden("this is not a publish credential for the event".into())
                    .into_response(),
            )),
        };
    }
    let stored = state
        .store
        .publish_token_hash(&event.id)
        .await
        .map_err(|e| Box::new(ApiError::from(e).into_response()))?;
    // Both sides are SHA-256 hex of 256-bit secrets: comparing hashes leaks nothing useful.
    if stored.as_deref() != Some(secret_hash(token).as_str()) {
        return Err(failed(
            ApiError::Forbidden("this is not the event's publish token".into()).into_response(),
        ));
    }
    Ok(())
}

/// 409 `ended`: nothing is published or watched after the event's end.
fn ended() -> ApiError {
    ApiError::State {
        code: "ended",
        message: "the event has ended".into(),
        retry_after: None,
    }
}

/// 409 `not_live` with the time to the scheduled start as `Retry-After` (bounded).
fn not_live(event: &Event) -> ApiError {
    let until_start = u64::try_from(event.scheduled_start_ms - crate::store::now_ms())
        .map(Duration::from_millis)
        .unwrap_or_default();
    ApiError::State {
        code: "not_live",
        message: "the event has not started yet".into(),
        retry_after: Some(until_start.clamp(NOT_LIVE_RETRY_MIN, NOT_LIVE_RETRY_MAX)),
    }
}

/// Who asks to watch: the event's staff with a preview credential
/// (`POST /api/v1/events/{id}/preview-credential`), or the public, which for an unlisted
/// event needs a viewer token.
fn audience(state: &AppState, event: &Event, headers: &HeaderMap) -> Result<Audience, Failed> {
    if let Some(token) = bearer(headers).filter(|t| t.starts_with(Grant::Preview.prefix())) {
        let now = u64::try_from(crate::store::now_ms() / 1000).unwrap_or(0);
        return match state
            .viewer_key
            .verify_grant(Grant::Preview, event.id.as_str(), token, now)
        {
            Ok(()) => Ok(Audience::Staff),
            Err(GrantError::Expired) => Err(failed(
                ApiError::Forbidden("the preview credential has expired".into()).into_response(),
            )),
            Err(GrantError::Invalid) => Err(failed(
                ApiError::Forbidden("this is not a preview credential for the event".into())
                    .into_response(),
            )),
        };
    }
    check_view_token(state, event, headers)?;
    Ok(Audience::Public)
}

/// Unlisted events need a viewer token (`POST /api/v1/events/{id}/viewer-tokens`);
/// public events need none.
fn check_view_token(state: &AppState, event: &Event, headers: &HeaderMap) -> Result<(), Failed> {
    if event.visibility != Visibility::Unlisted {
        return Ok(());
    }
    check_grant(state, event, bearer(headers))
}

/// A viewer token of `event`, present and valid now.
fn check_grant(state: &AppState, event: &Event, token: Option<&str>) -> Result<(), Failed> {
    let token = token.ok_or_else(|| {
        failed(
            ApiError::Unauthorized(
                "this event is unlisted: Authorization: Bearer <viewer token> required".into(),
            )
            .into_response(),
        )
    })?;
    let now = u64::try_from(crate::store::now_ms() / 1000).unwrap_or(0);
    match state
        .viewer_key
        .verify_grant(Grant::View, event.id.as_str(), token, now)
    {
        Ok(()) => Ok(()),
        Err(GrantError::Expired) => Err(failed(
            ApiError::Forbidden("the viewer token has expired".into()).into_response(),
        )),
        Err(GrantError::Invalid) => Err(failed(
            ApiError::Forbidden("this is not a viewer token for the event".into()).into_response(),
        )),
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn sdp_body(
    state: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<String, Failed> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/sdp") {
        return Err(failed(
            ApiError::UnsupportedMediaType("the body must be Content-Type: application/sdp".into())
                .into_response(),
        ));
    }
    let body = body.map_err(|_| failed(ApiError::PayloadTooLarge.into_response()))?;
    if body.len() > state.settings.media.max_sdp_bytes {
        return Err(failed(ApiError::PayloadTooLarge.into_response()));
    }
    String::from_utf8(body.to_vec()).map_err(|_| {
        failed(ApiError::BadRequest("the SDP offer is not UTF-8".into()).into_response())
    })
}

fn sfu_error(error: SfuError) -> Response {
    let response = match &error {
        SfuError::BadOffer(_) => ApiError::BadRequest(error.to_string()).into_response(),
        SfuError::AlreadyPublishing => ApiError::Conflict(error.to_string()).into_response(),
        SfuError::Ended => ended().into_response(),
        SfuError::NotLive => ApiError::State {
            code: "not_live",
            message: error.to_string(),
            retry_after: Some(NOT_LIVE_RETRY_MIN),
        }
        .into_response(),
        SfuError::UnknownSession => ApiError::NotFound("media session".into()).into_response(),
        SfuError::NoCommonCodec(_) => error_response(
            StatusCode::NOT_ACCEPTABLE,
            "no_common_codec",
            &error.to_string(),
        ),
        SfuError::NotPublishing => {
            let mut response = ApiError::Unavailable(error.to_string()).into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            response
        }
        SfuError::NoFreePort
        | SfuError::GatheringTimeout
        | SfuError::WebRtc(_)
        | SfuError::MediaPort(..) => {
            tracing::warn!(error = %error, "media session failed");
            let mut response =
                ApiError::Unavailable("the media server could not set up the session".into())
                    .into_response();
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
            response
        }
    };
    cors(response)
}

fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

fn created(
    state: &AppState,
    protocol: &str,
    event: &Event,
    session: streaming::sfu::Session,
) -> Response {
    let location = format!("/{protocol}/{}/{}", event.id.as_str(), session.id);
    let mut response = (StatusCode::CREATED, session.answer_sdp).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/sdp"),
    );
    if let Ok(value) = HeaderValue::from_str(&location) {
        headers.insert(header::LOCATION, value);
    }
    if let Ok(value) = HeaderValue::from_str(&format!("\"{}\"", session.id)) {
        headers.insert(header::ETAG, value);
    }
    add_ice_links(state, headers);
    cors(response)
}

/// RFC 9725 §4.6: the ICE servers as `Link: <url>; rel="ice-server"` headers.
fn add_ice_links(state: &AppState, headers: &mut HeaderMap) {
    for server in &state.sfu.ice_servers() {
        for url in &server.urls {
            let mut link = format!("<{url}>; rel=\"ice-server\"");
            if !server.username.is_empty() {
                link.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    server.username, server.credential
                ));
            }
            if let Ok(value) = HeaderValue::from_str(&link) {
                headers.append(header::LINK, value);
            }
        }
    }
}

/// Browser publishers and players may live on another origin (OBS's browser source,
/// an embedding site): the endpoints are bearer-authenticated, never cookie-authenticated,
/// so any origin may call them.
fn cors(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, ETag, Link, Retry-After"),
    );
    response
}
