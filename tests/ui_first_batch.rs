//! On the CPU the first batch tells what the whole ingest will cost: the app pauses the run,
//! shows the seconds per page, the pages and the estimated time, and Continue resumes (Cancel
//! cancels). Once per run; never on a GPU.

use crate::ui::{corpus_options, cpu_device, drain, wired, Wired};
use egui_kittest::kittest::Queryable;
use pagesight::engine::event::{DeviceInfo, Progress};
use pagesight::engine::{Command, Event, Stage, StageTimes};

/// A batch of 4 pages whose embedding took 20 s (vision and LM), after 3 s waiting for pages.
fn batch(n: u64) -> Event {
    let mut stages = StageTimes::default();
    stages.add(Stage::Render, 3.0);
    stages.add(Stage::Vision, 16.0);
    stages.add(Stage::Lm, 4.0);
    Event::BatchTimings {
        batch: n,
        pages: 4,
        wall_secs: stages.total(),
        stages,
    }
}

fn progress(done: u64, total: u64) -> Event {
    Event::Progress(Progress {
        pages_done: done,
        pages_total: total,
        files_done: 0,
        files_total: 5,
        pages_per_sec: 0.2,
        eta_secs: None,
    })
}

fn shown(w: &Wired<'_>, text: &str) -> bool {
    w.h.query_all_by_label_contains(text).next().is_some()
}

/// Start on `device` (the form's device left at auto), the engine's answer that it started, and
/// its first batch of 4 of 100 pages; returns the commands sent after Start.
fn first_batch_on(device: DeviceInfo) -> (Wired<'static>, Vec<Command>) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = wired(corpus_options(dir.path()));
    std::mem::forget(dir); // the app keeps paths into it for the test's length
    w.h.run();
    w.events.send(Event::Device(device)).unwrap();
    w.h.run();
    w.h.get_by_label("Start ingest").click();
    w.h.run();
    let Some(Command::StartIngest {
        folder,
        index,
        settings,
    }) = drain(&w.commands).into_iter().next()
    else {
        panic!("no StartIngest")
    };
    for e in [
        Event::IngestStarted {
            folder,
            index,
            settings,
            model_note: None,
        },
        progress(0, 100),
        batch(1),
        progress(4, 100),
    ] {
        w.events.send(e).unwrap();
    }
    w.h.run();
    let sent = drain(&w.commands);
    (w, sent)
}

#[test]
fn on_the_cpu_the_first_batch_pauses_the_run_and_shows_the_estimate() {
    let (mut w, sent) = first_batch_on(cpu_device());
    assert_eq!(sent, [Command::Pause]);
    w.events.send(Event::Paused).unwrap();
    w.h.run();
    // 20 s for 4 pages (the 3 s waiting for pages left out): 5 s a page, 100 pages.
    for text in [
        "5.0 s per page",
        "100 pages in this run",
        "about 8 min 20 s in all",
        "8 min 00 s still to go",
    ] {
        assert!(shown(&w, text), "{text}");
    }
    assert!(
        w.h.query_by_label("Resume").is_none(),
        "Continue is the one way on"
    );
    // The status bar says why the run waits, whichever view is open.
    w.h.get_by_label("Search").click();
    w.h.run();
    assert!(shown(&w, "ingest paused after its first batch"));
    w.h.get_by_label("Corpus / Ingest").click();
    w.h.run();
    w.h.get_by_label("Continue").click();
    w.h.run();
    assert_eq!(drain(&w.commands), [Command::Resume]);
    w.events.send(Event::Resumed).unwrap();
    w.h.run();
    assert!(w.h.query_by_label("Continue").is_none());
    assert!(!shown(&w, "s per page"));
    // Once per run: the next batches go on.
    for e in [batch(2), progress(8, 100), batch(3), progress(12, 100)] {
        w.events.send(e).unwrap();
    }
    w.h.run();
    assert_eq!(drain(&w.commands), []);
}

#[test]
fn cancel_on_the_estimate_cancels_the_run() {
    let (mut w, sent) = first_batch_on(cpu_device());
    assert_eq!(sent, [Command::Pause]);
    w.h.get_by_label("Cancel").click();
    w.h.run();
    assert_eq!(drain(&w.commands), [Command::Cancel]);
    assert!(w.h.query_by_label("Continue").is_none());
}

#[test]
fn on_a_gpu_the_first_batch_does_not_pause() {
    let (w, sent) = first_batch_on(crate::ui_defaults::gpu_device());
    assert_eq!(sent, []);
    assert!(w.h.query_by_label("Continue").is_none());
    assert!(!shown(&w, "s per page"));
}
