//! Start with the defaults asks for the device's measured best (bf16, NF4, async on a CUDA GPU,
//! the MLPs' GEMMs in FP8 where the card has FP8 tensor cores; f32 unquantised, pageable on the
//! CPU), or the existing index's own precision.

use crate::ui::{corpus_options, drain, wired, Wired};
use egui_kittest::kittest::Queryable;
use pagesight::engine::event::{DeviceInfo, IndexStats};
use pagesight::engine::{Command, DType, Event, IngestSettings, Quant, TransferMode};

/// What the engine reports for one H100 (no card list: one card).
pub(crate) fn gpu_device() -> DeviceInfo {
    DeviceInfo {
        name: "NVIDIA H100 80GB HBM3 (cuda:0)".into(),
        cuda_built: true,
        cuda_available: true,
        vram_total_bytes: Some(80 << 30),
        vram_used_bytes: Some(1 << 30),
        driver: None,
        unavailable_reason: None,
        cards: Vec::new(),
    }
}

/// The settings of the StartIngest that one click on Start sends, after `events_before` (which
/// may name the app's index: it is `index` under `dir`).
fn start_with(dir: &std::path::Path, events_before: Vec<Event>) -> IngestSettings {
    let Wired {
        mut h,
        events,
        commands,
    } = wired(corpus_options(dir));
    h.run();
    for e in events_before {
        events.send(e).unwrap();
    }
    h.run();
    h.get_by_label("Start ingest").click();
    h.run();
    match drain(&commands).into_iter().next() {
        Some(Command::StartIngest { settings, .. }) => settings,
        other => panic!("no StartIngest: {other:?}"),
    }
}

#[test]
fn start_on_a_gpu_asks_for_bf16_nf4_and_async() {
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), vec![Event::Device(gpu_device())]);
    assert_eq!(
        (s.model.dtype, s.model.quant, s.live.transfer),
        (DType::Bf16, Quant::Nf4, TransferMode::Async)
    );
}

#[test]
fn start_on_a_card_with_fp8_asks_for_fp8_gemms_and_on_one_without_for_bf16() {
    use pagesight::engine::event::CardInfo;
    use pagesight::engine::Compute;
    for (fp8, want) in [(true, Compute::Fp8), (false, Compute::Dtype)] {
        let mut device = gpu_device();
        device.cards = vec![CardInfo {
            ordinal: 0,
            name: if fp8 { "NVIDIA H100" } else { "NVIDIA A100" }.into(),
            memory_total_bytes: 80 << 30,
            fp8,
        }];
        let dir = tempfile::tempdir().unwrap();
        let s = start_with(dir.path(), vec![Event::Device(device)]);
        assert_eq!(
            (s.model.dtype, s.model.quant, s.model.compute),
            (DType::Bf16, Quant::Nf4, want),
            "card with fp8: {fp8}"
        );
    }
}

#[test]
fn start_on_the_cpu_asks_for_f32_unquantised_and_pageable() {
    let mut cpu = gpu_device();
    cpu.name = "cpu".into();
    cpu.cuda_available = false;
    cpu.unavailable_reason = Some("no CUDA device found".into());
    let dir = tempfile::tempdir().unwrap();
    let s = start_with(dir.path(), vec![Event::Device(cpu)]);
    assert_eq!(
        (s.model.dtype, s.model.quant, s.live.transfer),
        (DType::F32, Quant::None, TransferMode::Pageable)
    );
}

#[test]
fn start_into_an_existing_index_keeps_its_precision() {
    let dir = tempfile::tempdir().unwrap();
    let index = corpus_options(dir.path()).index.unwrap();
    let made_with = pagesight::index::Provenance {
        model: "random:tiny".into(),
        adapter: None,
        checkpoint_hash: "x".into(),
        quant: "none".into(),
        quant_scope: "all".into(),
        dtype: "f32".into(),
        lora: None,
        compute: None,
        max_visual_tokens: 768,
        query_prompt: "Query: {query}".into(),
        dim: 128,
        random_weights: true,
    };
    let stats = Event::Stats(IndexStats {
        path: index,
        files: 1,
        pages: 3,
        vectors: 300,
        segments: 1,
        bytes_on_disk: 1000,
        model: Some(made_with.describe()),
        provenance: Some(made_with),
    });
    let s = start_with(dir.path(), vec![Event::Device(gpu_device()), stats]);
    assert_eq!((s.model.dtype, s.model.quant), (DType::F32, Quant::None));
    assert_eq!(
        s.live.transfer,
        TransferMode::Async,
        "the transfer is not the index's"
    );
}
