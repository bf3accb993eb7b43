//! The indexes the engine has open for reading, one long-lived `IndexReader` each, shared by the
//! search and statistics services: a search costs a `stat` of the manifest, not a reopen, and
//! every segment's checksums are checked once (when the reader first maps it).

use anyhow::{Context, Result};
use pagesight_index::{IndexReader, IndexStatsLike, Provenance, Searcher};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
pub struct OpenIndexes {
    readers: Arc<Mutex<HashMap<PathBuf, IndexReader>>>,
}

/// The last commit of an index, as one search sees it.
pub struct OpenSnapshot {
    pub searcher: Searcher,
    pub provenance: Provenance,
}

impl OpenIndexes {
    /// Runs `f` on `dir`'s reader, opening it first if it is not open, reopening it if a commit
    /// landed since.
    fn with_reader<R>(&self, dir: &Path, f: impl FnOnce(&IndexReader) -> Result<R>) -> Result<R> {
        let mut readers = self.readers.lock().unwrap_or_else(|p| p.into_inner());
        match readers.entry(dir.to_path_buf()) {
            // A failed reopen keeps the last good snapshot; the next call tries again.
            std::collections::hash_map::Entry::Occupied(mut e) => {
                e.get_mut().reload_if_changed().map(|_| ())
            }
            std::collections::hash_map::Entry::Vacant(v) => IndexReader::open(dir).map(|r| {
                v.insert(r);
            }),
        }
        .with_context(|| format!("opening index {}", dir.display()))?;
        f(readers.get(dir).expect("inserted above"))
    }

    pub fn snapshot(&self, dir: &Path) -> Result<OpenSnapshot> {
        self.with_reader(dir, |r| {
            Ok(OpenSnapshot {
                searcher: r.open_searcher()?,
                provenance: r.provenance().clone(),
            })
        })
    }

    pub fn stats(&self, dir: &Path) -> Result<IndexStatsLike> {
        self.with_reader(dir, |r| Ok(r.stats()))
    }
}
