//! A real Qdrant server for one test: `../shared/qdrant/start.sh` (relative to the repository)
//! starts it on free ports of 127.0.0.1 with its storage in a temporary folder; it is stopped by
//! its pid when the test ends. These tests must run wherever the project's tests run, so a
//! missing server is a failure that says where the server should be, never a skip.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct TestServer {
    /// Storage, pid and ports; kept across a restart.
    dir: tempfile::TempDir,
    pub url: String,
    api_key: Option<String>,
}

fn start_script() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/qdrant/start.sh");
    assert!(
        script.is_file(),
        "the Qdrant tests need the test server's start script at {} (a Qdrant build and \
         start.sh, see its README); it is missing",
        script.display()
    );
    script
}

impl TestServer {
    pub fn start() -> TestServer {
        Self::start_with_key(None)
    }

    /// A server that requires `api_key` on every call but the health check.
    pub fn start_with_key(api_key: Option<&str>) -> TestServer {
        let mut s = TestServer {
            dir: tempfile::tempdir().unwrap(),
            url: String::new(),
            api_key: api_key.map(str::to_string),
        };
        s.launch();
        s
    }

    fn launch(&mut self) {
        let mut cmd = Command::new(start_script());
        // The server leaves a marker file in its working folder: not in the repository.
        cmd.arg(self.dir.path()).current_dir(self.dir.path());
        if let Some(k) = &self.api_key {
            cmd.env("QDRANT__SERVICE__API_KEY", k);
        }
        let out = cmd.output().expect("running the Qdrant start script");
        assert!(
            out.status.success(),
            "the Qdrant test server did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.url = String::from_utf8(out.stdout).unwrap().trim().to_string();
    }

    fn pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Stops the server as an operator would (SIGTERM; SIGKILL if it is still there after a few
    /// seconds: a graceful shutdown waits for open connections, which a test may hold).
    pub fn kill(&self) {
        self.signal_and_wait(libc::SIGTERM, Duration::from_secs(5));
        self.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    }

    /// Kills the server outright (SIGKILL), as a crash would.
    pub fn crash(&self) {
        self.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
    }

    fn signal_and_wait(&self, signal: i32, patience: Duration) {
        let Some(pid) = self.pid() else { return };
        // SAFETY: signalling a pid we started; no memory is involved.
        unsafe { libc::kill(pid, signal) };
        let t0 = Instant::now();
        while alive(pid) && t0.elapsed() < patience {
            std::thread::sleep(Duration::from_millis(50));
        }
        if !alive(pid) {
            let _ = std::fs::remove_file(self.dir.path().join("pid"));
        }
    }

    /// Starts it again on the same storage (new ports, so a new URL).
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    pub fn connect(&self) -> pagesight::qdrant::Server {
        pagesight::qdrant::Server::connect(&self.url, self.api_key.as_deref(), quick_retries())
            .expect("connecting to the test server")
    }
}

/// Whether `pid` still runs (an exited process nobody reaped counts as gone).
fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name, which is in parentheses.
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Retries short enough that a test of a dead server ends in a second or two.
pub fn quick_retries() -> pagesight::qdrant::RetryPolicy {
    pagesight::qdrant::RetryPolicy {
        attempts: 3,
        first_backoff: Duration::from_millis(50),
        max_backoff: Duration::from_millis(200),
    }
}
