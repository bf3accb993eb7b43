//! Where embedded pages go: into the index (ingest), or nowhere (A/B comparisons and benchmarks
//! measure the pipeline without writing).

use anyhow::{Context, Result};
use pagesight_index::{Index, PageRecord};
use pagesight_loader::RenderedPage;
use pagesight_model::colqwen::PageEmbedding;
use std::path::Path;
use std::time::{Duration, Instant};

pub trait PageSink {
    fn begin_file(&mut self, hash: &[u8; 32], path: &Path, page_count: u32) -> Result<()>;
    fn page(&mut self, hash: &[u8; 32], page: &RenderedPage, emb: &PageEmbedding) -> Result<()>;
    fn finish_file(&mut self, hash: &[u8; 32]) -> Result<()>;
    /// Commits when the policy says so (or `force`); returns the committed page total if it did.
    fn maybe_commit(&mut self, force: bool) -> Result<Option<u64>>;
}

/// Writes into the index and commits every `every_pages` pages or `every` seconds.
pub struct IndexSink {
    pub index: Index,
    every_pages: usize,
    every: Duration,
    since_commit: usize,
    last_commit: Instant,
    dirty: bool,
}

impl IndexSink {
    pub fn new(index: Index, every_pages: usize, every_secs: f32) -> Self {
        IndexSink {
            index,
            every_pages: every_pages.max(1),
            every: Duration::from_secs_f32(every_secs.max(0.0)),
            since_commit: 0,
            last_commit: Instant::now(),
            dirty: false,
        }
    }
}

impl PageSink for IndexSink {
    fn begin_file(&mut self, hash: &[u8; 32], path: &Path, page_count: u32) -> Result<()> {
        self.dirty = true;
        Ok(self.index.begin_file(hash, path, None, page_count)?)
    }

    fn page(&mut self, hash: &[u8; 32], page: &RenderedPage, emb: &PageEmbedding) -> Result<()> {
        self.dirty = true;
        self.since_commit += 1;
        Ok(self.index.add_page(PageRecord {
            file_hash: *hash,
            page: page.page,
            text: &page.text,
            vectors: &emb.vectors,
            n_tokens: emb.n_tokens,
            image_rows: emb.image_rows.clone(),
            merged_grid: emb.merged_grid,
        })?)
    }

    fn finish_file(&mut self, hash: &[u8; 32]) -> Result<()> {
        self.dirty = true;
        Ok(self.index.finish_file(hash)?)
    }

    fn maybe_commit(&mut self, force: bool) -> Result<Option<u64>> {
        let due = self.since_commit >= self.every_pages || self.last_commit.elapsed() >= self.every;
        if !self.dirty || !(force || due) {
            return Ok(None);
        }
        let dir = self.index.dir().to_path_buf();
        let info = self
            .index
            .commit()
            .with_context(|| format!("committing to index {}", dir.display()))?;
        self.since_commit = 0;
        self.last_commit = Instant::now();
        self.dirty = false;
        Ok(Some(info.pages_total))
    }
}

/// Keeps nothing; counts pages.
#[derive(Default)]
pub struct DiscardSink {
    pub pages: u64,
}

impl PageSink for DiscardSink {
    fn begin_file(&mut self, _: &[u8; 32], _: &Path, _: u32) -> Result<()> {
        Ok(())
    }
    fn page(&mut self, _: &[u8; 32], _: &RenderedPage, _: &PageEmbedding) -> Result<()> {
        self.pages += 1;
        Ok(())
    }
    fn finish_file(&mut self, _: &[u8; 32]) -> Result<()> {
        Ok(())
    }
    fn maybe_commit(&mut self, _: bool) -> Result<Option<u64>> {
        Ok(None)
    }
}
