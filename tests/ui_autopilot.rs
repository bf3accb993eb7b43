//! `bench gui-frames`' autopilot without a display: its bookkeeping (frames by phase, the
//! figures, the goal, the table and the JSON) on known frame times, and its scenario driving the
//! real app on a live engine (tiny model, CPU) headless through egui_kittest — idle, the ingest
//! it starts, the PDFs it drops into the watched folder and their watch ingests, searches in
//! every mode — with every phase's frames counted and the new files in the index at the end.

use crate::engine::{sample_corpus, test_settings};
use egui_kittest::Harness;
use pagesight::devtools::hostile::pdf::{document, PageSpec};
use pagesight::engine::{EngineHandle, EngineOptions};
use pagesight::ui::autopilot::{
    Autopilot, NewPdf, Phase, PhaseFrames, ScenarioPlan, ScenarioReport, GOAL_P99_MS,
};
use pagesight::ui::watch::WatchTimings;
use pagesight::ui::{AppOptions, PagesightApp};
use std::time::{Duration, Instant};

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1e3)
}

#[test]
fn phase_figures_table_and_json() {
    let mut f = PhaseFrames::default();
    let t = Duration::ZERO;
    // idle: 1..=100 ms / 100; ingest: 100 frames of 2 ms and one of 30 ms; watch: 5 ms each.
    for k in 1..=100 {
        f.record(Phase::Idle, "ingest", t, ms(k as f64 / 100.0));
    }
    for _ in 0..100 {
        f.record(Phase::Ingest, "performance", t, ms(2.0));
    }
    f.record(Phase::Ingest, "ingest", Duration::from_secs(7), ms(30.0));
    for _ in 0..10 {
        f.record(Phase::Watch, "ingest", t, ms(5.0));
    }
    f.add_time(Phase::Idle, Duration::from_secs(2));
    f.add_time(Phase::Ingest, Duration::from_secs(3));
    assert_eq!(f.frames(Phase::Ingest), 101);
    assert_eq!(f.total_frames(), 211);

    let r = ScenarioReport::new(&f, true, vec!["a note".into()]);
    let names: Vec<&str> = r.phases.iter().map(|p| p.phase.as_str()).collect();
    assert_eq!(
        names,
        ["idle", "ingest", "watch", "download", "search", "all"]
    );
    let idle = r.row("idle").unwrap();
    assert_eq!(idle.frames, 100);
    assert_eq!(idle.p50_ms, Some(0.5));
    assert_eq!(idle.p90_ms, Some(0.9));
    assert_eq!(idle.p99_ms, Some(0.99));
    assert_eq!(idle.max_ms, Some(1.0));
    assert_eq!((idle.secs, idle.fps), (2.0, 50.0));
    let ingest = r.row("ingest").unwrap();
    // One slow frame in 101 is beyond the 99th percentile: p99 stays 2 ms, max shows it.
    assert_eq!(ingest.p99_ms, Some(2.0));
    assert_eq!(ingest.max_ms, Some(30.0));
    let download = r.row("download").unwrap();
    assert_eq!((download.frames, download.p99_ms), (0, None));
    let all = r.row("all").unwrap();
    assert_eq!(all.frames, 211);
    assert_eq!(all.secs, 5.0);
    assert_eq!(all.max_ms, Some(30.0));
    // A phase without frames cannot have met the goal.
    assert!(!r.goal_met);
    assert_eq!(r.phases_missing_goal(), ["download", "search"]);
    assert_eq!(r.goal_p99_ms, GOAL_P99_MS);
    assert_eq!(r.slowest_frames[0].ms, 30.0);
    assert_eq!(r.slowest_frames[0].phase, Phase::Ingest);
    assert_eq!(r.slowest_frames[0].at_secs, 7.0);

    let table = r.table();
    for needle in [
        "phase",
        "idle",
        "ingest",
        "all",
        "p99 ms",
        "MISSED in download, search",
    ] {
        assert!(table.contains(needle), "no {needle:?} in\n{table}");
    }
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["phases"][1]["phase"], "ingest");
    assert_eq!(json["phases"][1]["frames"], 101);
    assert_eq!(json["phases"][3]["p99_ms"], serde_json::Value::Null);
    assert_eq!(json["slowest_frames"][0]["phase"], "ingest");
    let back: ScenarioReport = serde_json::from_value(json).unwrap();
    assert_eq!(back, r);

    // Every phase with frames under the goal: met.
    let mut ok = PhaseFrames::default();
    for p in Phase::ALL {
        for _ in 0..50 {
            ok.record(p, "search", t, ms(1.0));
        }
    }
    let r = ScenarioReport::new(&ok, true, Vec::new());
    assert!(r.goal_met, "{}", r.table());
    assert!(r.table().contains("met"));
    // p99 at the goal is a miss.
    let mut slow = ok.clone();
    for _ in 0..10 {
        slow.record(Phase::Search, "search", t, ms(GOAL_P99_MS));
    }
    let r = ScenarioReport::new(&slow, true, Vec::new());
    assert_eq!(r.phases_missing_goal(), ["search", "all"]);
    assert_eq!(Phase::Idle.next(), Some(Phase::Ingest));
    assert_eq!(Phase::Search.next(), None);
}

fn new_pdf(name: &str, n: u32) -> NewPdf {
    let page = PageSpec::a4(vec![
        format!("Autopilot page {n}"),
        "Lighthouse keepers logged the storms of the northern coast.".into(),
    ]);
    NewPdf {
        name: name.into(),
        bytes: document(&[page], None),
    }
}

#[test]
fn the_scenario_drives_the_real_app_through_every_phase() {
    let corpus = sample_corpus();
    let initial = std::fs::read_dir(corpus.path()).unwrap().count();
    let work = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn_with(EngineOptions {
        worker_exe: Some(env!("CARGO_BIN_EXE_pagesight").into()),
        worker_env: Vec::new(),
        thumbnail_timeout: Duration::from_secs(5),
    });
    let base = test_settings();
    let opts = AppOptions {
        index: Some(work.path().join("index")),
        export_dir: Some(work.path().join("exports")),
        folder: Some(corpus.path().to_path_buf()),
        model: Some(base.model.clone()),
        base_settings: Some(base.clone()),
        watch: Some(WatchTimings {
            debounce: Duration::from_millis(300),
            poll: Duration::from_millis(500),
            rescan: Duration::from_secs(60),
        }),
        ..AppOptions::default()
    };
    let plan = ScenarioPlan {
        folder: corpus.path().to_path_buf(),
        phase_secs: Duration::from_millis(500),
        during_ingest: vec![new_pdf("dropped-during.pdf", 1)],
        after_ingest: vec![new_pdf("dropped-after.pdf", 2)],
        // This process's environment stays the hub's real one: no download here.
        download: None,
        queries: vec!["coral reef".into(), "trade routes".into()],
        fps: 0.0,
        view_every: Duration::from_millis(300),
        phase_timeout: Duration::from_secs(300),
        close_when_done: true,
    };
    let (commands, events) = (engine.commands.clone(), engine.events.clone());
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_eframe(move |cc| {
            let mut app = PagesightApp::new(cc, commands, events, opts);
            app.settings.best_batch = false;
            app.settings.batch_size = base.live.batch_size;
            app.settings.workers = base.loader.workers;
            Autopilot::new(app, plan)
        });
    let t0 = Instant::now();
    let mut phases_seen = Vec::new();
    while h.state().phase().is_some() && t0.elapsed() < Duration::from_secs(900) {
        h.step();
        let p = h.state().phase();
        if let Some(p) = p {
            if phases_seen.last() != Some(&p) {
                phases_seen.push(p);
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let report = h
        .state()
        .report()
        .cloned()
        .unwrap_or_else(|| panic!("the scenario did not end; phases {phases_seen:?}"));
    println!("{}", report.table());
    println!("notes: {:?}", report.notes);
    assert_eq!(
        phases_seen,
        [Phase::Idle, Phase::Ingest, Phase::Watch, Phase::Search],
        "the phases in order (no download without a hub)"
    );
    assert!(report.completed, "{:?}", report.notes);
    for phase in ["idle", "ingest", "watch", "search"] {
        let row = report.row(phase).unwrap();
        assert!(row.frames > 0, "no frames in {phase}");
        assert!(row.secs > 0.0, "no time in {phase}");
        assert!(row.p99_ms.is_some() && row.max_ms >= row.p99_ms);
    }
    assert!(report.row("idle").unwrap().secs >= 0.5);
    assert_eq!(report.row("download").unwrap().frames, 0);
    assert!(
        report.notes.iter().any(|n| n.contains("download: skipped")),
        "{:?}",
        report.notes
    );
    let sum: usize = Phase::ALL
        .iter()
        .map(|p| report.row(p.name()).unwrap().frames)
        .sum();
    assert_eq!(report.row("all").unwrap().frames, sum);
    // The ingest and the watch's ingests put every PDF into the index: the folder's and the two
    // the autopilot wrote.
    assert_eq!(
        report.files_indexed,
        Some(initial as u64 + 2),
        "{:?}",
        report.notes
    );
    assert!(report.pages_indexed.unwrap() > 0);
    assert!(report.searches >= 2, "searches: {}", report.searches);
    let app = h.state().app();
    let results = app
        .search
        .results
        .as_ref()
        .expect("the last search's results");
    assert!(!results.hits.is_empty());
    assert!(!app.search.large_open, "the large view was closed again");
    assert!(!app.ingest.state.is_active());
    // The JSON the benchmark writes reads back (floats to within their last digit).
    let back: ScenarioReport =
        serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();
    assert_eq!(back.notes, report.notes);
    assert_eq!(back.phases.len(), report.phases.len());
    for (b, r) in back.phases.iter().zip(&report.phases) {
        assert_eq!((&b.phase, b.frames), (&r.phase, r.frames));
        let close = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => (x - y).abs() < 1e-9,
            (x, y) => x == y,
        };
        assert!(
            close(b.p99_ms, r.p99_ms) && close(b.max_ms, r.max_ms),
            "{b:?} vs {r:?}"
        );
    }
}
