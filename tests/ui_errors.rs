//! Errors from the engine end the run they belong to, and only that: before a run starts any
//! error ends it, after it started only the one that says it stopped; a dead engine is reported.

use super::ui::{corpus_options, drain, wired, Wired};
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use pagesight::engine::{Command, Event};
use pagesight::ui::{PagesightApp, RunState};

/// The app with `/corpus` chosen after *Start ingest* was clicked, and the command it sent.
fn started(dir: &std::path::Path) -> (Wired<'static>, Command) {
    let mut w = wired(corpus_options(dir));
    w.h.run();
    w.h.get_by_label("Start ingest").click();
    w.h.run();
    let sent = drain(&w.commands).into_iter().next();
    match sent {
        Some(start @ Command::StartIngest { .. }) => (w, start),
        other => panic!("Start ingest sent {other:?}"),
    }
}

#[test]
fn an_error_before_the_run_starts_ends_it_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (Wired { mut h, events, .. }, _) = started(dir.path());
    events
        .send(Event::Error {
            context: "model".into(),
            message: "no snapshot at /x: download it first".into(),
            request_id: None,
        })
        .unwrap();
    h.run();
    assert_eq!(
        h.state().ingest.state,
        RunState::Failed("model: no snapshot at /x: download it first".into())
    );
    assert!(h
        .query_by_label_contains("Failed: model: no snapshot")
        .is_some());
    assert!(!h
        .get_by_label("Start ingest")
        .accesskit_node()
        .is_disabled());
}

#[test]
fn a_started_run_ends_on_its_failure_but_not_on_other_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (Wired { mut h, events, .. }, start) = started(dir.path());
    let Command::StartIngest {
        folder,
        index,
        settings,
    } = start
    else {
        unreachable!("started returns the StartIngest")
    };
    let send = |e: Event| events.send(e).unwrap();
    send(Event::IngestStarted {
        folder: folder.clone(),
        index,
        settings,
        model_note: None,
    });
    // A refused live setting is reported but the run goes on.
    send(Event::Error {
        context: "transfer mode".into(),
        message: "async needs a CUDA device".into(),
        request_id: None,
    });
    h.run();
    assert_eq!(h.state().ingest.state, RunState::Running);
    send(Event::Error {
        context: pagesight::engine::ingest::failure_context(&folder),
        message: "libpdfium.so not found; set PDFIUM_LIB".into(),
        request_id: None,
    });
    h.run();
    assert!(
        matches!(&h.state().ingest.state, RunState::Failed(why) if why.contains("PDFIUM_LIB")),
        "{:?}",
        h.state().ingest.state
    );
    assert!(!h
        .get_by_label("Start ingest")
        .accesskit_node()
        .is_disabled());
    assert!(h.get_by_label("Cancel").accesskit_node().is_disabled());
}

#[test]
fn engine_gone_is_reported_not_hung() {
    let dir = tempfile::tempdir().unwrap();
    let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
    let (ev_tx, ev_rx) = crossbeam_channel::unbounded::<Event>();
    drop(ev_tx);
    drop(cmd_rx);
    let opts = corpus_options(dir.path());
    let mut h =
        Harness::builder().build_eframe(move |cc| PagesightApp::new(cc, cmd_tx, ev_rx, opts));
    h.run();
    assert!(h.query_by_label("engine not running").is_some());
    h.get_by_label("Start ingest").click();
    h.run();
    assert!(matches!(h.state().ingest.state, RunState::Failed(_)));
}
