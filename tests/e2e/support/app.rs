//! [`TestApp`]: the real server on a free port with a fresh database.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::binary::{Finished, gongkai_command, run_with_timeout, signal, terminate, wait_timeout};
use super::postgres::TestDatabase;
use super::test_log;

/// How long the server may take from exec to "listening" (debug build,
/// migrations on PostgreSQL, a busy 2-core machine).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(90);
/// How long a CLI command (argon2 hashing in a debug build) may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to exit after SIGTERM before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// Which database the server under test runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file in the test's data directory.
    #[default]
    Sqlite,
    /// A fresh database on the server at `GONGKAI_TEST_POSTGRES_URL`.
    Postgres,
}

/// How to start the server; `AppOptions::default()` is SQLite with no config file.
#[derive(Debug, Clone, Default)]
pub struct AppOptions {
    pub backend: Backend,
    /// Contents of a `gongkai.toml` passed with `--config`.
    pub config: Option<String>,
    /// Extra environment variables for the server and its CLI commands.
    pub env: Vec<(String, String)>,
    /// Extra `gongkai serve` flags.
    pub args: Vec<String>,
    /// Use this database (e.g. a [`TestDatabase`] shared by several nodes)
    /// instead of a fresh one; `backend` is then ignored.
    pub database_url: Option<String>,
}

impl AppOptions {
    pub fn postgres() -> Self {
        Self {
            backend: Backend::Postgres,
            ..Self::default()
        }
    }

    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn database_url(mut self, url: &str) -> Self {
        self.database_url = Some(url.to_owned());
        self
    }
}

/// A running `gongkai serve`. Dropping it stops the process (SIGTERM, then
/// SIGKILL) and removes its database and data directory. Its stderr is
/// printed when the test fails or `TEST_LOG=1`.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub base_url: String,
    /// A client with a cookie store, not following redirects automatically.
    pub client: reqwest::Client,
    pub data_dir: PathBuf,
    pub database_url: String,
    process: Option<Child>,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr_path: PathBuf,
    config_path: Option<PathBuf>,
    env: Vec<(String, String)>,
    launch: Launch,
    // Dropped after the process is gone, in this order.
    _database: Option<TestDatabase>,
    _dir: TempDir,
}

impl TestApp {
    /// The server on SQLite with default settings.
    pub async fn spawn() -> Self {
        Self::spawn_with(AppOptions::default()).await
    }

    pub async fn spawn_with(options: AppOptions) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gongkai-e2e-")
            .tempdir()
            .expect("temp dir");
        let data_dir = dir.path().join("data");
        std::fs::create_dir_all(&data_dir).expect("create data dir");
        let (database, database_url) = match (&options.database_url, options.backend) {
            (Some(url), _) => (None, url.clone()),
            (None, Backend::Sqlite) => (
                None,
                format!("sqlite://{}", data_dir.join("gongkai.db").display()),
            ),
            (None, Backend::Postgres) => {
                let database = TestDatabase::create().await;
                let url = database.url.clone();
                (Some(database), url)
            }
        };

        let config_path = options.config.as_ref().map(|config| {
            let path = dir.path().join("gongkai.toml");
            std::fs::write(&path, config).expect("write gongkai.toml");
            path
        });
        let launch = Launch {
            dir: dir.path().to_path_buf(),
            data_dir: data_dir.clone(),
            database_url: database_url.clone(),
            config_path: config_path.clone(),
            args: options.args.clone(),
            env: options.env.clone(),
            stderr_path: dir.path().join("server.stderr.log"),
        };
        let (child, base_url, stdout_lines) = launch.start(false).await;

        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client");

        TestApp {
            base_url,
            client,
            data_dir,
            database_url,
            process: Some(child),
            stdout: stdout_lines,
            stderr_path: launch.stderr_path.clone(),
            config_path,
            env: options.env,
            launch,
            _database: database,
            _dir: dir,
        }
    }

    /// `base_url` + `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base_url, path)
    }

    /// A client without cookies (for bearer-token and anonymous requests).
    pub fn anonymous_client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .build()
            .expect("reqwest client")
    }

    /// Runs `gongkai admin [--config ..] --data-dir .. --database-url .. <args>`
    /// against this server's database, with `stdin` as its standard input.
    /// (The settings flags go before the subcommand, where `gongkai admin`
    /// always accepts them.)
    pub fn admin(&self, args: &[&str], stdin: Option<&str>) -> Finished {
        let mut command = gongkai_command();
        command
            .current_dir(self.data_dir.parent().unwrap_or(&self.data_dir))
            .arg("admin");
        if let Some(path) = &self.config_path {
            command.arg("--config").arg(path);
        }
        command
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--database-url")
            .arg(&self.database_url)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        run_with_timeout(command, stdin, CLI_TIMEOUT)
    }

    /// Creates a staff user through the CLI (password on stdin).
    pub fn create_user(&self, username: &str, password: &str, roles: &[&str]) {
        let mut args = vec!["create-user", "--username", username];
        for role in roles {
            args.extend(["--role", role]);
        }
        let out = self.admin(&args, Some(&format!("{password}\n")));
        assert!(
            out.status.success(),
            "`gongkai admin create-user` failed ({}):\n{}",
            out.status,
            out.stderr
        );
    }

    /// Sets a user's password through the CLI (password on stdin).
    pub fn reset_password(&self, username: &str, password: &str) {
        let out = self.admin(
            &["reset-password", "--username", username],
            Some(&format!("{password}\n")),
        );
        assert!(
            out.status.success(),
            "`gongkai admin reset-password` failed ({}):\n{}",
            out.status,
            out.stderr
        );
    }

    /// Creates a personal API token through the CLI and returns it.
    pub fn create_token(&self, username: &str, name: &str) -> String {
        let out = self.admin(
            &["create-token", "--username", username, "--name", name],
            None,
        );
        assert!(
            out.status.success(),
            "`gongkai admin create-token` failed ({}):\n{}",
            out.status,
            out.stderr
        );
        let lines: Vec<&str> = out
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .collect();
        assert_eq!(
            lines.len(),
            1,
            "create-token must print only the token on stdout, got {:?}",
            out.stdout
        );
        lines[0].trim().to_owned()
    }

    /// `POST /api/v1/session` with this app's cookie client.
    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.client
            .post(self.url("/api/v1/session"))
            .json(&json!({ "username": username, "password": password }))
            .send()
            .await
            .expect("POST /api/v1/session")
    }

    /// Logs in with the cookie client, asserting success; returns the CSRF token.
    pub async fn login_ok(&self, username: &str, password: &str) -> String {
        let response = self.login(username, password).await;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "login as {username} failed: {body}");
        body["csrf_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| panic!("login response has no csrf_token: {body}"))
            .to_owned()
    }

    /// Sends SIGTERM and waits for the process to exit; `None` if it had to
    /// be killed because it did not exit within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let mut child = self.process.take()?;
        terminate(&child);
        wait_timeout(&mut child, timeout)
    }

    /// The lines the server wrote to stdout so far.
    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Everything the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn stderr_path(&self) -> &Path {
        &self.stderr_path
    }

    /// Freezes the server (SIGSTOP): its sockets stay open but nothing answers, as with
    /// a connection a network dropped without a word.
    pub fn pause(&self) {
        if let Some(child) = &self.process {
            signal(child, rustix::process::Signal::STOP);
        }
    }

    /// Lets a paused server run on (SIGCONT).
    pub fn resume(&self) {
        if let Some(child) = &self.process {
            signal(child, rustix::process::Signal::CONT);
        }
    }
}

impl TestApp {
    /// SIGKILLs the server (no shutdown, nothing flushed) and starts it again on the same
    /// data directory and database, as a crash and a supervisor restart would.
    pub async fn kill_and_restart(&mut self) {
        if let Some(mut child) = self.process.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let (child, base_url, stdout) = self.launch.start(true).await;
        self.process = Some(child);
        self.base_url = base_url;
        self.stdout = stdout;
    }
}

/// Everything needed to start (and restart) the server process.
#[derive(Debug, Clone)]
struct Launch {
    dir: PathBuf,
    data_dir: PathBuf,
    database_url: String,
    config_path: Option<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    stderr_path: PathBuf,
}

impl Launch {
    /// Starts `gongkai serve` and waits for its ready line; `append`: keep the stderr log.
    async fn start(&self, append: bool) -> (Child, String, Arc<Mutex<Vec<String>>>) {
        let mut command = gongkai_command();
        command.current_dir(&self.dir).arg("serve");
        if let Some(path) = &self.config_path {
            command.arg("--config").arg(path);
        }
        command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--database-url")
            .arg(&self.database_url)
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (k, v)));

        let stderr_path = self.stderr_path.clone();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(&stderr_path)
            .expect("create stderr log");
        command.stdout(Stdio::piped()).stderr(Stdio::from(stderr));
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));

        let (lines_tx, lines_rx) = mpsc::channel::<String>();
        let stdout_lines = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        // Keeps draining stdout for the life of the process so it never blocks.
        std::thread::spawn({
            let stdout_lines = Arc::clone(&stdout_lines);
            move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    if test_log() {
                        eprintln!("[gongkai stdout] {line}");
                    }
                    if let Ok(mut lines) = stdout_lines.lock() {
                        lines.push(line.clone());
                    }
                    let _ = lines_tx.send(line);
                }
            }
        });
        let wait = tokio::task::spawn_blocking(move || wait_for_listening_line(&lines_rx));
        let base_url = match wait.await.expect("listening-line waiter") {
            Ok(url) => url,
            Err(why) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "gongkai serve did not become ready: {why} (process: {status:?})\n\
                     --- server stderr ---\n{}",
                    std::fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
        };
        (child, base_url, stdout_lines)
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(mut child) = self.process.take() {
            terminate(&child);
            if wait_timeout(&mut child, SHUTDOWN_TIMEOUT).is_none() {
                eprintln!("gongkai did not exit within {SHUTDOWN_TIMEOUT:?} of SIGTERM; killed it");
            }
        }
        if std::thread::panicking() || test_log() {
            eprintln!(
                "--- gongkai stderr ({}) ---\n{}--- end of gongkai stderr ---",
                self.base_url,
                self.stderr()
            );
        }
    }
}

fn wait_for_listening_line(lines: &mpsc::Receiver<String>) -> Result<String, String> {
    const PREFIX: &str = "gongkai listening on ";
    let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.trim().strip_prefix(PREFIX) {
                    return Ok(url.trim_end_matches('/').to_owned());
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "no `{PREFIX}http://...` line on stdout within {STARTUP_TIMEOUT:?}"
                ));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(format!("stdout closed before a `{PREFIX}...` line"));
            }
        }
    }
}
