//! The library and the watch, driven headless: several corpora listed with what their indexes
//! hold, one search over the ticked ones merged by model (another model's corpus listed apart),
//! the corpus filter fed from the hits, re-ingest, removal with its confirmation (and the index
//! folder deleted when asked), and watched folders whose new PDFs queue one ingest at a time and
//! whose disappearance pauses the watch.

use crate::ui::{
    cpu_device, drain, frames, frames_until, options, search_all_by_keyboard, wired, Wired,
};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use pagesight::engine::event::{IndexStats, IngestSummary, Progress, SearchHit};
use pagesight::engine::{Command, Event, Stage, StageTimes};
use pagesight::index::Provenance;
use pagesight::ui::library::Corpus;
use pagesight::ui::watch::WatchTimings;
use pagesight::ui::{AppOptions, PagesightApp};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn made_with(checkpoint: &str) -> Provenance {
    Provenance {
        model: format!("models/{checkpoint}"),
        adapter: None,
        checkpoint_hash: format!("hash-{checkpoint}"),
        quant: "none".into(),
        quant_scope: "all".into(),
        dtype: "f32".into(),
        lora: None,
        compute: None,
        max_visual_tokens: 768,
        query_prompt: "Query: {query}".into(),
        dim: 128,
        random_weights: true,
    }
}

fn stats(index: &Path, pages: u64, prov: Provenance) -> Event {
    Event::Stats(IndexStats {
        path: index.to_path_buf(),
        files: pages / 2,
        pages,
        vectors: pages * 100,
        segments: 1,
        bytes_on_disk: pages * 1024,
        model: Some(prov.model.clone()),
        provenance: Some(prov),
    })
}

fn hits(corpus: &str, scores: &[f32]) -> Vec<SearchHit> {
    scores
        .iter()
        .enumerate()
        .map(|(i, &score)| SearchHit {
            rank: i + 1,
            score,
            file: format!("/gone/{corpus}/p{i}.pdf").into(),
            page: 1,
            title: None,
            heatmap: None,
            snippet: None,
        })
        .collect()
}

/// The app with `names` as corpora under `dir` (folders `dir/<name>`, indexes `dir/<name>.index`).
fn with_library(dir: &Path, names: &[&str], opts: AppOptions) -> Wired<'static> {
    let mut w = wired(opts);
    w.h.state_mut().settings.library = names
        .iter()
        .map(|n| Corpus::new(&dir.join(n), &dir.join(format!("{n}.index"))))
        .collect();
    w
}

#[test]
fn corpora_are_listed_searched_together_and_merged_by_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut w = with_library(d, &["thesis", "papers", "scans"], options(d));
    for (name, pages, model) in [("thesis", 40, "a"), ("papers", 12, "a"), ("scans", 6, "b")] {
        w.events
            .send(stats(
                &d.join(format!("{name}.index")),
                pages,
                made_with(model),
            ))
            .unwrap();
    }
    frames(&mut w.h, 3);
    for shown in ["thesis", "papers", "scans", "40", "models/b", "40.0 KiB"] {
        w.h.get_by_label(shown);
    }

    let reqs = search_all_by_keyboard(&mut w.h, &w.commands, "attention heads", &[]);
    let indexes: Vec<PathBuf> = reqs.iter().map(|r| r.index.clone()).collect();
    assert_eq!(
        indexes,
        ["thesis", "papers", "scans"].map(|n| d.join(format!("{n}.index")))
    );
    // Answers come back in any order; the list waits for all of them.
    for (r, scores) in reqs
        .iter()
        .zip([&[0.9, 0.5][..], &[0.7][..], &[30.0][..]])
        .rev()
    {
        assert!(w.h.state().search.pending.is_some());
        let corpus = r.index.file_stem().unwrap().to_string_lossy().into_owned();
        w.events
            .send(Event::SearchResults {
                id: r.id,
                query: r.query.clone(),
                hits: hits(&corpus, scores),
                elapsed_ms: 2.0,
                note: None,
                scorer: "exact MaxSim (CPU)".into(),
                timings: Default::default(),
                query_tokens: 0,
            })
            .unwrap();
        frames(&mut w.h, 2);
    }
    let app = w.h.state();
    let r = app.search.results.as_ref().expect("merged results");
    let order: Vec<(&str, f32)> = r
        .corpora
        .iter()
        .map(String::as_str)
        .zip(r.hits.iter().map(|h| h.score))
        .collect();
    assert_eq!(
        order,
        [
            ("thesis", 0.9),
            ("papers", 0.7),
            ("thesis", 0.5),
            ("scans", 30.0)
        ],
        "model a's scores interleave; model b's corpus comes after, apart"
    );
    assert_eq!(r.groups.len(), 2);
    assert_eq!(r.hits[3].rank, 1, "ranks restart in the other model's list");
    w.h.get_by_label_contains("Made with another model, models/b");
    assert_eq!(w.h.query_all_by_label("in thesis").count(), 2);
    // The corpus filter offers each corpus and narrows to one.
    w.h.get_by_label("Corpus").click();
    frames(&mut w.h, 2); // thumbnail spinners keep repainting
    w.h.get_by_label("papers").click();
    frames(&mut w.h, 2);
    assert_eq!(w.h.state().search.visible(), [1]);
}

#[test]
fn only_ticked_corpora_are_searched_and_a_failed_one_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut w = with_library(d, &["thesis", "papers", "old"], options(d));
    w.h.state_mut().settings.library[2].searched = false;
    let reqs = search_all_by_keyboard(&mut w.h, &w.commands, "lemma", &[]);
    let [first, second] = &reqs[..] else {
        panic!("two ticked corpora, two searches: {reqs:?}");
    };
    w.events
        .send(Event::Error {
            context: "search".into(),
            message: "index is busy".into(),
            request_id: Some(second.id),
        })
        .unwrap();
    w.events
        .send(Event::SearchResults {
            id: first.id,
            query: first.query.clone(),
            hits: hits("thesis", &[0.4]),
            elapsed_ms: 1.0,
            note: None,
            scorer: String::new(),
            timings: Default::default(),
            query_tokens: 0,
        })
        .unwrap();
    frames(&mut w.h, 3);
    let r = w.h.state().search.results.as_ref().expect("results");
    assert_eq!(r.hits.len(), 1);
    assert!(r
        .note
        .as_deref()
        .unwrap()
        .contains("papers: search failed: index is busy"));
}

#[test]
fn reingest_add_and_remove_with_the_index_folder() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut w = with_library(d, &["thesis", "papers"], options(d));
    let index = d.join("papers.index");
    std::fs::create_dir_all(&index).unwrap();
    std::fs::write(index.join("MANIFEST"), b"{}").unwrap();
    frames(&mut w.h, 2);

    w.h.query_all_by_label("Re-ingest").nth(1).unwrap().click();
    frames(&mut w.h, 2);
    match &drain(&w.commands)[..] {
        [Command::StartIngest {
            folder,
            index: i,
            settings,
        }] => {
            assert_eq!((folder, i), (&d.join("papers"), &index));
            assert!(settings.prune, "a re-ingest prunes vanished files");
        }
        other => panic!("expected one ingest: {other:?}"),
    }
    w.events.send(Event::IngestFinished(summary())).unwrap();
    frames(&mut w.h, 2);
    assert!(w.h.state().settings.library[1].last_ingest.is_some());

    // Add: the form's folder joins the library.
    w.h.state_mut().settings.folder = d.join("notes").display().to_string();
    frames(&mut w.h, 1);
    w.h.get_by_label("Add to library").click();
    frames(&mut w.h, 2);
    assert_eq!(w.h.state().settings.library.len(), 3);

    // Remove asks first; "Keep it" keeps it.
    w.h.query_all_by_label("Remove").nth(1).unwrap().click();
    frames(&mut w.h, 2);
    w.h.get_by_label("Keep it").click();
    frames(&mut w.h, 2);
    assert_eq!(w.h.state().settings.library.len(), 3);
    w.h.query_all_by_label("Remove").nth(1).unwrap().click();
    frames(&mut w.h, 2);
    w.h.get_by_label_contains("Also delete its index folder")
        .click();
    frames(&mut w.h, 1);
    w.h.get_by_label("Remove corpus").click();
    frames(&mut w.h, 2);
    let names: Vec<String> =
        w.h.state()
            .settings
            .library
            .iter()
            .map(Corpus::name)
            .collect();
    assert_eq!(names, ["thesis", "notes"]);
    assert!(
        frames_until(&mut w.h, Duration::from_secs(10), |_| !index.exists()),
        "the index folder is deleted off the UI thread"
    );
}

fn summary() -> IngestSummary {
    IngestSummary {
        pages_ingested: 1,
        files_done: 1,
        files_failed: 0,
        files_skipped: 0,
        files_removed: 0,
        wall_secs: 0.1,
        pages_per_sec: 10.0,
        stages: StageTimes::default(),
        cancelled: false,
        failures: Vec::new(),
        replicas: Vec::new(),
    }
}

fn ingests(commands: &[Command]) -> Vec<PathBuf> {
    commands
        .iter()
        .filter_map(|c| match c {
            Command::StartIngest {
                folder, settings, ..
            } => {
                assert!(settings.prune, "watch ingests prune deleted files");
                Some(folder.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn watched_folders_queue_one_ingest_at_a_time_and_pause_when_gone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for n in ["thesis", "papers"] {
        std::fs::create_dir(d.join(n)).unwrap();
    }
    let opts = AppOptions {
        watch: Some(WatchTimings {
            debounce: Duration::from_millis(40),
            poll: Duration::from_millis(20),
            rescan: Duration::from_millis(100),
        }),
        ..options(d)
    };
    let mut w = with_library(d, &["thesis", "papers"], opts);
    // On the CPU: a run the user starts would pause after its first batch to ask.
    w.events.send(Event::Device(cpu_device())).unwrap();
    let watching = |h: &Harness<'_, PagesightApp>| {
        let s = &h.state().library.watch_state;
        s.len() == 2
    };
    assert!(frames_until(&mut w.h, Duration::from_secs(10), watching));
    frames(&mut w.h, 3); // the baseline scans
    std::thread::sleep(Duration::from_millis(30));
    std::fs::write(d.join("thesis/new.pdf"), b"%PDF-1.4").unwrap();
    std::fs::write(d.join("papers/new.pdf"), b"%PDF-1.4").unwrap();
    let mut sent = Vec::new();
    assert!(frames_until(&mut w.h, Duration::from_secs(10), |_| {
        sent.extend(ingests(&drain(&w.commands)));
        !sent.is_empty()
    }));
    // One ingest runs; the other waits in the queue, shown on the status line.
    assert_eq!(sent.len(), 1);
    w.events
        .send(Event::IngestStarted {
            folder: sent[0].clone(),
            index: d.join("x"),
            settings: pagesight::engine::IngestSettings::with_defaults(),
            model_note: None,
        })
        .unwrap();
    assert!(frames_until(&mut w.h, Duration::from_secs(10), |h| {
        h.state()
            .status
            .activity
            .contains("1 watch ingest(s) queued")
    }));
    // A slow first batch of a long run: a watch ingest still never stops to ask.
    let mut stages = StageTimes::default();
    stages.add(Stage::Vision, 20.0);
    for e in [
        Event::BatchTimings {
            batch: 1,
            pages: 4,
            wall_secs: 20.0,
            stages,
        },
        Event::Progress(Progress {
            pages_done: 4,
            pages_total: 100,
            files_done: 0,
            files_total: 1,
            pages_per_sec: 0.2,
            eta_secs: None,
        }),
    ] {
        w.events.send(e).unwrap();
    }
    frames(&mut w.h, 3);
    let during = drain(&w.commands);
    assert!(!during.contains(&Command::Pause), "{during:?}");
    assert!(ingests(&during).is_empty(), "not while one runs");
    w.events.send(Event::IngestFinished(summary())).unwrap();
    assert!(frames_until(&mut w.h, Duration::from_secs(10), |_| {
        sent.extend(ingests(&drain(&w.commands)));
        sent.len() == 2
    }));
    sent.sort();
    assert_eq!(sent, [d.join("papers"), d.join("thesis")]);

    // The folder goes away: the watch pauses with a message, nothing is ingested or pruned.
    std::fs::remove_dir_all(d.join("papers")).unwrap();
    assert!(frames_until(&mut w.h, Duration::from_secs(10), |h| {
        h.state().notices().iter().any(|n| n.contains("paused"))
    }));
    frames(&mut w.h, 3);
    assert!(ingests(&drain(&w.commands)).is_empty());
    assert!(w.h.state().library.watch_state[&d.join("papers")].starts_with("paused"));
}
