//! The index served by Qdrant, against a real server (`server.rs`): export, search, the
//! incremental re-export, a replaced file, a server killed mid-export, and the errors a user
//! meets.

mod server;

use crate::index::{add_file, hash, prov};
use pagesight::index::synthetic::Corpus;
use pagesight::index::{Index, IndexReader, Query, Scorer, SearchMode};
use pagesight::qdrant::point::point_id;
use pagesight::qdrant::{
    export, ExportOptions, ExportReport, RemoteCollection, RemoteError, RemoteScoring, Server,
};
use server::{quick_retries, TestServer};
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::Path;

const DIM: usize = 32;
const PAGES_PER_FILE: u32 = 5;
const TOKENS: usize = 20;

/// An index of `files` (5 pages of 20 synthetic tokens each) in `dir`.
fn fixture(dir: &Path, files: &[u64]) -> Corpus {
    let corpus = Corpus::new(21, DIM, 8);
    let mut ix = Index::open_or_create(dir, &prov(DIM)).unwrap();
    for &f in files {
        add_file(&mut ix, &corpus, f, PAGES_PER_FILE, TOKENS);
    }
    ix.commit().unwrap();
    corpus
}

fn small_batches() -> ExportOptions {
    ExportOptions {
        batch_pages: 8,
        ..Default::default()
    }
}

fn export_all(server: &Server, index: &Path, collection: &str) -> ExportReport {
    export(index, server, collection, &small_batches(), &mut |_| {
        ControlFlow::Continue(())
    })
    .unwrap()
}

/// Every page's exact local MaxSim for the query, by point id.
fn local_scores(index: &Path, q: &[f32], nq: usize) -> Vec<(u64, f32)> {
    let s = IndexReader::open(index).unwrap().open_searcher().unwrap();
    let hits = s
        .search(&Query {
            vectors: q.to_vec(),
            n_tokens: nq,
            text: String::new(),
            mode: SearchMode::Visual,
            top_k: s.num_pages(),
            visual_weight: 0.5,
            scorer: Scorer::Exact,
        })
        .unwrap();
    hits.iter()
        .map(|h| (point_id(&h.file_hash, h.page), h.score))
        .collect()
}

/// Qdrant's top 10 equals the local exact top 10: at each rank the two pages' exact scores are
/// the same within 1e-3 relative (so tied pages may swap), and Qdrant's scores are the exact
/// ones within f16 rounding of the query.
fn assert_top10_agree(index: &Path, remote: &RemoteCollection, q: &[f32], nq: usize) {
    let local = local_scores(index, q, nq);
    let exact: HashMap<u64, f32> = local.iter().copied().collect();
    let theirs = remote.search(q, nq, 10).unwrap();
    assert_eq!(theirs.len(), 10.min(local.len()));
    for (rank, hit) in theirs.iter().enumerate() {
        let mine = local[rank].1;
        let same_rank = exact[&hit.point_id];
        assert!(
            (same_rank - mine).abs() <= 1e-3 * mine.abs(),
            "rank {rank}: Qdrant's page scores {same_rank} locally, the local page {mine}"
        );
        let tolerance = 2e-3 * same_rank.abs() + 1e-3 * nq as f32;
        assert!(
            (hit.score - same_rank).abs() <= tolerance,
            "rank {rank}: Qdrant's score {} vs the exact {same_rank}",
            hit.score
        );
    }
}

#[test]
fn an_exported_index_searches_as_the_local_exact_one_and_a_second_export_sends_nothing() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("ix");
    let corpus = fixture(&index, &(1..=12).collect::<Vec<_>>());
    let q = server.connect();
    let first = export_all(&q, &index, "papers");
    assert!(first.created);
    assert_eq!((first.sent, first.already_there, first.removed), (60, 0, 0));
    assert_eq!(first.batches, 8, "60 pages in batches of 8");

    let remote = RemoteCollection::open(server.connect(), "papers").unwrap();
    assert_eq!(remote.provenance, prov(DIM));
    for (target, nq) in [(102u64, 6usize), (507, 9), (1203, 12), (811, 16), (305, 20)] {
        assert_top10_agree(&index, &remote, &corpus.query(target, nq, target), nq);
    }
    // The payload says which page a point is.
    let hit = &remote.search(&corpus.query(503, 9, 1), 9, 1).unwrap()[0];
    let file = (1..=12u64)
        .find(|&f| (1..=PAGES_PER_FILE).any(|p| point_id(&hash(f), p) == hit.point_id))
        .expect("a point of the index");
    assert_eq!(hit.point_id, point_id(&hash(file), hit.page));
    assert_eq!(hit.file_path, Path::new(&format!("/docs/f{file}.pdf")));
    assert_eq!(hit.file_hash, Some(hash(file)));
    assert_eq!(hit.title, Some(format!("Title {file}")));
    assert!(hit
        .text
        .as_deref()
        .unwrap()
        .contains(&format!("beta{file}x{}", hit.page)));

    let again = export_all(&q, &index, "papers");
    assert!(!again.created);
    assert_eq!((again.sent, again.already_there, again.removed), (0, 60, 0));
    assert_eq!(again.batches, 0);
}

/// The server's own two stages (its binary-quantised vectors, the best candidates rescored by
/// exact MaxSim): with candidates for every point, the top 10 and their scores are the exact
/// search's; with fewer, the rescored scores are still exact ones, in order.
#[test]
fn a_binary_rescored_search_on_the_server_rescores_exactly() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("ix");
    let corpus = fixture(&index, &(1..=12).collect::<Vec<_>>());
    export_all(&server.connect(), &index, "binary");
    let remote = RemoteCollection::open(server.connect(), "binary").unwrap();
    assert!(
        remote.binary_vectors,
        "the export configures binary vectors"
    );
    assert_eq!(
        remote.points, 60,
        "the collection says how many pages it holds"
    );
    for (target, nq) in [(102u64, 6usize), (811, 16)] {
        let q = corpus.query(target, nq, target);
        let exact = remote.search(&q, nq, 10).unwrap();
        let all = remote
            .search_scored(&q, nq, 10, RemoteScoring::BinaryRescored { candidates: 60 })
            .unwrap();
        let ids = |hits: &[pagesight::qdrant::RemoteHit]| -> Vec<u64> {
            hits.iter().map(|h| h.point_id).collect()
        };
        assert_eq!(
            ids(&all),
            ids(&exact),
            "every point rescored: the exact top 10"
        );
        for (a, e) in all.iter().zip(&exact) {
            assert!((a.score - e.score).abs() <= 1e-4 * e.score.abs().max(1.0));
        }
        let local: HashMap<u64, f32> = local_scores(&index, &q, nq).into_iter().collect();
        let few = remote
            .search_scored(&q, nq, 5, RemoteScoring::BinaryRescored { candidates: 15 })
            .unwrap();
        assert_eq!(few.len(), 5);
        for pair in few.windows(2) {
            assert!(pair[0].score >= pair[1].score, "rescored in order");
        }
        for h in &few {
            let exact_score = local[&h.point_id];
            assert!(
                (h.score - exact_score).abs() <= 2e-3 * exact_score.abs() + 1e-3 * nq as f32,
                "a rescored score {} is the page's exact {exact_score}",
                h.score
            );
        }
    }
    assert_eq!(
        RemoteScoring::BinaryRescored { candidates: 15 }.describe(),
        "binary MaxSim, best 15 rescored exactly"
    );
}

#[test]
fn a_replaced_file_changes_its_pages_and_a_deleted_one_leaves() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("ix");
    let corpus = fixture(&index, &[1, 2, 3, 4]);
    let q = server.connect();
    assert_eq!(export_all(&q, &index, "c").sent, 20);
    // File 3 replaced by new content (another hash), file 4 deleted.
    {
        let mut ix = Index::open_or_create(&index, &prov(DIM)).unwrap();
        ix.remove_file(&hash(3)).unwrap();
        ix.remove_file(&hash(4)).unwrap();
        add_file(&mut ix, &corpus, 33, PAGES_PER_FILE, TOKENS);
        ix.commit().unwrap();
    }
    let r = export_all(&q, &index, "c");
    assert_eq!((r.sent, r.removed, r.already_there), (5, 10, 10));
    let ids = pagesight::qdrant::collection::point_ids(&q, "c").unwrap();
    let want: std::collections::HashSet<u64> = [1u64, 2, 33]
        .iter()
        .flat_map(|&f| (1..=PAGES_PER_FILE).map(move |p| point_id(&hash(f), p)))
        .collect();
    assert_eq!(ids, want);
    let remote = RemoteCollection::open(server.connect(), "c").unwrap();
    assert_top10_agree(&index, &remote, &corpus.query(3302, 8, 5), 8);
}

#[test]
fn a_server_killed_mid_export_is_named_and_the_next_export_sends_only_the_remainder() {
    let mut server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("ix");
    let corpus = fixture(&index, &(1..=10).collect::<Vec<_>>());
    let q = server.connect();
    let url = server.url.clone();
    let mut batches_before_kill = 0;
    let err = export(&index, &q, "c", &small_batches(), &mut |p| {
        batches_before_kill = p.batches;
        if p.batches == 3 {
            server.crash();
        }
        ControlFlow::Continue(())
    })
    .expect_err("the server went away");
    assert_eq!(batches_before_kill, 3);
    assert!(matches!(err, RemoteError::ServerDown { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url) && msg.contains("start it"), "{msg}");

    server.restart();
    let q = server.connect();
    let r = export_all(&q, &index, "c");
    assert_eq!((r.already_there, r.sent, r.removed), (24, 26, 0), "{r:?}");
    let remote = RemoteCollection::open(server.connect(), "c").unwrap();
    assert_top10_agree(&index, &remote, &corpus.query(404, 10, 2), 10);
    assert_eq!(export_all(&q, &index, "c").sent, 0);
}

#[test]
fn a_collection_deleted_mid_export_or_made_by_another_model_is_refused_with_what_to_do() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("ix");
    fixture(&index, &[1, 2, 3]);
    let q = server.connect();
    let other = server.connect();
    let err = export(&index, &q, "c", &small_batches(), &mut |_| {
        pagesight::qdrant::collection::delete(&other, "c").unwrap();
        ControlFlow::Continue(())
    })
    .expect_err("the collection went away");
    assert!(matches!(err, RemoteError::CollectionGone { .. }), "{err:?}");
    assert!(err.to_string().contains("run the export again"), "{err}");
    // Run again, it is made anew and filled.
    assert_eq!(export_all(&q, &index, "c").sent, 15);

    let mut other_model = prov(DIM);
    other_model.checkpoint_hash = "another-checkpoint".into();
    let index2 = tmp.path().join("ix2");
    let mut ix = Index::open_or_create(&index2, &other_model).unwrap();
    add_file(&mut ix, &Corpus::new(1, DIM, 4), 9, 2, TOKENS);
    ix.commit().unwrap();
    drop(ix);
    let err = export(&index2, &q, "c", &small_batches(), &mut |_| {
        ControlFlow::Continue(())
    })
    .expect_err("another model's collection");
    assert!(matches!(err, RemoteError::OtherModel { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("another-checkpoint") || msg.contains("abc123"),
        "{msg}"
    );
    assert!(msg.contains("another --collection"), "{msg}");
}

#[test]
fn a_wrong_api_key_and_a_server_that_is_not_there_are_said_plainly() {
    let server = TestServer::start_with_key(Some("the-right-key"));
    let err = Server::connect(&server.url, Some("a-wrong-key"), quick_retries())
        .err()
        .expect("a wrong key is refused");
    assert!(matches!(err, RemoteError::Unauthorized { .. }), "{err:?}");
    assert!(err.to_string().contains("--api-key"), "{err}");
    Server::connect(&server.url, Some("the-right-key"), quick_retries()).expect("the right key");

    server.kill();
    let err = Server::connect(&server.url, None, quick_retries())
        .err()
        .expect("nobody answers");
    assert!(matches!(err, RemoteError::ServerDown { .. }), "{err:?}");
    assert!(err.to_string().contains(&server.url), "{err}");
}

#[test]
fn the_cli_exports_incrementally_and_names_a_dead_server() {
    let server = TestServer::start();
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("ix");
    fixture(&index, &[1, 2]);
    let bin = env!("CARGO_BIN_EXE_pagesight");
    let export_cli = |url: &str| {
        std::process::Command::new(bin)
            .args(["export", "qdrant", "--index"])
            .arg(&index)
            .args(["--url", url, "--collection", "cli"])
            .output()
            .unwrap()
    };
    let out = export_cli(&server.url);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("10 pages sent, 0 already there"),
        "{stdout}"
    );
    let again = export_cli(&server.url);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 pages sent, 10 already there"));

    server.kill();
    let dead = export_cli(&server.url);
    let stderr = String::from_utf8_lossy(&dead.stderr);
    assert!(!dead.status.success());
    assert!(
        stderr.contains(&server.url) && stderr.contains("no Qdrant server answers"),
        "{stderr}"
    );
}

#[test]
fn the_engine_ranks_through_a_collection_as_through_the_local_index() {
    use pagesight::engine::SearchMode as Mode;
    use pagesight::engine::{
        DeviceChoice, EngineHandle, Event, SearchBackend, SearchRequest, VisualScorer,
    };
    let server = TestServer::start();
    let corpus = crate::engine::sample_corpus();
    let index = tempfile::tempdir().unwrap();
    let engine = EngineHandle::spawn();
    crate::engine::ingest(
        &engine,
        corpus.path(),
        index.path(),
        crate::engine::test_settings(),
    );
    export_all(&server.connect(), index.path(), "e");
    let qdrant = SearchBackend::Qdrant {
        address: pagesight::qdrant::CollectionAddress::parse_backend(&format!(
            "qdrant://{}/e",
            server.url.trim_start_matches("http://")
        ))
        .unwrap(),
        api_key: None,
    };
    let ask_scored = |id, mode, backend: &SearchBackend, index: &Path, visual_scorer| {
        crate::engine::try_search(
            &engine,
            SearchRequest {
                id,
                index: index.into(),
                query: "a table of results".into(),
                top_k: 5,
                mode,
                hybrid_visual_weight: 0.5,
                with_heatmaps: false,
                device: DeviceChoice::Cpu,
                devices: None,
                visual_scorer,
                backend: backend.clone(),
            },
        )
    };
    let ask = |id, mode, backend: &SearchBackend, index: &Path| {
        ask_scored(id, mode, backend, index, VisualScorer::Exact)
    };
    let pages = |e: Event| match e {
        Event::SearchResults { hits, scorer, .. } => (
            hits.into_iter()
                .map(|h| (h.file, h.page, h.score))
                .collect::<Vec<_>>(),
            scorer,
        ),
        other => panic!("{other:?}"),
    };
    let (local, _) = pages(ask(1, Mode::Visual, &SearchBackend::Local, index.path()).unwrap());
    let (remote, scorer) = pages(ask(2, Mode::Visual, &qdrant, Path::new("")).unwrap());
    assert!(scorer.contains("Qdrant"), "{scorer}");
    assert_eq!(local.len(), remote.len());
    for (l, r) in local.iter().zip(&remote) {
        assert!(
            (l.2 - r.2).abs() <= 2e-3 * l.2.abs() + 0.05,
            "{local:?} vs {remote:?}"
        );
        if (l.0.clone(), l.1) != (r.0.clone(), r.1) {
            assert!(
                (l.2 - r.2).abs() <= 1e-3 * l.2.abs(),
                "{local:?} vs {remote:?}"
            );
        }
    }
    // The binary scorer asks the server for its two stages; a collection this small is
    // rescored whole, so the answer is the exact one.
    let (binary, scorer) = pages(
        ask_scored(
            5,
            Mode::Visual,
            &qdrant,
            Path::new(""),
            VisualScorer::Binary { candidates: 0 },
        )
        .unwrap(),
    );
    assert!(
        scorer.contains("Qdrant binary MaxSim, best 400 rescored exactly"),
        "{scorer}"
    );
    assert_eq!(binary, remote);
    let (hybrid, scorer) = pages(ask(3, Mode::Hybrid, &qdrant, index.path()).unwrap());
    assert!(!hybrid.is_empty() && scorer.contains("BM25"), "{scorer}");
    let err = ask(4, Mode::Text, &qdrant, Path::new("")).unwrap_err();
    assert!(err.contains("--index"), "{err}");
}
