//! End-to-end through the engine: ingest the sample PDFs with the tiny model into a fresh index,
//! search it, re-ingest incrementally, cancel and resume, compare two settings.

use pagesight::engine::event::{FileStatus, IngestSummary};
use pagesight::engine::stage::Stage;
use pagesight::engine::{
    Command, DeviceChoice, EngineHandle, Event, IngestSettings, SearchMode, SearchRequest,
    VisualScorer,
};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn samples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/samples")
}

/// A copy of the sample PDFs in a temp dir the test may change.
pub fn sample_corpus() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(samples_dir()).unwrap() {
        let e = e.unwrap();
        if e.path().extension().is_some_and(|x| x == "pdf") {
            std::fs::copy(e.path(), d.path().join(e.file_name())).unwrap();
        }
    }
    d
}

pub fn test_settings() -> IngestSettings {
    let mut s = IngestSettings::with_defaults();
    s.model.model = "random:tiny".into();
    s.model.device = pagesight::model::settings::DeviceChoice::Cpu;
    // Small pages keep the tiny model fast in debug builds.
    s.model.max_visual_tokens = Some(64);
    s.loader.workers = 2;
    s.loader.dpi = 50.0;
    s.loader.worker_exe = Some(env!("CARGO_BIN_EXE_pagesight").into());
    s.live.batch_size = 2;
    s.commit_every_pages = 2;
    s
}

/// The first line a `pagesight … --json` run printed, as JSON; the run must have succeeded (its
/// output is in the panic otherwise).
pub fn json_answer(out: &std::process::Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout.lines().next().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// A hit of a search's JSON as (file, page, score).
pub fn hit_fields(h: &serde_json::Value) -> (String, u64, f64) {
    (
        h["file"].as_str().unwrap().to_string(),
        h["page"].as_u64().unwrap(),
        h["score"].as_f64().unwrap(),
    )
}

/// Sends an ingest and collects every event until it finishes.
pub fn ingest(
    engine: &EngineHandle,
    folder: &Path,
    index: &Path,
    settings: IngestSettings,
) -> (IngestSummary, Vec<Event>) {
    engine.send(Command::StartIngest {
        folder: folder.into(),
        index: index.into(),
        settings,
    });
    let mut seen = Vec::new();
    loop {
        let ev = engine
            .events
            .recv_timeout(Duration::from_secs(300))
            .expect("ingest finishes");
        match ev {
            Event::IngestFinished(s) => return (s, seen),
            Event::Error {
                ref context,
                ref message,
                request_id: None,
            } if context.starts_with("ingest") => {
                panic!("ingest failed: {context}: {message}")
            }
            e => seen.push(e),
        }
    }
}

pub fn search(
    engine: &EngineHandle,
    index: &Path,
    query: &str,
    mode: SearchMode,
    id: u64,
) -> Event {
    search_scored(engine, index, query, mode, id, VisualScorer::Exact)
}

pub fn search_scored(
    engine: &EngineHandle,
    index: &Path,
    query: &str,
    mode: SearchMode,
    id: u64,
    visual_scorer: VisualScorer,
) -> Event {
    try_search(
        engine,
        SearchRequest {
            id,
            index: index.into(),
            query: query.into(),
            top_k: 5,
            mode,
            hybrid_visual_weight: 0.5,
            with_heatmaps: true,
            device: DeviceChoice::Auto,
            devices: None,
            visual_scorer,
            backend: Default::default(),
        },
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

/// Sends `req`; its results, or its error as "context: message".
pub fn try_search(engine: &EngineHandle, req: SearchRequest) -> Result<Event, String> {
    let id = req.id;
    engine.send(Command::Search(req));
    loop {
        match engine
            .events
            .recv_timeout(Duration::from_secs(120))
            .expect("search answers")
        {
            e @ Event::SearchResults { id: i, .. } if i == id => return Ok(e),
            Event::Error {
                context,
                message,
                request_id: Some(i),
            } if i == id => return Err(format!("{context}: {message}")),
            _ => {}
        }
    }
}

fn count_pages(events: &[Event]) -> u32 {
    events
        .iter()
        .filter_map(|e| match e {
            Event::FileStatus(r) => match r.status {
                FileStatus::Done { pages } => Some(pages),
                _ => None,
            },
            _ => None,
        })
        .sum()
}

#[test]
fn ingest_search_and_reingest_incrementally() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let (s, events) = ingest(&engine, corpus.path(), index.path(), test_settings());
    let n_files = std::fs::read_dir(corpus.path()).unwrap().count() as u64;
    assert_eq!(s.files_done, n_files, "{s:?}");
    assert_eq!(s.files_failed, 0, "{s:?}");
    assert!(s.pages_ingested >= n_files);
    assert_eq!(count_pages(&events) as u64, s.pages_ingested);
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::Notice { message } if message.contains("meaningless"))));

    // Every batch's stages add up to its wall time.
    let mut batches = 0;
    for e in &events {
        if let Event::BatchTimings {
            stages, wall_secs, ..
        } = e
        {
            batches += 1;
            assert!((stages.total() - wall_secs).abs() < 1e-9);
            assert!(stages.get(Stage::Vision) > 0.0 && stages.get(Stage::Lm) > 0.0);
        }
    }
    assert!(batches > 0);

    // Visual search returns ranked pages with heatmaps on the merged-patch grid.
    let exact = search(
        &engine,
        index.path(),
        "a chart of results",
        SearchMode::Visual,
        2,
    );
    // The binary prefilter keeps at least 400 candidates: on this small index it rescores every
    // page, so its ranking is exact's.
    match (
        &exact,
        search_scored(
            &engine,
            index.path(),
            "a chart of results",
            SearchMode::Visual,
            3,
            VisualScorer::Binary { candidates: 0 },
        ),
    ) {
        (
            Event::SearchResults { hits: a, .. },
            Event::SearchResults {
                hits: b, scorer, ..
            },
        ) => {
            assert!(
                scorer.starts_with("sign-bit prefilter (CPU), best 400 rescored by CPU exact"),
                "{scorer}"
            );
            let key = |h: &pagesight::engine::event::SearchHit| (h.file.clone(), h.page, h.score);
            assert_eq!(
                a.iter().map(key).collect::<Vec<_>>(),
                b.iter().map(key).collect::<Vec<_>>()
            );
        }
        other => panic!("{other:?}"),
    }
    match search(
        &engine,
        index.path(),
        "a chart of results",
        SearchMode::Visual,
        1,
    ) {
        Event::SearchResults {
            hits, note, scorer, ..
        } => {
            assert_eq!(hits.len(), (s.pages_ingested as usize).min(5));
            assert!(note.unwrap().contains("random"));
            // No GPU in this build: the CPU kernels rank, and the answer says so.
            assert!(scorer.starts_with("CPU exact MaxSim ("), "{scorer}");
            // …naming the kernel that ran: this CPU's best ISA (on AVX-512, rows or tiles).
            let isa = pagesight::index::maxsim::detected_isa();
            assert!(scorer.contains(isa.name()), "{scorer} should name {isa:?}");
            for w in hits.windows(2) {
                assert!(w[0].score >= w[1].score);
            }
            let h = hits[0].heatmap.as_ref().expect("heatmap");
            assert_eq!(h.values.len(), (h.grid_h * h.grid_w) as usize);
            assert!(h.values.iter().all(|v| v.is_finite()));
        }
        _ => unreachable!(),
    }

    // Second run over the same folder: everything skipped as unchanged.
    let (s2, _) = ingest(&engine, corpus.path(), index.path(), test_settings());
    assert_eq!(s2.pages_ingested, 0);
    assert_eq!(s2.files_skipped, n_files);

    // A vanished file disappears with --prune; the rest stays.
    let victim = std::fs::read_dir(corpus.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&victim).unwrap();
    let mut prune = test_settings();
    prune.prune = true;
    let (s3, ev3) = ingest(&engine, corpus.path(), index.path(), prune);
    assert_eq!(s3.files_removed, 1);
    assert!(ev3.iter().any(
        |e| matches!(e, Event::FileStatus(r) if r.path == victim && r.status == FileStatus::Removed)
    ));
    match search(&engine, index.path(), "results", SearchMode::Visual, 2) {
        Event::SearchResults { hits, .. } => assert!(hits.iter().all(|h| h.file != victim)),
        _ => unreachable!(),
    }
}

#[test]
fn broken_pdf_fails_with_reason_and_others_are_ingested() {
    let corpus = sample_corpus();
    std::fs::write(
        corpus.path().join("not-a-pdf.pdf"),
        b"<html>this is not a PDF</html>",
    )
    .unwrap();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let (s, _) = ingest(&engine, corpus.path(), index.path(), test_settings());
    assert_eq!(s.files_failed, 1, "{s:?}");
    let f = &s.failures[0];
    assert!(f.path.ends_with("not-a-pdf.pdf"));
    match &f.status {
        FileStatus::Failed { reason, .. } => assert!(!reason.is_empty()),
        other => panic!("{other:?}"),
    }
    assert!(s.files_done >= 1);
}

#[test]
fn gpu_transfer_modes_are_refused_on_cpu_with_the_reason() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let mut s = test_settings();
    s.live.transfer = pagesight::engine::TransferMode::Async;
    engine.send(Command::StartIngest {
        folder: corpus.path().into(),
        index: index.path().into(),
        settings: s,
    });
    loop {
        match engine
            .events
            .recv_timeout(Duration::from_secs(120))
            .unwrap()
        {
            Event::Error { message, .. } => {
                assert!(message.contains("needs a CUDA device"), "{message}");
                break;
            }
            Event::IngestFinished(s) => panic!("async on CPU must be refused, got {s:?}"),
            _ => {}
        }
    }
}

#[test]
fn cancel_keeps_what_is_committed_and_a_rerun_completes() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let mut s = test_settings();
    s.live.batch_size = 1;
    s.commit_every_pages = 1;
    engine.send(Command::StartIngest {
        folder: corpus.path().into(),
        index: index.path().into(),
        settings: s,
    });
    // Cancel right after the first commit.
    let summary = loop {
        match engine
            .events
            .recv_timeout(Duration::from_secs(300))
            .unwrap()
        {
            Event::Committed { .. } => engine.send(Command::Cancel),
            Event::IngestFinished(s) => break s,
            Event::Error {
                context, message, ..
            } => panic!("{context}: {message}"),
            _ => {}
        }
    };
    assert!(summary.cancelled);
    let first = summary.pages_ingested;
    assert!(first >= 1);
    let (rest, _) = ingest(&engine, corpus.path(), index.path(), test_settings());
    // Nothing is lost or ingested twice: a fresh full run has the same page count.
    let fresh = tempfile::tempdir().unwrap();
    let (full, _) = ingest(&engine, corpus.path(), fresh.path(), test_settings());
    assert_eq!(first + rest.pages_ingested, full.pages_ingested);
    engine.send(Command::Stats {
        index: index.path().into(),
    });
    loop {
        if let Event::Stats(st) = engine.events.recv_timeout(Duration::from_secs(60)).unwrap() {
            assert_eq!(st.pages, full.pages_ingested);
            break;
        }
    }
}

#[test]
fn ab_compare_runs_both_sides_on_the_same_pages() {
    let corpus = sample_corpus();
    let engine = EngineHandle::spawn();
    let a = pagesight::engine::command::AbSide {
        label: "batch 1".into(),
        settings: {
            let mut s = test_settings();
            s.live.batch_size = 1;
            s
        },
    };
    let b = pagesight::engine::command::AbSide {
        label: "batch 2".into(),
        settings: test_settings(),
    };
    engine.send(Command::AbCompare {
        folder: corpus.path().into(),
        pages: 3,
        a,
        b,
    });
    loop {
        match engine
            .events
            .recv_timeout(Duration::from_secs(300))
            .unwrap()
        {
            Event::AbFinished { a, b } => {
                assert_eq!(a.pages, 3);
                assert_eq!(b.pages, 3);
                assert!(a.pages_per_sec > 0.0 && b.pages_per_sec > 0.0);
                assert!(!a.series.is_empty() && !b.series.is_empty());
                break;
            }
            Event::Error {
                context, message, ..
            } => panic!("{context}: {message}"),
            _ => {}
        }
    }
}

/// A page that hangs (until its timeout) must not hold back pages of other files that are already
/// rendered: the pump sends a partial batch once the loader goes quiet, so every other file is
/// done before the hanging one is reported failed.
#[test]
fn a_hanging_page_does_not_hold_back_other_files() {
    let corpus = sample_corpus();
    let first = std::fs::read_dir(corpus.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "pdf"))
        .unwrap();
    // A comment after the end makes it a different file (identical files are indexed once).
    let mut bytes = std::fs::read(&first).unwrap();
    bytes.extend_from_slice(b"\n% another file\n");
    std::fs::write(corpus.path().join("zz-hangs-partial-batch.pdf"), bytes).unwrap();
    // Workers inherit the fault rule; only this test's file name matches it.
    std::env::set_var(
        pagesight::loader::env_vars::WORKER_FAULT,
        "hang:zz-hangs-partial-batch",
    );
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let mut settings = test_settings();
    // A batch larger than the whole corpus: without the partial flush nothing would run until
    // the hanging page times out.
    settings.live.batch_size = 64;
    settings.loader.page_timeout_secs = 15.0;
    let (s, events) = ingest(&engine, corpus.path(), index.path(), settings);
    let order: Vec<(String, bool)> = events
        .iter()
        .filter_map(|e| match e {
            Event::FileStatus(r) => match &r.status {
                FileStatus::Done { .. } => Some((r.path.display().to_string(), true)),
                FileStatus::Failed { .. } => Some((r.path.display().to_string(), false)),
                _ => None,
            },
            _ => None,
        })
        .collect();
    let failed_at = order
        .iter()
        .position(|(p, done)| !done && p.contains("zz-hangs"))
        .unwrap_or_else(|| panic!("the hanging file is reported failed: {order:?}"));
    let done_before = order[..failed_at].iter().filter(|(_, d)| *d).count();
    assert_eq!(s.files_failed, 1, "{s:?}");
    assert_eq!(
        done_before, s.files_done as usize,
        "every other file is done before the hang times out: {order:?}"
    );
}

/// `pagesight ingest` of the sample corpus into a fresh index, in a process of its own (the
/// model's out-of-memory hook is read once per process), with `env` set; its output and the
/// pages the index holds afterwards.
fn cli_ingest(corpus: &Path, env: &[(&str, &str)]) -> (std::process::Output, u64) {
    let index = tempfile::tempdir().unwrap();
    let out = cli_ingest_into(corpus, index.path(), "cpu", env);
    let pages = pagesight::index::Index::open(index.path())
        .map(|ix| ix.stats().pages)
        .unwrap_or(0);
    (out, pages)
}

/// `pagesight ingest` of `corpus` into `index` on `device` (the tiny model, small pages), in a
/// process of its own with `env` set.
pub fn cli_ingest_into(
    corpus: &Path,
    index: &Path,
    device: &str,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"));
    cmd.arg("ingest")
        .arg(corpus)
        .arg("--index")
        .arg(index)
        .args([
            "--model",
            "random:tiny",
            "--device",
            device,
            "--max-visual-tokens",
            "64",
        ])
        .args(["--dpi", "50", "--workers", "2", "--batch-size", "4"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// The device running out of memory on any batch of more than one page: the engine halves each
/// batch until it fits (recognising the model's typed error), says so, and ingests every page
/// once — as many as without the fault.
#[test]
fn out_of_memory_halves_the_batch_and_loses_no_page() {
    let corpus = sample_corpus();
    let (plain, expected) = cli_ingest(corpus.path(), &[]);
    assert!(
        plain.status.success(),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    assert!(expected >= 4, "the sample corpus has pages: {expected}");
    let hook = pagesight::model::env_vars::OOM_ABOVE_PAGES;
    let (oom, pages) = cli_ingest(corpus.path(), &[(hook, "1")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&oom.stdout),
        String::from_utf8_lossy(&oom.stderr)
    );
    assert!(oom.status.success(), "{text}");
    assert_eq!(pages, expected, "{text}");
    assert!(
        text.contains("out of memory: batch size lowered to"),
        "{text}"
    );
}

/// `--compute fp8` through the engine on the CPU (its emulation): the index records the compute,
/// a CPU search of it answers (the query in the dtype's arithmetic), and vectors of the dtype's
/// compute are refused from it with both named.
#[test]
fn an_fp8_index_records_its_compute_searches_on_the_cpu_and_keeps_other_vectors_out() {
    use pagesight::engine::{Compute, Quant};
    let corpus = sample_corpus();
    // One file held back, to come new to the index later.
    let held = tempfile::tempdir().unwrap();
    let first = std::fs::read_dir(corpus.path())
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    std::fs::rename(first.path(), held.path().join(first.file_name())).unwrap();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let mut settings = test_settings();
    settings.model.quant = Quant::Nf4;
    settings.model.compute = Compute::Fp8;
    let (s, _) = ingest(&engine, corpus.path(), index.path(), settings.clone());
    assert!(s.pages_ingested > 0 && s.files_failed == 0, "{s:?}");
    let opened = pagesight::index::Index::open(index.path()).unwrap();
    assert_eq!(opened.provenance().compute(), "fp8");
    match search(
        &engine,
        index.path(),
        "invoice total",
        SearchMode::Visual,
        7,
    ) {
        Event::SearchResults { hits, .. } => assert!(!hits.is_empty()),
        other => panic!("{other:?}"),
    }
    std::fs::rename(
        held.path().join(first.file_name()),
        corpus.path().join(first.file_name()),
    )
    .unwrap();
    settings.model.compute = Compute::Dtype;
    engine.send(Command::StartIngest {
        folder: corpus.path().into(),
        index: index.path().into(),
        settings,
    });
    let refused = loop {
        match engine
            .events
            .recv_timeout(Duration::from_secs(300))
            .expect("an answer")
        {
            Event::Error { message, .. } => break message,
            Event::IngestFinished(s) => panic!("accepted other vectors: {s:?}"),
            _ => {}
        }
    };
    assert!(refused.contains("compute fp8"), "{refused}");
}
