//! Decides what an ingest run does with each discovered file, given what the index already has:
//! skip it (unchanged and complete), resume it at its first uncommitted page, ingest it anew, or
//! remove an indexed file that vanished (with `--prune`) or was replaced by a changed version.

use pagesight_index::Index;
use pagesight_loader::PdfFile;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq)]
pub enum FilePlan {
    /// Complete in the index already.
    Skip { pages: u32 },
    /// Render from `first_page` (1-based); > 1 when resuming a half-done file.
    Ingest { first_page: u32 },
    /// Same content as `of`, found earlier in this run: the index holds one copy per content.
    Duplicate { of: PathBuf },
}

#[derive(Debug, Default)]
pub struct IngestPlan {
    /// One entry per discovered file, in discovery order.
    pub files: Vec<(PdfFile, FilePlan)>,
    /// Indexed files to remove: (hash, path, why).
    pub removals: Vec<([u8; 32], PathBuf, &'static str)>,
}

impl IngestPlan {
    pub fn to_ingest(&self) -> usize {
        self.files
            .iter()
            .filter(|(_, p)| matches!(p, FilePlan::Ingest { .. }))
            .count()
    }
}

pub fn plan(files: Vec<PdfFile>, index: &Index, prune: bool) -> IngestPlan {
    let discovered_hashes: HashSet<[u8; 32]> = files.iter().map(|f| f.hash).collect();
    let discovered_paths: HashMap<PathBuf, [u8; 32]> =
        files.iter().map(|f| (f.path.clone(), f.hash)).collect();
    let mut out = IngestPlan::default();
    for (hash, state) in index.files() {
        if discovered_hashes.contains(&hash) {
            continue;
        }
        // Same path, new content: the old version's pages must go whatever `--prune` says,
        // or a search would return stale pages for this file.
        if discovered_paths.contains_key(&state.path) {
            out.removals
                .push((hash, state.path.clone(), "replaced by a changed version"));
        } else if prune {
            out.removals
                .push((hash, state.path.clone(), "no longer in the folder"));
        }
    }
    let mut first_with_hash: HashMap<[u8; 32], PathBuf> = HashMap::new();
    for f in files {
        if let Some(of) = first_with_hash.get(&f.hash) {
            let of = of.clone();
            out.files.push((f, FilePlan::Duplicate { of }));
            continue;
        }
        first_with_hash.insert(f.hash, f.path.clone());
        let p = match index.file_state(&f.hash) {
            Some(s) if s.complete => FilePlan::Skip {
                pages: s.page_count,
            },
            Some(s) => FilePlan::Ingest {
                first_page: s.pages_committed + 1,
            },
            None => FilePlan::Ingest { first_page: 1 },
        };
        out.files.push((f, p));
    }
    out
}
