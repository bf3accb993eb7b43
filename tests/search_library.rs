//! `pagesight search --index A --index B`: several indexes searched as one library, merged as the
//! app merges its corpora — visual scores of one model by score, text by reciprocal rank, an
//! index made with another model listed apart, an index that fails named in a note while the
//! others still answer.

use crate::engine::{hit_fields, ingest, json_answer, samples_dir, test_settings};
use pagesight::engine::{EngineHandle, Quant};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Two corpora of two sample PDFs each, ingested into their own index (random:tiny on the CPU).
struct Library {
    _dir: tempfile::TempDir,
    a: PathBuf,
    b: PathBuf,
    root: PathBuf,
}

fn library() -> Library {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let mut pdfs: Vec<PathBuf> = std::fs::read_dir(samples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pdf"))
        .collect();
    pdfs.sort();
    assert!(pdfs.len() >= 4, "{pdfs:?}");
    let engine = EngineHandle::spawn();
    for (name, files) in [("a", &pdfs[..2]), ("b", &pdfs[2..4])] {
        let folder = root.join(format!("corpus-{name}"));
        std::fs::create_dir(&folder).unwrap();
        for f in files {
            std::fs::copy(f, folder.join(f.file_name().unwrap())).unwrap();
        }
        let (summary, _) = ingest(&engine, &folder, &root.join(name), test_settings());
        assert_eq!(summary.files_failed, 0);
    }
    Library {
        a: root.join("a"),
        b: root.join("b"),
        root,
        _dir: dir,
    }
}

fn cli(args: &[&str], indexes: &[&Path]) -> Output {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_pagesight"));
    c.arg("search").args(args).args(["--device", "cpu"]);
    for i in indexes {
        c.arg("--index").arg(i);
    }
    c.output().unwrap()
}

/// One index's hits as `--json` prints them: (file, page, score).
fn single(args: &[&str], index: &Path) -> Vec<(String, u64, f64)> {
    let line = json_answer(&cli(args, &[index]));
    assert_eq!(line["event"], "search_results", "{line}");
    let hits = line["hits"].as_array().unwrap_or_else(|| panic!("{line}"));
    hits.iter().map(hit_fields).collect()
}

/// Per group of a library answer: its model, and its hits with the index each came from.
type Groups = Vec<(String, Vec<(String, Value)>)>;

/// The library's answer: its groups, and the whole JSON line.
fn merged(args: &[&str], indexes: &[&Path]) -> (Groups, Value) {
    let line = json_answer(&cli(args, indexes));
    let groups = line["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{line}"))
        .iter()
        .map(|g| {
            let hits = g["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| (h["index"].as_str().unwrap().to_string(), h.clone()))
                .collect();
            (g["model"].as_str().unwrap().to_string(), hits)
        })
        .collect();
    (groups, line)
}

#[test]
fn several_indexes_search_as_one_library() {
    let lib = library();
    let (a, b) = (lib.a.as_path(), lib.b.as_path());

    // Visual: one model, so the two answers interleave by score — the same pages and scores as
    // the best of both single-index answers.
    let visual = ["page layout", "--json", "--top-k", "3"];
    let from_a = single(&visual, a);
    let mut expected: Vec<(String, u64, f64)> = from_a.clone();
    expected.extend(single(&visual, b));
    expected.sort_by(|x, y| y.2.total_cmp(&x.2));
    expected.truncate(3);
    let (groups, _) = merged(&visual, &[a, b]);
    assert_eq!(groups.len(), 1, "{groups:?}");
    let got: Vec<(String, u64, f64)> = groups[0].1.iter().map(|(_, h)| hit_fields(h)).collect();
    assert_eq!(got, expected);
    let ranks: Vec<u64> = groups[0]
        .1
        .iter()
        .map(|(_, h)| h["rank"].as_u64().unwrap())
        .collect();
    assert_eq!(ranks, [1, 2, 3]);
    for (index, h) in &groups[0].1 {
        let file = h["file"].as_str().unwrap();
        let want = if from_a.iter().any(|x| x.0 == file) {
            a
        } else {
            b
        };
        assert_eq!(Path::new(index), want, "{file} came from {index}");
    }

    // Text: BM25 scores of two indexes are not comparable, so ranks alternate (RRF), each
    // index's first hit before either's second.
    let text = [
        "attention layout",
        "--json",
        "--mode",
        "text",
        "--top-k",
        "4",
    ];
    let (groups, _) = merged(&text, &[a, b]);
    let firsts: Vec<&str> = groups[0]
        .1
        .iter()
        .take(2)
        .map(|(i, _)| i.as_str())
        .collect();
    if !single(&text, a).is_empty() && !single(&text, b).is_empty() {
        assert_ne!(firsts[0], firsts[1], "{groups:?}");
    }

    // The terminal's lines name the index of each hit.
    let out = cli(&["page layout", "--top-k", "3"], &[a, b]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains(&format!("[{}]", a.display()))
            || stdout.contains(&format!("[{}]", b.display())),
        "{stdout}"
    );
}

#[test]
fn another_models_index_is_listed_apart_and_a_broken_one_is_named() {
    let lib = library();
    // The same pages, quantised: another model as far as scores go.
    let c = lib.root.join("c");
    {
        let engine = EngineHandle::spawn();
        let mut s = test_settings();
        s.model.quant = Quant::Nf4;
        ingest(&engine, &lib.root.join("corpus-a"), &c, s);
    }
    let missing = lib.root.join("no-such-index");
    let (groups, line) = merged(
        &["page layout", "--json", "--top-k", "2"],
        &[&lib.a, &c, &missing],
    );
    assert_eq!(groups.len(), 2, "{line}");
    assert!(
        groups[0].1.iter().all(|(i, _)| Path::new(i) == lib.a),
        "{line}"
    );
    assert!(groups[1].1.iter().all(|(i, _)| Path::new(i) == c), "{line}");
    let note = line["note"].as_str().unwrap_or_default();
    assert!(note.contains(&missing.display().to_string()), "{line}");

    // Every index failing fails the search, naming them.
    let out = cli(&["x"], &[&missing, &lib.root.join("also-missing")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no-such-index") && stderr.contains("also-missing"),
        "{stderr}"
    );
}
