//! Downloads from a mock Hugging Face hub (issue 3, and the first run): a local HTTP server
//! answers what the hub answers — the API's file list (`/api/models/<repo>/revision/main`, with
//! each file's size, git blob sha1 and LFS sha256) and `GET /<repo>/resolve/<rev>/<file>` with
//! `Range`, `ETag` / `X-Linked-Etag` and `X-Repo-Commit` — serving the tiny fixture model, and
//! on request misbehaving: a corrupted file, a connection dropped part-way, a refusal (401)
//! (`pagesight::devtools::mock_hub`, which `bench gui-frames` serves its download from too).
//! `pagesight embed` runs as a child process with `HF_ENDPOINT` at the server and `HF_HOME` in a
//! temp dir; the downloader's own tests call `pagesight::model::hub` with an explicit
//! `HubConfig`, so this process's environment is never changed.

use pagesight::devtools::mock_hub::{Faults, MockHub, COMMIT, STEERING_VARS};
use pagesight::model::hub::hash::{git_blob_sha1_hex, sha256_hex};
use pagesight::model::hub::{self, DownloadError, DownloadProgress, HubConfig, RepoKind};
use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
    for v in STEERING_VARS {
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
    let hub = MockHub::serve(HashMap::from([(REPO.to_string(), fixture_files(&[]))])).unwrap();

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
    )]))
    .unwrap();
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
    .unwrap()
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
    )
    .unwrap();
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
    ]))
    .unwrap();
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
