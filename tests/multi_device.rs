//! Multi-device ingest, scheduled as on several GPUs but with CPU replicas of the tiny model
//! (`cpu,cpu`): both replicas take work from the shared queue, the index is the one a single
//! replica makes, and a replica failing mid-run loses no page and indexes none twice.

use crate::engine::{cli_ingest_into, ingest, sample_corpus, test_settings};
use pagesight::engine::{DeviceSet, EngineHandle, Event};
use pagesight::index::Index;
use std::collections::BTreeMap;
use std::path::Path;

/// The sample corpus four times over (each copy a different file: identical files are indexed
/// once), so that a replica still loading its model does not find the run already over.
fn larger_corpus() -> tempfile::TempDir {
    let corpus = sample_corpus();
    let originals: Vec<_> = std::fs::read_dir(corpus.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    for copy in 1..4 {
        for p in &originals {
            let mut bytes = std::fs::read(p).unwrap();
            bytes.extend_from_slice(format!("\n% copy {copy}\n").as_bytes());
            let name = format!("copy{copy}-{}", p.file_name().unwrap().to_string_lossy());
            std::fs::write(corpus.path().join(name), bytes).unwrap();
        }
    }
    corpus
}

/// Every page of an index: (file hash, page number) → its stored vectors as f32.
fn page_vectors(index: &Path) -> BTreeMap<([u8; 32], u32), Vec<f32>> {
    let searcher = Index::open(index).unwrap().searcher().unwrap();
    let mut out = BTreeMap::new();
    for (id, hash, page) in searcher.live_pages() {
        let bits = searcher.page_vector_bits(id).unwrap();
        let v = bits
            .iter()
            .map(|&b| half::f16::from_bits(b).to_f32())
            .collect();
        assert!(
            out.insert((hash, page), v).is_none(),
            "page {page} is in the index twice"
        );
    }
    out
}

/// Every file of the index complete, its committed pages its page count.
fn assert_every_file_complete(index: &Path) {
    for (_, state) in Index::open(index).unwrap().files() {
        assert!(state.complete, "{state:?}");
        assert_eq!(state.pages_committed, state.page_count, "{state:?}");
    }
}

fn assert_same_pages(one: &Path, two: &Path) {
    let (a, b) = (page_vectors(one), page_vectors(two));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "the same pages"
    );
    for (k, va) in &a {
        let vb = &b[k];
        assert_eq!(va.len(), vb.len(), "page {k:?}");
        let worst = va
            .iter()
            .zip(vb)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= 1e-3, "page {k:?} differs by {worst}");
    }
}

#[test]
fn two_cpu_replicas_share_the_work_and_index_what_one_replica_does() {
    let corpus = larger_corpus();
    let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let engine = EngineHandle::spawn();
    let (single, _) = ingest(&engine, corpus.path(), one.path(), test_settings());
    assert!(single.replicas.is_empty(), "one device runs no pool");
    let mut settings = test_settings();
    settings.set_devices(&"cpu,cpu".parse::<DeviceSet>().unwrap());
    let (s, events) = ingest(&engine, corpus.path(), two.path(), settings);
    assert_eq!(s.pages_ingested, single.pages_ingested, "{s:?}");
    assert_eq!(s.replicas.len(), 2, "{s:?}");
    for r in &s.replicas {
        assert!(r.pages > 0, "both replicas take work: {:?}", s.replicas);
        assert!(r.failed.is_none(), "{r:?}");
    }
    assert_eq!(
        s.replicas.iter().map(|r| r.pages).sum::<u64>(),
        s.pages_ingested
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Metrics(m) if m.replicas.len() == 2)),
        "the metrics carry each replica"
    );
    // CPU replicas use no card: no NVML figures, and the metrics say why.
    assert!(s.replicas.iter().all(|r| r.gpu.is_none()), "{s:?}");
    for e in &events {
        if let Event::Metrics(m) = e {
            assert!(m.gpus.is_empty() && m.gpu.is_none(), "{m:?}");
            assert_eq!(
                m.gpu_unavailable.as_deref(),
                Some("the run computes on the CPU")
            );
        }
    }
    assert_every_file_complete(two.path());
    assert_same_pages(one.path(), two.path());
}

#[test]
fn a_replica_failing_mid_run_is_dropped_and_its_pages_are_indexed_once_by_the_other() {
    let corpus = larger_corpus();
    let (plain, failing) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = cli_ingest_into(corpus.path(), plain.path(), "cpu", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hook = pagesight::engine::env_vars::REPLICA_FAIL;
    let out = cli_ingest_into(corpus.path(), failing.path(), "cpu,cpu", &[(hook, "1:1")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("model replica 1 (cpu) dropped after 1 batches"),
        "a notice names the replica: {text}"
    );
    assert!(text.contains("replica 0 (cpu):"), "{text}");
    assert_every_file_complete(failing.path());
    assert_same_pages(plain.path(), failing.path());
}

#[test]
fn the_first_replica_failing_at_once_leaves_the_run_to_the_other() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let hook = pagesight::engine::env_vars::REPLICA_FAIL;
    // Replica 0 runs the run's own model (the one the index's provenance came from).
    let out = cli_ingest_into(corpus.path(), index.path(), "cpu,cpu", &[(hook, "0:0")]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("model replica 0 (cpu) dropped"), "{text}");
    assert_every_file_complete(index.path());
}
