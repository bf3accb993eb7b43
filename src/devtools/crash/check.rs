//! What the harness checks in an index after a kill, a failed write or a resumed run: the
//! commit it holds, every page exactly once, manifest / segments / tantivy agreeing, every
//! checksum (`Index::verify`), and the vectors against an uninterrupted run.

use super::child::State;
use anyhow::{Context, Result};
use pagesight_index::manifest::Manifest;
use pagesight_index::segment::SegmentReader;
use pagesight_index::synthetic::Corpus;
use pagesight_index::{format, Index, Query, Scorer, SearchMode};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// A page by identity: (file content hash, 1-based page number).
pub type PageKey = ([u8; 32], u32);

/// One index as the harness sees it.
#[derive(Debug, Default)]
pub struct Inspection {
    /// (generation, live pages); `None`: no index (no MANIFEST) yet.
    pub state: Option<State>,
    /// Live pages and their stored f16 vector bits.
    pub pages: BTreeMap<PageKey, Vec<u16>>,
    /// Live pages stored more than once, counted straight from the segment files.
    pub duplicates: u64,
    /// Invariant violations (empty when all is well).
    pub problems: Vec<String>,
    /// What open repaired or worked around (a text index rebuilt in memory after a kill).
    pub warnings: Vec<String>,
    /// Leftovers `verify` noted (an interrupted commit's files), cleaned by the next ingest.
    pub leftovers: Vec<String>,
    /// Files complete in the manifest, by path.
    pub complete_files: Vec<PathBuf>,
    /// Files started but not complete, by path.
    pub partial_files: Vec<PathBuf>,
}

/// Inspects `dir` read-only (as a search would open it), checking every invariant.
pub fn inspect(dir: &Path) -> Result<Inspection> {
    let mut out = Inspection::default();
    if !dir.join(format::MANIFEST_FILE).exists() {
        return Ok(out);
    }
    out.duplicates = count_duplicates(dir, &mut out.problems);
    let report = Index::verify(dir).with_context(|| format!("verify {}", dir.display()))?;
    out.problems.extend(report.problems);
    out.leftovers = report.notes;
    let ix = match Index::open(dir) {
        Ok(ix) => ix,
        Err(e) => {
            out.problems.push(format!("open failed: {e}"));
            return Ok(out);
        }
    };
    out.warnings = ix.warnings().to_vec();
    let s = ix.searcher()?;
    let stats = ix.stats();
    out.state = Some((stats.generation, s.num_pages() as u64));
    let mut live_ids = Vec::new();
    for (id, hash, page) in s.live_pages() {
        live_ids.push(id);
        let bits = s.page_vector_bits(id).unwrap_or_default().to_vec();
        if out.pages.insert((hash, page), bits).is_some() {
            out.problems.push(format!(
                "page {page} of {} is live twice",
                format::hex(&hash)
            ));
        }
    }
    let mut text_ids = s.text_page_ids()?;
    text_ids.sort_unstable();
    live_ids.sort_unstable();
    if text_ids != live_ids {
        out.problems.push(format!(
            "tantivy holds {} pages, the segments {} live pages: they disagree",
            text_ids.len(),
            live_ids.len()
        ));
    }
    for (hash, f) in ix.files() {
        let present = out.pages.keys().filter(|(h, _)| *h == hash).count() as u32;
        // Ingest commits a file's pages in order: a resumable prefix, nothing else.
        let prefix_end = f.first_missing_page.map_or(f.page_count, |m| m - 1);
        if present != f.pages_committed || f.pages_committed != prefix_end {
            out.problems.push(format!(
                "{}: manifest lists {} pages, {present} live, not the prefix 1..={prefix_end}",
                f.path.display(),
                f.pages_committed
            ));
        }
        if f.complete && f.pages_committed != f.page_count {
            out.problems.push(format!(
                "{}: complete with {} of {} pages",
                f.path.display(),
                f.pages_committed,
                f.page_count
            ));
        }
        if f.complete {
            out.complete_files.push(f.path);
        } else {
            out.partial_files.push(f.path);
        }
    }
    Ok(out)
}

/// Live (not tombstoned) pages stored more than once across the manifest's segments, read
/// straight from the files so a duplicate is counted even where open would refuse it.
fn count_duplicates(dir: &Path, problems: &mut Vec<String>) -> u64 {
    let m = match Manifest::load(dir) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("manifest unreadable: {e}"));
            return 0;
        }
    };
    let mut seen: HashMap<PageKey, u64> = HashMap::new();
    for s in &m.segments {
        let path = dir.join(format::SEGMENTS_DIR).join(&s.file);
        match SegmentReader::open(&path, m.provenance.dim, false) {
            Ok(r) => {
                for e in r.entries.iter().filter(|e| !m.is_deleted(e.page_id)) {
                    *seen.entry((e.file_hash, e.page_no)).or_default() += 1;
                }
            }
            Err(e) => problems.push(format!("segment unreadable: {e}")),
        }
    }
    seen.values().map(|&n| n.saturating_sub(1)).sum()
}

/// Pages of `got` whose vectors differ from the uninterrupted run's, or that it never made.
pub fn differing_pages(got: &Inspection, reference: &Inspection) -> Vec<String> {
    got.pages
        .iter()
        .filter_map(|(k, bits)| match reference.pages.get(k) {
            None => Some(format!(
                "page {} of {}: not in the reference",
                k.1,
                format::hex(&k.0)
            )),
            Some(r) if r != bits => Some(format!(
                "page {} of {}: vectors differ from the reference",
                k.1,
                format::hex(&k.0)
            )),
            Some(_) => None,
        })
        .collect()
}

/// The same visual query over two indexes gives the same pages with the same scores.
pub fn same_search_results(a: &Path, b: &Path) -> Result<Option<String>> {
    let (ia, ib) = (Index::open(a)?, Index::open(b)?);
    let dim = ia.provenance().dim;
    let nq = 6;
    let q = Query {
        vectors: Corpus::new(11, dim, 4).query(3, nq, 0),
        n_tokens: nq,
        text: String::new(),
        mode: SearchMode::Visual,
        top_k: 1000,
        visual_weight: 0.5,
        scorer: Scorer::Exact,
    };
    // By content hash: the same files may sit in another folder. Copies of one PDF score the
    // same and ties go by page id, which depends on ingest order: compare score by page.
    let key = |ix: &Index| -> Result<Vec<(PageKey, u32)>> {
        let mut hits: Vec<(PageKey, u32)> = ix
            .searcher()?
            .search(&q)?
            .into_iter()
            .map(|h| ((h.file_hash, h.page), h.score.to_bits()))
            .collect();
        hits.sort_unstable();
        Ok(hits)
    };
    let (ka, kb) = (key(&ia)?, key(&ib)?);
    Ok((ka != kb).then(|| {
        format!(
            "search results differ: {} vs {} hits, first difference at page {} (by hash)",
            ka.len(),
            kb.len(),
            ka.iter().zip(&kb).position(|(x, y)| x != y).unwrap_or(0) + 1
        )
    }))
}

/// The whole comparison of a finished index with the uninterrupted run: same pages, same
/// vectors, every file complete, same search results. Empty when equal.
pub fn compare_with_reference(
    dir: &Path,
    reference_dir: &Path,
    reference: &Inspection,
) -> Result<Vec<String>> {
    let got = inspect(dir)?;
    let mut out = got.problems.clone();
    out.extend(differing_pages(&got, reference));
    let missing = reference
        .pages
        .keys()
        .filter(|k| !got.pages.contains_key(k))
        .count();
    if missing > 0 {
        out.push(format!("{missing} pages of the reference are missing"));
    }
    if got.duplicates > 0 {
        out.push(format!("{} duplicate pages", got.duplicates));
    }
    // A finished ingest has cleaned up after every earlier interruption.
    out.extend(got.leftovers.iter().map(|n| format!("left behind: {n}")));
    if !got.warnings.is_empty() {
        out.push(format!("open had to repair: {:?}", got.warnings));
    }
    if !got.partial_files.is_empty() {
        out.push(format!("files left incomplete: {:?}", got.partial_files));
    }
    if let Some(d) = same_search_results(dir, reference_dir)? {
        out.push(d);
    }
    Ok(out)
}
