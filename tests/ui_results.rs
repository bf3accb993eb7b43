//! The Search view's tools for a researcher, driven headless: text snippets with the query's terms
//! highlighted, filters by corpus / folder / file, keyboard navigation among the shown results,
//! query history, copying a reference, revealing the file, and exporting the shown results as
//! Markdown and CSV (written off the UI thread).

use crate::ui::{corpus_options, drain, frames, frames_until, search_by_keyboard, wired, Wired};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use pagesight::engine::event::SearchHit;
use pagesight::engine::{Command, Event};
use pagesight::index::Snippet;
use pagesight::ui::PagesightApp;
use std::path::{Path, PathBuf};
use std::time::Duration;

const SNIPPET: &str = "…the model splits attention into heads | *eight* of them…";

/// Three hits in two folders under `root`, which does not exist (nothing is launched for them).
fn hits(root: &Path) -> Vec<SearchHit> {
    let at = SNIPPET.find("attention").unwrap();
    let term = at..at + "attention".len();
    [
        ("a", "one.pdf", 5),
        ("b", "two.pdf", 2),
        ("a", "three.pdf", 9),
    ]
    .iter()
    .enumerate()
    .map(|(i, (folder, file, page))| SearchHit {
        rank: i + 1,
        score: 1.0 / (i + 1) as f32,
        file: root.join(folder).join(file),
        page: *page,
        title: None,
        heatmap: None,
        snippet: Some(Snippet {
            text: SNIPPET.into(),
            highlighted: vec![term.clone()],
        }),
    })
    .collect()
}

/// The app after a search for "attention heads" answered with `hits(<dir>/gone)`.
fn answered(dir: &Path) -> Wired<'static> {
    let mut w = wired(corpus_options(dir));
    let req = search_by_keyboard(&mut w.h, &w.commands, "attention heads", &[]);
    w.events
        .send(Event::SearchResults {
            id: req.id,
            query: req.query,
            hits: hits(&dir.join("gone")),
            elapsed_ms: 5.0,
            note: None,
            scorer: "BM25 text search".into(),
            timings: Default::default(),
            query_tokens: 0,
        })
        .unwrap();
    frames(&mut w.h, 3);
    drain(&w.commands);
    w
}

fn copied(h: &Harness<'_, PagesightApp>) -> Vec<String> {
    h.output()
        .platform_output
        .commands
        .iter()
        .filter_map(|c| match c {
            egui::OutputCommand::CopyText(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

fn notices_contain(h: &Harness<'_, PagesightApp>, what: &str) -> bool {
    h.state().notices().iter().any(|n| n.contains(what))
}

#[test]
fn results_show_their_snippet_and_filters_narrow_the_list_and_the_keys() {
    let dir = tempfile::tempdir().unwrap();
    let Wired {
        mut h,
        events: _events,
        ..
    } = answered(dir.path());
    assert_eq!(
        h.query_all_by_label_contains("splits attention into heads")
            .count(),
        3,
        "one snippet per card"
    );
    let root = dir.path().join("gone");

    // Folder "a": the first and third results; the arrows move between them only.
    h.get_by_label("Folder").click();
    frames(&mut h, 2);
    h.get_by_label(&root.join("a").display().to_string())
        .click();
    frames(&mut h, 3);
    assert_eq!(h.state().search.visible(), [0, 2]);
    assert!(h.query_by_label("showing 2 of 3").is_some());
    assert!(h.query_by_label_contains("Result 2:").is_none());
    assert_eq!(h.state().search.selected, Some(0));
    h.key_press(egui::Key::ArrowRight);
    frames(&mut h, 2);
    assert_eq!(h.state().search.selected, Some(2));
    h.key_press(egui::Key::ArrowRight);
    frames(&mut h, 2);
    assert_eq!(
        h.state().search.selected,
        Some(2),
        "stops at the last shown"
    );

    // One file of that folder.
    h.get_by_label("File").click();
    frames(&mut h, 2);
    h.get_by_label("three.pdf").click();
    frames(&mut h, 3);
    assert_eq!(h.state().search.visible(), [2]);

    // A corpus the results do not come from shows nothing, until the filters are cleared.
    h.get_by_label("Clear filters").click();
    frames(&mut h, 2);
    assert_eq!(h.state().search.visible(), [0, 1, 2]);
    h.get_by_label("Corpus").click();
    frames(&mut h, 2);
    h.get_by_label("corpus").click();
    frames(&mut h, 2);
    assert_eq!(
        h.state().search.visible(),
        [0, 1, 2],
        "all from this corpus"
    );
}

#[test]
fn enter_opens_a_result_whose_reference_is_copied_and_file_revealed() {
    let dir = tempfile::tempdir().unwrap();
    let Wired {
        mut h,
        events: _events,
        ..
    } = answered(dir.path());

    // Ctrl+C on the selected card copies `file, p. N`.
    // One event, so the frame that copies is the last one stepped (each queued event is a frame).
    h.event(egui::Event::Key {
        key: egui::Key::C,
        pressed: true,
        modifiers: egui::Modifiers::COMMAND,
        repeat: false,
        physical_key: None,
    });
    h.step();
    assert_eq!(copied(&h), ["one.pdf, p. 5"]);

    h.key_press(egui::Key::ArrowRight);
    frames(&mut h, 2);
    h.key_press(egui::Key::Enter);
    frames(&mut h, 3);
    assert!(h.state().search.large_open);
    // The large view shows the snippet too (with the card's behind it).
    assert_eq!(
        h.query_all_by_label_contains("splits attention into heads")
            .count(),
        4
    );
    h.get_by_label("Copy reference").click();
    h.step();
    assert_eq!(copied(&h), ["two.pdf, p. 2"]);
    frames(&mut h, 2);
    assert!(notices_contain(&h, "copied “two.pdf, p. 2”"));

    // Its folder is gone: said so, nothing launched.
    h.get_by_label("Reveal in file manager").click();
    let said = frames_until(&mut h, Duration::from_secs(10), |h| {
        notices_contain(h, "is not there (moved, or on a drive that is not mounted)")
    });
    assert!(said, "{:?}", h.state().notices());
    h.key_press(egui::Key::Escape);
    frames(&mut h, 3);
    assert!(!h.state().search.large_open);
}

#[test]
fn past_queries_are_one_click_away() {
    let dir = tempfile::tempdir().unwrap();
    let Wired {
        mut h,
        commands,
        events: _events,
    } = answered(dir.path());
    // A second query, typed into the box over the first.
    h.state_mut().search.query.clear();
    h.get_by_label("Query").focus();
    frames(&mut h, 2);
    h.get_by_label("Query").type_text("a second query");
    frames(&mut h, 2);
    h.key_press(egui::Key::Enter);
    frames(&mut h, 2);
    let cmds = drain(&commands);
    assert!(
        matches!(cmds.as_slice(), [Command::Search(r)] if r.query == "a second query"),
        "{cmds:?}"
    );
    assert_eq!(
        h.state().settings.query_history,
        ["a second query", "attention heads"]
    );
    h.get_by_label("History").click();
    frames(&mut h, 2);
    h.get_by_label("attention heads").click();
    frames(&mut h, 2);
    let cmds = drain(&commands);
    assert!(
        matches!(cmds.as_slice(), [Command::Search(r)] if r.query == "attention heads"),
        "{cmds:?}"
    );
    assert_eq!(h.state().search.query, "attention heads");
    assert_eq!(h.state().settings.query_history[0], "attention heads");
}

/// The one file of `dir` whose name ends with `ext`.
fn exported(dir: &Path, ext: &str) -> PathBuf {
    let found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    found.into_iter().next().unwrap()
}

#[test]
fn the_shown_results_export_as_markdown_and_csv() {
    let dir = tempfile::tempdir().unwrap();
    let Wired {
        mut h,
        events: _events,
        ..
    } = answered(dir.path());
    let root = dir.path().join("gone");
    h.get_by_label("Folder").click();
    frames(&mut h, 2);
    h.get_by_label(&root.join("a").display().to_string())
        .click();
    frames(&mut h, 2);

    h.get_by_label("Export Markdown").click();
    assert!(frames_until(&mut h, Duration::from_secs(10), |h| {
        notices_contain(h, "Markdown written to")
    }));
    let md = std::fs::read_to_string(exported(&dir.path().join("exports"), "md")).unwrap();
    assert!(
        md.contains("## “attention heads” (visual search, 2 results)"),
        "{md}"
    );
    assert!(
        md.contains("| …the model splits **attention** into heads \\| \\*eight\\* of them… |"),
        "{md}"
    );
    assert!(
        md.contains("[three.pdf]") && !md.contains("two.pdf"),
        "{md}"
    );

    h.get_by_label("Export CSV").click();
    assert!(frames_until(&mut h, Duration::from_secs(10), |h| {
        notices_contain(h, "CSV written to")
    }));
    let csv = std::fs::read_to_string(exported(&dir.path().join("exports"), "csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "query,mode,rank,score,file,page,title,text");
    assert_eq!(lines.len(), 3, "{csv}");
    assert!(lines[2].starts_with("attention heads,visual,3,"), "{csv}");
    assert!(lines[2].ends_with(&format!(",9,,{SNIPPET}")), "{csv}");
}
