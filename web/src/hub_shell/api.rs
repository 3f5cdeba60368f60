//! HTTP entry points of the hub: the WebSocket upgrade, the public record, and answering
//! questions after the event.

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use streaming::hub::{ClientFrame, ClientMessage, ErrorCode, StaffRole, Viewer, ViewerId};
use tokio::sync::oneshot;

use super::room_task::{Command, STAFF_TIMEOUT};
use super::socket::{self, Who};
use super::upgrade::WsUpgrade;
use crate::auth::{Caller, ClientIp, PageCaller, Role};
use crate::domain::event::{Event, EventId, EventStatus};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{EventRecord, OfflineAnswer, ViewerSample, now_ms};
use crate::viewer::{MaybeViewer, ViewerIdentity};

const MAX_ANSWER_CHARS: usize = 5000;

/// `GET /ws/events/{event_id}` (outside `/api/v1`).
pub fn ws_routes() -> Router<AppState> {
    Router::new().route("/ws/events/{event_id}", get(connect))
}

/// Under `/api/v1`.
pub fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/events/{id}/record", get(record))
        .route("/events/{id}/questions/{question_id}/answer", post(answer))
}

#[allow(clippy::too_many_arguments)] // reason: one extractor per input of the upgrade
async fn connect(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    MaybeViewer(viewer): MaybeViewer,
    PageCaller(caller): PageCaller,
    ClientIp(ip): ClientIp,
    headers: axum::http::HeaderMap,
    upgrade: Result<WsUpgrade, ApiError>,
) -> Result<Response, ApiError> {
    // A page on another site must not open a socket with a viewer's or staff member's
    // cookies (cross-site WebSocket hijacking); clients that are not browsers send no
    // Origin and are unaffected.
    if !super::origin::allowed(&headers, state.settings.public_url.as_deref()) {
        return Err(ApiError::Forbidden(
            "this page may not open the event's socket from another site".into(),
        ));
    }
    let event = match EventId::parse(&id).and_then(|id| state.hub.open_event(&id)) {
        // A room is open here: it follows the event's changes itself.
        Some(event) if event.status != EventStatus::Cancelled => event,
        _ => Arc::new(public_event(&state, &id).await?),
    };
    let since = parse_since(query.as_deref())?;
    let upgrade = upgrade?;
    let who = identity(caller.as_ref(), &event, viewer.as_ref(), ip);
    // At most `[limits] websockets_per_ip` open sockets per address (staff not counted):
    // the slot is held for the socket's life.
    let slot = match who.role {
        Some(_) => None,
        None => Some(state.websockets_per_ip.acquire(ip).ok_or_else(|| {
            tracing::debug!(event = %event.id, "too many websockets from one address");
            ApiError::TooManyRequests {
                retry_after: crate::limits::RETRY_AFTER,
            }
        })?),
    };
    tracing::debug!(event = %event.id, staff = who.role.is_some(), read_only = who.read_only, "websocket");
    let hub = state.hub.clone();
    Ok(upgrade.on_upgrade(move |connection| {
        let tasks = hub.0.tasks.clone();
        tasks.track_future(async move {
            socket::serve(hub, connection, event, who, since).await;
            drop(slot);
        })
    }))
}

#[derive(Debug, Serialize)]
struct RecordResponse {
    event_id: EventId,
    #[serde(flatten)]
    record: EventRecord,
    viewer_samples: Vec<ViewerSample>,
}

/// `GET /api/v1/events/{id}/record`: the text record and the viewer chart (public).
async fn record(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let event = public_event(&state, &id).await?;
    let record = state.store.event_record(&event.id).await?;
    let viewer_samples = state.store.viewer_samples(&event.id).await?;
    Ok(axum::Json(RecordResponse {
        event_id: event.id,
        record,
        viewer_samples,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
    answer: String,
}

/// `POST /api/v1/events/{id}/questions/{question_id}/answer`: a text answer from a
/// moderator or administrator, live through the room when one runs on this node, else
/// straight into the record (answers are due within 5 working days of the event).
async fn answer(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, question)): Path<(String, String)>,
    crate::routes::extract::ApiJson(body): crate::routes::extract::ApiJson<AnswerBody>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_any(&[Role::Admin, Role::Moderator])?;
    let event = public_event(&state, &id).await?;
    if !matches!(
        staff_role(&caller, &event),
        Some(StaffRole::Admin | StaffRole::Moderator)
    ) {
        return Err(ApiError::Forbidden(
            "only the event's moderators (and administrators) answer its questions".into(),
        ));
    }
    let question_id: u64 = question
        .parse()
        .map_err(|_| ApiError::NotFound("question".into()))?;
    let text = streaming::hub::clean(&body.answer);
    let chars = text.chars().count();
    if chars == 0 || chars > MAX_ANSWER_CHARS {
        return Err(ApiError::validation(
            "answer",
            format!("answer must have 1 to {MAX_ANSWER_CHARS} characters"),
        ));
    }
    let username = &caller.user.username;
    let live = through_room(&state, &event, question_id, &text, &caller).await;
    let via = match live {
        Some(Ok(())) => "room",
        Some(Err(ErrorCode::NotFound)) | None => {
            match state
                .store
                .answer_question_offline(&event.id, question_id, &text, username, now_ms())
                .await?
            {
                OfflineAnswer::Answered => "record",
                OfflineAnswer::NoSuchQuestion => {
                    return Err(ApiError::NotFound("question".into()));
                }
            }
        }
        Some(Err(ErrorCode::Unavailable)) => {
            return Err(ApiError::Unavailable(
                "the event's room is moving between nodes; retry".into(),
            ));
        }
        Some(Err(code)) => {
            return Err(ApiError::Conflict(code.message().to_owned()));
        }
    };
    tracing::info!(event = %event.id, question_id, via, "question answered");
    Ok(axum::Json(
        json!({"question_id": question_id, "answer": text, "via": via}),
    ))
}

/// `None` when no room runs here (or it closed meanwhile, or did not answer in time).
async fn through_room(
    state: &AppState,
    event: &Event,
    question_id: u64,
    text: &str,
    caller: &Caller,
) -> Option<Result<(), ErrorCode>> {
    let room = state.hub.existing_room(&event.id)?;
    let role = staff_role(caller, event)?;
    let (reply, outcome) = oneshot::channel();
    let command = Command::Staff {
        viewer: staff_viewer(caller, None),
        role,
        frame: ClientFrame::new(ClientMessage::QuestionAnswer {
            question_id,
            answer: Some(text.to_owned()),
        }),
        reply,
    };
    room.send(command).await.ok()?;
    tokio::time::timeout(STAFF_TIMEOUT, outcome)
        .await
        .ok()?
        .ok()
}

/// An event viewers may see (not cancelled), or 404.
async fn public_event(state: &AppState, raw: &str) -> Result<Event, ApiError> {
    let id = EventId::parse(raw).ok_or_else(|| ApiError::NotFound("event".into()))?;
    state
        .store
        .event(&id)
        .await?
        .filter(|e| e.status != EventStatus::Cancelled)
        .ok_or_else(|| ApiError::NotFound("event".into()))
}

fn parse_since(query: Option<&str>) -> Result<Option<u64>, ApiError> {
    let Some(query) = query else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(value) = pair.strip_prefix("since=") {
            return value.parse().map(Some).map_err(|_| {
                ApiError::validation("since", "since must be a non-negative integer")
            });
        }
    }
    Ok(None)
}

/// Staff of the event (admin > moderator > broadcaster) by session; else the viewer
/// cookie; else a read-only watcher identified by a hash of the address (for the distinct
/// count only).
fn identity(
    caller: Option<&Caller>,
    event: &Event,
    viewer: Option<&ViewerIdentity>,
    ip: IpAddr,
) -> Who {
    if let Some(caller) = caller
        && let Some(role) = staff_role(caller, event)
    {
        return Who {
            viewer: staff_viewer(caller, Some(ip)),
            role: Some(role),
            read_only: false,
        };
    }
    if let Some(viewer) = viewer {
        return Who {
            viewer: Viewer {
                id: ViewerId(viewer.viewer_id.clone()),
                nickname: viewer.nickname.clone(),
                ip: Some(ip),
            },
            role: None,
            read_only: false,
        };
    }
    let digest = Sha256::digest(ip.to_string().as_bytes());
    Who {
        viewer: Viewer {
            id: ViewerId(format!("anon:{}", &hex::encode(digest)[..16])),
            nickname: String::new(),
            ip: Some(ip),
        },
        role: None,
        read_only: true,
    }
}

/// The caller's part in this event: administrators everywhere, moderators and
/// broadcasters only where they are assigned (elsewhere they are viewers like anyone).
fn staff_role(caller: &Caller, event: &Event) -> Option<StaffRole> {
    let user = &caller.user;
    let assigned = |list: &[String]| list.contains(&user.username);
    if user.has(Role::Admin) {
        Some(StaffRole::Admin)
    } else if user.has(Role::Moderator) && assigned(&event.moderators) {
        Some(StaffRole::Moderator)
    } else if user.has(Role::Broadcaster) && assigned(&event.broadcasters) {
        Some(StaffRole::Broadcaster)
    } else {
        None
    }
}

/// Staff act as `staff:<username>` (the moderation log names the user).
fn staff_viewer(caller: &Caller, ip: Option<IpAddr>) -> Viewer {
    Viewer {
        id: ViewerId(format!("staff:{}", caller.user.username)),
        nickname: caller.user.username.clone(),
        ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_parses_or_is_rejected() {
        assert_eq!(parse_since(None).unwrap(), None);
        assert_eq!(parse_since(Some("since=42")).unwrap(), Some(42));
        assert_eq!(parse_since(Some("x=1&since=7")).unwrap(), Some(7));
        assert!(parse_since(Some("since=-1")).is_err());
    }

    fn event() -> Event {
        use crate::domain::event::{EventForm, EventKind, Visibility};
        Event {
            id: EventId::parse("ev1").unwrap(),
            kind: EventKind::Interview,
            title: "访谈".into(),
            topic: String::new(),
            summary: String::new(),
            scheduled_start: String::new(),
            scheduled_end: String::new(),
            form: EventForm::Video,
            visibility: Visibility::Public,
            status: EventStatus::Live,
            follow_publisher: false,
            started_at: None,
            ended_at: None,
            reopened_at: None,
            guests: Vec::new(),
            broadcasters: vec!["zhang".into()],
            moderators: vec!["li".into()],
            scheduled_start_ms: 0,
            scheduled_end_ms: 0,
            started_ms: None,
            ended_ms: None,
            reopened_ms: None,
        }
    }

    #[test]
    fn moderators_and_broadcasters_are_staff_only_where_assigned() {
        let caller = |name: &str, role: Role| Caller {
            user: crate::store::StaffUser {
                id: 1,
                username: name.into(),
                roles: vec![role],
            },
            authn: crate::auth::Authn::Bearer,
        };
        let event = event();
        assert_eq!(
            staff_role(&caller("li", Role::Moderator), &event),
            Some(StaffRole::Moderator)
        );
        assert_eq!(staff_role(&caller("wang", Role::Moderator), &event), None);
        assert_eq!(
            staff_role(&caller("zhang", Role::Broadcaster), &event),
            Some(StaffRole::Broadcaster)
        );
        assert_eq!(staff_role(&caller("li", Role::Broadcaster), &event), None);
        assert_eq!(
            staff_role(&caller("root", Role::Admin), &event),
            Some(StaffRole::Admin)
        );
    }

    #[test]
    fn viewers_without_a_nickname_are_read_only() {
        let ip: IpAddr = "127.0.0.9".parse().unwrap();
        let event = event();
        let who = identity(None, &event, None, ip);
        assert!(who.read_only);
        assert!(who.viewer.id.0.starts_with("anon:"));
        assert!(!who.viewer.id.0.contains("127.0.0.9"));
        let named = ViewerIdentity {
            viewer_id: "vabc".into(),
            nickname: "甲".into(),
        };
        let who = identity(None, &event, Some(&named), ip);
        assert!(!who.read_only);
        assert_eq!(who.viewer.id.0, "vabc");
    }
}
