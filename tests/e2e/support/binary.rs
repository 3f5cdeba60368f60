//! Locating and running the `gongkai` binary.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Path of the `gongkai` binary under test.
///
/// `GONGKAI_BIN` wins; otherwise the binary next to this test executable's
/// profile directory (`target/<profile>/deps/e2e-xxxx` ->
/// `target/<profile>/gongkai`). Cargo does not build other packages' binaries
/// for an integration test, so `./test.sh` builds it first.
pub fn gongkai_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("GONGKAI_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "GONGKAI_BIN={} does not exist",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("path of the test executable");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test executable lives in target/<profile>/deps");
    let path = profile_dir.join(format!("gongkai{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.is_file(),
        "the gongkai binary is missing at {}.\nBuild it first with the same target dir: \
         `cargo build -p web --bin gongkai` (./test.sh does this), or set GONGKAI_BIN.",
        path.display()
    );
    path
}

/// A `Command` for the binary under test, with a clean logging environment.
pub fn gongkai_command() -> Command {
    let mut command = Command::new(gongkai_bin());
    // Make the environment of the developer's shell irrelevant.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GONGKAI_") && key != "GONGKAI_BIN" {
            command.env_remove(&key);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Output of a finished command.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to completion, feeding `stdin`, killing it after `timeout`.
/// Panics with its output when it times out.
pub fn run_with_timeout(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Finished {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|e| panic!("failed to start {command:?}: {e}"));
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("piped stdin");
        // The child may exit before reading; a broken pipe is its business.
        let _ = pipe.write_all(input.as_bytes());
    }
    let stdout = drain(child.stdout.take().expect("piped stdout"));
    let stderr = drain(child.stderr.take().expect("piped stderr"));
    let status = wait_timeout(&mut child, timeout);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    match status {
        Some(status) => Finished {
            status,
            stdout,
            stderr,
        },
        None => panic!(
            "{command:?} did not finish within {timeout:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}"
        ),
    }
}

/// Waits for `child` up to `timeout`; on timeout kills it and returns `None`.
pub fn wait_timeout(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Sends SIGTERM to `child` (no-op when it has already exited).
pub fn terminate(child: &Child) {
    signal(child, rustix::process::Signal::TERM);
}

/// Sends `signal` to `child` (no-op when it has already exited).
pub fn signal(child: &Child, signal: rustix::process::Signal) {
    if let Some(pid) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(pid, signal);
    }
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    })
}
