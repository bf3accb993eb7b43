//! Result snippets end to end: the real engine answers a text search with each page's text around
//! the query's terms, and `pagesight search` prints them, puts them in `--json` and writes the
//! results to `--export FILE` (Markdown or CSV).

use crate::engine::{ingest, sample_corpus, search, test_settings};
use pagesight::engine::{EngineHandle, Event, SearchMode};
use std::path::Path;

fn cli_search(index: &Path, extra: &[&str]) -> (String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .args(["search", "attention", "--mode", "text", "--top-k", "2"])
        .arg("--index")
        .arg(index)
        .args(extra)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    (stdout, stderr)
}

#[test]
fn text_results_carry_snippets_through_the_engine_and_the_cli() {
    let corpus = sample_corpus();
    let index = tempfile::tempdir().unwrap();
    {
        let engine = EngineHandle::spawn();
        ingest(&engine, corpus.path(), index.path(), test_settings());
        let Event::SearchResults { hits, .. } =
            search(&engine, index.path(), "attention", SearchMode::Text, 1)
        else {
            unreachable!()
        };
        let top = &hits[0];
        assert!(
            top.file.ends_with("sparse-attention-transformers.pdf"),
            "{top:?}"
        );
        let s = top
            .snippet
            .as_ref()
            .expect("a page with text has a snippet");
        assert!(!s.highlighted.is_empty(), "{s:?}");
        for r in &s.highlighted {
            assert!(s.text[r.clone()].eq_ignore_ascii_case("attention"), "{s:?}");
        }
    }

    // Piped, the terms are bracketed under each hit; the Markdown export bolds them.
    let out = tempfile::tempdir().unwrap();
    let md = out.path().join("results.md");
    let (stdout, stderr) = cli_search(index.path(), &["--export", md.to_str().unwrap()]);
    assert!(stdout.to_lowercase().contains("[attention]"), "{stdout}");
    assert!(stderr.contains("results written to"), "{stderr}");
    let md = std::fs::read_to_string(&md).unwrap();
    assert!(md.starts_with("# Pagesight results\n"), "{md}");
    assert!(md.to_lowercase().contains("**attention**"), "{md}");

    // --json carries the snippet; a CSV export has one row per hit.
    let csv = out.path().join("results.csv");
    let (stdout, _) = cli_search(index.path(), &["--json", "--export", csv.to_str().unwrap()]);
    let answer: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let snippet = &answer["hits"][0]["snippet"];
    assert!(
        snippet["text"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("attention"),
        "{answer}"
    );
    assert!(
        !snippet["highlighted"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    let hits = answer["hits"].as_array().unwrap().len();
    let csv = std::fs::read_to_string(&csv).unwrap();
    assert_eq!(csv.lines().count(), 1 + hits, "{csv}");
    assert!(
        csv.starts_with("query,mode,rank,score,file,page,title,text\n"),
        "{csv}"
    );

    // An export name without a known extension is refused before anything runs.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"))
        .args(["search", "x", "--export", "results.txt", "--index"])
        .arg(index.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Markdown (.md) or CSV (.csv)"));
}
