//! [`Browser`]: Debian's Chromium, headless, driven through chromedriver
//! (WebDriver, crate `fantoccini`).
//!
//! Each browser gets its own chromedriver on a port the OS picks and its own
//! fresh profile directory, so tests can run browsers in parallel. Chromium's
//! remote-debugging port is chosen by chromedriver per session.

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder};
use futures::FutureExt;
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Map, json};
use tempfile::TempDir;

use super::binary::{terminate, wait_timeout};
use super::test_log;

/// Flags every browser gets: headless, root-safe, and quiet on a closed network.
const BASE_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// Extra flags for WebRTC tests: fake camera and microphone, no permission
/// prompt, ICE over loopback.
const MEDIA_FLAGS: &[&str] = &[
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--allow-loopback-in-peer-connection",
];

/// How a browser is started.
#[derive(Debug, Clone, Copy, Default)]
pub struct BrowserOptions {
    /// Add the fake-media and loopback-ICE flags.
    pub media: bool,
}

/// A headless Chromium session. Use [`Browser::run`], which saves a screenshot
/// (`tests/screenshots/<name>.png`) and the page source when the test fails.
pub struct Browser {
    pub client: Client,
    _driver: Driver,
    _profile: TempDir,
}

/// A running chromedriver, stopped on drop (also when a start-up step panics).
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        terminate(&self.0);
        if wait_timeout(&mut self.0, Duration::from_secs(5)).is_none() && test_log() {
            eprintln!("chromedriver did not exit on SIGTERM; killed it");
        }
    }
}

impl Browser {
    /// Runs `test` with a fresh browser named `name` (used for the screenshot).
    /// A failure (an `Err` or a panic) saves a screenshot and the page HTML,
    /// then fails the test.
    pub async fn run<F, Fut>(name: &str, test: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        Self::run_with(name, BrowserOptions::default(), test).await;
    }

    pub async fn run_with<F, Fut>(name: &str, options: BrowserOptions, test: F)
    where
        F: FnOnce(Client) -> Fut,
        Fut: Future<Output = anyhow::Result<()>>,
    {
        let browser = Browser::start(options).await;
        let outcome = AssertUnwindSafe(test(browser.client.clone()))
            .catch_unwind()
            .await;
        let failed = !matches!(outcome, Ok(Ok(())));
        if failed {
            browser.save_failure_artifacts(name).await;
        }
        browser.close().await;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("browser test {name} failed: {e:#}"),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Starts chromedriver and a Chromium session.
    pub async fn start(options: BrowserOptions) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("gongkai-chromium-")
            .tempdir()
            .expect("temp profile dir");
        let (driver, port) = start_chromedriver();

        let mut args: Vec<String> = BASE_FLAGS.iter().map(|f| (*f).to_owned()).collect();
        if options.media {
            args.extend(MEDIA_FLAGS.iter().map(|f| (*f).to_owned()));
        }
        args.push(format!("--user-data-dir={}", profile.path().display()));
        let mut capabilities = Map::new();
        capabilities.insert("browserName".into(), json!("chrome"));
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium_path(), "args": args }),
        );

        let mut builder = ClientBuilder::new(HttpConnector::new());
        builder.capabilities(capabilities);
        let connected = tokio::time::timeout(
            Duration::from_secs(60),
            builder.connect(&format!("http://127.0.0.1:{port}")),
        )
        .await;
        let client = match connected {
            Ok(Ok(client)) => client,
            other => panic!("could not start a Chromium session through chromedriver: {other:?}"),
        };
        Browser {
            client,
            _driver: driver,
            _profile: profile,
        }
    }

    /// Ends the session (quitting Chromium) and stops chromedriver.
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        // Dropping `Driver` stops chromedriver.
    }

    pub async fn save_failure_artifacts(&self, name: &str) {
        let dir = screenshot_dir();
        if let Err(e) = std::fs::create_dir_all(&dir) {
            eprintln!("cannot create {}: {e}", dir.display());
            return;
        }
        let url = self.client.current_url().await.map(|u| u.to_string());
        eprintln!("browser test {name} failed on page {url:?}");
        match self.client.screenshot().await {
            Ok(png) => {
                let path = dir.join(format!("{name}.png"));
                match std::fs::write(&path, png) {
                    Ok(()) => eprintln!("screenshot saved to {}", path.display()),
                    Err(e) => eprintln!("cannot write {}: {e}", path.display()),
                }
            }
            Err(e) => eprintln!("cannot take a screenshot: {e}"),
        }
        if let Ok(html) = self.client.source().await {
            let path = dir.join(format!("{name}.html"));
            if std::fs::write(&path, html).is_ok() {
                eprintln!("page source saved to {}", path.display());
            }
        }
    }
}

/// `tests/screenshots/` in the source tree.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("screenshots")
}

fn chromium_path() -> String {
    std::env::var("GONGKAI_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_owned())
}

fn chromedriver_path() -> String {
    std::env::var("GONGKAI_TEST_CHROMEDRIVER")
        .unwrap_or_else(|_| "/usr/bin/chromedriver".to_owned())
}

/// Starts chromedriver on a port of the OS's choosing and returns that port.
fn start_chromedriver() -> (Driver, u16) {
    let path = chromedriver_path();
    let mut command = Command::new(&path);
    command
        .arg("--port=0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if test_log() {
            Stdio::inherit()
        } else {
            Stdio::null()
        });
    let mut driver = Driver(command.spawn().unwrap_or_else(|e| {
        panic!(
            "cannot start {path}: {e}\nInstall Debian's browser: \
             `apt-get install chromium chromium-driver` (./test.sh does)."
        )
    }));
    let stdout = driver.0.stdout.take().expect("piped stdout");
    let (port_tx, port_rx) = mpsc::channel();
    std::thread::spawn(move || {
        const MARKER: &str = "started successfully on port ";
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if test_log() {
                eprintln!("[chromedriver] {line}");
            }
            if let Some(rest) = line.split(MARKER).nth(1) {
                let port = rest.trim_end_matches('.').trim().parse::<u16>().ok();
                let _ = port_tx.send(port);
            }
        }
    });
    match port_rx.recv_timeout(Duration::from_secs(30)) {
        Ok(Some(port)) => (driver, port),
        other => panic!("chromedriver did not report its port: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    //! The harness itself, against a page served here (no gongkai needed).

    use fantoccini::Locator;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const PAGE: &str = r#"<!doctype html><html lang="en"><title>harness</title>
<form id="f"><input id="name"><button type="submit">go</button></form>
<p id="out"></p>
<script>document.getElementById('f').addEventListener('submit', e => {
  e.preventDefault();
  document.getElementById('out').textContent = 'hello ' + document.getElementById('name').value;
});</script></html>"#;

    /// Serves `PAGE` for every request on a free port.
    async fn serve_page() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{PAGE}",
                        PAGE.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        format!("http://{addr}/")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn browser_fills_a_form_and_reads_the_result() {
        let url = serve_page().await;
        Browser::run("harness_form", |client| async move {
            client.goto(&url).await?;
            client
                .find(Locator::Css("#name"))
                .await?
                .send_keys("gongkai")
                .await?;
            client
                .find(Locator::Css("button[type=submit]"))
                .await?
                .click()
                .await?;
            let out = client.wait().for_element(Locator::Css("#out")).await?;
            let mut text = out.text().await?;
            for _ in 0..50 {
                if !text.is_empty() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                text = out.text().await?;
            }
            anyhow::ensure!(text == "hello gongkai", "unexpected text {text:?}");
            let png = client.screenshot().await?;
            anyhow::ensure!(png.starts_with(b"\x89PNG"), "screenshot is not a PNG");
            Ok(())
        })
        .await;
    }
}
