//! The user's search path: the engine keeps each index open (checked once, reopened after a
//! commit), never serves a damaged segment, and `pagesight search` answers many queries with one
//! model load.

use crate::engine::{hit_fields, ingest, json_answer, sample_corpus, test_settings, try_search};
use pagesight::engine::{Command, EngineHandle, Event, SearchMode, SearchRequest};
use std::path::Path;
use std::time::Duration;

/// The engine's answer to a visual search on the CPU: its results, or the error's text.
fn answer(engine: &EngineHandle, index: &Path, query: &str, id: u64) -> Result<Event, String> {
    try_search(
        engine,
        SearchRequest {
            id,
            index: index.into(),
            query: query.into(),
            top_k: 5,
            mode: SearchMode::Visual,
            hybrid_visual_weight: 0.5,
            with_heatmaps: false,
            device: pagesight::engine::DeviceChoice::Cpu,
            devices: None,
            visual_scorer: Default::default(),
            backend: Default::default(),
        },
    )
}

/// The tiny model on the CPU at a small resolution: what every CLI run here shares.
const TINY_CPU: [&str; 12] = [
    "--model",
    "random:tiny",
    "--device",
    "cpu",
    "--max-visual-tokens",
    "64",
    "--dpi",
    "50",
    "--workers",
    "2",
    "--batch-size",
    "4",
];

#[test]
fn a_damaged_segment_is_refused_by_the_running_engine_and_named() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let (s, _) = ingest(&engine, corpus.path(), index.path(), test_settings());
    assert!(s.pages_ingested > 0);
    let first = answer(&engine, index.path(), "a table", 1).expect("clean index answers");
    let Event::SearchResults { hits, timings, .. } = first else {
        unreachable!()
    };
    assert!(!hits.is_empty());
    assert!(
        timings.open_ms > 0.0 && timings.embed_ms > 0.0,
        "{timings:?}"
    );

    // One flipped bit inside the last page's data of one segment.
    let seg = std::fs::read_dir(index.path().join("segments"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .max()
        .unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let at = bytes.len() - 70;
    bytes[at] ^= 0x01;
    std::fs::write(&seg, &bytes).unwrap();

    let name = seg.file_name().unwrap().to_string_lossy().into_owned();
    for id in [2, 3] {
        let e = answer(&engine, index.path(), "a table", id).expect_err("damaged segment refused");
        assert!(
            e.contains(&name) && e.contains("pagesight index verify"),
            "the error names the segment and what to run: {e}"
        );
    }
    let report = pagesight::index::Index::verify(index.path()).unwrap();
    assert!(!report.ok && report.problems.iter().any(|p| p.contains(&name)));
}

#[test]
fn the_cli_answers_many_queries_with_one_model_load() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    {
        let engine = EngineHandle::spawn();
        ingest(&engine, corpus.path(), index.path(), test_settings());
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        file.path(),
        "# a comment\nthird query\n\n  fourth query  \n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .arg("search")
        .args(["first query", "second query"])
        .arg("--queries-file")
        .arg(file.path())
        .arg("--index")
        .arg(index.path())
        .args(["--device", "cpu", "--json", "--top-k", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let queries: Vec<&str> = answers
        .iter()
        .map(|a| a["query"].as_str().unwrap())
        .collect();
    assert_eq!(
        queries,
        ["first query", "second query", "third query", "fourth query"]
    );
    for a in &answers {
        assert_eq!(a["hits"].as_array().unwrap().len(), 3, "{a}");
    }
    // The model is loaded for the first query only.
    let loads: Vec<f64> = answers
        .iter()
        .map(|a| a["timings"]["model_load_ms"].as_f64().unwrap())
        .collect();
    assert!(
        loads[1..].iter().all(|&l| l < loads[0]),
        "model load per query: {loads:?}"
    );
}

#[test]
fn stats_come_from_the_open_reader_and_follow_commits() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    let (s, _) = ingest(&engine, corpus.path(), index.path(), test_settings());
    let stats = |engine: &EngineHandle| {
        engine.send(Command::Stats {
            index: index.path().into(),
        });
        loop {
            match engine.events.recv_timeout(Duration::from_secs(60)).unwrap() {
                Event::Stats(st) => return st,
                Event::Error {
                    context, message, ..
                } => panic!("{context}: {message}"),
                _ => {}
            }
        }
    };
    assert_eq!(stats(&engine).pages, s.pages_ingested);
    // A file removed and pruned: the next statistics see the commit.
    let victim = std::fs::read_dir(corpus.path())
        .unwrap()
        .flatten()
        .next()
        .unwrap()
        .path();
    std::fs::remove_file(&victim).unwrap();
    let mut prune = test_settings();
    prune.prune = true;
    let (s2, _) = ingest(&engine, corpus.path(), index.path(), prune);
    assert_eq!(s2.files_removed, 1);
    let after = stats(&engine);
    assert!(after.pages < s.pages_ingested, "{after:?}");
}

/// `pagesight ingest` with the given extra flags into `index`; its output.
fn cli_ingest_into(corpus: &Path, index: &Path, flags: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .arg("ingest")
        .arg(corpus)
        .arg("--index")
        .arg(index)
        .args(TINY_CPU)
        .args(["--max-pages", "2"])
        .args(flags)
        .output()
        .unwrap()
}

#[test]
fn the_cli_adds_to_an_index_with_the_precision_it_was_made_with() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    // Made with NF4, which is not the CPU's default…
    let first = cli_ingest_into(corpus.path(), index.path(), &["--quant", "nf4"]);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("nf4 (all layers)"),
        "{}",
        text(&first)
    );
    // …a run without flags follows the index instead of refusing it.
    let second = cli_ingest_into(corpus.path(), index.path(), &[]);
    let out = text(&second);
    assert!(second.status.success(), "{out}");
    assert!(
        out.contains("nf4 (all layers)") && out.contains("precision as the index was made"),
        "{out}"
    );
    // A new index gets the device's best: on the CPU, f32 unquantised.
    let fresh = tempfile::tempdir().unwrap();
    let third = cli_ingest_into(corpus.path(), fresh.path(), &[]);
    assert!(
        text(&third).contains("f32 compute, unquantised"),
        "{}",
        text(&third)
    );
}

/// `pagesight ingest` without --model: the index's own model when adding to one, else the
/// published ColQwen2.5 (which, offline and not in the cache, is refused with what to do).
#[test]
fn the_cli_model_is_the_index_own_else_the_published_one() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let hf_home = tempfile::tempdir().unwrap();
    let no_model: Vec<&str> = TINY_CPU[2..].to_vec();
    let run = |index: &Path, flags: &[&str]| {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
            .arg("ingest")
            .arg(corpus.path())
            .arg("--index")
            .arg(index)
            .args(flags)
            .args(["--max-pages", "2"])
            .env("HF_HOME", hf_home.path())
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        (o.status.success(), text)
    };
    let (ok, out) = run(index.path(), &TINY_CPU);
    assert!(ok, "{out}");
    // Adding to it without --model reloads the model it was made with.
    std::fs::copy(
        corpus.path().join("coral-reef-bleaching.pdf"),
        corpus.path().join("coral-copy-2.pdf"),
    )
    .unwrap();
    let (ok, out) = run(index.path(), &no_model);
    assert!(ok, "{out}");
    let prov = pagesight::index::Index::provenance_at(index.path())
        .unwrap()
        .unwrap();
    assert_eq!(prov.model, "random:tiny");
    // A new index without --model means the published model: not in this empty cache, offline.
    let fresh = tempfile::tempdir().unwrap();
    let (ok, out) = run(fresh.path(), &no_model);
    assert!(!ok, "{out}");
    assert!(out.contains("vidore/colqwen2.5"), "{out}");
}

#[test]
fn the_journey_runs_the_app_path_and_its_report_loads_in_the_performance_view() {
    let corpus = sample_corpus();
    let out_dir = tempfile::tempdir().unwrap();
    let json = out_dir.path().join("journey.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .args(["bench", "journey"])
        .arg(corpus.path())
        .arg("--index")
        .arg(out_dir.path().join("index"))
        .args(TINY_CPU)
        .args(["--queries", "2", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let pages = report["ingest"]["pages_ingested"].as_u64().unwrap();
    assert!(pages > 0, "{report}");
    let committed = report["first_page_committed_secs"].as_f64().unwrap();
    let searchable = report["first_page_searchable_secs"].as_f64().unwrap();
    assert!(committed > 0.0 && searchable >= committed, "{report}");
    let modes: Vec<&str> = report["searches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["visual exact", "visual binary", "text", "hybrid"]);
    assert!(
        report["thumbnails"]["p50_ms"].as_f64().is_some(),
        "thumbnails of the hits: {report}"
    );
    let runs = pagesight::ui::runs::parse_runs(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].pages, pages);
}

/// The user pays one model load for an ingest and the searches after it: the ingest leaves its
/// model on the engine's shelf, and the index's query model is that one (the settings the index
/// records fit it); settings that compute something else do not take it.
#[test]
fn the_ingest_leaves_its_model_for_the_searches_that_follow() {
    use pagesight::engine::model_shelf::ModelShelf;
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let shelf = ModelShelf::default();
    let (tx, _rx) = crossbeam_channel::unbounded();
    let settings = test_settings();
    let control = pagesight::engine::control::RunControl::new();
    let s = pagesight::engine::ingest::run(
        corpus.path(),
        index.path(),
        &settings,
        &shelf,
        &control,
        &tx,
    )
    .unwrap();
    assert!(s.pages_ingested > 0);
    assert!(!shelf.is_empty());
    let prov = pagesight::index::Index::provenance_at(index.path())
        .unwrap()
        .unwrap();
    let query_settings =
        pagesight::engine::search::model_settings_for(&prov, settings.model.device).unwrap();
    let mut other = query_settings.clone();
    other.quant = pagesight::engine::Quant::Nf4;
    assert!(shelf.take_fitting(&other).is_none());
    let (_, model) = shelf
        .take_fitting(&query_settings)
        .expect("the ingest's model fits");
    assert!(shelf.is_empty());
    assert_eq!(model.identity().max_visual_tokens, prov.max_visual_tokens);
}

/// Copies the folder `from` into `to` (files and subfolders).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// The CLI's JSON answer to `query` against `index`, as (file, page, score) per hit.
fn cli_hits(index: &Path, query: &str) -> Vec<(String, u64, f64)> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .args(["search", query, "--index"])
        .arg(index)
        .args(["--device", "cpu", "--json", "--top-k", "5"])
        .output()
        .unwrap();
    json_answer(&out)["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(hit_fields)
        .collect()
}

#[test]
fn an_index_folder_copied_to_another_place_opens_and_searches_the_same() {
    // Ingest on a machine with a GPU, copy the index folder to the laptop, search there: the
    // folder carries everything (segments, text index, manifest, provenance) and nothing in it
    // names where it was made.
    let corpus = sample_corpus();
    let made = tempfile::tempdir().unwrap();
    {
        let engine = EngineHandle::spawn();
        ingest(&engine, corpus.path(), made.path(), test_settings());
    }
    let elsewhere = tempfile::tempdir().unwrap();
    let copied = elsewhere.path().join("copied index");
    copy_dir(made.path(), &copied);
    let before = cli_hits(made.path(), "first query");
    assert_eq!(before.len(), 5, "{before:?}");
    // The original is gone: the copy must not lean on it.
    drop(made);
    let after = cli_hits(&copied, "first query");
    assert_eq!(after, before);
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .args(["index", "--index"])
        .arg(&copied)
        .arg("verify")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
