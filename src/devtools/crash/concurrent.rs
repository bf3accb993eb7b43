//! Searches during an ingest see the last commit, never part of one: `pagesight search --json`
//! processes run back to back while a child `pagesight ingest` commits, and in this process
//! `Index::open` is polled meanwhile; every answer must match a state a commit made visible
//! (from the commit trace), and every visible page must have its vectors and its text.

use super::check::PageKey;
use super::child::{IngestSpec, RunOpts, State};
use anyhow::Result;
use pagesight_engine::event::{Event, EventEnvelope};
use pagesight_index::{format::MANIFEST_FILE, Index};
use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct ConcurrencyFigures {
    /// `pagesight search` processes that answered during the ingest.
    pub cli_searches: usize,
    /// Index opens in this process during the ingest.
    pub opens: usize,
    /// Answers before the first commit ("no index yet"): allowed.
    pub no_index_yet: usize,
    /// Opens that found tantivy mid-commit and rebuilt the text index in memory (correct, slower).
    pub opens_rebuilt_text: usize,
    /// Distinct committed states the answers saw.
    pub states_seen: usize,
    pub commits: usize,
    pub problems: Vec<String>,
}

/// What one search or open saw.
enum Seen {
    NoIndexYet,
    Pages(u64),
    State(State, bool),
    Error(String),
}

fn cli_search(exe: &Path, index: &Path) -> Seen {
    let out = Command::new(exe)
        .args(["search", "page", "--top-k", "100000", "--json", "--index"])
        .arg(index)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return Seen::Error(format!("cannot run search: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return if stderr.contains("(no MANIFEST)") {
            Seen::NoIndexYet
        } else {
            Seen::Error(stderr.trim().to_string())
        };
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hits =
        stdout.lines().find_map(
            |l| match serde_json::from_str::<EventEnvelope>(l).ok()?.event {
                Event::SearchResults { hits, .. } => Some(hits),
                _ => None,
            },
        );
    let Some(hits) = hits else {
        return Seen::Error(format!("no search results in {stdout:?}"));
    };
    let distinct: HashSet<(&Path, u32)> = hits.iter().map(|h| (h.file.as_path(), h.page)).collect();
    if distinct.len() != hits.len() {
        return Seen::Error("a page was returned twice".into());
    }
    Seen::Pages(hits.len() as u64)
}

/// Opens the last commit as a search would and checks every page is whole: its vectors and
/// its text are there.
fn open_and_check(index: &Path) -> Seen {
    if !index.join(MANIFEST_FILE).exists() {
        return Seen::NoIndexYet;
    }
    let check = || -> pagesight_index::Result<Seen> {
        let ix = Index::open(index)?;
        let s = ix.searcher()?;
        let text: HashSet<u64> = s.text_page_ids()?.into_iter().collect();
        let mut keys: HashSet<PageKey> = HashSet::new();
        for (id, hash, page) in s.live_pages() {
            if s.page_vector_bits(id).is_none_or(|v| v.is_empty()) || !text.contains(&id) {
                return Ok(Seen::Error(format!(
                    "page id {id} is partial (vectors or text missing)"
                )));
            }
            keys.insert((hash, page));
        }
        if keys.len() != s.num_pages() {
            return Ok(Seen::Error("a page is live twice".into()));
        }
        Ok(Seen::State(
            (ix.stats().generation, s.num_pages() as u64),
            !ix.warnings().is_empty(),
        ))
    };
    check().unwrap_or_else(|e| Seen::Error(e.to_string()))
}

pub fn concurrent_searches(spec: &IngestSpec, work: &Path) -> Result<ConcurrencyFigures> {
    let dir = work.join("concurrent");
    let _ = std::fs::remove_dir_all(&dir);
    let mut run = spec.spawn(&dir, work, "concurrent", &RunOpts::default())?;
    let done = AtomicBool::new(false);
    let (cli, opens) = std::thread::scope(|sc| {
        let searches = sc.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                seen.push(cli_search(&spec.exe, &dir));
            }
            seen
        });
        let opens = sc.spawn(|| {
            let mut seen = Vec::new();
            while !done.load(Ordering::SeqCst) {
                seen.push(open_and_check(&dir));
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            seen
        });
        while !run.exited() {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        done.store(true, Ordering::SeqCst);
        (
            searches.join().unwrap_or_default(),
            opens.join().unwrap_or_default(),
        )
    });
    let ended = run.wait()?;
    let mut f = ConcurrencyFigures::default();
    if !ended.status.success() {
        f.problems
            .push(format!("the ingest failed: {}", ended.stderr.trim()));
    }
    let states: HashSet<State> = ended.trace.states().into_iter().collect();
    let page_totals: HashSet<u64> = states.iter().map(|s| s.1).collect();
    f.commits = ended.trace.commits_ended();
    let mut distinct = HashSet::new();
    for s in &cli {
        match s {
            Seen::NoIndexYet => f.no_index_yet += 1,
            Seen::Pages(n) if page_totals.contains(n) => {
                f.cli_searches += 1;
                distinct.insert(*n);
            }
            Seen::Pages(n) => f.problems.push(format!(
                "a search saw {n} pages, no commit made that many visible ({page_totals:?})"
            )),
            Seen::State(..) => {}
            Seen::Error(e) => f.problems.push(format!("search failed: {e}")),
        }
    }
    for s in &opens {
        match s {
            Seen::NoIndexYet => f.no_index_yet += 1,
            Seen::State(st, rebuilt) if states.contains(st) => {
                f.opens += 1;
                f.opens_rebuilt_text += usize::from(*rebuilt);
                distinct.insert(st.1);
            }
            Seen::State(st, _) => f.problems.push(format!(
                "an open saw (generation, pages) {st:?}, not a committed state"
            )),
            Seen::Pages(_) => {}
            Seen::Error(e) => f.problems.push(format!("open failed: {e}")),
        }
    }
    f.states_seen = distinct.len();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(f)
}
