//! Search with the page tiles sharded over several devices, tested as the multi-device ingest is:
//! with CPU stand-ins (`cpu,cpu`), since CI has no GPU. Through the engine and the CLI, the
//! sharded search answers exactly what one device does (pages, scores, order), after a commit
//! too; the `SHARD_CAPACITY` hook forces an uneven split, `SHARD_OOM` a device that cannot hold
//! its shard.

use crate::engine::{json_answer, try_search};
use pagesight::bench::search_synthetic::build_with;
use pagesight::engine::env_vars::{SHARD_CAPACITY, SHARD_OOM};
use pagesight::engine::{DeviceSet, EngineHandle, Event, SearchMode, SearchRequest, VisualScorer};
use pagesight::index::synthetic::Corpus;
use pagesight::index::tensor_scorer::TensorScorer;
use pagesight::index::{Index, Provenance};
use std::path::Path;

const PAGES: usize = 240;
const TOKENS: usize = 40;

/// The provenance of the synthetic index: the tiny random model, so the engine embeds each
/// query with it on the CPU.
fn tiny_provenance() -> Provenance {
    Provenance {
        model: "random:tiny".into(),
        adapter: None,
        checkpoint_hash: "synthetic-pages-for:random:tiny".into(),
        quant: "none".into(),
        quant_scope: "all".into(),
        dtype: "f32".into(),
        lora: None,
        compute: None,
        max_visual_tokens: 64,
        query_prompt: String::new(),
        dim: 128,
        random_weights: true,
    }
}

fn synthetic_index(dir: &Path) {
    let prov = tiny_provenance();
    build_with(TOKENS, &Corpus::new(7, 128, 64), PAGES, dir, false, &prov).unwrap();
}

/// One search over `devices`: (page, score bits) per hit, the scorer's words, the note.
fn ranked(
    engine: &EngineHandle,
    index: &Path,
    devices: &str,
    scorer: VisualScorer,
    id: u64,
) -> (Vec<(u32, u32)>, String, Option<String>) {
    let mut req = SearchRequest {
        id,
        index: index.into(),
        query: format!("synthetic query {}", id % 3),
        top_k: 25,
        mode: SearchMode::Visual,
        hybrid_visual_weight: 0.5,
        with_heatmaps: false,
        device: Default::default(),
        devices: None,
        visual_scorer: scorer,
        backend: Default::default(),
    };
    req.set_devices(&devices.parse::<DeviceSet>().unwrap());
    match try_search(engine, req).unwrap_or_else(|e| panic!("{e}")) {
        Event::SearchResults {
            hits, scorer, note, ..
        } => (
            hits.iter().map(|h| (h.page, h.score.to_bits())).collect(),
            scorer,
            note,
        ),
        _ => unreachable!(),
    }
}

#[test]
fn two_cpu_shards_answer_exactly_as_one_device_and_reload_after_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_index(dir.path());
    let engine = EngineHandle::spawn();
    let mut id = 0;
    let mut next = || {
        id += 1;
        id
    };
    for scorer in [VisualScorer::Exact, VisualScorer::Binary { candidates: 60 }] {
        for _ in 0..2 {
            let q = next();
            let (one, one_label, _) = ranked(&engine, dir.path(), "cpu", scorer, q);
            let (two, label, note) = ranked(&engine, dir.path(), "cpu,cpu", scorer, q);
            assert_eq!(one.len(), 25);
            assert_eq!(two, one, "{scorer:?}: {label} against {one_label}");
            // Only the random model's warning: nothing fell back to the CPU.
            assert!(!note.unwrap_or_default().contains("CPU"), "{label}");
            assert!(
                label.contains("2 devices: cpu 120 pages, cpu 120 pages"),
                "the scorer names each shard: {label}"
            );
        }
    }

    // A commit adds a file of other pages: the next search shards the new snapshot.
    {
        let mut ix = Index::open_or_create(dir.path(), &tiny_provenance()).unwrap();
        crate::index::add_file(&mut ix, &Corpus::new(7, 128, 64), 9, 30, 25);
        ix.commit().unwrap();
    }
    let q = next();
    let (one, _, _) = ranked(&engine, dir.path(), "cpu", VisualScorer::Exact, q);
    let (two, label, _) = ranked(&engine, dir.path(), "cpu,cpu", VisualScorer::Exact, q);
    assert_eq!(two, one);
    let pages: Vec<usize> = label
        .rsplit(": ")
        .next()
        .unwrap()
        .split(", ")
        .map(|s| s.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(pages.iter().sum::<usize>(), PAGES + 30, "{label}");
    assert_eq!(pages.len(), 2, "{label}");
}

/// `pagesight search` on the CPU stand-ins with `env`: (page, score) per hit as the JSON gives
/// them, the scorer's words, the note.
fn cli(index: &Path, devices: &str, env: &[(&str, &str)]) -> (Vec<(u64, f64)>, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .args(["search", "synthetic query 1", "--index"])
        .arg(index)
        .args(["--device", devices, "--json", "--top-k", "20"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let answer = json_answer(&out);
    let hits = answer["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["page"].as_u64().unwrap(), h["score"].as_f64().unwrap()))
        .collect();
    let text = |k: &str| answer[k].as_str().unwrap_or_default().to_string();
    (hits, text("scorer"), text("note"))
}

#[test]
fn an_uneven_split_a_device_out_of_memory_and_too_little_room_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_index(dir.path());
    let (one, _, _) = cli(dir.path(), "cpu", &[]);
    assert_eq!(one.len(), 20);

    // Device 0 may hold a quarter of the tiles, device 1 the rest.
    let need = PAGES as u64 * TensorScorer::page_bytes(TOKENS, 128);
    let capacity = format!("{},{}", need / 4, need - need / 4);
    let (hits, scorer, note) = cli(dir.path(), "cpu,cpu", &[(SHARD_CAPACITY, &capacity)]);
    assert_eq!(hits, one, "{scorer}");
    assert!(!note.contains("CPU"), "{note}");
    assert!(
        scorer.contains(&format!(
            "2 devices: cpu {} pages, cpu {} pages",
            PAGES / 4,
            PAGES - PAGES / 4
        )),
        "{scorer}"
    );

    // The second device cannot hold its shard: the CPU kernels answer, and the note says why.
    let (hits, scorer, note) = cli(dir.path(), "cpu,cpu", &[(SHARD_OOM, "1")]);
    assert_eq!(hits, one);
    assert!(scorer.starts_with("CPU exact MaxSim"), "{scorer}");
    assert!(
        note.contains("cpu could not hold its shard of the index's vectors (120 pages")
            && note.contains("out of memory"),
        "{note}"
    );

    // Room for half the tiles between them.
    let capacity = format!("{},{}", need / 4, need / 4);
    let (hits, _, note) = cli(dir.path(), "cpu,cpu", &[(SHARD_CAPACITY, &capacity)]);
    assert_eq!(hits, one);
    assert!(note.contains("and the 2 devices hold"), "{note}");
}
