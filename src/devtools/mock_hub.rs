//! A mock Hugging Face hub on a local port: a small HTTP/1.1 server that answers what the hub
//! answers — the API's file list (`/api/models/<repo>/revision/main`, with each file's size, git
//! blob sha1 and LFS sha256) and `GET /<repo>/resolve/<rev>/<file>` with `Range`, `ETag` /
//! `X-Linked-Etag` and `X-Repo-Commit` — and, on request, misbehaves: a corrupted file, a
//! connection dropped part-way, a refusal (401), bodies paced out slowly. The download tests
//! (`tests/hub_download.rs`) and `pagesight bench gui-frames` (a download the app runs while its
//! frame time is measured) point `HF_ENDPOINT` at it.

use pagesight_model::hub::hash::{git_blob_sha1_hex, sha256_hex};
use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Files (name → bytes) per repo id.
pub type Repos = HashMap<String, HashMap<String, Vec<u8>>>;

/// Variables that would send a download somewhere other than the mock hub (another cache, a
/// token, offline mode, a proxy): whatever points a client at the mock clears them.
pub const STEERING_VARS: [&str; 11] = [
    pagesight_model::env_vars::HF_HUB_CACHE,
    pagesight_model::env_vars::HF_TOKEN,
    pagesight_model::env_vars::HF_TOKEN_PATH,
    pagesight_model::env_vars::HF_HUB_OFFLINE,
    "HUGGING_FACE_HUB_TOKEN",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
];

/// A commit id of the right shape for every repo the mock serves.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// How the mock misbehaves.
#[derive(Default)]
pub struct Faults {
    /// Files served with one byte changed (the listing keeps the true hash).
    pub corrupt: HashSet<String>,
    /// File → bytes after which its next download's connection drops (once).
    pub drop_after: Mutex<HashMap<String, usize>>,
    /// Repos answered with 401.
    pub refuse: HashSet<String>,
    /// Bodies go out 64 KiB at a time with this pause between (so a caller can act mid-file, or
    /// a download lasts a while).
    pub slow: Option<Duration>,
}

/// The piece of a body sent between two pauses of [`Faults::slow`].
pub const SLOW_CHUNK: usize = 64 * 1024;

/// One request the mock saw.
#[derive(Clone, Debug)]
pub struct Seen {
    pub path: String,
    pub range: Option<String>,
}

/// The server; it stops when dropped.
pub struct MockHub {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

impl MockHub {
    pub fn serve(repos: Repos) -> std::io::Result<MockHub> {
        Self::serve_with(repos, Faults::default())
    }

    pub fn serve_with(repos: Repos, faults: Faults) -> std::io::Result<MockHub> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stop2, seen2) = (stop.clone(), seen.clone());
        let thread = std::thread::Builder::new()
            .name("mock-hub".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        // A broken connection only fails the request it carried.
                        let _ = answer(conn, &repos, &faults, &seen2);
                    }
                }
            })?;
        Ok(MockHub {
            addr,
            stop,
            seen,
            thread: Some(thread),
        })
    }

    /// What `HF_ENDPOINT` is set to.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The paths of every request so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("the mock hub's log is never poisoned")
            .iter()
            .map(|s| s.path.clone())
            .collect()
    }

    /// The `Range` headers of the downloads of `file` (None: the whole file), in order.
    pub fn ranges_of(&self, file: &str) -> Vec<Option<String>> {
        let tail = format!("/{file}");
        self.seen
            .lock()
            .expect("the mock hub's log is never poisoned")
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

/// The files of a folder (not its subfolders) as one repo's, e.g. a model snapshot to serve.
pub fn repo_from_folder(dir: &Path) -> std::io::Result<HashMap<String, Vec<u8>>> {
    let mut files = HashMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        if e.file_type()?.is_file() {
            files.insert(
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path())?,
            );
        }
    }
    Ok(files)
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
    if let Ok(mut log) = log.lock() {
        log.push(Seen {
            path: path.clone(),
            range: range_header.clone(),
        });
    }
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
    let drop_at = faults
        .drop_after
        .lock()
        .ok()
        .and_then(|mut d| d.remove(file_name));
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
            for piece in body[start..end].chunks(SLOW_CHUNK) {
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
