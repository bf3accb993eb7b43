//! The Corpus form shows folder, model and Start up front; the engineering choices sit under
//! "Advanced", closed at first, with a summary line of what Start will use while closed and a
//! hint under each row when open. The transfer mode chosen there is the one Start sends.

use crate::ui::{corpus_options, cpu_device, drain, wired, Wired};
use egui_kittest::kittest::{NodeT, Queryable};
use pagesight::engine::{Command, Event, TransferMode};

/// Each Advanced row and a piece of its hint.
const ROWS: [(&str, &str); 9] = [
    ("Device", "auto takes the GPU when there is one"),
    (
        "Precision",
        "the fastest precision measured for this device",
    ),
    ("Quantisation", "4-bit weights (nf4, q4k) are smaller"),
    ("Batch", "pages embedded together"),
    ("Workers", "processes rendering PDF pages"),
    (
        "Transfer",
        "how pages reach the GPU: async overlaps the copy with compute",
    ),
    ("Visual tokens", "how finely a page is seen"),
    ("best for this device", ""),
    ("best size for this device", ""),
];

fn shown(w: &Wired<'_>, text: &str) -> bool {
    w.h.query_all_by_label_contains(text).next().is_some()
}

/// The app with `/corpus` chosen, 3 render workers, after `device` was reported.
fn form_on(device: pagesight::engine::event::DeviceInfo) -> Wired<'static> {
    let dir = tempfile::tempdir().unwrap();
    let mut w = wired(corpus_options(dir.path()));
    std::mem::forget(dir); // the app keeps paths into it for the test's length
    w.h.state_mut().settings.workers = 3;
    w.h.run();
    w.events.send(Event::Device(device)).unwrap();
    w.h.run();
    w
}

#[test]
fn advanced_is_closed_at_first_with_a_summary_and_opens_on_its_rows_and_hints() {
    let mut w = form_on(crate::ui_defaults::gpu_device());
    assert!(!w.h.state().settings.advanced_open);
    for (row, hint) in ROWS {
        assert!(
            w.h.query_by_label(row).is_none(),
            "{row} shown while closed"
        );
        assert!(
            hint.is_empty() || !shown(&w, hint),
            "{hint} shown while closed"
        );
    }
    assert!(
        w.h.query_by_label(
            "cuda:0 · bf16 compute, NF4 weights · batch 8 · 3 workers · async transfer"
        )
        .is_some(),
        "the summary line names device, precision, batch, workers and transfer"
    );
    // Folder, model and Start stay up front.
    for up_front in ["Folder", "Model", "Start ingest"] {
        assert!(
            w.h.query_all_by_label(up_front).next().is_some(),
            "{up_front}"
        );
    }

    w.h.get_by_label("Advanced").click();
    w.h.run();
    assert!(
        w.h.state().settings.advanced_open,
        "remembered in the settings"
    );
    for (row, hint) in ROWS {
        assert!(w.h.query_by_label(row).is_some(), "row {row}");
        assert!(shown(&w, hint), "the hint of {row}: {hint}");
    }
    for mode in TransferMode::ALL {
        assert!(!w.h.get_by_label(mode.name()).accesskit_node().is_disabled());
    }
    assert!(!shown(&w, "async transfer"), "open, the rows say it");

    w.h.get_by_label("Advanced").click();
    w.h.run();
    assert!(!w.h.state().settings.advanced_open);
    assert!(w.h.query_by_label("Transfer").is_none());
}

#[test]
fn the_transfer_mode_chosen_under_advanced_is_what_start_sends() {
    let mut w = form_on(crate::ui_defaults::gpu_device());
    w.h.get_by_label("Advanced").click();
    w.h.run();
    drain(&w.commands);
    w.h.get_by_label("sync").click();
    w.h.run();
    assert_eq!(w.h.state().settings.transfer, TransferMode::Sync);
    assert_eq!(drain(&w.commands), [], "the form's choice waits for Start");
    // Closed again, the summary tells the new choice.
    w.h.get_by_label("Advanced").click();
    w.h.run();
    assert!(shown(&w, "· sync transfer"));
    w.h.get_by_label("Start ingest").click();
    w.h.run();
    match drain(&w.commands).into_iter().next() {
        Some(Command::StartIngest { settings, .. }) => {
            assert_eq!(settings.live.transfer, TransferMode::Sync)
        }
        other => panic!("no StartIngest: {other:?}"),
    }
}

#[test]
fn on_the_cpu_the_summary_says_so_and_the_transfer_choice_says_why_not() {
    let mut w = form_on(cpu_device());
    assert!(w
        .h
        .query_by_label(
            "cpu · f32 compute, unquantised weights · batch 4 · 3 workers · pageable transfer"
        )
        .is_some());
    w.h.get_by_label("Advanced").click();
    w.h.run();
    for mode in TransferMode::ALL {
        assert!(w.h.get_by_label(mode.name()).accesskit_node().is_disabled());
    }
    assert!(shown(
        &w,
        "unavailable here: this pagesight was built without the `cuda` feature"
    ));
}

/// The batch follows the device (8 on a GPU, 4 on the CPU) until the user sets one, which Start
/// then sends.
#[test]
fn the_batch_is_the_devices_best_until_the_user_sets_one() {
    let start_batch = |w: &mut Wired<'_>| {
        drain(&w.commands);
        w.h.get_by_label("Start ingest").click();
        w.h.run();
        match drain(&w.commands).into_iter().next() {
            Some(Command::StartIngest { settings, .. }) => settings.live.batch_size,
            other => panic!("no StartIngest: {other:?}"),
        }
    };
    let mut cpu = form_on(cpu_device());
    assert_eq!(start_batch(&mut cpu), 4);
    let mut gpu = form_on(crate::ui_defaults::gpu_device());
    assert_eq!(start_batch(&mut gpu), 8);
    // A new window, as a running ingest locks the form.
    let mut w = form_on(crate::ui_defaults::gpu_device());
    w.h.get_by_label("Advanced").click();
    w.h.run();
    assert!(shown(&w, "batch 8"), "the size the box stands for");
    w.h.get_by_label("best size for this device").click();
    w.h.run();
    assert!(!w.h.state().settings.best_batch);
    w.h.state_mut().settings.batch_size = 3;
    w.h.run();
    assert_eq!(start_batch(&mut w), 3, "the user's size wins");
}

/// FP8 GEMMs are offered under Advanced for NF4 weights only; chosen, the summary names them
/// and Start sends them.
#[test]
fn fp8_gemms_are_offered_for_nf4_and_what_start_sends() {
    use pagesight::engine::{Compute, Quant};
    let mut w = form_on(crate::ui_defaults::gpu_device());
    w.h.get_by_label("Advanced").click();
    w.h.run();
    w.h.get_by_label("best for this device").click();
    w.h.run();
    w.h.get_by_label("none").click();
    w.h.run();
    assert!(
        w.h.get_by_label("fp8 GEMMs").accesskit_node().is_disabled(),
        "no FP8 without NF4"
    );
    w.h.get_by_label("nf4").click();
    w.h.run();
    w.h.get_by_label("fp8 GEMMs").click();
    w.h.run();
    assert_eq!(w.h.state().settings.model.compute, Compute::Fp8);
    w.h.get_by_label("Advanced").click();
    w.h.run();
    assert!(shown(&w, "with fp8 GEMMs, NF4 weights"));
    drain(&w.commands);
    w.h.get_by_label("Start ingest").click();
    w.h.run();
    match drain(&w.commands).into_iter().next() {
        Some(Command::StartIngest { settings, .. }) => {
            assert_eq!(
                (settings.model.quant, settings.model.compute),
                (Quant::Nf4, Compute::Fp8)
            )
        }
        other => panic!("no StartIngest: {other:?}"),
    }
}
