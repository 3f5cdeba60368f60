//! Server-rendered pages: minijinja templates and locale catalogues compiled into the
//! binary, a language chosen per request, and the static assets.
//!
//! # Layout
//! - `i18n`: `Lang` (zh-CN default, English), chosen from `?lang=`, a cookie, or
//!   `Accept-Language`; the message catalogues
//! - `assets`: CSS/JS served from memory with ETags

pub mod assets;
pub mod i18n;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use minijinja::{Environment, Value};

pub use i18n::Lang;

/// Every template, compiled in; the one list pages and their tests use.
pub(crate) const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/layout.html")),
    ("home.html", include_str!("../../templates/home.html")),
    ("login.html", include_str!("../../templates/login.html")),
    ("staff.html", include_str!("../../templates/staff.html")),
    (
        "staff_users.html",
        include_str!("../../templates/staff_users.html"),
    ),
    ("error.html", include_str!("../../templates/error.html")),
    ("event.html", include_str!("../../templates/event.html")),
    (
        "broadcast.html",
        include_str!("../../templates/broadcast.html"),
    ),
    (
        "event_form.html",
        include_str!("../../templates/event_form.html"),
    ),
    (
        "staff_events.html",
        include_str!("../../templates/staff_events.html"),
    ),
    (
        "staff_event.html",
        include_str!("../../templates/staff_event.html"),
    ),
    ("verify.html", include_str!("../../templates/verify.html")),
    ("draws.html", include_str!("../../templates/draws.html")),
    ("draw.html", include_str!("../../templates/draw.html")),
    (
        "draw_apply.html",
        include_str!("../../templates/draw_apply.html"),
    ),
    (
        "draw_application.html",
        include_str!("../../templates/draw_application.html"),
    ),
    (
        "draw_witness.html",
        include_str!("../../templates/draw_witness.html"),
    ),
    (
        "draw_lookup.html",
        include_str!("../../templates/draw_lookup.html"),
    ),
    (
        "draw_proof.html",
        include_str!("../../templates/draw_proof.html"),
    ),
    (
        "draw_results.html",
        include_str!("../../templates/draw_results.html"),
    ),
    (
        "staff_draws.html",
        include_str!("../../templates/staff_draws.html"),
    ),
    (
        "staff_draw.html",
        include_str!("../../templates/staff_draw.html"),
    ),
    (
        "staff_draw_notary.html",
        include_str!("../../templates/staff_draw_notary.html"),
    ),
    (
        "draw_choices.html",
        include_str!("../../templates/draw_choices.html"),
    ),
    (
        "draw_choice_row.html",
        include_str!("../../templates/draw_choice_row.html"),
    ),
    (
        "draw_live_panel.html",
        include_str!("../../templates/draw_live_panel.html"),
    ),
];

/// The template environment and message catalogues, built once at start.
pub struct Pages {
    env: Environment<'static>,
    catalogues: i18n::Catalogues,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish_non_exhaustive()
    }
}

impl Pages {
    pub fn new() -> anyhow::Result<Pages> {
        let mut env = Environment::new();
        // HTML auto-escaping for .html templates is minijinja's default; all user text
        // (names, chat, questions) therefore renders as text, never markup.
        for (name, source) in TEMPLATES {
            env.add_template(name, source)?;
        }
        Ok(Pages {
            env,
            catalogues: i18n::Catalogues::load()?,
        })
    }

    /// Renders `template` with `ctx` plus `lang` and `tr` (the catalogue).
    pub fn render(
        &self,
        template: &str,
        lang: Lang,
        ctx: Value,
    ) -> Result<String, minijinja::Error> {
        let tmpl = self.env.get_template(template)?;
        let base = minijinja::context! { lang => lang.tag(), tr => self.catalogues.get(lang) };
        tmpl.render(minijinja::context! { ..ctx, ..base })
    }

    pub fn message(&self, lang: Lang, key: &str) -> String {
        self.catalogues.message(lang, key)
    }

    /// A full HTML response; a template failure becomes a plain 500.
    pub fn respond(&self, status: StatusCode, template: &str, lang: Lang, ctx: Value) -> Response {
        match self.render(template, lang, ctx) {
            Ok(body) => {
                let mut response = (status, Html(body)).into_response();
                response.headers_mut().insert(
                    header::CONTENT_LANGUAGE,
                    HeaderValue::from_static(lang.tag()),
                );
                response
            }
            Err(err) => {
                tracing::error!(error = %err, template, "template rendering failed");
                (StatusCode::INTERNAL_SERVER_ERROR, "internal server error").into_response()
            }
        }
    }

    /// The shared error page.
    pub fn error_page(
        &self,
        status: StatusCode,
        lang: Lang,
        heading_key: &str,
        message_key: &str,
    ) -> Response {
        let ctx = minijinja::context! {
            heading => self.message(lang, heading_key),
            message => self.message(lang, message_key),
        };
        self.respond(status, "error.html", lang, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_renders_in_both_languages() {
        let pages = Pages::new().unwrap();
        for lang in [Lang::ZhCn, Lang::En] {
            let home = pages
                .render(
                    "home.html",
                    lang,
                    minijinja::context! { live => Vec::<Value>::new() },
                )
                .unwrap();
            assert!(home.contains(&format!("lang=\"{}\"", lang.tag())));
            let login = pages
                .render(
                    "login.html",
                    lang,
                    minijinja::context! { login_csrf => "x", error => "<b>bad</b>" },
                )
                .unwrap();
            assert!(
                login.contains("&lt;b&gt;bad") && !login.contains("<b>"),
                "user text is escaped"
            );
            let staff = pages
                .render(
                    "staff.html",
                    lang,
                    minijinja::context! { user => minijinja::context!{ username => "alice", roles => vec!["admin", "notary"] }, csrf_token => "c" },
                )
                .unwrap();
            assert!(staff.contains("data-role=\"notary\""));
        }
    }
}
