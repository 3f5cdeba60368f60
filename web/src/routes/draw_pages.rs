//! The draw ceremony's pages: public (list, draw page with the live play-out, apply,
//! correct/withdraw, witness, lookup, inclusion proof, results) and staff (draw list and
//! setup, one draw's lifecycle, the notary's page).
//!
//! Every page is a thin server-rendered shell over `/api/v1/draws` (`routes::draws`): the
//! scripts (`web/assets/draw-*.js`) call the API; nothing a parent types goes in a URL.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use minijinja::context;
use serde::Deserialize;
use serde_json::Value;

use super::draws::{draw_view, load, load_public, published_transcript, results_view};
use super::page_error;
use crate::auth::{Caller, PageCaller, Role};
use crate::domain::draw::DrawState;
use crate::domain::event::{EventId, EventKind, EventStatus};
use crate::error::ApiError;
use crate::pages::Lang;
use crate::pages::i18n::LANG_COOKIE;
use crate::state::AppState;
use crate::store::DrawRow;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/draws", get(list))
        .route("/draws/{id}", get(public_page))
        .route("/draws/{id}/apply", get(apply_page))
        .route("/draws/{id}/application", get(application_page))
        .route("/draws/{id}/witness/{index}", get(witness_page))
        .route("/draws/{id}/lookup", get(lookup_page))
        .route("/draws/{id}/proof", get(proof_page))
        .route("/draws/{id}/results", get(results_page))
        .route("/staff/draws", get(staff_list))
        .route("/staff/draws/{id}", get(staff_draw))
        .route("/staff/draws/{id}/notary", get(notary_page))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
}

/// A page render in progress: language, cookie jar, who is signed in.
struct Page {
    state: AppState,
    lang: Lang,
    jar: CookieJar,
    caller: Option<Caller>,
}

impl Page {
    fn new(
        state: AppState,
        caller: Option<Caller>,
        query: &PageQuery,
        headers: &HeaderMap,
        jar: CookieJar,
    ) -> Page {
        let lang = Lang::negotiate(query.lang.as_deref(), headers);
        let jar = if query.lang.as_deref().and_then(Lang::parse).is_some() {
            jar.add(
                Cookie::build((LANG_COOKIE, lang.tag()))
                    .path("/")
                    .same_site(SameSite::Lax)
                    .max_age(time::Duration::days(365)),
            )
        } else {
            jar
        };
        Page {
            state,
            lang,
            jar,
            caller,
        }
    }

    fn is(&self, roles: &[Role]) -> bool {
        self.caller
            .as_ref()
            .is_some_and(|c| roles.iter().any(|r| c.user.has(*r)))
    }

    fn render(self, template: &str, ctx: minijinja::Value) -> Response {
        let (user, csrf_token) = match &self.caller {
            Some(c) => (
                minijinja::Value::from_serialize(&c.user),
                c.csrf_token().map(str::to_owned),
            ),
            None => (minijinja::Value::from(()), None),
        };
        let ctx = context! { user, csrf_token, ..ctx };
        let body = self
            .state
            .pages
            .respond(StatusCode::OK, template, self.lang, ctx);
        (self.jar, body).into_response()
    }

    fn error(self, error: ApiError) -> Response {
        match error {
            ApiError::NotFound(_) => page_error(&self.state, self.lang, StatusCode::NOT_FOUND),
            ApiError::Forbidden(_) | ApiError::Unauthorized(_) => {
                page_error(&self.state, self.lang, StatusCode::FORBIDDEN)
            }
            other => other.into_response(),
        }
    }
}

const STAFF: &[Role] = &[Role::Organiser, Role::Admin];

/// The draw as its pages see it: the API's view plus a few derived facts.
async fn draw_ctx(state: &AppState, draw: &DrawRow, staff: bool) -> Result<Value, ApiError> {
    let mut view = draw_view(state, draw, staff).await?;
    view["mechanism_key"] = Value::from(format!(
        "draw_mech_{}",
        draw.setup.mechanism.as_str().replace('-', "_")
    ));
    view["multiples_key"] = Value::from(format!(
        "draw_multiples_{}",
        draw.setup.multiples.as_str().replace('-', "_")
    ));
    view["seats"] = Value::from(
        draw.setup
            .kindergartens
            .iter()
            .map(|k| k.seats)
            .sum::<u64>(),
    );
    view["is_open"] = Value::from(draw.state == DrawState::Open);
    view["is_announced"] = Value::from(draw.state.is_announced());
    view["is_drawn"] = Value::from(draw.state >= DrawState::Drawn);
    view["is_published"] = Value::from(draw.state.is_published());
    view["all_revealed"] = Value::from(
        state
            .store
            .witnesses(&draw.id, draw.round)
            .await?
            .iter()
            .all(|w| w.revealed),
    );
    Ok(view)
}

async fn list(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let page = Page::new(state, caller, &query, &headers, jar);
    let draws = match page.state.store.list_draws().await {
        Ok(d) => d,
        Err(e) => return page.error(e.into()),
    };
    let draws: Vec<_> = draws
        .iter()
        .filter(|d| d.state != DrawState::Draft)
        .map(summary)
        .collect();
    page.render("draws.html", context! { draws })
}

fn summary(draw: &DrawRow) -> minijinja::Value {
    context! {
        draw_id => draw.id,
        title => draw.title,
        state => draw.state.as_str(),
        draw_time => draw.setup.draw_time.as_str(),
        kindergartens => draw.setup.kindergartens.len(),
        seats => draw.setup.kindergartens.iter().map(|k| k.seats).sum::<u64>(),
    }
}

/// Loads a public draw (or, for staff, a draft too) and renders `template` with it.
async fn public_draw(page: Page, id: &str, template: &str, extra: minijinja::Value) -> Response {
    let staff = page.is(STAFF);
    let loaded = if staff {
        load(&page.state, id).await
    } else {
        load_public(&page.state, id).await
    };
    let draw = match loaded {
        Ok(d) => d,
        Err(e) => return page.error(e),
    };
    let view = match draw_ctx(&page.state, &draw, false).await {
        Ok(v) => v,
        Err(e) => return page.error(e),
    };
    let draw = minijinja::Value::from_serialize(&view);
    page.render(template, context! { draw, ..extra })
}

async fn public_page(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let page = Page::new(state, caller, &query, &headers, jar);
    // The linked live event, if any, for the video player and the play-out socket.
    let event = match load_public(&page.state, &id).await {
        Ok(draw) => match draw.event_id.as_deref().and_then(EventId::parse) {
            Some(event_id) => page.state.store.event(&event_id).await.ok().flatten(),
            None => None,
        },
        Err(_) => None,
    };
    let lang = page.lang;
    let event = event
        .filter(|e| e.status != EventStatus::Cancelled)
        .map(|e| {
            context! {
                id => e.id.to_string(),
                title => e.title,
                status => e.status.to_string(),
                video => e.form.to_string() == "video",
                // The player's countdown and start time (Beijing time) before the start.
                start_ms => e.scheduled_start_ms,
                start_text => super::pages::beijing_time(e.scheduled_start_ms, lang, false),
            }
        });
    public_draw(page, &id, "draw.html", context! { event }).await
}

macro_rules! public_template {
    ($name:ident, $template:literal) => {
        async fn $name(
            State(state): State<AppState>,
            PageCaller(caller): PageCaller,
            Path(id): Path<String>,
            Query(query): Query<PageQuery>,
            headers: HeaderMap,
            jar: CookieJar,
        ) -> Response {
            let page = Page::new(state, caller, &query, &headers, jar);
            public_draw(page, &id, $template, context! {}).await
        }
    };
}

public_template!(apply_page, "draw_apply.html");
public_template!(application_page, "draw_application.html");
public_template!(lookup_page, "draw_lookup.html");
public_template!(proof_page, "draw_proof.html");

/// The witness's own page, from the opening on (commitments come before the announcement);
/// the link's token stays in the fragment and is read by the script. A draft's page is
/// staff's only: the public gets the 404 of an unknown draw (the page cannot see the
/// token, and would otherwise show the title, state and the witness's name).
async fn witness_page(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path((id, index)): Path<(String, i64)>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let page = Page::new(state, caller, &query, &headers, jar);
    let loaded = if page.is(&[Role::Organiser, Role::Admin, Role::Notary]) {
        load(&page.state, &id).await
    } else {
        load_public(&page.state, &id).await
    };
    let draw = match loaded {
        Ok(d) => d,
        Err(e) => return page.error(e),
    };
    let witness = match page.state.store.witnesses(&draw.id, draw.round).await {
        Ok(ws) => ws.into_iter().find(|w| w.index == index),
        Err(e) => return page.error(e.into()),
    };
    let Some(witness) = witness else {
        return page.error(ApiError::NotFound("witness".into()));
    };
    let ctx = context! {
        draw => context! {
            draw_id => draw.id,
            title => draw.title,
            state => draw.state.as_str(),
            round => draw.round,
            draw_time => draw.setup.draw_time.as_str(),
            committing => !draw.state.is_announced(),
            revealing => draw.state == DrawState::Announced,
        },
        witness => minijinja::Value::from_serialize(&witness),
    };
    page.render("draw_witness.html", ctx)
}

/// One bar of the results chart (SVG user units).
#[derive(Debug, serde::Serialize)]
struct Bar {
    class: &'static str,
    x: u64,
    y: u64,
    width: u64,
    height: u64,
    value: u64,
}

async fn results_page(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let page = Page::new(state, caller, &query, &headers, jar);
    let draw = match load_public(&page.state, &id).await {
        Ok(d) => d,
        Err(e) => return page.error(e),
    };
    let results = if draw.state.is_published() {
        match published_transcript(&page.state, &draw) {
            Ok(signed) => Some(results_view(&signed)),
            Err(e) => return page.error(e),
        }
    } else {
        None
    };
    let chart = results.as_ref().map(results_chart);
    let view = match draw_ctx(&page.state, &draw, false).await {
        Ok(v) => v,
        Err(e) => return page.error(e),
    };
    let ctx = context! {
        draw => minijinja::Value::from_serialize(&view),
        results => minijinja::Value::from_serialize(&results),
        chart,
    };
    page.render("draw_results.html", ctx)
}

/// Grouped bars per kindergarten: seats, applicants, admitted, waitlist.
fn results_chart(results: &Value) -> minijinja::Value {
    const HEIGHT: u64 = 200;
    const BAR: u64 = 14;
    const GAP: u64 = 4;
    const GROUP_GAP: u64 = 24;
    let empty = Vec::new();
    let kindergartens = results["kindergartens"].as_array().unwrap_or(&empty);
    let series = [
        ("seats", "bar-seats"),
        ("applicants", "bar-applicants"),
        ("admitted", "bar-admitted"),
        ("waitlist", "bar-waitlist"),
    ];
    let top = kindergartens
        .iter()
        .flat_map(|k| {
            series
                .iter()
                .map(move |(field, _)| k[*field].as_u64().unwrap_or(0))
        })
        .max()
        .unwrap_or(0)
        .max(1);
    let group_width = series.len() as u64 * (BAR + GAP) + GROUP_GAP;
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    for (i, kg) in kindergartens.iter().enumerate() {
        let x0 = i as u64 * group_width + GROUP_GAP / 2;
        for (j, (field, class)) in series.iter().enumerate() {
            let value = kg[*field].as_u64().unwrap_or(0);
            let height = value * HEIGHT / top;
            bars.push(Bar {
                class,
                x: x0 + j as u64 * (BAR + GAP),
                y: HEIGHT - height,
                width: BAR,
                height,
                value,
            });
        }
        labels.push(context! {
            x => x0 + (series.len() as u64 * (BAR + GAP)) / 2,
            text => kg["code"].as_str().unwrap_or(""),
        });
    }
    context! {
        width => (kindergartens.len() as u64 * group_width).max(100),
        height => HEIGHT,
        label_y => HEIGHT + 16,
        total_height => HEIGHT + 24,
        bars => minijinja::Value::from_serialize(&bars),
        labels,
    }
}

// --- staff ------------------------------------------------------------------------------

async fn staff_list(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if caller.is_none() {
        return Redirect::to("/login?next=/staff/draws").into_response();
    }
    let page = Page::new(state, caller, &query, &headers, jar);
    let can_create = page.is(STAFF);
    if !can_create && !page.is(&[Role::Notary]) {
        return page.error(ApiError::Forbidden("draws".into()));
    }
    let draws = match page.state.store.list_draws().await {
        Ok(d) => d,
        Err(e) => return page.error(e.into()),
    };
    let draws: Vec<_> = draws.iter().map(summary).collect();
    // Only events of kind `draw` can carry a draw's play-out.
    let events = match page.state.store.list_events(None, true, 500).await {
        Ok(events) => events
            .into_iter()
            .filter(|e| e.kind == EventKind::Draw && e.status != EventStatus::Cancelled)
            .map(|e| context! { id => e.id.to_string(), title => e.title, start => e.scheduled_start })
            .collect::<Vec<_>>(),
        Err(e) => return page.error(e.into()),
    };
    let is_notary = page.is(&[Role::Notary]);
    page.render(
        "staff_draws.html",
        context! { draws, events, can_create, is_notary },
    )
}

async fn staff_draw(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if caller.is_none() {
        return Redirect::to(&format!("/login?next=/staff/draws/{id}")).into_response();
    }
    let page = Page::new(state, caller, &query, &headers, jar);
    if !page.is(STAFF) {
        return page.error(ApiError::Forbidden("draw".into()));
    }
    let draw = match load(&page.state, &id).await {
        Ok(d) => d,
        Err(e) => return page.error(e),
    };
    let view = match draw_ctx(&page.state, &draw, true).await {
        Ok(v) => v,
        Err(e) => return page.error(e),
    };
    let audit = match page.state.store.draw_audit(&draw.id).await {
        Ok(entries) => entries
            .iter()
            .map(|e| {
                context! { at => format_ms(e.at), actor => e.actor, action => e.action, detail => e.detail }
            })
            .collect::<Vec<_>>(),
        Err(e) => return page.error(e.into()),
    };
    let ctx = context! { draw => minijinja::Value::from_serialize(&view), audit };
    page.render("staff_draw.html", ctx)
}

async fn notary_page(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    if caller.is_none() {
        return Redirect::to(&format!("/login?next=/staff/draws/{id}/notary")).into_response();
    }
    let page = Page::new(state, caller, &query, &headers, jar);
    if !page.is(&[Role::Notary, Role::Organiser, Role::Admin]) {
        return page.error(ApiError::Forbidden("draw".into()));
    }
    let is_notary = page.is(&[Role::Notary]);
    let draw = match load(&page.state, &id).await {
        Ok(d) => d,
        Err(e) => return page.error(e),
    };
    let view = match draw_ctx(&page.state, &draw, false).await {
        Ok(v) => v,
        Err(e) => return page.error(e),
    };
    let ctx = context! { draw => minijinja::Value::from_serialize(&view), is_notary };
    page.render("staff_draw_notary.html", ctx)
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pages::Pages;
    use crate::pages::i18n::Catalogues;

    /// minijinja renders a missing `tr.key` as nothing: every key a draw template names
    /// must be in the catalogue (which has the same keys in both languages).
    #[test]
    fn every_message_the_draw_templates_use_exists() {
        let catalogues = Catalogues::load().unwrap();
        let messages = catalogues.get(Lang::ZhCn);
        // The draw pages' templates, from the one list the pages are built from.
        let draw_templates = crate::pages::TEMPLATES
            .iter()
            .filter(|(name, _)| name.starts_with("draw") || name.starts_with("staff_draw"));
        for (name, source) in draw_templates {
            for (at, _) in source.match_indices("tr.") {
                let key: String = source[at + 3..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(messages.contains_key(&key), "{name}: no message {key}");
            }
        }
        for key in ["mech_deferred_acceptance", "mech_immediate_acceptance"]
            .into_iter()
            .chain(["multiples_whole_or_skip", "multiples_whole_or_overfill"])
            .map(|k| format!("draw_{k}"))
            .chain(DrawState::ALL.iter().map(|s| format!("draw_state_{s}")))
        {
            assert!(messages.contains_key(&key), "no message {key}");
        }
    }

    #[test]
    fn draw_pages_render_in_both_languages_with_user_text_escaped() {
        let pages = Pages::new().unwrap();
        let draw = serde_json::json!({
            "draw_id": "d-1", "title": "<b>title</b>", "state": "published", "round": 1,
            "draw_time": "2030-01-01T09:00:00Z",
            "kindergartens": [{"code": "A", "name": "<i>kg</i>", "seats": 2}],
            "mechanism_key": "draw_mech_deferred_acceptance",
            "multiples_key": "draw_multiples_whole_or_skip",
            "witnesses": [{"index": 0, "name": "<script>w</script>", "role": "r",
                           "commitment": "ab".repeat(32), "revealed": true}],
            "is_open": true, "is_announced": true, "is_drawn": true, "is_published": true,
            "seats": 2, "applications": 3, "organiser_public_key": "cd".repeat(32),
        });
        let results = serde_json::json!({"applications": 1, "units": 1, "kindergartens": [
            {"code": "A", "name": "<i>kg</i>", "seats": 2, "applicants": 1,
             "applicants_by_class": [{"class": 1, "children": 1}], "admitted": 1, "waitlist": 0}]});
        let ctx = context! {
            draw => minijinja::Value::from_serialize(&draw),
            draws => vec![minijinja::Value::from_serialize(&draw)],
            witness => minijinja::Value::from_serialize(&draw["witnesses"][0]),
            event => context! { id => "e1", title => "<u>event</u>", status => "live", video => true },
            results => minijinja::Value::from_serialize(&results),
            chart => results_chart(&results),
            audit => vec![context! { at => "t", actor => "<a>", action => "x", detail => "<img>" }],
            can_create => true, is_notary => true, csrf_token => "c",
        };
        for lang in [Lang::ZhCn, Lang::En] {
            let draw_pages = crate::pages::TEMPLATES.iter().filter(|(name, _)| {
                (name.starts_with("draw") || name.starts_with("staff_draw"))
                    && !name.starts_with("draw_choice")
                    && *name != "draw_live_panel.html"
            });
            for (name, _) in draw_pages {
                let html = pages.render(name, lang, ctx.clone()).unwrap();
                assert!(
                    !html.contains("<b>title") && !html.contains("<script>w"),
                    "{name}"
                );
                assert!(!html.contains("<img>") && !html.contains("<i>kg"), "{name}");
                assert!(!html.contains(" style="), "{name}: no inline styles (CSP)");
            }
        }
    }
}
