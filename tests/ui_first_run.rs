//! The first run: the real model is the default choice; the app asks the engine whether it is on
//! disk and, when it is not, shows its download (size, Download, progress with speed and time
//! left, Cancel, Resume) and holds Start back; random models sit under "developer", labelled as
//! meaningless. And the path a user takes with the model on disk — folder, Start, a search — to
//! the first result, in at most three clicks plus typing, against a live engine.

use crate::engine::{sample_corpus, test_settings};
use crate::ui::{corpus_options, drain, frames_until, wired, Wired};
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use pagesight::engine::event::ModelStatus;
use pagesight::engine::{Command, EngineHandle, EngineOptions, Event};
use pagesight::model::hub::{DownloadProgress, DEFAULT_ADAPTER, DEFAULT_MODEL};
use pagesight::ui::{AppOptions, PagesightApp};
use std::path::PathBuf;
use std::time::Duration;

fn real_status(on_disk: bool, present: u64) -> ModelStatus {
    ModelStatus {
        model: DEFAULT_MODEL.into(),
        adapter: Some(DEFAULT_ADAPTER.into()),
        on_disk,
        missing: if on_disk {
            vec![]
        } else {
            vec![DEFAULT_MODEL.into(), DEFAULT_ADAPTER.into()]
        },
        total_bytes: (!on_disk).then_some(7_600_000_000),
        present_bytes: present,
        size_note: None,
        cache_dir: PathBuf::from("/home/u/.cache/huggingface/hub"),
    }
}

/// The app on a fresh profile with `/corpus` chosen, after the engine answered `status`; the
/// commands it sent on start are returned.
fn first_run(status: Option<ModelStatus>) -> (Wired<'static>, Vec<Command>) {
    let dir = tempfile::tempdir().unwrap();
    let mut w = wired(corpus_options(dir.path()));
    w.h.run();
    let sent: Vec<Command> = w.commands.try_iter().collect();
    if let Some(s) = status {
        w.events.send(Event::ModelStatus(s)).unwrap();
        w.h.run();
    }
    std::mem::forget(dir); // the app keeps paths into it for the test's length
    (w, sent)
}

/// Some widget's label holds `text` (the panel and the notices may both show it).
fn shows(h: &Harness<'_, PagesightApp>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

fn start_sends_ingest(w: &mut Wired<'static>) -> bool {
    w.h.get_by_label("Start ingest").click();
    w.h.run();
    drain(&w.commands)
        .iter()
        .any(|c| matches!(c, Command::StartIngest { .. }))
}

#[test]
fn first_run_chooses_the_real_model_and_asks_whether_it_is_on_disk() {
    let (w, sent) = first_run(None);
    assert!(
        sent.contains(&Command::CheckModel {
            model: DEFAULT_MODEL.into(),
            adapter: Some(DEFAULT_ADAPTER.into()),
        }),
        "{sent:?}"
    );
    let m = &w.h.state().settings.model;
    assert_eq!(
        (m.model.as_str(), m.adapter.as_deref()),
        (DEFAULT_MODEL, Some(std::path::Path::new(DEFAULT_ADAPTER)))
    );
    // No answer yet: nothing claims the model is missing.
    assert!(!shows(&w.h, "is not on disk"));
}

#[test]
fn first_run_with_the_model_on_disk_shows_no_download_and_starts() {
    let (mut w, _) = first_run(Some(real_status(true, 0)));
    assert!(!shows(&w.h, "is not on disk"));
    assert!(!shows(&w.h, "Download"));
    assert!(start_sends_ingest(&mut w));
}

#[test]
fn first_run_without_the_model_offers_its_download_and_holds_start() {
    let (mut w, _) = first_run(Some(real_status(false, 0)));
    assert!(shows(&w.h, "is not on disk"));
    assert!(shows(&w.h, "Download size 7.1 GiB"));
    assert!(shows(&w.h, "huggingface/hub"), "where it goes");
    assert!(w
        .h
        .get_by_label("Start ingest")
        .accesskit_node()
        .is_disabled());
    assert!(!start_sends_ingest(&mut w));
    w.h.get_by_label("Download (7.1 GiB)").click();
    w.h.run();
    assert_eq!(
        drain(&w.commands),
        vec![Command::DownloadModel {
            model: DEFAULT_MODEL.into(),
            adapter: Some(DEFAULT_ADAPTER.into()),
        }]
    );
}

#[test]
fn a_download_shows_progress_speed_and_time_left_and_cancels() {
    let (mut w, _) = first_run(Some(real_status(false, 0)));
    w.h.get_by_label("Download (7.1 GiB)").click();
    w.h.run();
    drain(&w.commands);
    w.events
        .send(Event::DownloadProgress(DownloadProgress {
            repo: DEFAULT_MODEL.into(),
            file: "model-00001-of-00002.safetensors".into(),
            file_done: 1 << 30,
            file_total: 4 << 30,
            done: 2 << 30,
            total: 8 << 30,
            bytes_per_sec: 50.0 * 1024.0 * 1024.0,
            eta_secs: Some(123.0),
        }))
        .unwrap();
    w.h.run();
    assert!(shows(&w.h, "Downloading ColQwen2.5"));
    for part in [
        "2.0 GiB of 8.0 GiB",
        "50.0 MiB/s",
        "2 min 03 s left",
        "model-00001-of-00002.safetensors",
    ] {
        assert!(shows(&w.h, part), "no {part:?} on screen");
    }
    assert!(w
        .h
        .get_by_label("Start ingest")
        .accesskit_node()
        .is_disabled());
    w.h.get_by_label("Cancel download").click();
    w.h.run();
    assert_eq!(drain(&w.commands), vec![Command::CancelDownload]);
}

#[test]
fn a_cancelled_download_offers_resume() {
    let (mut w, _) = first_run(Some(real_status(false, 0)));
    w.h.get_by_label("Download (7.1 GiB)").click();
    w.h.run();
    w.events
        .send(Event::DownloadFailed {
            model: DEFAULT_MODEL.into(),
            adapter: Some(DEFAULT_ADAPTER.into()),
            message: "download cancelled".into(),
            cancelled: true,
        })
        .unwrap();
    w.h.run();
    assert!(shows(&w.h, "Download cancelled"));
    // The app asks again (what was kept counts now), and the engine says so.
    let asked = w
        .commands
        .try_iter()
        .any(|c| matches!(c, Command::CheckModel { .. }));
    assert!(asked, "no new CheckModel after the cancel");
    w.events
        .send(Event::ModelStatus(real_status(false, 3_000_000_000)))
        .unwrap();
    w.h.run();
    assert!(shows(&w.h, "already there"));
    w.h.get_by_label("Resume download").click();
    w.h.run();
    assert!(matches!(
        &drain(&w.commands)[..],
        [Command::DownloadModel { .. }]
    ));
    // A restart with a partial download also says Resume.
    let (w2, _) = first_run(Some(real_status(false, 3_000_000_000)));
    assert!(w2.h.query_by_label("Resume download").is_some());
}

#[test]
fn a_failed_download_says_why_and_finished_one_unblocks_start() {
    let (mut w, _) = first_run(Some(real_status(false, 0)));
    w.events
        .send(Event::DownloadFailed {
            model: DEFAULT_MODEL.into(),
            adapter: Some(DEFAULT_ADAPTER.into()),
            message: "could not reach the Hugging Face hub (offline?)".into(),
            cancelled: false,
        })
        .unwrap();
    w.h.run();
    assert!(shows(&w.h, "could not reach the Hugging Face hub"));
    w.events
        .send(Event::DownloadFinished {
            model: DEFAULT_MODEL.into(),
            adapter: Some(DEFAULT_ADAPTER.into()),
        })
        .unwrap();
    w.h.run();
    w.events
        .send(Event::ModelStatus(real_status(true, 0)))
        .unwrap();
    w.h.run();
    assert!(!shows(&w.h, "is not on disk"));
    assert!(start_sends_ingest(&mut w));
}

#[test]
fn random_models_are_under_developer_and_labelled_meaningless() {
    let (mut w, _) = first_run(Some(real_status(true, 0)));
    w.h.get_by_role_and_label(egui::accesskit::Role::ComboBox, "Model")
        .click();
    w.h.run();
    let label = "developer: random:tiny (random weights — results are meaningless, for testing)";
    w.h.get_by_label(label).click();
    w.h.run();
    assert_eq!(w.h.state().settings.model.model, "random:tiny");
    assert_eq!(w.h.state().settings.model.adapter, None);
    assert!(shows(
        &w.h,
        "random weights — results are meaningless, for testing"
    ));
    let asked: Vec<Command> = w.commands.try_iter().collect();
    assert!(
        asked.contains(&Command::CheckModel {
            model: "random:tiny".into(),
            adapter: None
        }),
        "{asked:?}"
    );
}

/// Folder chosen → Start → a search → the first result on screen, counting clicks.
#[test]
fn first_result_in_at_most_three_clicks_with_the_model_on_disk() {
    let corpus = sample_corpus();
    let work = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn_with(EngineOptions {
        worker_exe: Some(env!("CARGO_BIN_EXE_pagesight").into()),
        worker_env: Vec::new(),
        thumbnail_timeout: Duration::from_secs(3),
    });
    // The model on disk: the tiny checkpoint's snapshot folder.
    let mut base = test_settings();
    base.model.model = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/colqwen_tiny/model")
        .display()
        .to_string();
    let opts = AppOptions {
        index: Some(work.path().join("index")),
        export_dir: Some(work.path().join("exports")),
        model: Some(base.model.clone()),
        base_settings: Some(base.clone()),
        ..AppOptions::default()
    };
    let (commands, events) = (engine.commands.clone(), engine.events.clone());
    let mut h: Harness<'static, PagesightApp> = Harness::builder()
        .with_size(egui::vec2(1280.0, 900.0))
        .build_eframe(move |cc| PagesightApp::new(cc, commands, events, opts));
    h.state_mut().settings.best_batch = false;
    h.state_mut().settings.batch_size = base.live.batch_size;
    h.state_mut().settings.workers = base.loader.workers;
    h.run();
    let mut clicks = 0;

    // The folder, typed (the Browse dialog is one more click where a user uses it).
    h.get_by_label("Folder").focus();
    h.get_by_label("Folder")
        .type_text(&corpus.path().display().to_string());
    h.run();
    frames_until(&mut h, Duration::from_secs(10), |h| {
        h.state().model_panel.status.is_some()
    });
    assert!(!shows(&h, "is not on disk"));
    h.get_by_label("Start ingest").click();
    clicks += 1;
    let done = frames_until(&mut h, Duration::from_secs(600), |h| {
        !h.state().ingest.state.is_active()
    });
    assert!(
        done,
        "ingest did not finish; notices: {:?}",
        h.state().notices()
    );
    h.get_by_label("Search").click();
    clicks += 1;
    h.run();
    h.get_by_label("Query").focus();
    h.get_by_label("Query").type_text("introduction");
    h.step();
    h.key_press(egui::Key::Enter);
    let shown = frames_until(&mut h, Duration::from_secs(120), |h| shows(h, "Result 1:"));
    assert!(shown, "no first result; notices: {:?}", h.state().notices());
    assert!(clicks <= 3, "{clicks} clicks to the first result");
    println!("first result after {clicks} clicks plus typing the folder and the query");
}
