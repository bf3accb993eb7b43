//! `--model <hub id>` against a mock Hugging Face hub (issue 3): a local HTTP server answers what
//! hf-hub's sync client asks (`GET /<repo>/resolve/main/<file>` with `Range`, reading `etag`,
//! `x-repo-commit` and `Content-Range`), serving the tiny fixture model. `pagesight embed` runs
//! as a child process with `HF_ENDPOINT` at the server and `HF_HOME` in a temp dir, so this
//! process's environment is never changed.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Files per repo id.
type Repos = HashMap<String, HashMap<String, Vec<u8>>>;

/// A commit id of the right shape for every repo the mock serves.
const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

struct MockHub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    /// Request paths, in order.
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl MockHub {
    fn serve(repos: Repos) -> MockHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (stop2, requests2) = (stop.clone(), requests.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    // A broken connection only fails the request it carried.
                    let _ = answer(conn, &repos, &requests2);
                }
            }
        });
        MockHub {
            addr,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for MockHub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wakes the accept loop
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP/1.1 request → one response, then the connection closes.
fn answer(conn: TcpStream, repos: &Repos, log: &Mutex<Vec<String>>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    // `Range: bytes=A-B` or `bytes=A-` (hf-hub probes with `bytes=0-0`, then downloads).
    let mut range: Option<(usize, Option<usize>)> = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        if name.eq_ignore_ascii_case("range") {
            range = value
                .trim()
                .strip_prefix("bytes=")
                .and_then(|r| r.split_once('-'))
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok())));
        }
    }
    log.lock().unwrap().push(path.clone());
    let file = path
        .trim_start_matches('/')
        .split_once("/resolve/main/")
        .and_then(|(repo, file)| repos.get(repo)?.get(file));
    let mut out = conn;
    let Some(body) = file else {
        let msg = b"Entry not found";
        write!(
            out,
            "HTTP/1.1 404 Not Found\r\nx-error-code: EntryNotFound\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n",
            msg.len()
        )?;
        return out.write_all(msg);
    };
    let (start, last) = range.unwrap_or((0, None));
    let end = last.map_or(body.len(), |l| l + 1).min(body.len());
    let start = start.min(end);
    let etag = blake3::hash(body).to_hex();
    write!(
        out,
        "HTTP/1.1 206 Partial Content\r\netag: \"{etag}\"\r\nx-repo-commit: {COMMIT}\r\n\
         content-range: bytes {start}-{}/{}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        end.saturating_sub(1),
        body.len(),
        end - start
    )?;
    out.write_all(&body[start..end])?;
    // Drain anything left so the client sees a clean close.
    let _ = reader.read(&mut [0u8; 64]);
    Ok(())
}

fn fixture_model() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/colqwen_tiny/model")
}

fn fixture_files(skip: &[&str]) -> HashMap<String, Vec<u8>> {
    std::fs::read_dir(fixture_model())
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .filter(|(name, _)| !skip.contains(&name.as_str()))
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect()
}

/// `pagesight embed --model <model> --query …` with the hub at `endpoint` and its cache in
/// `hf_home`; killed after a minute so a hung download fails the test instead of hanging it.
fn embed(model: &str, endpoint: &str, hf_home: &Path, out: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pagesight"));
    cmd.args(["embed", "--device", "cpu", "--query", "quarterly revenue"])
        .args(["--model", model, "--out"])
        .arg(out)
        .env("HF_HOME", hf_home)
        .env("HF_ENDPOINT", endpoint)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for v in [
        "HF_TOKEN",
        "HF_HUB_OFFLINE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "all_proxy",
    ] {
        cmd.env_remove(v);
    }
    let mut child = cmd.spawn().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn query_vectors(file: &Path) -> Vec<f32> {
    let t = candle_core::safetensors::load(file, &candle_core::Device::Cpu).unwrap();
    t["query.0"].flatten_all().unwrap().to_vec1().unwrap()
}

/// An endpoint nothing listens on.
fn closed_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", l.local_addr().unwrap())
}

#[test]
fn hub_model_downloads_into_the_cache_then_loads_offline() {
    const REPO: &str = "mock-org/colqwen-tiny";
    let tmp = tempfile::tempdir().unwrap();
    let hf_home = tmp.path().join("hf");
    let hub = MockHub::serve(HashMap::from([(REPO.to_string(), fixture_files(&[]))]));

    let first = embed(
        REPO,
        &hub.endpoint(),
        &hf_home,
        &tmp.path().join("a.safetensors"),
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let asked = hub.requests();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        let path = format!("/{REPO}/resolve/main/{f}");
        assert!(asked.contains(&path), "{path} not requested: {asked:?}");
    }
    let snapshot = hf_home
        .join("hub/models--mock-org--colqwen-tiny/snapshots")
        .join(COMMIT);
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        assert_eq!(
            std::fs::read(snapshot.join(f)).unwrap(),
            std::fs::read(fixture_model().join(f)).unwrap(),
            "{f} in the cache differs from what the hub served"
        );
    }
    drop(hub);

    // No hub at all now: the cache alone serves.
    let second = embed(
        REPO,
        &closed_endpoint(),
        &hf_home,
        &tmp.path().join("b.safetensors"),
    );
    assert!(second.status.success(), "{}", stderr(&second));
    let local = embed(
        &fixture_model().to_string_lossy(),
        &closed_endpoint(),
        &hf_home,
        &tmp.path().join("c.safetensors"),
    );
    assert!(local.status.success(), "{}", stderr(&local));
    let a = query_vectors(&tmp.path().join("a.safetensors"));
    assert!(!a.is_empty());
    assert_eq!(a, query_vectors(&tmp.path().join("b.safetensors")));
    assert_eq!(a, query_vectors(&tmp.path().join("c.safetensors")));
}

#[test]
fn hub_errors_name_the_repo_and_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let hf_home = tmp.path().join("hf");
    let out = tmp.path().join("x.safetensors");
    let hub = MockHub::serve(HashMap::from([(
        "mock-org/no-weights".to_string(),
        fixture_files(&["model.safetensors"]),
    )]));
    let cases = [
        (
            "mock-org/no-weights",
            hub.endpoint(),
            "model.safetensors",
            "404",
        ),
        ("mock-org/absent", hub.endpoint(), "config.json", "404"),
        (
            "mock-org/absent",
            closed_endpoint(),
            "config.json",
            "offline",
        ),
    ];
    for (repo, endpoint, file, why) in cases {
        let o = embed(repo, &endpoint, &hf_home, &out);
        let e = stderr(&o);
        assert!(!o.status.success(), "{repo} loaded from {endpoint}?");
        for part in [repo, file, why] {
            assert!(e.contains(part), "no {part:?} in the error: {e}");
        }
        assert!(!e.contains("panicked"), "{e}");
    }
}
