//! The desktop app against a live engine on the tiny model (CPU): pick the folder by typing its
//! path, ingest the sample PDFs plus a broken one, see progress reach done and the failure's reason,
//! see the transfer toggle disabled with the engine's reason, search, open a result with its
//! heatmap, and run a small A/B of two batch sizes. Also reports the UI frame time while the ingest
//! runs.

use crate::engine::{sample_corpus, test_settings};
use crate::ui::frames_until;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use pagesight::engine::{EngineHandle, EngineOptions, TransferMode};
use pagesight::ui::{AppOptions, PagesightApp, RunState};
use std::time::{Duration, Instant};

/// The app on `engine`'s channels with the test settings, its index at `index`, exports in `work`.
fn app_on(
    engine: &EngineHandle,
    index: &std::path::Path,
    work: &std::path::Path,
    folder: Option<&std::path::Path>,
) -> Harness<'static, PagesightApp> {
    let base = test_settings();
    let opts = AppOptions {
        index: Some(index.to_path_buf()),
        export_dir: Some(work.join("exports")),
        folder: folder.map(|f| f.to_path_buf()),
        model: Some(base.model.clone()),
        base_settings: Some(base),
        ..AppOptions::default()
    };
    let (commands, events) = (engine.commands.clone(), engine.events.clone());
    Harness::builder()
        .with_size(egui::vec2(1280.0, 900.0))
        .build_eframe(move |cc| PagesightApp::new(cc, commands, events, opts))
}

/// The engine's helper processes from the built binary (the test binary is no render worker).
fn worker_options(env: Vec<(std::ffi::OsString, std::ffi::OsString)>) -> EngineOptions {
    EngineOptions {
        worker_exe: Some(env!("CARGO_BIN_EXE_pagesight").into()),
        worker_env: env,
        thumbnail_timeout: Duration::from_secs(3),
    }
}

#[test]
fn ingest_search_heatmap_and_ab_against_the_live_engine() {
    let corpus = sample_corpus();
    std::fs::write(
        corpus.path().join("broken.pdf"),
        b"%PDF-1.7\nthis is not a real PDF",
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn_with(worker_options(Vec::new()));
    let base = test_settings();
    let mut h = app_on(&engine, &work.path().join("index"), work.path(), None);
    h.state_mut().settings.best_batch = false;
    h.state_mut().settings.batch_size = base.live.batch_size;
    h.state_mut().settings.workers = base.loader.workers;
    h.run();

    // Pick the folder (typed, as a user without a dialog would) and ingest.
    let folder = corpus.path().display().to_string();
    h.get_by_label("Folder").focus();
    h.get_by_label("Folder").type_text(&folder);
    h.run();
    assert_eq!(h.state().settings.folder, folder);
    h.get_by_label("Start ingest").click();
    h.step();
    h.state_mut().frame_stats_mut().clear();
    let finished = frames_until(&mut h, Duration::from_secs(600), |h| {
        !h.state().ingest.state.is_active()
    });
    assert!(
        finished,
        "ingest did not finish: {:?}",
        h.state().ingest.state
    );
    let fs = h.state().frame_stats();
    println!(
        "UI frame time during a live ingest (ingest view): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} frames",
        fs.quantile_ms(0.5).unwrap(),
        fs.quantile_ms(0.99).unwrap(),
        fs.max_ms().unwrap(),
        fs.len()
    );
    let RunState::Finished(summary) = &h.state().ingest.state else {
        panic!(
            "ingest ended as {:?}; notices: {:?}",
            h.state().ingest.state,
            h.state().notices()
        )
    };
    assert!(summary.pages_ingested > 0);
    assert_eq!(summary.files_failed, 1, "{summary:?}");
    let p = h.state().ingest.progress.clone().expect("progress shown");
    assert_eq!(p.pages_done, summary.pages_ingested);
    frames_until(&mut h, Duration::from_secs(2), |_| false);
    assert!(h.query_by_label_contains("Done: ").is_some());
    let reasons: Vec<String> = h
        .state()
        .ingest
        .files()
        .iter()
        .filter_map(|f| match &f.status {
            pagesight::engine::event::FileStatus::Failed { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect();
    assert!(
        reasons.len() == 1 && !reasons[0].is_empty(),
        "the broken PDF is listed with its reason: {reasons:?}"
    );
    assert!(
        h.query_by_label_contains(&reasons[0]).is_some(),
        "the reason is on screen"
    );
    println!("broken.pdf: {reasons:?}");
    assert!(h.query_by_label_contains("index: ").is_some());

    // No CUDA here: the toggle is disabled with the engine's own reason.
    h.get_by_label("Performance").click();
    h.run();
    let device = h
        .state()
        .status
        .device
        .clone()
        .expect("the engine reported its device");
    assert!(!device.cuda_available);
    for m in TransferMode::ALL {
        assert!(h.get_by_label(m.name()).accesskit_node().is_disabled());
    }
    let reason = device.unavailable_reason.expect("a reason");
    assert!(h
        .query_by_label(&format!("Transfer modes unavailable: {reason}"))
        .is_some());
    assert!(
        !h.state().perf.live.is_empty(),
        "metrics arrived during the ingest"
    );

    // Search and open the first result with its heatmap.
    h.get_by_label("Search").click();
    h.run();
    h.get_by_label("Query").focus();
    h.get_by_label("Query").type_text("introduction");
    h.step();
    h.key_press(egui::Key::Enter);
    let answered = frames_until(&mut h, Duration::from_secs(120), |h| {
        h.state().search.results.is_some()
    });
    assert!(answered, "no results; notices: {:?}", h.state().notices());
    assert!(!h.state().search.results.as_ref().unwrap().hits.is_empty());
    frames_until(&mut h, Duration::from_secs(5), |h| {
        h.state().search.results.is_some()
            && h.query_by_label_contains("no preview").is_none()
            && h.query_by_label_contains("Result 1:").is_some()
    });
    h.get_by_label_contains("Result 1:").click();
    frames_until(&mut h, Duration::from_secs(3), |h| {
        h.state().search.large_open
    });
    assert!(h.state().search.large_open);
    // The modal is laid out over a frame or two (sizing pass) before its widgets are reachable.
    frames_until(&mut h, Duration::from_secs(3), |h| {
        h.query_by_label("Heatmap").is_some()
    });
    assert!(
        !h.get_by_label("Heatmap").accesskit_node().is_disabled(),
        "the hit has a heatmap"
    );
    assert!(h
        .query_by_label_contains("Heatmap: per-patch similarity")
        .is_some());
    h.key_press(egui::Key::Escape);
    h.step();
    h.step();
    assert!(!h.state().search.large_open);

    // A small A/B of two batch sizes.
    h.get_by_label("Performance").click();
    h.step();
    h.get_by_label("A/B and recorded runs").click();
    h.step();
    h.state_mut().settings.ab.pages = 4;
    h.get_by_label("Run A/B").click();
    let done = frames_until(&mut h, Duration::from_secs(600), |h| {
        h.state().perf.runs.len() == 2
    });
    assert!(
        done,
        "A/B did not finish: {:?}; notices {:?}",
        h.state().perf.ab,
        h.state().notices()
    );
    frames_until(&mut h, Duration::from_secs(1), |_| false);
    let rows = h.state().perf.summary();
    assert_eq!(rows.len(), 2);
    assert!(
        rows.iter().all(|r| r.pages > 0 && r.pages_per_sec > 0.0),
        "{rows:?}"
    );
    assert!(
        h.state()
            .perf
            .runs
            .iter()
            .all(|r| !r.result.series.is_empty()),
        "both series present"
    );
    assert!(h.query_by_label("Summary").is_some());
    for r in &rows {
        assert!(
            h.query_all_by_label(&r.label).count() >= 1,
            "row {} shown",
            r.label
        );
    }
    drop(h);
    engine.shutdown();
}

/// Search results whose PDFs crash or hang PDFium when their thumbnails render: the app keeps
/// drawing frames, those cards say why they have no preview, and the others get theirs.
#[test]
fn results_whose_pdfs_crash_or_hang_pdfium_never_stall_the_app() {
    let corpus = sample_corpus();
    let work = tempfile::tempdir().unwrap();
    let index = work.path().join("index");
    let base = test_settings();
    {
        let plain = EngineHandle::spawn();
        crate::engine::ingest(&plain, corpus.path(), &index, base.clone());
    }
    // Only the thumbnail worker gets the faults: the samples ingested normally above.
    let engine = EngineHandle::spawn_with(worker_options(vec![(
        pagesight::loader::env_vars::WORKER_FAULT.into(),
        "abort:coral,hang:graphene".into(),
    )]));
    let mut h = app_on(&engine, &index, work.path(), Some(corpus.path()));
    h.run();
    h.get_by_label("Search").click();
    h.run();
    h.get_by_label("Query").focus();
    h.get_by_label("Query")
        .type_text("coral reef graphene trade attention");
    h.step();
    h.key_press(egui::Key::Enter);
    assert!(
        frames_until(&mut h, Duration::from_secs(120), |h| h
            .state()
            .search
            .results
            .is_some()),
        "no results; notices: {:?}",
        h.state().notices()
    );
    // Frames keep coming while one worker crashes and another hangs until it is killed.
    let mut slowest = Duration::ZERO;
    let t0 = Instant::now();
    let settled = |h: &Harness<'_, PagesightApp>| {
        let o = h.state().thumbnails().outcomes();
        o.pending == 0 && o.ready + o.failed.len() > 0
    };
    while t0.elapsed() < Duration::from_secs(60) && !settled(&h) {
        let t = Instant::now();
        h.step();
        slowest = slowest.max(t.elapsed());
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = h.state().thumbnails().outcomes();
    assert_eq!(o.pending, 0, "every card's thumbnail answered: {o:?}");
    assert!(o.ready > 0, "the other results got their previews: {o:?}");
    assert!(
        o.failed
            .iter()
            .all(|f| f.contains("coral") || f.contains("graphene")),
        "only the faulty PDFs failed: {o:?}"
    );
    assert!(
        o.failed
            .iter()
            .any(|f| f.contains("coral") && f.contains("SIGABRT"))
            && o.failed
                .iter()
                .any(|f| f.contains("graphene") && f.contains("did not render within 3 s")),
        "each card says why: {o:?}"
    );
    assert!(
        h.query_all_by_label_contains("no preview: PDFium failed")
            .next()
            .is_some(),
        "the reason is on screen"
    );
    assert!(
        slowest < Duration::from_secs(1),
        "a frame took {slowest:?} while PDFium crashed and hung"
    );
    drop(h);
    engine.shutdown();
}
