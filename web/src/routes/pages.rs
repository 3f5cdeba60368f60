//! HTML pages: home, login/logout, the staff dashboard with personal API tokens.

use axum::Form;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum_extra::extract::CookieJar;
use axum_extra::extract::cookie::{Cookie, SameSite};
use minijinja::context;
use serde::Deserialize;
use subtle::ConstantTimeEq;

use super::page_error;
use super::tokens::{create_for, revoke_for};
use crate::auth::login::{clear_session_cookies, login, set_session_cookies};
use crate::auth::{Authn, Caller, ClientIp, PageCaller, Role, new_secret};
use crate::domain::draw::DrawState;
use crate::domain::event::{Event, EventKind, EventStatus};
use crate::error::ApiError;
use crate::pages::Lang;
use crate::pages::i18n::LANG_COOKIE;
use crate::state::AppState;

/// Binds the login form to the browser that loaded it (login CSRF).
const LOGIN_CSRF_COOKIE: &str = "gongkai_login_csrf";

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login_submit))
        .route("/logout", post(logout))
        .route("/staff", get(staff))
        .route("/staff/tokens", post(token_create))
        .route("/staff/tokens/{id}/revoke", post(token_revoke))
        .route("/events/{id}", get(event_page))
        .route("/staff/events", get(staff_events))
        .route("/staff/events/{id}", get(staff_event))
        .route("/verify", get(verify_page))
}

#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    lang: Option<String>,
    next: Option<String>,
    /// `/verify?draw=ID`: the draw whose published transcript the page fetches.
    draw: Option<String>,
}

/// The page language, remembering an explicit `?lang=` choice in a cookie.
pub(super) fn page_lang(
    query: &PageQuery,
    headers: &HeaderMap,
    jar: CookieJar,
) -> (Lang, CookieJar) {
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
    (lang, jar)
}

fn user_ctx(caller: &Option<Caller>) -> (minijinja::Value, Option<String>) {
    match caller {
        Some(c) => (
            minijinja::Value::from_serialize(&c.user),
            c.csrf_token().map(str::to_owned),
        ),
        None => (minijinja::Value::from(()), None),
    }
}

async fn home(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let (lang, jar) = page_lang(&query, &headers, jar);
    let (user, csrf_token) = user_ctx(&caller);
    let lists = async {
        let live = state
            .store
            .list_events(Some(EventStatus::Live), false, 50)
            .await?;
        let upcoming = state
            .store
            .list_events(Some(EventStatus::Scheduled), false, 50)
            .await?;
        let past = state
            .store
            .list_events(Some(EventStatus::Ended), false, 50)
            .await?;
        Ok::<_, crate::store::StoreError>((live, upcoming, past))
    };
    let (live, upcoming, past) = match lists.await {
        Ok(l) => l,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let cards = |events: Vec<Event>| events.iter().map(event_ctx).collect::<Vec<_>>();
    let ctx = context! { user, csrf_token, live => cards(live), upcoming => cards(upcoming), past => cards(past) };
    (
        jar,
        state.pages.respond(StatusCode::OK, "home.html", lang, ctx),
    )
        .into_response()
}

/// A time as the district reads it: Beijing time (UTC+8 all year, no daylight saving),
/// whatever the server's or the browser's time zone; `time_only` leaves out the date.
pub(crate) fn beijing_time(ms: i64, lang: Lang, time_only: bool) -> String {
    let (Some(offset), Some(t)) = (
        chrono::FixedOffset::east_opt(8 * 3600),
        chrono::DateTime::from_timestamp_millis(ms),
    ) else {
        return String::new();
    };
    let t = t.with_timezone(&offset);
    let format = match (lang, time_only) {
        (_, true) => "%H:%M",
        (Lang::ZhCn, false) => "%Y年%-m月%-d日 %H:%M",
        (Lang::En, false) => "%-d %b %Y, %H:%M",
    };
    t.format(format).to_string()
}

/// The scheduled start and end in Beijing time; the end without its date when it is the
/// same day.
fn event_times(event: &Event, lang: Lang) -> (String, String) {
    let day = |ms: i64| {
        beijing_time(ms, Lang::ZhCn, false)
            .split(' ')
            .next()
            .map(str::to_owned)
    };
    let same_day = day(event.scheduled_start_ms) == day(event.scheduled_end_ms);
    (
        beijing_time(event.scheduled_start_ms, lang, false),
        beijing_time(event.scheduled_end_ms, lang, same_day),
    )
}

/// The draw a `draw` event carries live (its latest public one), for the play-out beside
/// the video and the record's links to the results.
async fn event_draw(state: &AppState, event: &Event) -> Result<Option<minijinja::Value>, ApiError> {
    if event.kind != EventKind::Draw {
        return Ok(None);
    }
    let draws = state.store.list_draws().await?;
    let draw = draws
        .into_iter()
        .filter(|d| d.state != DrawState::Draft && d.event_id.as_deref() == Some(event.id.as_str()))
        .max_by_key(|d| d.created_at);
    Ok(draw.map(|d| {
        context! {
            draw_id => d.id,
            title => d.title,
            state => d.state.as_str(),
            is_published => d.state.is_published(),
        }
    }))
}

/// The event as templates see it: its public JSON plus millisecond times for `<time>`.
fn event_ctx(event: &Event) -> minijinja::Value {
    let base = minijinja::Value::from_serialize(event);
    minijinja::context! { start_ms => event.scheduled_start_ms, end_ms => event.scheduled_end_ms, ..base }
}

async fn event_page(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let (lang, jar) = page_lang(&query, &headers, jar);
    let event = match super::events::load(&state, &id).await {
        Ok(e) if e.status != EventStatus::Cancelled => e,
        Ok(_) | Err(ApiError::NotFound(_)) => {
            return page_error(&state, lang, StatusCode::NOT_FOUND);
        }
        Err(e) => return e.into_response(),
    };
    let (user, csrf_token) = user_ctx(&caller);
    let extra = match record_ctx(&state, &event).await {
        Ok(extra) => extra,
        Err(e) => return e.into_response(),
    };
    let draw = match event_draw(&state, &event).await {
        Ok(draw) => draw,
        Err(e) => return e.into_response(),
    };
    let (start_text, end_text) = event_times(&event, lang);
    let ctx = context! {
        user, csrf_token,
        event => event_ctx(&event),
        client_ping_secs => state.settings.hub.client_ping_secs,
        start_ms => event.scheduled_start_ms,
        end_ms => event.scheduled_end_ms,
        start_text, end_text, draw,
        ..extra
    };
    (
        jar,
        state.pages.respond(StatusCode::OK, "event.html", lang, ctx),
    )
        .into_response()
}

async fn staff_events(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let (lang, jar) = page_lang(&query, &headers, jar);
    let Some(caller) = caller else {
        return Redirect::to("/login?next=/staff/events").into_response();
    };
    let events = match state.store.list_events(None, true, 500).await {
        Ok(e) => e,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let can_create = caller.user.has(Role::Admin) || caller.user.has(Role::Organiser);
    let (user, csrf_token) = user_ctx(&Some(caller));
    let events: Vec<_> = events.iter().map(event_ctx).collect();
    let ctx = context! { user, csrf_token, events, can_create, event => () };
    (
        jar,
        state
            .pages
            .respond(StatusCode::OK, "staff_events.html", lang, ctx),
    )
        .into_response()
}

async fn staff_event(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let (lang, jar) = page_lang(&query, &headers, jar);
    let Some(caller) = caller else {
        return Redirect::to(&format!("/login?next=/staff/events/{id}")).into_response();
    };
    let event = match super::events::load(&state, &id).await {
        Ok(e) => e,
        Err(ApiError::NotFound(_)) => return page_error(&state, lang, StatusCode::NOT_FOUND),
        Err(e) => return e.into_response(),
    };
    if super::events::may_run(&caller, &event).is_err() {
        return page_error(&state, lang, StatusCode::FORBIDDEN);
    }
    let can_manage = super::events::may_manage(&caller, event.kind).is_ok();
    let reopen_deadline_ms = if can_manage {
        super::events::reopen_deadline_ms(&state, &event)
    } else {
        None
    };
    let reopen_until = reopen_deadline_ms.map(|ms| beijing_time(ms, lang, false));
    let (start_text, end_text) = event_times(&event, lang);
    let (user, csrf_token) = user_ctx(&Some(caller));
    let ctx = context! {
        user, csrf_token, event => event_ctx(&event), can_manage,
        reopen_deadline_ms, reopen_until, start_text, end_text,
        reopen_minutes => state.settings.events.reopen_window_secs / 60,
    };
    (
        jar,
        state
            .pages
            .respond(StatusCode::OK, "staff_event.html", lang, ctx),
    )
        .into_response()
}

/// The in-browser transcript verifier: the page only carries the form; the checks run in
/// the browser (`/assets/verify-page.js`), on a file the visitor picks or, with
/// `?draw=ID`, on the draw's published transcript.
async fn verify_page(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let (lang, jar) = page_lang(&query, &headers, jar);
    let (user, csrf_token) = user_ctx(&caller);
    // Only a well-formed draw id reaches the page's fetch URL; anything else is ignored.
    let draw_id = query
        .draw
        .as_deref()
        .and_then(|id| lottery::DrawId::parse(id).ok())
        .map(|id| id.as_str().to_owned());
    let ctx = context! { user, csrf_token, draw_id };
    (
        jar,
        state
            .pages
            .respond(StatusCode::OK, "verify.html", lang, ctx),
    )
        .into_response()
}

/// Where to go after logging in: a path on this site, else the dashboard. Browsers drop
/// tabs and newlines from URLs and read `\\` as `/`, so `/\t/evil.example` would become
/// `//evil.example` (another site): only plain URL characters are accepted, and never two
/// slashes at the start.
fn safe_next(next: Option<&str>) -> String {
    let plain = |n: &str| {
        n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/?%#".contains(&b))
    };
    match next {
        Some(n) if n.starts_with('/') && !n.starts_with("//") && plain(n) => n.to_owned(),
        _ => "/staff".to_owned(),
    }
}

fn render_login(
    state: &AppState,
    lang: Lang,
    jar: CookieJar,
    status: StatusCode,
    error: Option<String>,
    username: &str,
    next: &str,
) -> Response {
    let login_csrf = new_secret();
    let jar = jar.add(
        Cookie::build((LOGIN_CSRF_COOKIE, login_csrf.clone()))
            .path("/login")
            .http_only(true)
            .same_site(SameSite::Strict)
            .secure(state.settings.https()),
    );
    let ctx = context! { login_csrf, error, username, next };
    (jar, state.pages.respond(status, "login.html", lang, ctx)).into_response()
}

async fn login_page(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let next = safe_next(query.next.as_deref());
    if caller.is_some() {
        return Redirect::to(&next).into_response();
    }
    let (lang, jar) = page_lang(&query, &headers, jar);
    render_login(&state, lang, jar, StatusCode::OK, None, "", &next)
}

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
    csrf_token: String,
    #[serde(default)]
    next: Option<String>,
}

async fn login_submit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    jar: CookieJar,
    Form(form): Form<LoginForm>,
) -> Response {
    let lang = Lang::negotiate(None, &headers);
    let next = safe_next(form.next.as_deref());
    let expected = jar
        .get(LOGIN_CSRF_COOKIE)
        .map(|c| c.value().to_owned())
        .unwrap_or_default();
    if expected.is_empty() || !bool::from(expected.as_bytes().ct_eq(form.csrf_token.as_bytes())) {
        let msg = state.pages.message(lang, "login_expired");
        return render_login(
            &state,
            lang,
            jar,
            StatusCode::FORBIDDEN,
            Some(msg),
            &form.username,
            &next,
        );
    }
    match login(&state, ip, &form.username, &form.password).await {
        Ok(session) => {
            let jar = set_session_cookies(&state, jar, &session)
                .remove(Cookie::build(LOGIN_CSRF_COOKIE).path("/login"));
            (jar, Redirect::to(&next)).into_response()
        }
        Err(err) => {
            let (status, key) = match &err {
                ApiError::TooManyRequests { .. } => {
                    (StatusCode::TOO_MANY_REQUESTS, "login_rate_limited")
                }
                ApiError::InvalidCredentials => (StatusCode::UNAUTHORIZED, "login_failed"),
                _ => return err.into_response(),
            };
            let msg = state.pages.message(lang, key);
            let mut response =
                render_login(&state, lang, jar, status, Some(msg), &form.username, &next);
            if let ApiError::TooManyRequests { retry_after } = err
                && let Ok(v) = retry_after.as_secs().max(1).to_string().parse()
            {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, v);
            }
            response
        }
    }
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf_token: String,
}

async fn logout(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    jar: CookieJar,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(caller) = caller {
        if caller.check_form_csrf(&form.csrf_token).is_err() {
            return ApiError::Csrf.into_response();
        }
        if let Authn::Session { token_hash, .. } = &caller.authn
            && let Err(e) = state.store.delete_session(token_hash).await
        {
            return ApiError::from(e).into_response();
        }
    }
    (clear_session_cookies(jar), Redirect::to("/")).into_response()
}

async fn staff(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Query(query): Query<PageQuery>,
    headers: HeaderMap,
    jar: CookieJar,
) -> Response {
    let (lang, jar) = page_lang(&query, &headers, jar);
    let Some(caller) = caller else {
        return Redirect::to("/login?next=/staff").into_response();
    };
    (jar, render_staff(&state, lang, &caller, None).await).into_response()
}

async fn render_staff(
    state: &AppState,
    lang: Lang,
    caller: &Caller,
    new_token: Option<String>,
) -> Response {
    let tokens = match state.store.list_tokens(caller.user.id).await {
        Ok(t) => t,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let tokens: Vec<minijinja::Value> = tokens
        .iter()
        .map(|t| {
            context! {
                id => t.id,
                name => t.name,
                created => format_ms(t.created_at),
                last_used => t.last_used_at.map(format_ms),
            }
        })
        .collect();
    let ctx = context! {
        user => minijinja::Value::from_serialize(&caller.user),
        csrf_token => caller.csrf_token(),
        tokens,
        new_token,
    };
    state.pages.respond(StatusCode::OK, "staff.html", lang, ctx)
}

fn format_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

#[derive(Deserialize)]
struct TokenForm {
    csrf_token: String,
    name: String,
}

async fn token_create(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let lang = Lang::negotiate(None, &headers);
    let Some(caller) = caller else {
        return Redirect::to("/login?next=/staff").into_response();
    };
    if let Err(e) = caller.check_form_csrf(&form.csrf_token) {
        return e.into_response();
    }
    match create_for(&state, &caller, &form.name).await {
        Ok((_, _, token)) => render_staff(&state, lang, &caller, Some(token)).await,
        Err(e) => e.into_response(),
    }
}

async fn token_revoke(
    State(state): State<AppState>,
    PageCaller(caller): PageCaller,
    Path(id): Path<i64>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let Some(caller) = caller else {
        return Redirect::to("/login?next=/staff").into_response();
    };
    if let Err(e) = caller.check_form_csrf(&form.csrf_token) {
        return e.into_response();
    }
    match revoke_for(&state, &caller, id).await {
        Ok(()) => Redirect::to("/staff#tokens").into_response(),
        Err(e) => e.into_response(),
    }
}

pub async fn not_found(State(state): State<AppState>, headers: HeaderMap) -> Response {
    page_error(
        &state,
        Lang::negotiate(None, &headers),
        StatusCode::NOT_FOUND,
    )
}

/// The live counters and, for ended events, the text record and viewer chart.
async fn record_ctx(state: &AppState, event: &Event) -> Result<minijinja::Value, ApiError> {
    let record = state.store.event_record(&event.id).await?;
    let samples = state.store.viewer_samples(&event.id).await?;
    let likes = record.likes;
    let current = samples.last().map(|s| s.current).unwrap_or(0);
    if event.status != EventStatus::Ended {
        return Ok(context! { likes, viewers_current => current });
    }
    let chart = viewer_chart(&samples);
    // Finished segments only: a file still being written has no duration yet.
    let recordings: Vec<minijinja::Value> = super::media::recording_list(state, event)
        .await?
        .into_iter()
        .filter(|r| r["recording"] == false)
        .map(|r| {
            let seconds = r["duration_ms"].as_i64().unwrap_or(0) / 1000;
            let duration = format!("{}:{:02}", seconds / 60, seconds % 60);
            let base = minijinja::Value::from_serialize(&r);
            context! { duration, ..base }
        })
        .collect();
    Ok(context! {
        likes,
        viewers_current => 0,
        record => minijinja::Value::from_serialize(&record),
        chart,
        recordings,
    })
}

/// An SVG polyline of concurrent viewers per minute, scaled to the peak.
fn viewer_chart(samples: &[crate::store::ViewerSample]) -> Option<minijinja::Value> {
    const WIDTH: i64 = 600;
    const HEIGHT: i64 = 160;
    let first = samples.first()?;
    let peak = samples
        .iter()
        .map(|s| s.peak.max(s.current))
        .max()
        .unwrap_or(0);
    let cumulative = samples.iter().map(|s| s.cumulative).max().unwrap_or(0);
    let top = peak.max(1);
    let span = samples
        .last()
        .map(|s| s.minute_ms - first.minute_ms)
        .unwrap_or(0)
        .max(1);
    let points: Vec<String> = if samples.len() == 1 {
        let y = HEIGHT - first.current * HEIGHT / top;
        vec![format!("0,{y}"), format!("{WIDTH},{y}")]
    } else {
        samples
            .iter()
            .map(|s| {
                let x = (s.minute_ms - first.minute_ms) * WIDTH / span;
                let y = HEIGHT - s.current * HEIGHT / top;
                format!("{x},{y}")
            })
            .collect()
    };
    Some(context! {
        width => WIDTH,
        height => HEIGHT,
        points => points.join(" "),
        peak,
        cumulative,
        minutes => samples.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::safe_next;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(
            safe_next(Some("/events/abc?lang=en")),
            "/events/abc?lang=en"
        );
        assert_eq!(
            safe_next(Some("/staff/events/x/broadcast")),
            "/staff/events/x/broadcast"
        );
        for hostile in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/\r/x",
            " /x",
            "https://evil.example",
            "/事件",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/staff", "{hostile:?}");
        }
        assert_eq!(safe_next(None), "/staff");
    }
}
