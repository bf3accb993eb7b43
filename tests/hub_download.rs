//! Downloads from a mock Hugging Face hub (issue 3, and the first run): a local HTTP server
//! answers what the hub answers — the API's file list (`/api/models/<repo>/revision/main`, with
//! each file's size, git blob sha1 and LFS sha256) and `GET /<repo>/resolve/<rev>/<file>` with
//! `Range`, `ETag` / `X-Linked-Etag` and `X-Repo-Commit` — serving the tiny fixture model, and
//! on request misbehaving: a corrupted file, a connection dropped part-way, a refusal (401).
//! `pagesight embed` runs as a child process with `HF_ENDPOINT` at the server and `HF_HOME` in a
//! temp dir; the downloader's own tests call `pagesight::model::hub` with an explicit
//! `HubConfig`, so this process's environment is never changed.

use pagesight::model::hub::hash::{git_blob_sha1_hex, sha256_hex};
use pagesight::model::hub::{self, DownloadError, DownloadProgress, HubConfig, RepoKind};
use std::collections::{HashMap, HashSet};
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

/// How the mock misbehaves.
#[derive(Default)]
struct Faults {
    /// Files served with one byte changed (the listing keeps the true hash).
    corrupt: HashSet<String>,
    /// File → bytes after which its next download's connection drops (once).
    drop_after: Mutex<HashMap<String, usize>>,
    /// Repos answered with 401.
    refuse: HashSet<String>,
    /// Bodies go out 64 KiB at a time with this pause between (so a test can act mid-file).
    slow: Option<Duration>,
}

/// One request the mock saw.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
}

struct MockHub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl MockHub {
    fn serve(repos: Repos) -> MockHub {
        Self::serve_with(repos, Faults::default())
    }

    fn serve_with(repos: Repos, faults: Faults) -> MockHub {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    // A broken connection only fails the request it carried.
                    let _ = answer(conn, &repos, &faults, &seen2);
                }
            }
        });
        MockHub {
            addr,
            stop,
            seen,
            thread: Some(thread),
        }
    }

    fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    /// The `Range` headers of the downloads of `file` (None: the whole file), in order.
    fn ranges_of(&self, file: &str) -> Vec<Option<String>> {
        let tail = format!("/{file}");
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.path.contains("/resolve/") && s.path.ends_with(&tail))
            .map(|s| s.range.clone())
            .collect()
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

fn is_lfs(file: &str) -> bool {
    file.ends_with(".safetensors")
}

/// The API's answer for a repo: its commit and each file's size and hashes.
fn listing(files: &HashMap<String, Vec<u8>>) -> String {
    let siblings: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, body)| {
            let mut v = serde_json::json!({
                "rfilename": name,
                "size": body.len(),
                "blobId": git_blob_sha1_hex(body),
            });
            if is_lfs(name) {
                v["lfs"] = serde_json::json!({
                    "sha256": sha256_hex(body), "size": body.len(), "pointerSize": 134
                });
            }
            v
        })
        .collect();
    serde_json::json!({ "id": "x", "sha": COMMIT, "siblings": siblings }).to_string()
}

fn respond(out: &mut TcpStream, status: &str, headers: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)
}

/// One HTTP/1.1 request → one response, then the connection closes.
fn answer(
    conn: TcpStream,
    repos: &Repos,
    faults: &Faults,
    log: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut range_header = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        let (name, value) = h.split_once(':').unwrap_or((&h, ""));
        if name.eq_ignore_ascii_case("range") {
            range_header = Some(value.trim().to_string());
        }
    }
    // `Range: bytes=A-B` or `bytes=A-`.
    let range: Option<(usize, Option<usize>)> = range_header
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.split_once('-'))
        .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok())));
    log.lock().unwrap().push(Seen {
        path: path.clone(),
        range: range_header.clone(),
    });
    let mut out = conn;
    let path = path.split('?').next().unwrap_or("").trim_start_matches('/');
    let not_found = |out: &mut TcpStream| {
        respond(
            out,
            "404 Not Found",
            "x-error-code: EntryNotFound\r\n",
            b"Entry not found",
        )
    };
    if let Some(repo) = path
        .strip_prefix("api/models/")
        .and_then(|p| p.strip_suffix("/revision/main"))
    {
        if faults.refuse.contains(repo) {
            return respond(&mut out, "401 Unauthorized", "", b"Invalid credentials");
        }
        return match repos.get(repo) {
            Some(files) => respond(
                &mut out,
                "200 OK",
                "content-type: application/json\r\n",
                listing(files).as_bytes(),
            ),
            None => respond(
                &mut out,
                "404 Not Found",
                "x-error-code: RepoNotFound\r\n",
                b"Repository not found",
            ),
        };
    }
    let Some((repo, rest)) = path.split_once("/resolve/") else {
        return not_found(&mut out);
    };
    let Some((_rev, file_name)) = rest.split_once('/') else {
        return not_found(&mut out);
    };
    if faults.refuse.contains(repo) {
        return respond(&mut out, "401 Unauthorized", "", b"Invalid credentials");
    }
    let Some(body) = repos.get(repo).and_then(|r| r.get(file_name)) else {
        return not_found(&mut out);
    };
    let mut body = body.clone();
    let etag = if is_lfs(file_name) {
        format!(
            "x-linked-etag: \"{}\"\r\netag: \"{}\"\r\n",
            sha256_hex(&body),
            git_blob_sha1_hex(&body)
        )
    } else {
        format!("etag: \"{}\"\r\n", git_blob_sha1_hex(&body))
    };
    if faults.corrupt.contains(file_name) {
        let mid = body.len() / 2;
        body[mid] ^= 0x5a;
    }
    let (start, last) = range.unwrap_or((0, None));
    let end = last.map_or(body.len(), |l| l + 1).min(body.len());
    let start = start.min(end);
    let (status, content_range) = if range.is_some() {
        (
            "206 Partial Content",
            format!(
                "content-range: bytes {start}-{}/{}\r\n",
                end.saturating_sub(1),
                body.len()
            ),
        )
    } else {
        ("200 OK", String::new())
    };
    let headers = format!("{etag}x-repo-commit: {COMMIT}\r\n{content_range}");
    let drop_at = faults.drop_after.lock().unwrap().remove(file_name);
    match (drop_at, faults.slow) {
        // Headers promise the whole range; the connection closes part-way.
        (Some(n), _) => {
            write!(
                out,
                "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                end - start
            )?;
            out.write_all(&body[start..(start + n).min(end)])?;
            out.flush()?;
            let _ = out.shutdown(std::net::Shutdown::Both);
            Ok(())
        }
        (None, Some(pause)) => {
            write!(
                out,
                "HTTP/1.1 {status}\r\n{headers}content-length: {}\r\nconnection: close\r\n\r\n",
                end - start
            )?;
            for piece in body[start..end].chunks(64 * 1024) {
                out.write_all(piece)?;
                out.flush()?;
                std::thread::sleep(pause);
            }
            Ok(())
        }
        (None, None) => {
            respond(&mut out, status, &headers, &body[start..end])?;
            // Drain anything left so the client sees a clean close.
            let _ = reader.read(&mut [0u8; 64]);
            Ok(())
        }
    }
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
        let path = format!("/{REPO}/resolve/{COMMIT}/{f}");
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
            "models--mock-org--absent",
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

// ---- The downloader itself (`pagesight::model::hub`), in process against the mock ----

const TINY: &str = "mock-org/colqwen-tiny";

fn tiny_hub(faults: Faults) -> MockHub {
    MockHub::serve_with(
        HashMap::from([(TINY.to_string(), fixture_files(&[]))]),
        faults,
    )
}

fn config(hub: &str, dir: &Path) -> HubConfig {
    HubConfig::new(hub, dir.join("hub"))
}

/// Downloads `repos`; the progress reports it made, and the result.
fn fetch_all(
    cfg: &HubConfig,
    repos: &[(&str, RepoKind)],
    cancel_after: Option<u64>,
) -> (Vec<DownloadProgress>, Result<Vec<PathBuf>, DownloadError>) {
    let cancel = AtomicBool::new(false);
    let mut seen = Vec::new();
    let r = hub::ensure(cfg, repos, &cancel, &mut |p| {
        if cancel_after.is_some_and(|n| p.done >= n) {
            cancel.store(true, Ordering::SeqCst);
        }
        seen.push(p.clone());
    });
    (seen, r)
}

fn weights_size() -> u64 {
    std::fs::metadata(fixture_model().join("model.safetensors"))
        .unwrap()
        .len()
}

fn total_fixture_size() -> u64 {
    fixture_files(&[]).values().map(|b| b.len() as u64).sum()
}

fn incomplete_files(cfg: &HubConfig, repo: &str) -> Vec<(PathBuf, u64)> {
    let blobs = hub::RepoCache::new(&cfg.cache_dir, repo).blobs();
    std::fs::read_dir(blobs)
        .map(|d| {
            d.map(|e| e.unwrap().path())
                .filter(|p| p.to_string_lossy().ends_with(".incomplete"))
                .map(|p| {
                    let n = std::fs::metadata(&p).unwrap().len();
                    (p, n)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn hub_download_makes_a_verified_snapshot_that_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tiny_hub(Faults::default());
    let cfg = config(&hub.endpoint(), tmp.path());
    assert!(hub::complete_snapshot(&cfg.cache_dir, TINY, RepoKind::Model).is_none());
    let (progress, r) = fetch_all(&cfg, &[(TINY, RepoKind::Model)], None);
    let dirs = r.unwrap();
    let snapshot = cfg
        .cache_dir
        .join("models--mock-org--colqwen-tiny/snapshots")
        .join(COMMIT);
    assert_eq!(dirs, vec![snapshot.clone()]);
    for (name, body) in fixture_files(&[]) {
        assert_eq!(std::fs::read(snapshot.join(&name)).unwrap(), body, "{name}");
        // A link into blobs/, named by the hub's hash.
        let target = std::fs::read_link(snapshot.join(&name)).unwrap();
        let hash = if name.ends_with(".safetensors") {
            sha256_hex(&body)
        } else {
            git_blob_sha1_hex(&body)
        };
        assert!(
            target.ends_with(Path::new("blobs").join(hash)),
            "{name} → {}",
            target.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(
            cfg.cache_dir
                .join("models--mock-org--colqwen-tiny/refs/main")
        )
        .unwrap(),
        COMMIT
    );
    // Progress: overall and per file, ending at the total.
    let last = progress.last().unwrap();
    assert_eq!(
        (last.done, last.total),
        (total_fixture_size(), total_fixture_size())
    );
    assert!(progress
        .iter()
        .any(|p| p.file == "model.safetensors" && p.file_total == weights_size()));
    assert!(
        progress.windows(2).all(|w| w[0].done <= w[1].done),
        "progress went backwards"
    );
    assert!(incomplete_files(&cfg, TINY).is_empty());
    // The snapshot loads as a model, and a second ensure asks the hub nothing.
    pagesight::model::colqwen::source::resolve(&snapshot.to_string_lossy()).unwrap();
    let before = hub.requests().len();
    fetch_all(&cfg, &[(TINY, RepoKind::Model)], None).1.unwrap();
    assert_eq!(
        hub.requests().len(),
        before,
        "a complete snapshot was fetched again"
    );
}

#[test]
fn hub_download_cancelled_part_way_resumes_with_a_range_for_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tiny_hub(Faults {
        slow: Some(Duration::from_millis(15)),
        ..Faults::default()
    });
    let cfg = config(&hub.endpoint(), tmp.path());
    let small: u64 = total_fixture_size() - weights_size();
    let (_, r) = fetch_all(
        &cfg,
        &[(TINY, RepoKind::Model)],
        Some(small + weights_size() / 3),
    );
    assert!(matches!(r, Err(DownloadError::Cancelled)), "{r:?}");
    // Nothing that loads: no snapshot, refs/main absent; the partial weights are kept aside.
    assert!(hub::complete_snapshot(&cfg.cache_dir, TINY, RepoKind::Model).is_none());
    assert!(!cfg
        .cache_dir
        .join("models--mock-org--colqwen-tiny/snapshots")
        .join(COMMIT)
        .join("config.json")
        .exists());
    let partial = incomplete_files(&cfg, TINY);
    assert_eq!(partial.len(), 1, "{partial:?}");
    let kept = partial[0].1;
    assert!(kept > 0 && kept < weights_size(), "kept {kept}");
    assert_eq!(hub.ranges_of("model.safetensors"), vec![None]);
    let config_requests = hub.ranges_of("config.json").len();

    // A new process resumes: the weights from where they stopped, the finished files not again.
    let (progress, r) = fetch_all(&cfg, &[(TINY, RepoKind::Model)], None);
    r.unwrap();
    assert_eq!(
        hub.ranges_of("model.safetensors"),
        vec![None, Some(format!("bytes={kept}-"))],
        "the resume did not ask for the remainder only"
    );
    assert_eq!(
        hub.ranges_of("config.json").len(),
        config_requests,
        "a finished file was fetched again"
    );
    let weights: Vec<&DownloadProgress> = progress
        .iter()
        .filter(|p| p.file == "model.safetensors")
        .collect();
    assert!(!weights.is_empty());
    assert!(
        weights
            .iter()
            .all(|p| p.file_done >= kept && p.done >= small + kept),
        "the resumed progress started below what was kept: {weights:?}"
    );
    assert_eq!(
        std::fs::read(
            hub::complete_snapshot(&cfg.cache_dir, TINY, RepoKind::Model)
                .unwrap()
                .join("model.safetensors")
        )
        .unwrap(),
        std::fs::read(fixture_model().join("model.safetensors")).unwrap()
    );
}

#[test]
fn hub_download_resumes_when_the_server_drops_the_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let cut = 1_000_000usize;
    let hub = tiny_hub(Faults {
        drop_after: Mutex::new(HashMap::from([("model.safetensors".to_string(), cut)])),
        ..Faults::default()
    });
    let cfg = config(&hub.endpoint(), tmp.path());
    fetch_all(&cfg, &[(TINY, RepoKind::Model)], None).1.unwrap();
    assert_eq!(
        hub.ranges_of("model.safetensors"),
        vec![None, Some(format!("bytes={cut}-"))]
    );
    let dir = hub::complete_snapshot(&cfg.cache_dir, TINY, RepoKind::Model).unwrap();
    assert_eq!(
        std::fs::read(dir.join("model.safetensors")).unwrap(),
        std::fs::read(fixture_model().join("model.safetensors")).unwrap()
    );
}

#[test]
fn hub_download_rejects_a_corrupted_file_and_leaves_nothing_that_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tiny_hub(Faults {
        corrupt: HashSet::from(["model.safetensors".to_string()]),
        ..Faults::default()
    });
    let cfg = config(&hub.endpoint(), tmp.path());
    let (_, r) = fetch_all(&cfg, &[(TINY, RepoKind::Model)], None);
    match &r {
        Err(e @ DownloadError::HashMismatch { file, .. }) => {
            assert_eq!(file, "model.safetensors");
            let m = e.to_string();
            assert!(
                m.contains("mock-org/colqwen-tiny") && m.contains("discarded"),
                "{m}"
            );
        }
        other => panic!("not a hash mismatch: {other:?}"),
    }
    // Fetched again once before giving up; the bad bytes are gone, no snapshot, no ref.
    assert_eq!(hub.ranges_of("model.safetensors").len(), 2);
    assert!(incomplete_files(&cfg, TINY).is_empty());
    let repo = cfg.cache_dir.join("models--mock-org--colqwen-tiny");
    assert!(!repo
        .join("blobs")
        .join(sha256_hex(&fixture_files(&[])["model.safetensors"]))
        .exists());
    assert!(!repo.join("refs/main").exists());
    assert!(!repo.join("snapshots").exists());
    assert!(hub::complete_snapshot(&cfg.cache_dir, TINY, RepoKind::Model).is_none());
    // The app, offline, finds no model to load from that cache.
    let o = embed(
        TINY,
        &closed_endpoint(),
        tmp.path(),
        &tmp.path().join("x.safetensors"),
    );
    assert!(
        !o.status.success(),
        "a model loaded from a cache with a rejected file"
    );
}

#[test]
fn hub_download_offline_says_what_to_copy_where() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = config(&closed_endpoint(), tmp.path());
    let repos = [
        ("vidore/colqwen2.5-base", RepoKind::Model),
        ("vidore/colqwen2.5-v0.2", RepoKind::Adapter),
    ];
    let (_, r) = fetch_all(&cfg, &repos, None);
    let e = r.unwrap_err();
    assert!(matches!(e, DownloadError::Offline { .. }), "{e:?}");
    let m = e.to_string();
    for part in [
        "offline",
        "huggingface-cli download vidore/colqwen2.5-base",
        "huggingface-cli download vidore/colqwen2.5-v0.2",
        "models--vidore--colqwen2.5-base",
        "models--vidore--colqwen2.5-v0.2",
        &cfg.cache_dir.display().to_string(),
    ] {
        assert!(m.contains(part), "no {part:?} in: {m}");
    }
}

#[test]
fn hub_download_checks_the_free_space_before_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tiny_hub(Faults::default());
    let mut cfg = config(&hub.endpoint(), tmp.path());
    cfg.fake_free_bytes = Some(100_000);
    let (_, r) = fetch_all(&cfg, &[(TINY, RepoKind::Model)], None);
    let e = r.unwrap_err();
    assert!(matches!(e, DownloadError::NotEnoughDisk { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("not enough disk space") && m.contains("HF_HOME"),
        "{m}"
    );
    assert!(
        hub.requests().iter().all(|p| !p.contains("/resolve/")),
        "files were downloaded before the disk check: {:?}",
        hub.requests()
    );
}

#[test]
fn hub_download_disk_full_mid_way_keeps_the_partial_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = tiny_hub(Faults::default());
    let mut cfg = config(&hub.endpoint(), tmp.path());
    let small = total_fixture_size() - weights_size();
    cfg.fake_disk_full_after = Some(small + 700_000);
    let (_, r) = fetch_all(&cfg, &[(TINY, RepoKind::Model)], None);
    let e = r.unwrap_err();
    assert!(matches!(e, DownloadError::DiskFull { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.contains("disk filled up") && m.contains("model.safetensors") && m.contains("free"),
        "{m}"
    );
    assert!(hub::complete_snapshot(&cfg.cache_dir, TINY, RepoKind::Model).is_none());
    let partial = incomplete_files(&cfg, TINY);
    assert_eq!(partial.len(), 1);
    let kept = partial[0].1;
    assert!(kept > 0, "nothing kept");
    cfg.fake_disk_full_after = None;
    fetch_all(&cfg, &[(TINY, RepoKind::Model)], None).1.unwrap();
    assert_eq!(
        hub.ranges_of("model.safetensors").last().unwrap(),
        &Some(format!("bytes={kept}-"))
    );
}

#[test]
fn hub_download_refused_names_hf_token() {
    let tmp = tempfile::tempdir().unwrap();
    let hub = MockHub::serve_with(
        HashMap::from([(TINY.to_string(), fixture_files(&[]))]),
        Faults {
            refuse: HashSet::from([TINY.to_string()]),
            ..Faults::default()
        },
    );
    let cfg = config(&hub.endpoint(), tmp.path());
    let e = fetch_all(&cfg, &[(TINY, RepoKind::Model)], None)
        .1
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("401") && m.contains("HF_TOKEN") && m.contains(TINY),
        "{m}"
    );
}

#[test]
fn hub_download_fetches_base_and_adapter_together() {
    const ADAPTER: &str = "mock-org/colqwen-tiny-adapter";
    let tmp = tempfile::tempdir().unwrap();
    let adapter: HashMap<String, Vec<u8>> =
        std::fs::read_dir(fixture_model().parent().unwrap().join("adapter"))
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    std::fs::read(e.path()).unwrap(),
                )
            })
            .collect();
    let adapter_size: u64 = adapter.values().map(|b| b.len() as u64).sum();
    let hub = MockHub::serve(HashMap::from([
        (TINY.to_string(), fixture_files(&[])),
        (ADAPTER.to_string(), adapter),
    ]));
    let cfg = config(&hub.endpoint(), tmp.path());
    let repos = hub::repos_of(TINY, Some(ADAPTER));
    let plan = hub::plan(&cfg, &hub::borrowed(&repos)).unwrap();
    assert_eq!(plan.total_bytes, total_fixture_size() + adapter_size);
    assert_eq!(plan.present_bytes, 0);
    let (progress, r) = fetch_all(&cfg, &hub::borrowed(&repos), None);
    assert_eq!(r.unwrap().len(), 2);
    assert_eq!(progress.last().unwrap().done, plan.total_bytes);
    assert!(hub::missing_repos(&cfg, TINY, Some(ADAPTER)).is_empty());
}
