//! Recorded runs in the Performance view: a benchmark file loads (and a bad one is reported), the
//! committed GPU benchmark output loads, and `gui --runs FILE` opens with it.

use super::ui::{frames_until, options, side, wired, Wired};
use egui_kittest::kittest::Queryable;
use std::time::Duration;

#[test]
fn loads_a_recorded_run_and_reports_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("run.json");
    let doc = pagesight::ui::runs::RecordedRuns::new(vec![
        side("h100 async", 16, 40.0),
        side("h100 sync", 16, 25.0),
    ]);
    std::fs::write(&good, serde_json::to_string(&doc).unwrap()).unwrap();
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"runs\": []}").unwrap();
    let Wired { mut h, .. } = wired(options(dir.path()));
    h.run();
    h.get_by_label("Performance").click();
    h.run();
    h.get_by_label("A/B and recorded runs").click();
    h.run();
    h.get_by_label("Recorded run file").focus();
    h.get_by_label("Recorded run file")
        .type_text(&good.display().to_string());
    h.run();
    h.get_by_label("Load").click();
    assert!(frames_until(&mut h, Duration::from_secs(5), |h| h
        .state()
        .perf
        .runs
        .len()
        == 2));
    h.run();
    assert!(h.query_by_label_contains("h100 async (run.json)").is_some());
    assert!(
        h.query_by_label("0.62×").is_some(),
        "speedup of the second run against the first"
    );

    h.state_mut().perf.run_file = bad.display().to_string();
    h.get_by_label("Load").click();
    assert!(frames_until(&mut h, Duration::from_secs(5), |h| h
        .state()
        .notices()
        .iter()
        .any(|n| n.contains("bad.json"))));
    let n = h.state().notices().last().cloned().unwrap();
    assert!(n.contains("no `schema`"), "{n}");
    assert_eq!(h.state().perf.runs.len(), 2);
}

/// The Performance view's recorded runs include real benchmark output: the H200 `bench ingest` JSON
/// committed under bench/results loads with every run, its numbers and its metrics series.
#[test]
fn committed_gpu_bench_json_loads_as_recorded_runs() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("bench/results/2026-11-26-H200-ingest-nf4-bf16-final.json");
    let runs = pagesight::ui::runs::load_runs(&path).unwrap();
    let labels: Vec<&str> = runs.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        [
            "nf4 sync",
            "nf4 async",
            "nf4 async-u8",
            "none sync",
            "none async",
            "none async-u8"
        ]
    );
    let u8 = &runs[2];
    assert!(
        (u8.pages_per_sec - 23.10).abs() < 0.01,
        "{}",
        u8.pages_per_sec
    );
    assert!(u8.gpu_busy.is_some_and(|b| b > 0.9));
    assert!(u8.series.len() > 10, "metrics series for the plots");
    // Async's copy on the critical path is a small fraction of sync's, as the README says.
    assert!(runs[1].copy_critical_secs < 0.1 * runs[0].copy_critical_secs);
}

/// `pagesight gui --runs FILE` opens the Performance view with the file's runs loaded.
#[test]
fn runs_file_option_opens_the_recorded_runs() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.runs_file = Some(
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("bench/results/2026-11-26-H200-ingest-nf4-bf16-final.json"),
    );
    let Wired { mut h, .. } = wired(opts);
    assert!(frames_until(&mut h, Duration::from_secs(5), |h| h
        .state()
        .perf
        .runs
        .len()
        == 6));
    h.run();
    assert_eq!(h.state().tab, pagesight::ui::Tab::Performance);
    // The run shows (in the legend, the table and the selectors).
    assert!(h.query_all_by_label_contains("nf4 async-u8").count() >= 1);
    // Each run is named in the summary table and in the one legend above the plots.
    for run in [
        "nf4 sync",
        "nf4 async",
        "nf4 async-u8",
        "none sync",
        "none async",
    ] {
        let named = h.query_all_by_label(run).count();
        assert_eq!(
            named, 2,
            "{run}: {named} labels, want the table's and the legend's"
        );
    }
}
