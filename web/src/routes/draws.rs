//! `/api/v1/draws`: the draw ceremony's HTTP surface (organisers, parents, witnesses,
//! notaries). The computations are `ceremony::steps`; this module checks who may do what
//! in which state, and keeps children's data out of URLs, logs and error messages.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use lottery::import::RowError;
use lottery::{AppCode, ChildId, ChildName, Choice, Choices, KindergartenCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::ApiJson;
use crate::auth::{Caller, ClientIp, Role, new_secret, secret_hash};
use crate::ceremony::records::ChildRecord;
use crate::ceremony::{playout, steps};
use crate::domain::draw::{DrawDraft, DrawInput, DrawState, mask_name, spec_time};
use crate::domain::event::{EventId, EventKind};
use crate::domain::review::{Status, statuses};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{CloseOutcome, DrawRow, ReviewOutcome, StepWrite, StoredApplication, now_ms};

/// CSV uploads may be large (a district's applications); JSON bodies keep the default.
const MAX_CSV_BYTES: usize = 256 * 1024 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/draws", get(list).post(create))
        .route("/draws/{id}", get(show).patch(edit))
        .route("/draws/{id}/open", post(open))
        .route("/draws/{id}/close", post(close))
        .route("/draws/{id}/announce", post(announce))
        .route("/draws/{id}/void", post(void))
        .route("/draws/{id}/draw", post(draw))
        .route(
            "/draws/{id}/applications",
            get(list_applications).post(apply),
        )
        .route("/draws/{id}/review", post(review))
        .route(
            "/draws/{id}/applications/import",
            post(import).layer(DefaultBodyLimit::max(MAX_CSV_BYTES)),
        )
        .route(
            "/draws/{id}/applications/{app}",
            axum::routing::patch(correct),
        )
        .route("/draws/{id}/applications/{app}/withdraw", post(withdraw))
        .route(
            "/draws/{id}/applications/{app}/status",
            post(application_status),
        )
        .route("/draws/{id}/private", get(private_file))
        .route("/draws/{id}/witnesses/{index}/commitment", post(commitment))
        .route("/draws/{id}/witnesses/{index}/reveal", post(reveal))
        .route("/draws/{id}/witnesses/{index}/link", post(witness_link))
        .route("/draws/{id}/announcement", get(announcement))
        .route("/draws/{id}/transcript", get(transcript))
        .route("/draws/{id}/proof", post(proof))
        .route("/draws/{id}/lookup", post(lookup))
        .route("/draws/{id}/countersignature", post(countersignature))
        .route("/draws/{id}/audit", get(audit))
        .route("/draws/{id}/results", get(results))
        .route("/draws/{id}/progress", get(progress))
}

// --- who may do what -------------------------------------------------------------------

fn may_organise(caller: &Caller) -> Result<(), ApiError> {
    caller.require_any(&[Role::Organiser, Role::Admin])
}

/// The one answer for a draw the caller may not know about: an unknown id and, for the
/// public, a draft get exactly this (same status, same body).
pub(super) fn draw_not_found() -> ApiError {
    ApiError::NotFound("draw".into())
}

pub(super) async fn load(state: &AppState, id: &str) -> Result<DrawRow, ApiError> {
    if lottery::DrawId::parse(id).is_err() {
        return Err(draw_not_found());
    }
    state.store.draw(id).await?.ok_or_else(draw_not_found)
}

/// A draft is the organiser's business; from `open` on the draw is public.
pub(super) async fn load_public(state: &AppState, id: &str) -> Result<DrawRow, ApiError> {
    let draw = load(state, id).await?;
    if draw.state == DrawState::Draft {
        return Err(draw_not_found());
    }
    Ok(draw)
}

fn wrong_state(draw: &DrawRow, wanted: &str) -> ApiError {
    ApiError::Conflict(format!(
        "the draw is {}; this step needs it to be {wanted}",
        draw.state
    ))
}

// --- the draft and the lifecycle -------------------------------------------------------

async fn linked_event(
    state: &AppState,
    event_id: Option<&str>,
) -> Result<Option<crate::domain::event::Event>, ApiError> {
    let Some(raw) = event_id.filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    let id =
        EventId::parse(raw).ok_or_else(|| ApiError::validation("event_id", "no such event"))?;
    let event = state
        .store
        .event(&id)
        .await?
        .ok_or_else(|| ApiError::validation("event_id", "no such event"))?;
    if event.kind != EventKind::Draw {
        return Err(ApiError::validation(
            "event_id",
            "the linked event must be of kind `draw`",
        ));
    }
    Ok(Some(event))
}

async fn parse_draft(state: &AppState, input: DrawInput) -> Result<DrawDraft, ApiError> {
    let event = linked_event(state, input.event_id.as_deref()).await?;
    let default_time = event.as_ref().and_then(|e| spec_time(e.scheduled_start_ms));
    DrawDraft::parse(input, default_time)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(input): ApiJson<DrawInput>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let event_id = input.event_id.clone().filter(|s| !s.is_empty());
    let draft = parse_draft(&state, input).await?;
    let draw = state
        .store
        .create_draw(
            draft.id.as_str(),
            &draft.title,
            event_id.as_deref(),
            &draft.setup,
            &caller.user.username,
            now_ms(),
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(draw_view(&state, &draw, true).await?),
    ))
}

async fn edit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<DrawInput>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let draw = load(&state, &id).await?;
    if input.draw_id != draw.id {
        return Err(ApiError::validation("draw_id", "draw_id cannot change"));
    }
    let event_id = input.event_id.clone().filter(|s| !s.is_empty());
    let draft = parse_draft(&state, input).await?;
    let done = state
        .store
        .update_draw_setup(
            &draw.id,
            &draft.title,
            event_id.as_deref(),
            &draft.setup,
            &caller.user.username,
            now_ms(),
        )
        .await?;
    if !done {
        return Err(wrong_state(&draw, "draft"));
    }
    let draw = load(&state, &id).await?;
    Ok(axum::Json(draw_view(&state, &draw, true).await?))
}

async fn list(
    State(state): State<AppState>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let staff = optional_caller(&state, request)
        .await
        .is_some_and(|c| c.user.has(Role::Organiser) || c.user.has(Role::Admin));
    let mut draws = Vec::new();
    for draw in state.store.list_draws().await? {
        if draw.state == DrawState::Draft && !staff {
            continue;
        }
        draws.push(summary_view(&draw));
    }
    Ok(axum::Json(json!({ "draws": draws })))
}

async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let staff = optional_caller(&state, request)
        .await
        .is_some_and(|c| c.user.has(Role::Organiser) || c.user.has(Role::Admin));
    let draw = if staff {
        load(&state, &id).await?
    } else {
        load_public(&state, &id).await?
    };
    Ok(axum::Json(draw_view(&state, &draw, staff).await?))
}

/// The caller, if the request carries a valid session or token (never rejects).
async fn optional_caller(state: &AppState, request: Request) -> Option<Caller> {
    let (mut parts, _) = request.into_parts();
    Caller::from_request_parts(&mut parts, state).await.ok()
}

fn summary_view(draw: &DrawRow) -> Value {
    json!({
        "draw_id": draw.id,
        "title": draw.title,
        "state": draw.state,
        "event_id": draw.event_id,
        "draw_time": draw.setup.draw_time.as_str(),
    })
}

pub(super) async fn draw_view(
    state: &AppState,
    draw: &DrawRow,
    staff: bool,
) -> Result<Value, ApiError> {
    let witnesses = state.store.witnesses(&draw.id, draw.round).await?;
    let applications = state.store.application_count(&draw.id).await?;
    let setup = &draw.setup;
    let announced = draw.state.is_announced();
    let mut view = json!({
        "draw_id": draw.id,
        "title": draw.title,
        "state": draw.state,
        "event_id": draw.event_id,
        "round": draw.round,
        "draw_time": setup.draw_time.as_str(),
        "kindergartens": setup.kindergartens,
        "mechanism": setup.mechanism,
        "multiples": setup.multiples,
        "beacon_source": setup.beacon_source,
        "applications_open": setup.applications_open.and_then(spec_time),
        "applications_close": setup.applications_close.and_then(spec_time),
        "applications": applications,
        "review": setup.review,
        "witnesses": witnesses.iter().map(|w| json!({
            "index": w.index,
            "name": w.name,
            "role": w.role,
            "commitment": w.commitment,
            "revealed": w.revealed,
        })).collect::<Vec<_>>(),
        "announcement_hash": if announced { draw.announcement_hash.clone() } else { None },
        "organiser_public_key": draw.organiser_key,
        "beacon_text": draw.beacon_text,
        "transcript_hash": if draw.state.is_published() { draw.transcript_hash.clone() } else { None },
        "countersigned": draw.countersigned.is_some(),
        "created_at": draw.created_at,
        "updated_at": draw.updated_at,
    });
    if staff {
        // Shown to staff before the first announcement too, so witnesses and parents can
        // be told which key will sign.
        let key = state.ceremony.organiser_key()?;
        view["organiser_public_key"] = json!(key.public_key_hex());
    }
    Ok(view)
}

async fn step(
    state: &AppState,
    caller: &Caller,
    draw: &DrawRow,
    from: DrawState,
    to: DrawState,
    write: StepWrite,
    detail: &str,
) -> Result<(), ApiError> {
    if draw.state != from {
        return Err(wrong_state(draw, from.as_str()));
    }
    let moved = state
        .store
        .draw_step(
            &draw.id,
            (from, to),
            write,
            &caller.user.username,
            detail,
            now_ms(),
        )
        .await?;
    if !moved {
        return Err(ApiError::Conflict(format!(
            "the draw is no longer {from}: someone else moved it on"
        )));
    }
    Ok(())
}

async fn open(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let draw = load(&state, &id).await?;
    step(
        &state,
        &caller,
        &draw,
        DrawState::Draft,
        DrawState::Open,
        StepWrite::default(),
        "",
    )
    .await?;
    let draw = load(&state, &id).await?;
    Ok(axum::Json(draw_view(&state, &draw, true).await?))
}

async fn close(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let draw = load(&state, &id).await?;
    if draw.state != DrawState::Open {
        return Err(wrong_state(&draw, "open"));
    }
    match state
        .store
        .close_draw(&draw.id, &caller.user.username, now_ms())
        .await?
    {
        CloseOutcome::Closed(_) => {}
        CloseOutcome::NotOpen => {
            return Err(ApiError::Conflict(
                "the draw is no longer open: someone else moved it on".into(),
            ));
        }
        CloseOutcome::Conflicts(n) => {
            return Err(ApiError::State {
                code: "conflicts_unresolved",
                message: format!(
                    "{n} application(s) are in conflict (two or more applications for one child): review them (reject all but one) before closing"
                ),
                retry_after: None,
            });
        }
    }
    let draw = load(&state, &id).await?;
    Ok(axum::Json(draw_view(&state, &draw, true).await?))
}

async fn announce(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let draw = load(&state, &id).await?;
    if draw.state != DrawState::Closed {
        return Err(wrong_state(&draw, "closed"));
    }
    let witnesses = state.store.witnesses(&draw.id, draw.round).await?;
    if let Some(w) = witnesses.iter().find(|w| w.commitment.is_none()) {
        return Err(ApiError::Conflict(format!(
            "witness {} ({}) has not committed yet",
            w.index, w.name
        )));
    }
    // Only verified applications enter the leaves (pending and rejected ones are left out;
    // a conflict cannot remain once the draw is closed).
    let rows = counted_applications(&state, &draw).await?;
    let key = state.ceremony.records_key()?;
    let organiser = state.ceremony.organiser_key()?;
    let draw_for_task = draw.clone();
    let announced = tokio::task::spawn_blocking(move || {
        let applications = steps::open_applications(&key, &draw_for_task.id, &rows)?;
        Ok::<_, anyhow::Error>(steps::announce(
            &draw_for_task,
            applications,
            &witnesses,
            &organiser,
        ))
    })
    .await
    .map_err(anyhow::Error::new)??
    .map_err(|problem| ApiError::Conflict(format!("cannot announce: {problem}")))?;
    let hash = announced.hash.to_string();
    step(
        &state,
        &caller,
        &draw,
        DrawState::Closed,
        DrawState::Announced,
        StepWrite {
            announcement: Some(announced.signed_json),
            announcement_hash: Some(hash.clone()),
            organiser_key: Some(announced.public_key_hex),
            leaves: Some(announced.leaves_json),
            ..StepWrite::default()
        },
        &format!("announcement {hash}, {} leaves", announced.tree_size),
    )
    .await?;
    let draw = load(&state, &id).await?;
    Ok(axum::Json(draw_view(&state, &draw, true).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VoidInput {
    #[serde(default)]
    reason: Option<String>,
}

/// A witness did not reveal: the draw is void and is announced again (spec section 4).
async fn void(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<VoidInput>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let draw = load(&state, &id).await?;
    if draw.state != DrawState::Announced {
        return Err(wrong_state(&draw, "announced"));
    }
    let witnesses = state.store.witnesses(&draw.id, draw.round).await?;
    if witnesses.iter().all(|w| w.revealed) {
        return Err(ApiError::Conflict(
            "every witness has revealed: the draw can go ahead and cannot be voided".into(),
        ));
    }
    let missing: Vec<String> = witnesses
        .iter()
        .filter(|w| !w.revealed)
        .map(|w| format!("{} ({})", w.index, w.name))
        .collect();
    let detail = format!(
        "round {} void: no reveal from witness {}; {}",
        draw.round,
        missing.join(", "),
        input.reason.unwrap_or_default()
    );
    if !state
        .store
        .void_draw(&draw, &caller.user.username, &detail, now_ms())
        .await?
    {
        return Err(ApiError::Conflict("the draw changed meanwhile".into()));
    }
    let draw = load(&state, &id).await?;
    Ok(axum::Json(draw_view(&state, &draw, true).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DrawRequest {
    #[serde(default)]
    beacon_text: Option<String>,
}

async fn draw(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    // An empty body is fine when no beacon was announced.
    let input: DrawRequest = if body.iter().all(u8::is_ascii_whitespace) {
        DrawRequest { beacon_text: None }
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?
    };
    let draw = load(&state, &id).await?;
    if draw.state != DrawState::Announced {
        return Err(wrong_state(&draw, "announced"));
    }
    let beacon_text = match (&draw.setup.beacon_source, input.beacon_text) {
        (Some(_), Some(text)) if !text.is_empty() => Some(text),
        (Some(source), _) => {
            return Err(ApiError::validation(
                "beacon_text",
                format!(
                    "the announcement names a beacon ({source}): enter its text exactly as published"
                ),
            ));
        }
        (None, Some(_)) => {
            return Err(ApiError::validation(
                "beacon_text",
                "the announcement names no beacon: send no beacon_text",
            ));
        }
        (None, None) => None,
    };
    let witnesses = state.store.witnesses(&draw.id, draw.round).await?;
    let mut reveals = Vec::with_capacity(witnesses.len());
    for w in &witnesses {
        let Some(secret) = w.secret.as_deref() else {
            return Err(ApiError::Conflict(format!(
                "witness {} ({}) has not revealed; wait, or void the draw and announce again",
                w.index, w.name
            )));
        };
        reveals.push(
            lottery::WitnessSecret::parse(secret)
                .map_err(|e| anyhow::anyhow!("stored reveal: {e}"))?,
        );
    }
    let (Some(announcement), Some(leaves)) = (draw.announcement.clone(), draw.leaves.clone())
    else {
        return Err(ApiError::Unexpected(anyhow::anyhow!(
            "announced draw without announcement or leaves"
        )));
    };
    let organiser = state.ceremony.organiser_key()?;
    let beacon_for_task = beacon_text.clone();
    let drawn = tokio::task::spawn_blocking(move || {
        steps::draw(&announcement, &leaves, reveals, beacon_for_task, &organiser)
    })
    .await
    .map_err(anyhow::Error::new)?
    .map_err(|failure| ApiError::Conflict(format!("the draw does not check: {failure}")))?;
    let hash = drawn.hash.to_string();
    step(
        &state,
        &caller,
        &draw,
        DrawState::Announced,
        DrawState::Drawn,
        StepWrite {
            beacon_text,
            transcript: Some(drawn.signed_json),
            transcript_hash: Some(hash.clone()),
            ..StepWrite::default()
        },
        &format!("transcript {hash}"),
    )
    .await?;
    playout::spawn(state.clone(), draw.id.clone());
    let draw = load(&state, &id).await?;
    let mut view = draw_view(&state, &draw, true).await?;
    view["transcript_hash"] = json!(hash);
    Ok(axum::Json(view))
}

// --- applications ----------------------------------------------------------------------

/// Reads a string field without ever echoing its value in an error.
fn text_field<'a>(value: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    value
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::validation(field, format!("{field} is required (a string)")))
}

/// Which rule a name follows: a new application's ([`ChildName::parse_new`]: nothing
/// invisible), or the specification's, to find what is already stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NameRule {
    New,
    Stored,
}

fn child_of(value: &Value, prefix: &str, rule: NameRule) -> Result<(ChildId, ChildName), ApiError> {
    let field = |name: &str| {
        if prefix.is_empty() {
            name.to_owned()
        } else {
            format!("{prefix}.{name}")
        }
    };
    let id = value
        .get("child_id")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::validation(&field("child_id"), "child_id is required (a string)")
        })?;
    let name = value
        .get("child_name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::validation(&field("child_name"), "child_name is required (a string)")
        })?;
    let child_id = ChildId::parse(id).map_err(|_| {
        ApiError::validation(
            &field("child_id"),
            "child_id must be an 18-character resident ID number with a valid check digit",
        )
    })?;
    let parsed = match rule {
        NameRule::New => ChildName::parse_new(name),
        NameRule::Stored => ChildName::parse(name),
    };
    let child_name = parsed.map_err(|e| {
        ApiError::validation(
            &field("child_name"),
            match e {
                lottery::child::ChildError::NameInvisible => {
                    "child_name must not contain control characters, bidirectional controls or invisible (zero-width, format) characters"
                }
                _ => "child_name must be 1 to 64 characters",
            },
        )
    })?;
    Ok((child_id, child_name))
}

fn choices_of(value: &Value, draw: &DrawRow) -> Result<Choices, ApiError> {
    let list = value
        .get("choices")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("choices", "choices is required (a list)"))?;
    let known: BTreeSet<KindergartenCode> =
        draw.setup.kindergartens.iter().map(|k| k.code).collect();
    let mut choices = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let kg = item
            .get("kg")
            .and_then(Value::as_str)
            .and_then(|s| KindergartenCode::parse(s).ok())
            .filter(|code| known.contains(code))
            .ok_or_else(|| {
                ApiError::validation(
                    &format!("choices[{i}].kg"),
                    "kg must be the code of one of the draw's kindergartens",
                )
            })?;
        let class = item
            .get("class")
            .and_then(Value::as_u64)
            .filter(|c| *c >= 1 && *c < 1 << 53)
            .ok_or_else(|| {
                ApiError::validation(
                    &format!("choices[{i}].class"),
                    "class must be a whole number from 1 (highest priority)",
                )
            })?;
        choices.push(Choice { kg, class });
    }
    Choices::new(choices).map_err(|e| ApiError::validation("choices", e.to_string()))
}

fn applications_open_now(draw: &DrawRow) -> Result<(), ApiError> {
    if draw.state != DrawState::Open {
        return Err(ApiError::Conflict(format!(
            "applications are not being accepted: the draw is {}",
            draw.state
        )));
    }
    let now = now_ms();
    if draw.setup.applications_open.is_some_and(|t| now < t) {
        return Err(ApiError::Conflict(
            "the application window has not opened yet".into(),
        ));
    }
    if draw.setup.applications_close.is_some_and(|t| now >= t) {
        return Err(ApiError::Conflict(
            "the application window has closed".into(),
        ));
    }
    Ok(())
}

/// `POST /draws/{id}/applications`. The answer never tells whether the child already
/// applied: a second application for a child is stored like the first (both are then in
/// conflict for the organiser's review), and gets the same 201 and receipt.
async fn apply(
    State(state): State<AppState>,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    state
        .ceremony
        .apply_per_ip
        .check(&ip.0.to_string())
        .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    let draw = load_public(&state, &id).await?;
    applications_open_now(&draw)?;
    let choices = choices_of(&body, &draw)?;
    let children = match body.get("children") {
        Some(list) => {
            let list = list.as_array().ok_or_else(|| {
                ApiError::validation("children", "children must be a list of children")
            })?;
            if list.len() < 2 || list.len() > 8 {
                return Err(ApiError::validation(
                    "children",
                    "twins and multiples apply together as 2 to 8 children",
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, child)| child_of(child, &format!("children[{i}]"), NameRule::New))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => vec![child_of(&body, "", NameRule::New)?],
    };
    let distinct: BTreeSet<&ChildId> = children.iter().map(|(id, _)| id).collect();
    if distinct.len() != children.len() {
        return Err(ApiError::validation(
            "children",
            "the same child ID number is listed twice",
        ));
    }
    let key = state.ceremony.records_key()?;
    for (child_id, _) in &children {
        state
            .ceremony
            .apply_per_child
            .check(&key.limiter_key(child_id.as_str()))
            .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    }
    let mut rng = rand_core::OsRng;
    let choices_json = serde_json::to_string(&choices).map_err(anyhow::Error::new)?;
    let mut receipts = Vec::new();
    let mut rows = Vec::new();
    let apps: Vec<AppCode> = (0..children.len())
        .map(|_| AppCode::generate(&mut rng))
        .collect();
    let group = if children.len() > 1 {
        let first = apps
            .iter()
            .min()
            .map(ToString::to_string)
            .unwrap_or_default();
        key.group_id(&draw.id, &first)
    } else {
        String::new()
    };
    for ((child_id, child_name), app) in children.into_iter().zip(apps) {
        let salt = lottery::Salt::generate(&mut rng);
        let app = app.to_string();
        rows.push(StoredApplication::new(
            app.clone(),
            key.child_key(&draw.id, child_id.as_str()),
            key.seal(
                &draw.id,
                &app,
                &ChildRecord {
                    child_id,
                    child_name,
                    salt,
                },
            ),
            choices_json.clone(),
            group.clone(),
        ));
        receipts.push(json!({"draw_id": draw.id, "app": app, "salt": salt.to_hex()}));
    }
    let inserted = state
        .store
        .insert_applications(
            &draw.id,
            &rows,
            false,
            ("parent", "application.create"),
            now_ms(),
        )
        .await?;
    if !inserted {
        return Err(ApiError::Conflict(
            "applications are not being accepted: the draw is no longer open".into(),
        ));
    }
    let mut response = if receipts.len() == 1 {
        receipts[0].clone()
    } else {
        json!({"draw_id": draw.id, "group": true})
    };
    response["receipts"] = json!(receipts);
    Ok((StatusCode::CREATED, no_store(axum::Json(response))))
}

fn no_store(body: impl IntoResponse) -> Response {
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The parent proves the application is theirs with the receipt and the child's data.
async fn own_application(
    state: &AppState,
    draw: &DrawRow,
    app: &str,
    body: &Value,
) -> Result<(StoredApplication, ChildRecord), ApiError> {
    let not_found = || ApiError::NotFound("an application matching this receipt".into());
    let salt = text_field(body, "salt")?;
    let (child_id, child_name) = child_of(body, "", NameRule::Stored)?;
    let stored = state
        .store
        .application_by_app(&draw.id, app)
        .await?
        .ok_or_else(not_found)?;
    let key = state.ceremony.records_key()?;
    let record = key
        .open(&draw.id, &stored.app, &stored.sealed)
        .map_err(anyhow::Error::new)?;
    if record.salt.to_hex() != salt.to_ascii_lowercase()
        || record.child_id != child_id
        || record.child_name != child_name
    {
        return Err(not_found());
    }
    Ok((stored, record))
}

async fn group_apps(
    state: &AppState,
    draw: &DrawRow,
    stored: &StoredApplication,
) -> Result<Vec<String>, ApiError> {
    Ok(if stored.group.is_empty() {
        vec![stored.app.clone()]
    } else {
        state.store.group_members(&draw.id, &stored.group).await?
    })
}

/// `PATCH /draws/{id}/applications/{app}`: new choices (for the whole group, if any).
async fn correct(
    State(state): State<AppState>,
    Path((id, app)): Path<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let draw = load_public(&state, &id).await?;
    applications_open_now(&draw)?;
    let (stored, _) = own_application(&state, &draw, &app, &body).await?;
    let choices = choices_of(&body, &draw)?;
    let apps = group_apps(&state, &draw, &stored).await?;
    let json_choices = serde_json::to_string(&choices).map_err(anyhow::Error::new)?;
    if !state
        .store
        .update_application_choices(&draw.id, &apps, &json_choices, "parent", now_ms())
        .await?
    {
        return Err(wrong_state(&draw, "open"));
    }
    Ok(axum::Json(
        json!({"draw_id": draw.id, "apps": apps, "choices": choices}),
    ))
}

async fn withdraw(
    State(state): State<AppState>,
    Path((id, app)): Path<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    let draw = load_public(&state, &id).await?;
    applications_open_now(&draw)?;
    let (stored, _) = own_application(&state, &draw, &app, &body).await?;
    let apps = group_apps(&state, &draw, &stored).await?;
    if !state
        .store
        .delete_applications(&draw.id, &apps, "parent", now_ms())
        .await?
    {
        return Err(wrong_state(&draw, "open"));
    }
    Ok(axum::Json(json!({"draw_id": draw.id, "withdrawn": apps})))
}

/// `POST /draws/{id}/applications/{app}/status`: the parent, with the receipt, sees the
/// review of their application. A conflict reads as `pending` (telling it would tell
/// whoever holds a receipt that someone else applied for the same child). Limited like
/// lookups.
async fn application_status(
    State(state): State<AppState>,
    ip: ClientIp,
    Path((id, app)): Path<(String, String)>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    check_limits(&state, &ip, body.get("child_id").and_then(Value::as_str))?;
    let draw = load_public(&state, &id).await?;
    let app = app.trim().to_ascii_uppercase();
    let (stored, record) = own_application(&state, &draw, &app, &body).await?;
    let rows = state.store.applications(&draw.id).await?;
    let reviewed: Vec<_> = rows.iter().map(StoredApplication::reviewed).collect();
    let status = statuses(&reviewed, draw.setup.review)
        .get(&stored.app)
        .map_or(Status::Pending, |s| s.0)
        .for_parent();
    let choices: Value = serde_json::from_str(&stored.choices).unwrap_or(Value::Null);
    Ok(no_store(axum::Json(json!({
        "draw_id": draw.id,
        "app": stored.app,
        "masked_name": mask_name(record.child_name.as_str()),
        "status": status,
        "reason": if status == Status::Rejected { stored.review_reason.clone() } else { None },
        "choices": choices,
        "draw_state": draw.state,
    }))))
}

#[derive(Debug, Deserialize)]
struct ApplicationsQuery {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    offset: Option<usize>,
    #[serde(default)]
    limit: Option<usize>,
}

const LIST_LIMIT: usize = 1000;
const LIST_MAX: usize = 10_000;

/// `GET /draws/{id}/applications?status=pending|conflict|verified|rejected`: the
/// organiser's review list, names masked, with each status's count.
async fn list_applications(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    axum::extract::Query(query): axum::extract::Query<ApplicationsQuery>,
) -> Result<Response, ApiError> {
    may_organise(&caller)?;
    let wanted = match query.status.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(text) => Some(Status::parse(text).ok_or_else(|| {
            ApiError::validation(
                "status",
                "status must be pending, conflict, verified or rejected",
            )
        })?),
    };
    let draw = load(&state, &id).await?;
    let rows = state.store.applications(&draw.id).await?;
    let reviewed: Vec<_> = rows.iter().map(StoredApplication::reviewed).collect();
    let status = statuses(&reviewed, draw.setup.review);
    let mut counts: BTreeMap<&str, usize> = Status::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    for (s, _) in status.values() {
        *counts.entry(s.as_str()).or_default() += 1;
    }
    let matching: Vec<&StoredApplication> = rows
        .iter()
        .filter(|a| wanted.is_none_or(|w| status.get(&a.app).map(|s| s.0) == Some(w)))
        .collect();
    let offset = query.offset.unwrap_or(0);
    let limit = query.limit.unwrap_or(LIST_LIMIT).min(LIST_MAX);
    let key = state.ceremony.records_key()?;
    let mut items = Vec::new();
    for a in matching.iter().skip(offset).take(limit) {
        let record = key
            .open(&draw.id, &a.app, &a.sealed)
            .map_err(anyhow::Error::new)?;
        let (s, with) = status
            .get(&a.app)
            .cloned()
            .unwrap_or((Status::Pending, Vec::new()));
        let choices: Value = serde_json::from_str(&a.choices).unwrap_or(Value::Null);
        items.push(json!({
            "app": a.app,
            "masked_name": mask_name(record.child_name.as_str()),
            "group": a.group,
            "choices": choices,
            "status": s,
            "reason": a.review_reason,
            "conflicts_with": with,
            "created_at": a.created_at,
        }));
    }
    Ok(no_store(axum::Json(json!({
        "draw_id": draw.id,
        "review": draw.setup.review,
        "counts": counts,
        "total": matching.len(),
        "offset": offset,
        "applications": items,
    }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewInput {
    #[serde(default)]
    verified: Vec<String>,
    #[serde(default)]
    rejected: Vec<RejectInput>,
    #[serde(default)]
    verify_all: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RejectInput {
    app: String,
    reason: String,
}

const MAX_REASON: usize = 200;
const MAX_REVIEWED: usize = 100_000;

/// `POST /draws/{id}/review`: the organiser's review (documents checked offline):
/// `{"verified": [app, ...], "rejected": [{"app", "reason"}, ...]}` and/or
/// `{"verify_all": true}` (every pending application not in conflict). One transaction;
/// a group of twins/multiples is reviewed as one.
async fn review(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<ReviewInput>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    if input.verified.is_empty() && input.rejected.is_empty() && !input.verify_all {
        return Err(ApiError::validation(
            "verified",
            "name applications to verify or reject, or send verify_all",
        ));
    }
    if input.verified.len() + input.rejected.len() > MAX_REVIEWED {
        return Err(ApiError::validation(
            "verified",
            format!("at most {MAX_REVIEWED} applications in one review"),
        ));
    }
    let code = |field: &str, text: &str| {
        AppCode::parse(text.trim())
            .map(|c| c.to_string())
            .map_err(|_| ApiError::validation(field, "not an application code"))
    };
    let verified = input
        .verified
        .iter()
        .enumerate()
        .map(|(i, app)| code(&format!("verified[{i}]"), app))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rejected = Vec::with_capacity(input.rejected.len());
    for (i, r) in input.rejected.iter().enumerate() {
        let app = code(&format!("rejected[{i}].app"), &r.app)?;
        let reason = r.reason.trim();
        if reason.is_empty()
            || reason.chars().count() > MAX_REASON
            || reason.chars().any(char::is_control)
        {
            return Err(ApiError::validation(
                &format!("rejected[{i}].reason"),
                format!("a reason is 1 to {MAX_REASON} characters, without control characters"),
            ));
        }
        if verified.contains(&app) {
            return Err(ApiError::validation(
                &format!("rejected[{i}].app"),
                format!("{app} is both verified and rejected"),
            ));
        }
        rejected.push((app, reason.to_owned()));
    }
    let draw = load(&state, &id).await?;
    let outcome = state
        .store
        .review_applications(
            &draw.id,
            &verified,
            &rejected,
            input.verify_all,
            &caller.user.username,
            now_ms(),
        )
        .await?;
    let (verified, rejected) = match outcome {
        ReviewOutcome::Done { verified, rejected } => (verified, rejected),
        ReviewOutcome::WrongState => {
            return Err(ApiError::Conflict(format!(
                "the draw is {}; applications are reviewed while it is open or closed, before the announcement",
                draw.state
            )));
        }
        ReviewOutcome::Unknown(apps) => {
            return Err(ApiError::validation(
                "verified",
                format!("no such application in this draw: {}", apps.join(" ")),
            ));
        }
        ReviewOutcome::InConflict(apps) => {
            return Err(ApiError::State {
                code: "in_conflict",
                message: format!(
                    "{} would be verified while another application for the same child is not rejected: reject the others first (in the same review if you like)",
                    apps.join(" ")
                ),
                retry_after: None,
            });
        }
    };
    Ok(axum::Json(
        json!({"draw_id": draw.id, "verified": verified, "rejected": rejected}),
    ))
}

async fn import(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("text/csv") {
        return Err(ApiError::UnsupportedMediaType(
            "expected Content-Type: text/csv".into(),
        ));
    }
    let draw = load(&state, &id).await?;
    if draw.state != DrawState::Open {
        return Err(wrong_state(&draw, "open"));
    }
    let key = state.ceremony.records_key()?;
    let kindergartens = draw.setup.kindergartens.clone();
    let draw_id = draw.id.clone();
    let key_for_check = key.clone();
    // Checking, then sealing a large file is CPU work: off the async threads.
    let (mut checked, child_keys) = tokio::task::spawn_blocking(move || {
        let checked = lottery::import::check_csv(&body, &kindergartens);
        // Every ID number that parsed, also on rows with other problems: a child who
        // already applied is reported with the file's own problems, in one answer.
        let child_keys: Vec<(u64, String)> = checked
            .child_ids()
            .iter()
            .map(|(line, id)| (*line, key_for_check.child_key(&draw_id, id.as_str())))
            .collect();
        (checked, child_keys)
    })
    .await
    .map_err(anyhow::Error::new)?;
    let keys: Vec<String> = child_keys
        .iter()
        .map(|(_, k)| k.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let existing = state.store.existing_child_keys(&draw.id, &keys).await?;
    checked.add_errors(
        child_keys
            .iter()
            .filter(|(_, k)| existing.contains(k))
            .map(|(line, _)| RowError {
                line: *line,
                field: "child_id",
                code: "already_applied",
                message: "this child already has an application in this draw".into(),
            }),
    );
    let draw_id = draw.id.clone();
    let prepared = tokio::task::spawn_blocking(move || {
        let rows = checked.into_applications(&mut rand_core::OsRng)?;
        let mut groups: HashMap<String, String> = HashMap::new();
        let mut stored = Vec::with_capacity(rows.len());
        for (line, application) in rows {
            let app = application.app.to_string();
            let group = if application.group.is_none() {
                String::new()
            } else {
                // The file's group labels are the organiser's; stored groups get ids of
                // their own so they cannot merge with a group that applied online.
                groups
                    .entry(application.group.as_str().to_owned())
                    .or_insert_with(|| key.group_id(&draw_id, &app))
                    .clone()
            };
            stored.push((
                line,
                StoredApplication::new(
                    app.clone(),
                    key.child_key(&draw_id, application.child_id.as_str()),
                    key.seal(
                        &draw_id,
                        &app,
                        &ChildRecord {
                            child_id: application.child_id,
                            child_name: application.child_name,
                            salt: application.salt,
                        },
                    ),
                    serde_json::to_string(&application.choices).unwrap_or_default(),
                    group,
                ),
            ));
        }
        Ok::<_, lottery::import::ImportErrors>(stored)
    })
    .await
    .map_err(anyhow::Error::new)?
    .map_err(|errors| ApiError::InvalidRows {
        message: format!(
            "{} bad row(s); nothing was imported",
            errors
                .0
                .iter()
                .map(|e| e.line)
                .collect::<BTreeSet<_>>()
                .len()
        ),
        rows: errors
            .0
            .iter()
            .map(
                |e| json!({"line": e.line, "field": e.field, "code": e.code, "message": e.message}),
            )
            .collect(),
    })?;
    let applications: Vec<StoredApplication> = prepared.into_iter().map(|(_, a)| a).collect();
    let inserted = state
        .store
        .insert_applications(
            &draw.id,
            &applications,
            true,
            (&caller.user.username, "application.import"),
            now_ms(),
        )
        .await
        .map_err(|e| match e {
            crate::store::StoreError::Conflict(_) => ApiError::Conflict(
                "a child of this file applied meanwhile; nothing was imported: upload it again"
                    .into(),
            ),
            other => other.into(),
        })?;
    if !inserted {
        return Err(ApiError::Conflict("the draw is no longer open".into()));
    }
    Ok(axum::Json(json!({"imported": applications.len()})))
}

/// The organiser's private application file (for the notary's `verify --private`).
async fn private_file(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    caller.require_any(&[Role::Organiser, Role::Notary, Role::Admin])?;
    let draw = load(&state, &id).await?;
    if !draw.state.is_announced() {
        return Err(ApiError::Conflict(
            "the private file is available once the draw is announced".into(),
        ));
    }
    // Exactly the applications behind the announced leaves.
    let announced = announced_apps(&state, &draw)?;
    let rows: Vec<StoredApplication> = state
        .store
        .applications(&draw.id)
        .await?
        .into_iter()
        .filter(|a| announced.contains(&a.app))
        .collect();
    let key = state.ceremony.records_key()?;
    let draw_id = lottery::DrawId::parse(&draw.id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let id_for_task = draw.id.clone();
    let bytes = tokio::task::spawn_blocking(move || {
        let applications = steps::open_applications(&key, &id_for_task, &rows)?;
        Ok::<_, anyhow::Error>(lottery::PrivateFile::new(draw_id, applications).to_bytes())
    })
    .await
    .map_err(anyhow::Error::new)??;
    state
        .store
        .draw_audit_entry(
            &draw.id,
            &caller.user.username,
            "private.download",
            "",
            now_ms(),
        )
        .await?;
    let disposition = format!("attachment; filename=\"{}-private.json\"", draw.id);
    Ok((
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        bytes,
    )
        .into_response())
}

// --- witnesses -------------------------------------------------------------------------

/// Who acts for witness `index`: the organiser (session or token), or the witness with the
/// link the organiser gave them (`X-Witness-Token`). A draft is the organiser's alone:
/// anyone else (a witness link too, valid or not) gets exactly the 404 of an unknown
/// draw, so the answer never confirms that the draft exists.
async fn witness_actor(
    state: &AppState,
    draw: &DrawRow,
    index: i64,
    request: Request,
) -> Result<(String, Value), ApiError> {
    let (mut parts, body) = request.into_parts();
    let actor = if draw.state == DrawState::Draft {
        let organiser = match Caller::from_request_parts(&mut parts, state).await {
            Ok(caller) if may_organise(&caller).is_ok() => caller,
            _ => return Err(draw_not_found()),
        };
        organiser.user.username
    } else if let Some(token) = parts.headers.get("x-witness-token") {
        let token = token.to_str().unwrap_or("");
        let witnesses = state.store.witnesses(&draw.id, draw.round).await?;
        let w = witnesses
            .iter()
            .find(|w| w.index == index)
            .ok_or_else(|| ApiError::NotFound("witness".into()))?;
        let expected = w.token_hash.as_deref().unwrap_or("");
        if expected.is_empty()
            || !bool::from(subtle::ConstantTimeEq::ct_eq(
                secret_hash(token).as_bytes(),
                expected.as_bytes(),
            ))
        {
            return Err(ApiError::Forbidden("this witness link is not valid".into()));
        }
        format!("witness {index}")
    } else {
        let caller = Caller::from_request_parts(&mut parts, state).await?;
        may_organise(&caller)?;
        caller.user.username
    };
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)?;
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::BadRequest(format!("malformed JSON: {e}")))?;
    Ok((actor, value))
}

fn hex32(value: &Value, field: &str) -> Result<String, ApiError> {
    let text = text_field(value, field)?;
    let lower = text.trim().to_ascii_lowercase();
    if lower.len() != 64 || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::validation(
            field,
            format!("{field} must be 64 hex digits"),
        ));
    }
    Ok(lower)
}

async fn commitment(
    State(state): State<AppState>,
    Path((id, index)): Path<(String, i64)>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let draw = load(&state, &id).await?;
    let (actor, body) = witness_actor(&state, &draw, index, request).await?;
    let commitment = hex32(&body, "commitment")?;
    if draw.state.is_announced() {
        return Err(ApiError::Conflict(
            "the announcement is signed: commitments can no longer change".into(),
        ));
    }
    if !state
        .store
        .set_witness_commitment(&draw.id, draw.round, index, &commitment, &actor, now_ms())
        .await?
    {
        return Err(ApiError::NotFound("witness".into()));
    }
    Ok(axum::Json(
        json!({"index": index, "commitment": commitment}),
    ))
}

async fn reveal(
    State(state): State<AppState>,
    Path((id, index)): Path<(String, i64)>,
    request: Request,
) -> Result<impl IntoResponse, ApiError> {
    let draw = load(&state, &id).await?;
    let (actor, body) = witness_actor(&state, &draw, index, request).await?;
    let secret_hex = hex32(&body, "secret")?;
    if draw.state != DrawState::Announced {
        return Err(wrong_state(&draw, "announced"));
    }
    let witnesses = state.store.witnesses(&draw.id, draw.round).await?;
    let w = witnesses
        .iter()
        .find(|w| w.index == index)
        .ok_or_else(|| ApiError::NotFound("witness".into()))?;
    let secret = lottery::WitnessSecret::parse(&secret_hex)
        .map_err(|_| ApiError::validation("secret", "secret must be 64 hex digits"))?;
    let draw_id = lottery::DrawId::parse(&draw.id).map_err(|e| anyhow::anyhow!("{e}"))?;
    let matches = w.commitment.as_deref() == Some(secret.commitment(&draw_id).to_string().as_str());
    if !matches {
        // Recorded: a wrong reveal is an event the notary must be able to see.
        state
            .store
            .draw_audit_entry(
                &draw.id,
                &actor,
                "witness.reveal_refused",
                &format!("witness {index}: the secret does not match the commitment"),
                now_ms(),
            )
            .await?;
        return Err(ApiError::validation(
            "secret",
            "this secret does not match the witness's announced commitment",
        ));
    }
    if w.secret.as_deref() == Some(secret_hex.as_str()) {
        return Ok(axum::Json(json!({"index": index, "revealed": true})));
    }
    if !state
        .store
        .set_witness_secret(&draw.id, draw.round, index, &secret_hex, &actor, now_ms())
        .await?
    {
        return Err(ApiError::Conflict("the draw changed meanwhile".into()));
    }
    Ok(axum::Json(json!({"index": index, "revealed": true})))
}

/// Issues (or replaces) witness `index`'s personal link; the token is shown once.
async fn witness_link(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, index)): Path<(String, i64)>,
) -> Result<impl IntoResponse, ApiError> {
    may_organise(&caller)?;
    let draw = load(&state, &id).await?;
    if draw.state >= DrawState::Drawn {
        return Err(ApiError::Conflict("the draw is over".into()));
    }
    let token = format!("wt_{}", new_secret());
    if !state
        .store
        .set_witness_token(&draw.id, draw.round, index, &secret_hash(&token))
        .await?
    {
        return Err(ApiError::NotFound("witness".into()));
    }
    state
        .store
        .draw_audit_entry(
            &draw.id,
            &caller.user.username,
            "witness.link",
            &format!("witness {index}"),
            now_ms(),
        )
        .await?;
    // The token travels in the fragment: browsers never send it to a server or log.
    let url = format!("/draws/{}/witness/{index}#{token}", draw.id);
    Ok(no_store(axum::Json(
        json!({"index": index, "token": token, "url": url}),
    )))
}

// --- public files and proofs -----------------------------------------------------------

fn json_file(body: String, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("inline; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

async fn announcement(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let draw = load_public(&state, &id).await?;
    match (draw.state.is_announced(), draw.announcement) {
        (true, Some(body)) => Ok(json_file(body, &format!("{}-announcement.json", draw.id))),
        _ => Err(ApiError::NotFound(
            "announcement (the draw is not announced yet)".into(),
        )),
    }
}

async fn transcript(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let draw = load_public(&state, &id).await?;
    if !draw.state.is_published() {
        return Err(ApiError::NotFound(
            "transcript (the draw is not published yet)".into(),
        ));
    }
    let body = draw
        .countersigned
        .or(draw.transcript)
        .ok_or_else(|| anyhow::anyhow!("published draw without transcript"))?;
    Ok(json_file(body, &format!("{}-transcript.json", draw.id)))
}

/// Rate limits for parents' lookups and proofs: per client IP, then per child.
fn check_limits(state: &AppState, ip: &ClientIp, child_id: Option<&str>) -> Result<(), ApiError> {
    state
        .ceremony
        .lookup_per_ip
        .check(&ip.0.to_string())
        .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    if let Some(id) = child_id {
        let key = state.ceremony.records_key()?;
        state
            .ceremony
            .lookup_per_child
            .check(&key.limiter_key(&id.trim().to_ascii_uppercase()))
            .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
    }
    Ok(())
}

fn no_match() -> ApiError {
    ApiError::NotFound("an application matching this ID number and name".into())
}

/// The draw's announced leaves (parsed once per announcement).
fn leaf_set(state: &AppState, draw: &DrawRow) -> Result<Arc<crate::ceremony::LeafSet>, ApiError> {
    let (Some(leaves_json), Some(hash), true) = (
        draw.leaves.as_deref(),
        draw.announcement_hash.as_deref(),
        draw.state.is_announced(),
    ) else {
        return Err(ApiError::Conflict("the draw is not announced yet".into()));
    };
    Ok(state
        .ceremony
        .cache
        .leaves(&draw.id, hash, || steps::leaf_set(leaves_json))?)
}

/// The application codes of the announced leaves.
fn announced_apps(state: &AppState, draw: &DrawRow) -> Result<BTreeSet<String>, ApiError> {
    Ok(leaf_set(state, draw)?
        .leaves
        .iter()
        .map(|leaf| leaf.app.to_string())
        .collect())
}

/// The applications that count: verified (by the organiser, or every application not in
/// conflict when the draw has no review step).
async fn counted_applications(
    state: &AppState,
    draw: &DrawRow,
) -> Result<Vec<StoredApplication>, ApiError> {
    let rows = state.store.applications(&draw.id).await?;
    let reviewed: Vec<_> = rows.iter().map(StoredApplication::reviewed).collect();
    let status = statuses(&reviewed, draw.setup.review);
    Ok(rows
        .into_iter()
        .filter(|a| status.get(&a.app).map(|s| s.0) == Some(Status::Verified))
        .collect())
}

/// Finds the child's application among the announced leaves (a child may have had
/// several applications, of which at most one was verified); any mismatch is the same
/// `no_match`.
async fn find_child(
    state: &AppState,
    draw: &DrawRow,
    body: &Value,
) -> Result<(StoredApplication, ChildRecord), ApiError> {
    let id = body.get("child_id").and_then(Value::as_str).unwrap_or("");
    let name = body.get("child_name").and_then(Value::as_str).unwrap_or("");
    // Malformed input is answered like an unknown child: the response never tells which
    // of ID and name was wrong.
    let (Ok(child_id), Ok(child_name)) = (ChildId::parse(id), ChildName::parse(name)) else {
        return Err(no_match());
    };
    let key = state.ceremony.records_key()?;
    let announced = announced_apps(state, draw)?;
    for stored in state
        .store
        .applications_by_child(&draw.id, &key.child_key(&draw.id, child_id.as_str()))
        .await?
        .into_iter()
        .filter(|a| announced.contains(&a.app))
    {
        let record = key
            .open(&draw.id, &stored.app, &stored.sealed)
            .map_err(anyhow::Error::new)?;
        if record.child_id == child_id && record.child_name == child_name {
            return Ok((stored, record));
        }
    }
    Err(no_match())
}

async fn proof(
    State(state): State<AppState>,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    check_limits(&state, &ip, body.get("child_id").and_then(Value::as_str))?;
    let draw = load_public(&state, &id).await?;
    let set = leaf_set(&state, &draw)?;
    let hash = draw.announcement_hash.clone().unwrap_or_default();
    let (stored, _) = find_child(&state, &draw, &body).await?;
    let app = body.get("app").and_then(Value::as_str).unwrap_or("");
    if !app.trim().eq_ignore_ascii_case(&stored.app) {
        return Err(no_match());
    }
    let app_code = AppCode::parse(&stored.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    let index = set
        .leaves
        .binary_search_by(|leaf| leaf.app.cmp(&app_code))
        .map_err(|_| anyhow::anyhow!("an application without a leaf after the announcement"))?;
    let proof = lottery::merkle::inclusion_proof(&set.hashes, index)
        .ok_or_else(|| anyhow::anyhow!("no inclusion proof"))?;
    let root = lottery::merkle::tree_hash(&set.hashes);
    Ok(no_store(axum::Json(json!({
        "draw_id": draw.id,
        "leaf": set.leaves[index],
        "leaf_hash": set.hashes[index],
        "leaf_index": proof.leaf_index,
        "tree_size": proof.tree_size,
        "audit_path": proof.path,
        "root": root,
        "announcement_hash": hash,
    }))))
}

async fn lookup(
    State(state): State<AppState>,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<Value>,
) -> Result<impl IntoResponse, ApiError> {
    check_limits(&state, &ip, body.get("child_id").and_then(Value::as_str))?;
    let draw = load_public(&state, &id).await?;
    if !draw.state.is_published() {
        return Err(ApiError::Conflict("results are not published yet".into()));
    }
    let (stored, record) = find_child(&state, &draw, &body).await?;
    let signed = published_transcript(&state, &draw)?;
    let app = AppCode::parse(&stored.app).map_err(|e| anyhow::anyhow!("{e}"))?;
    let result = lottery::receipt::check_receipt(
        &signed.transcript,
        &app,
        &record.salt,
        &record.child_id,
        &record.child_name,
    )
    .map_err(|e| anyhow::anyhow!("stored application does not match its leaf: {e}"))?;
    let names: BTreeMap<KindergartenCode, &str> = signed
        .transcript
        .announcement
        .kindergartens
        .iter()
        .map(|k| (k.code, k.name.as_str()))
        .collect();
    let kg = |code: &KindergartenCode| json!({"code": code, "name": names.get(code).copied().unwrap_or("")});
    let outcome = match &result.admitted {
        Some((code, choice)) => json!({
            "status": "admitted",
            "kindergarten": kg(code),
            "choice": choice,
        }),
        None if !result.waitlists.is_empty() => json!({
            "status": "waitlisted",
            "waitlists": result.waitlists.iter().map(|(code, choice, position)| json!({
                "kindergarten": kg(code),
                "choice": choice,
                "position": position,
            })).collect::<Vec<_>>(),
        }),
        None => json!({"status": "not_admitted"}),
    };
    // Waitlist places above an admission are also shown (a better choice may free up).
    let waitlists: Vec<Value> = result
        .waitlists
        .iter()
        .map(|(code, choice, position)| {
            json!({"kindergarten": kg(code), "choice": choice, "position": position})
        })
        .collect();
    Ok(no_store(axum::Json(json!({
        "draw_id": draw.id,
        "masked_name": mask_name(record.child_name.as_str()),
        "app": stored.app,
        "unit": result.unit,
        "unit_size": result.unit_size,
        "lottery_number": result.lottery_number,
        "result": outcome,
        "waitlists": waitlists,
    }))))
}

pub(super) fn published_transcript(
    state: &AppState,
    draw: &DrawRow,
) -> Result<Arc<lottery::SignedTranscript>, ApiError> {
    let (Some(body), Some(hash)) = (draw.transcript.as_deref(), draw.transcript_hash.as_deref())
    else {
        return Err(ApiError::Unexpected(anyhow::anyhow!("no transcript")));
    };
    Ok(state.ceremony.cache.transcript(&draw.id, hash, || {
        Ok(lottery::verify::parse(body.as_bytes())?)
    })?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CountersignInput {
    public_key: String,
    signature: String,
}

async fn countersignature(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(input): ApiJson<CountersignInput>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(Role::Notary)?;
    let draw = load_public(&state, &id).await?;
    if !matches!(draw.state, DrawState::Published | DrawState::Countersigned) {
        return Err(wrong_state(&draw, "published"));
    }
    let public_key: [u8; 32] = lottery::hash::parse_hex_array(input.public_key.trim())
        .map_err(|_| ApiError::validation("public_key", "public_key must be 64 hex digits"))?;
    let signature: [u8; 64] = lottery::hash::parse_hex_array(input.signature.trim())
        .map_err(|_| ApiError::validation("signature", "signature must be 128 hex digits"))?;
    let current = draw
        .countersigned
        .clone()
        .or(draw.transcript.clone())
        .ok_or_else(|| anyhow::anyhow!("published draw without transcript"))?;
    let updated =
        tokio::task::spawn_blocking(move || steps::countersign(&current, public_key, signature))
            .await
            .map_err(anyhow::Error::new)?
            .map_err(|e| match e {
                steps::CountersignError::BadSignature => {
                    ApiError::validation("signature", e.to_string())
                }
                steps::CountersignError::Invalid(_) => ApiError::Unexpected(anyhow::anyhow!("{e}")),
            })?;
    let detail = format!("notary {}", hex::encode(public_key));
    let moved = state
        .store
        .draw_step(
            &draw.id,
            (draw.state, DrawState::Countersigned),
            StepWrite {
                countersigned: Some(updated),
                ..StepWrite::default()
            },
            &caller.user.username,
            &detail,
            now_ms(),
        )
        .await?;
    if !moved {
        return Err(ApiError::Conflict(
            "the draw changed meanwhile; try again".into(),
        ));
    }
    let draw = load(&state, &id).await?;
    Ok(axum::Json(draw_view(&state, &draw, false).await?))
}

async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    caller.require_any(&[Role::Organiser, Role::Notary, Role::Admin])?;
    let draw = load(&state, &id).await?;
    Ok(axum::Json(
        json!({"draw_id": draw.id, "entries": state.store.draw_audit(&draw.id).await?}),
    ))
}

/// Per kindergarten: seats, applicants by class, admitted, waitlist length (for charts).
async fn results(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let draw = load_public(&state, &id).await?;
    if !draw.state.is_published() {
        return Err(ApiError::NotFound(
            "results (the draw is not published yet)".into(),
        ));
    }
    let signed = published_transcript(&state, &draw)?;
    Ok(axum::Json(results_view(&signed)))
}

pub fn results_view(signed: &lottery::SignedTranscript) -> Value {
    let transcript = &signed.transcript;
    let sizes = playout::unit_sizes(signed);
    let mut by_class: BTreeMap<KindergartenCode, BTreeMap<u64, u64>> = BTreeMap::new();
    for leaf in &transcript.leaves {
        for choice in leaf.choices.as_slice() {
            *by_class
                .entry(choice.kg)
                .or_default()
                .entry(choice.class)
                .or_default() += 1;
        }
    }
    let count = |placements: &[lottery::Placement], kg: &KindergartenCode| -> (u64, u64) {
        placements.iter().find(|p| p.kg == *kg).map_or((0, 0), |p| {
            (
                p.units.len() as u64,
                p.units
                    .iter()
                    .map(|u| sizes.get(u).copied().unwrap_or(1))
                    .sum(),
            )
        })
    };
    let kindergartens: Vec<Value> = transcript
        .announcement
        .kindergartens
        .iter()
        .map(|kg| {
            let (admitted_units, admitted_children) = count(&transcript.admitted, &kg.code);
            let (waitlist_units, waitlist_children) = count(&transcript.waitlists, &kg.code);
            let classes = by_class.get(&kg.code).cloned().unwrap_or_default();
            json!({
                "code": kg.code,
                "name": kg.name,
                "seats": kg.seats,
                "applicants": classes.values().sum::<u64>(),
                "applicants_by_class": classes.iter().map(|(class, n)| json!({"class": class, "children": n})).collect::<Vec<_>>(),
                "admitted_units": admitted_units,
                "admitted": admitted_children,
                "waitlist_units": waitlist_units,
                "waitlist": waitlist_children,
            })
        })
        .collect();
    json!({
        "draw_id": transcript.announcement.draw_id.as_str(),
        "applications": transcript.leaves.len(),
        "units": transcript.lottery.len(),
        "kindergartens": kindergartens,
    })
}

/// The play-out so far, for viewers who join late (then the WebSocket goes on).
async fn progress(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let draw = load_public(&state, &id).await?;
    if draw.state < DrawState::Drawn {
        return Ok(axum::Json(
            json!({"draw_id": draw.id, "state": draw.state, "played": 0, "steps": []}),
        ));
    }
    let signed = published_transcript(&state, &draw)?;
    let steps = playout::steps(&signed);
    let played = if draw.state.is_published() {
        steps.len()
    } else {
        usize::try_from(draw.played).unwrap_or(0).min(steps.len())
    };
    Ok(axum::Json(json!({
        "draw_id": draw.id,
        "state": draw.state,
        "played": played,
        "total": steps.len(),
        "steps": &steps[..played],
        "transcript_hash": if draw.state.is_published() { draw.transcript_hash.clone() } else { None },
    })))
}
