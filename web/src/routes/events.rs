//! `/api/v1/events`: scheduling live events, their lifecycle and publish tokens.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use super::extract::ApiJson;
use crate::auth::{Caller, Role, new_secret, secret_hash};
use crate::domain::event::{Event, EventDraft, EventId, EventInput, EventKind, EventStatus};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::now_ms;
use crate::viewer::Grant;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/events", get(list).post(create))
        .route("/events/{id}", get(show).patch(edit).delete(cancel))
        .route("/events/{id}/start", post(start))
        .route("/events/{id}/end", post(end))
        .route("/events/{id}/reopen", post(reopen))
        .route("/events/{id}/preview-credential", post(preview_credential))
        .route("/events/{id}/publish-token", post(publish_token))
        .route("/events/{id}/viewer-tokens", post(viewer_token))
        .route("/events/{id}/publish-credential", post(publish_credential))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Query(q): Query<ListQuery>,
) -> Result<impl IntoResponse, ApiError> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(
            EventStatus::parse(s)
                .filter(|s| *s != EventStatus::Cancelled)
                .ok_or_else(|| {
                    ApiError::validation("status", "status must be scheduled, live or ended")
                })?,
        ),
    };
    let events = state.store.list_events(status, false, 200).await?;
    let staff = is_staff(&caller);
    let events: Vec<serde_json::Value> = events.iter().map(|e| as_seen_by(e, staff)).collect();
    Ok(axum::Json(json!({ "events": events })))
}

fn is_staff(caller: &Result<Caller, ApiError>) -> bool {
    caller.as_ref().is_ok_and(|c| !c.user.roles.is_empty())
}

/// The event as the caller may see it: staff see who is assigned to run it; the public
/// does not learn staff accounts' login names (they would be the first half of a login).
fn as_seen_by(event: &Event, staff: bool) -> serde_json::Value {
    let mut value = serde_json::to_value(event).unwrap_or_default();
    if !staff && let Some(map) = value.as_object_mut() {
        map.remove("broadcasters");
        map.remove("moderators");
    }
    value
}

pub fn parse_id(raw: &str) -> Result<EventId, ApiError> {
    EventId::parse(raw).ok_or_else(|| ApiError::NotFound("event".into()))
}

pub async fn load(state: &AppState, raw: &str) -> Result<Event, ApiError> {
    let id = parse_id(raw)?;
    state
        .store
        .event(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("event".into()))
}

/// Administrators manage every event; organisers manage draw events.
pub fn may_manage(caller: &Caller, kind: EventKind) -> Result<(), ApiError> {
    if caller.user.has(Role::Admin) || (kind == EventKind::Draw && caller.user.has(Role::Organiser))
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "managing events needs the admin role (or organiser for draw events)".into(),
        ))
    }
}

/// Starting and ending: managers and the event's assigned broadcasters and moderators.
pub fn may_run(caller: &Caller, event: &Event) -> Result<(), ApiError> {
    let name = &caller.user.username;
    if may_manage(caller, event.kind).is_ok()
        || event.broadcasters.contains(name)
        || event.moderators.contains(name)
    {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only administrators and the event's assigned staff may do this".into(),
        ))
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<impl IntoResponse, ApiError> {
    let draft = EventDraft::create(input)?;
    may_manage(&caller, draft.kind)?;
    let id = EventId::generate();
    let now = now_ms();
    let event = state
        .store
        .create_event(&id, &draft, &caller.user.username, now)
        .await?;
    state
        .store
        .audit(
            &caller.user.username,
            "event.create",
            &json!({"event": id, "title": event.title}).to_string(),
            now,
        )
        .await?;
    Ok((StatusCode::CREATED, axum::Json(event)))
}

async fn show(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    if event.status == EventStatus::Cancelled {
        // Cancelled events keep their record for the audit trail but are gone publicly.
        return Err(ApiError::NotFound("event".into()));
    }
    Ok(axum::Json(as_seen_by(&event, is_staff(&caller))))
}

async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<EventInput>,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    may_manage(&caller, event.kind)?;
    if matches!(event.status, EventStatus::Ended | EventStatus::Cancelled) {
        return Err(ApiError::Conflict(format!(
            "the event is {} and can no longer be edited",
            event.status
        )));
    }
    if let Some(kind) = input.kind.as_deref().and_then(EventKind::parse) {
        may_manage(&caller, kind)?;
    }
    let draft = EventDraft::from_event(&event).apply(input)?;
    let now = now_ms();
    let updated = state.store.update_event(&event.id, &draft, now).await?;
    state
        .store
        .audit(
            &caller.user.username,
            "event.edit",
            &json!({"event": event.id}).to_string(),
            now,
        )
        .await?;
    crate::hub_shell::event_changed(&state, &updated);
    Ok(axum::Json(updated))
}

async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    may_manage(&caller, event.kind)?;
    transition(
        &state,
        &caller,
        &event,
        &[EventStatus::Scheduled],
        EventStatus::Cancelled,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn start(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    run_transition(
        &state,
        &caller,
        &id,
        EventStatus::Scheduled,
        EventStatus::Live,
    )
    .await
}

async fn end(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    run_transition(&state, &caller, &id, EventStatus::Live, EventStatus::Ended).await
}

/// Undoes an accidental end: managers only, within `[events] reopen_window_secs` of the
/// end (checked in the same statement that reopens), audited. The event is live again;
/// its publisher reconnects and a new recording segment begins.
async fn reopen(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    may_manage(&caller, event.kind)?;
    if event.status != EventStatus::Ended {
        return Err(ApiError::Conflict(format!(
            "the event is {}; only an ended event can be reopened",
            event.status
        )));
    }
    let now = now_ms();
    let window_ms = reopen_window_ms(&state);
    let reopened = match state
        .store
        .reopen_event(&event.id, now.saturating_sub(window_ms), now)
        .await?
    {
        Some(event) if window_ms > 0 => event,
        _ => {
            return Err(ApiError::State {
                code: "reopen_window_passed",
                message: format!(
                    "an event can be reopened only within {} minutes of its end",
                    state.settings.events.reopen_window_secs / 60
                ),
                retry_after: None,
            });
        }
    };
    state
        .store
        .audit(
            &caller.user.username,
            "event.reopen",
            &json!({"event": event.id, "ended_at": event.ended_at}).to_string(),
            now,
        )
        .await?;
    crate::on_air::status_changed(&state, &reopened).await;
    Ok(axum::Json(reopened))
}

fn reopen_window_ms(state: &AppState) -> i64 {
    i64::try_from(state.settings.events.reopen_window_secs)
        .unwrap_or(i64::MAX)
        .saturating_mul(1000)
}

/// Until when (Unix ms) an ended event may still be reopened; `None` when it is not ended
/// or the window has passed.
pub fn reopen_deadline_ms(state: &AppState, event: &Event) -> Option<i64> {
    let window = reopen_window_ms(state);
    let deadline = event.ended_ms?.saturating_add(window);
    (event.status == EventStatus::Ended && window > 0 && deadline > now_ms()).then_some(deadline)
}

/// Start and end: the event's running staff move it one step along its lifecycle.
async fn run_transition(
    state: &AppState,
    caller: &Caller,
    id: &str,
    from: EventStatus,
    to: EventStatus,
) -> Result<axum::Json<Event>, ApiError> {
    let event = load(state, id).await?;
    may_run(caller, &event)?;
    Ok(axum::Json(
        transition(state, caller, &event, &[from], to).await?,
    ))
}

/// One status change: atomic in the store (so two staff pressing "start" at once change
/// it once), audited, and pushed to connected viewers.
pub async fn transition(
    state: &AppState,
    caller: &Caller,
    event: &Event,
    from: &[EventStatus],
    to: EventStatus,
) -> Result<Event, ApiError> {
    let now = now_ms();
    let Some(updated) = state
        .store
        .set_event_status(&event.id, from, to, now)
        .await?
    else {
        return Err(ApiError::Conflict(format!(
            "the event is {}; it cannot become {to}",
            event.status
        )));
    };
    state
        .store
        .audit(
            &caller.user.username,
            &format!("event.{to}"),
            &json!({"event": event.id}).to_string(),
            now,
        )
        .await?;
    crate::on_air::status_changed(state, &updated).await;
    Ok(updated)
}

/// Default and longest lifetime of a WHEP viewer token.
const VIEWER_TOKEN_TTL_SECS: u64 = 7 * 24 * 3600;
const VIEWER_TOKEN_MAX_TTL_SECS: u64 = Grant::View.max_ttl_secs();

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ViewerTokenInput {
    ttl_secs: Option<u64>,
}

/// Mints a signed, expiring WHEP viewer token (what unlisted events need to be watched).
/// Stateless (HMAC under the viewer key), so it is shown once and cannot be listed;
/// it stops working at its expiry.
async fn viewer_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    may_run(&caller, &event)?;
    let input: ViewerTokenInput = if body.iter().all(u8::is_ascii_whitespace) {
        ViewerTokenInput::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let ttl = input.ttl_secs.unwrap_or(VIEWER_TOKEN_TTL_SECS);
    if ttl == 0 || ttl > VIEWER_TOKEN_MAX_TTL_SECS {
        return Err(ApiError::validation(
            "ttl_secs",
            format!("ttl_secs must be between 1 and {VIEWER_TOKEN_MAX_TTL_SECS}"),
        ));
    }
    let now = now_ms();
    let expires = u64::try_from(now / 1000).unwrap_or(0) + ttl;
    let token = state
        .viewer_key
        .sign_grant(Grant::View, event.id.as_str(), expires);
    state
        .store
        .audit(
            &caller.user.username,
            "event.viewer_token",
            &json!({"event": event.id, "expires": expires}).to_string(),
            now,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "token": token,
            "expires_at": expires,
            // In the fragment: never sent to the server, so not in logs or Referer.
            "share_url": format!("/events/{}#t={token}", event.id.as_str()),
        })),
    ))
}

/// A short-lived WHIP credential for the broadcaster page, accepted beside the event's
/// publish token without rotating it (so OBS keeps its token). Same people as the token.
/// Checked only when a session starts; the page fetches a fresh one when one is refused.
async fn publish_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    let name = &caller.user.username;
    if !(may_manage(&caller, event.kind).is_ok() || event.broadcasters.contains(name)) {
        return Err(ApiError::Forbidden(
            "only administrators and the event's broadcasters may publish".into(),
        ));
    }
    credential(&state, &event, Grant::Publish)
}

/// A WHEP credential for the event's staff: they may watch a rehearsal, which the public
/// may not. Same people as start and end.
async fn preview_credential(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    may_run(&caller, &event)?;
    credential(&state, &event, Grant::Preview)
}

/// `{"token", "expires_at"}`: a `grant` for the event that lives as long as its kind
/// may, while the event has not ended (409 `ended`).
fn credential(
    state: &AppState,
    event: &Event,
    grant: Grant,
) -> Result<axum::Json<serde_json::Value>, ApiError> {
    if matches!(event.status, EventStatus::Ended | EventStatus::Cancelled) {
        return Err(ApiError::State {
            code: "ended",
            message: format!("the event is {}", event.status),
            retry_after: None,
        });
    }
    let expires = u64::try_from(now_ms() / 1000).unwrap_or(0) + grant.max_ttl_secs();
    let token = state
        .viewer_key
        .sign_grant(grant, event.id.as_str(), expires);
    Ok(axum::Json(json!({ "token": token, "expires_at": expires })))
}

async fn publish_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = load(&state, &id).await?;
    let name = &caller.user.username;
    if !(may_manage(&caller, event.kind).is_ok() || event.broadcasters.contains(name)) {
        return Err(ApiError::Forbidden(
            "only administrators and the event's broadcasters get its publish token".into(),
        ));
    }
    if matches!(event.status, EventStatus::Ended | EventStatus::Cancelled) {
        return Err(ApiError::Conflict(format!("the event is {}", event.status)));
    }
    let token = format!("gkp_{}", new_secret());
    let now = now_ms();
    state
        .store
        .set_publish_token(&event.id, &secret_hash(&token), now)
        .await?;
    state
        .store
        .audit(
            name,
            "event.publish_token",
            &json!({"event": event.id}).to_string(),
            now,
        )
        .await?;
    Ok(axum::Json(json!({ "token": token })))
}
