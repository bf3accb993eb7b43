//! `IndexReader`: an index kept open for searching for as long as the app runs, as tantivy's
//! `IndexReader` is. Opening checks every page checksum; after that a search costs a `stat` of
//! the manifest and of each segment, and the reader reopens only when a commit (by this process
//! or another) swapped the manifest or a segment file changed. A reopen maps and checks only the
//! segments it has not seen: segments are immutable, so the ones already checked are kept.

use super::file_identity::FileIdentity;
use super::format::{Result, MANIFEST_FILE};
use super::search::Searcher;
use super::store::{Index, OpenOptions};
use super::{IndexStatsLike, Provenance};
use std::path::{Path, PathBuf};

pub struct IndexReader {
    dir: PathBuf,
    index: Index,
    /// The manifest the open index was read from.
    manifest_seen: Option<FileIdentity>,
    reloads: u64,
    segments_checked: u64,
}

impl IndexReader {
    pub fn open(dir: &Path) -> Result<IndexReader> {
        // Taken before reading: a commit landing in between is seen (and reloaded) next time.
        let manifest_seen = FileIdentity::of(&dir.join(MANIFEST_FILE)).ok();
        let index = Index::open(dir)?;
        let segments_checked = index.committed.segments.len() as u64;
        Ok(IndexReader {
            dir: dir.to_path_buf(),
            index,
            manifest_seen,
            reloads: 0,
            segments_checked,
        })
    }

    /// Reopens if the manifest changed since the last open; says whether it did. On an error the
    /// last good snapshot stays, and the next call tries again.
    pub fn reload_if_changed(&mut self) -> Result<bool> {
        let now = FileIdentity::of(&self.dir.join(MANIFEST_FILE)).ok();
        // A segment rewritten in place (never by pagesight) is mapped and checked again.
        let segments_unchanged = self
            .index
            .committed
            .segments
            .iter()
            .all(|s| FileIdentity::of(&s.path).is_ok_and(|now| now == s.identity));
        if now.is_some() && now == self.manifest_seen && segments_unchanged {
            return Ok(false);
        }
        let reuse = self.index.committed.segments.clone();
        self.index = Index::open_reusing(&self.dir, OpenOptions::default(), &reuse)?;
        self.manifest_seen = now;
        self.reloads += 1;
        self.segments_checked += self
            .index
            .committed
            .segments
            .iter()
            .filter(|s| !reuse.iter().any(|r| std::sync::Arc::ptr_eq(r, s)))
            .count() as u64;
        Ok(true)
    }

    /// The last commit, reloaded first if there is a newer one.
    pub fn searcher(&mut self) -> Result<Searcher> {
        self.reload_if_changed()?;
        self.open_searcher()
    }

    /// The snapshot now open, without looking for a newer commit (after `reload_if_changed`).
    pub fn open_searcher(&self) -> Result<Searcher> {
        self.index.searcher()
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn provenance(&self) -> &Provenance {
        self.index.provenance()
    }

    pub fn warnings(&self) -> &[String] {
        self.index.warnings()
    }

    /// Statistics of the snapshot now open (call `reload_if_changed` first for the latest).
    pub fn stats(&self) -> IndexStatsLike {
        self.index.stats()
    }

    /// How many times a commit made this reader reopen.
    pub fn reloads(&self) -> u64 {
        self.reloads
    }

    /// Segments this reader has mapped and checked page by page (each once while unchanged).
    pub fn segments_checked(&self) -> u64 {
        self.segments_checked
    }
}
