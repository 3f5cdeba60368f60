//! End-to-end tests: one test binary that starts the real `gongkai` binary
//! (built beforehand with `cargo build -p web --bin gongkai`; `./test.sh` does)
//! and talks to it over HTTP, the CLI and a real browser.
//!
//! Silent unless `TEST_LOG=1`. Needs PostgreSQL (`GONGKAI_TEST_POSTGRES_URL`,
//! default `postgres://postgres@127.0.0.1:5432/test`) and Debian's `chromium`
//! and `chromium-driver`.

mod support;

mod browser_login;
mod draw_applications;
mod draw_ceremony;
mod draw_cli;
mod draw_pages;
mod draw_review;
mod draw_verifier;
mod event_browser;
mod foundation;
mod hub;
mod limits;
mod media;
mod on_air;
mod on_air_browser;
