//! Several GPU cards in the app: the Performance view's device table shows each card's
//! utilisation and memory and their total, the GPU plots one line per card, and the Corpus
//! form's card checkboxes decide the device list Start sends (`cuda:0,2` with the middle one of
//! three unticked).

use crate::ui::{corpus_options, drain, options, wired, Wired};
use egui_kittest::kittest::Queryable;
use pagesight::engine::event::{
    CardInfo, CardSample, DeviceInfo, GpuSample, Metrics, ReplicaSummary,
};
use pagesight::engine::{
    Command, DeviceChoice, DeviceSet, Event, IngestSettings, StageTimes, TransferMode,
};

fn card(util: f32, used_gib: u64) -> GpuSample {
    GpuSample {
        utilisation: util,
        memory_used_bytes: used_gib << 30,
        memory_total_bytes: 80 << 30,
        pcie_tx_bytes_per_sec: Some(0.5e9),
        pcie_rx_bytes_per_sec: Some(12e9),
    }
}

fn replica(i: usize, ordinal: usize, pps: f64, gpu: GpuSample) -> ReplicaSummary {
    ReplicaSummary {
        replica: i,
        device: format!("cuda:{ordinal}"),
        pages: 40,
        batches: 10,
        pages_per_sec: pps,
        busy_secs: 1.5,
        h2d_bytes_per_sec: 10e9,
        stages: StageTimes::default(),
        gpu: Some(gpu),
        failed: None,
    }
}

/// A tick of a run on cards 0 and 2.
fn two_card_metrics(t: f64) -> Metrics {
    let (a, b) = (card(0.9, 40), card(0.5, 20));
    Metrics {
        t,
        pages_per_sec: 16.0,
        h2d_bytes_per_sec: 10e9,
        h2d_secs: 0.1,
        copy_critical_secs: 0.0,
        gpu_busy: None,
        transfer: TransferMode::Async,
        batch_size: 4,
        stages: StageTimes::default(),
        gpu: Some(a.clone()),
        gpu_unavailable: None,
        gpus: vec![
            CardSample {
                ordinal: 0,
                sample: a.clone(),
            },
            CardSample {
                ordinal: 2,
                sample: b.clone(),
            },
        ],
        replicas: vec![replica(0, 0, 10.0, a), replica(1, 2, 6.0, b)],
    }
}

#[test]
fn device_table_shows_each_cards_utilisation_and_memory_and_the_total() {
    let dir = tempfile::tempdir().unwrap();
    let Wired { mut h, events, .. } = wired(options(dir.path()));
    h.run();
    for t in [0.25, 0.5, 0.75, 1.0] {
        events.send(Event::Metrics(two_card_metrics(t))).unwrap();
    }
    h.get_by_label("Performance").click();
    h.run();
    let shown = |text: &str| h.query_all_by_label(text).count() > 0;
    for header in ["GPU util", "memory GiB", "PCIe rx/tx GB/s"] {
        assert!(shown(header), "column {header}");
    }
    for cell in ["90%", "50%", "40.0 / 80.0", "20.0 / 80.0", "12.0 / 0.5"] {
        assert!(shown(cell), "a card's cell {cell}");
    }
    // The total: pages/s summed, utilisation the mean, memory and PCIe summed.
    for cell in ["16.00", "70%", "60.0 / 160.0", "24.0 / 1.0"] {
        assert!(shown(cell), "the total's cell {cell}");
    }
    // One GPU line per card: the legend of the card lines names each, as does the table.
    for device in ["cuda:0", "cuda:2"] {
        assert_eq!(
            h.query_all_by_label(device).count(),
            2,
            "{device}: the table's row and the card legend"
        );
    }
}

fn three_cards() -> DeviceInfo {
    DeviceInfo {
        cards: (0..3)
            .map(|ordinal| CardInfo {
                ordinal,
                name: "NVIDIA H100".into(),
                memory_total_bytes: 80 << 30,
                fp8: true,
            })
            .collect(),
        ..crate::ui_defaults::gpu_device()
    }
}

/// The settings of the StartIngest one click on Start sends, after `device` is reported and
/// the boxes of `untick` are clicked.
fn start_after(device: DeviceInfo, untick: &[&str]) -> (IngestSettings, bool) {
    let dir = tempfile::tempdir().unwrap();
    let Wired {
        mut h,
        events,
        commands,
    } = wired(corpus_options(dir.path()));
    h.run();
    events.send(Event::Device(device)).unwrap();
    h.run();
    // The card boxes are under the form's Advanced section.
    h.get_by_label("Advanced").click();
    h.run();
    let shown = h.query_by_label("Cards").is_some();
    for label in untick {
        h.get_by_label_contains(label).click();
        h.run();
    }
    h.get_by_label("Start ingest").click();
    h.run();
    match drain(&commands).into_iter().next() {
        Some(Command::StartIngest { settings, .. }) => (settings, shown),
        other => panic!("no StartIngest: {other:?}"),
    }
}

#[test]
fn unticking_the_middle_of_three_cards_starts_on_cuda_0_and_2() {
    let (s, shown) = start_after(three_cards(), &["cuda:1 NVIDIA H100"]);
    assert!(shown, "three cards: one checkbox each");
    assert_eq!(s.devices, Some("cuda:0,2".parse::<DeviceSet>().unwrap()));
    assert_eq!(s.model.device, DeviceChoice::Cuda(0));
    assert_eq!(
        s.replica_devices().unwrap(),
        [DeviceChoice::Cuda(0), DeviceChoice::Cuda(2)]
    );
}

#[test]
fn every_card_is_ticked_by_default_and_one_left_is_a_single_device() {
    let (s, _) = start_after(three_cards(), &[]);
    assert_eq!(
        s.devices,
        Some("cuda:0,1,2".parse::<DeviceSet>().unwrap()),
        "all cards ticked by default"
    );
    let (s, _) = start_after(three_cards(), &["cuda:0 NVIDIA", "cuda:1 NVIDIA"]);
    assert_eq!((s.devices, s.model.device), (None, DeviceChoice::Cuda(2)));
    // The last ticked card stays ticked.
    let (s, _) = start_after(
        three_cards(),
        &["cuda:0 NVIDIA", "cuda:1 NVIDIA", "cuda:2 NVIDIA"],
    );
    assert_eq!((s.devices, s.model.device), (None, DeviceChoice::Cuda(2)));
}

#[test]
fn without_several_cuda_cards_there_is_no_card_choice() {
    let mut one = three_cards();
    one.cards.truncate(1);
    let mut none = three_cards();
    none.cards.clear();
    none.cuda_available = false;
    for device in [one, none] {
        let (s, shown) = start_after(device, &[]);
        assert!(!shown, "no card checkboxes");
        assert_eq!(s.devices, None);
    }
}

#[test]
fn card_figures_round_trip_in_a_run_file_and_an_older_file_still_loads() {
    use pagesight::engine::replica_figures::ReplicaTotal;
    use pagesight::ui::runs::parse_runs;
    let mut run = crate::ui::side("cuda:0,2 async", 4, 16.0);
    run.series = vec![two_card_metrics(0.25), two_card_metrics(0.5)];
    run.replicas = two_card_metrics(0.5).replicas;
    let mut v = serde_json::to_value(&run).unwrap();
    // What `bench ingest` adds to a multi-device run; readers ignore it.
    v["replica_total"] = serde_json::to_value(ReplicaTotal::of(&run.replicas)).unwrap();
    let doc = serde_json::json!({"schema": 1, "kind": "bench_ingest", "runs": [v.clone()]});
    assert_eq!(parse_runs(&doc.to_string()).unwrap(), [run.clone()]);

    // The same file as written before the card figures: no `gpus`, no replica `gpu`.
    for m in v["series"].as_array_mut().unwrap() {
        m.as_object_mut().unwrap().remove("gpus").unwrap();
    }
    for r in v["replicas"].as_array_mut().unwrap() {
        r.as_object_mut().unwrap().remove("gpu").unwrap();
    }
    v.as_object_mut().unwrap().remove("replica_total");
    let old = parse_runs(&serde_json::json!({"schema": 1, "runs": [v]}).to_string()).unwrap();
    assert_eq!(old[0].replicas.len(), 2);
    assert!(old[0]
        .series
        .iter()
        .all(|m| m.gpus.is_empty() && m.gpu.is_some()));
    assert!(old[0].replicas.iter().all(|r| r.gpu.is_none()));

    // A device report from before the card list.
    let mut device = serde_json::to_value(three_cards()).unwrap();
    device.as_object_mut().unwrap().remove("cards").unwrap();
    let device: DeviceInfo = serde_json::from_value(device).unwrap();
    assert!(device.cards.is_empty());
}
