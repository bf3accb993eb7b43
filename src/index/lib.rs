//! The local index: one folder per corpus that survives crashes, with exact and compressed
//! MaxSim, BM25 text search and RRF fusion. No model, loader or engine code (they build on it).
//!
//! # Folder
//! `MANIFEST` (checksummed JSON, swapped atomically: the truth), `segments/seg-*.psv` (immutable,
//! memory-mapped page vectors, see `segment`), `text/` (tantivy: metadata + BM25, derived data).
//!
//! # API (what the engine calls)
//! ```ignore
//! let mut ix = Index::open_or_create(dir, &provenance)?;   // refuses another model's vectors
//! ix.set_pool_factor(1);                                      // hierarchical pooling at ingest
//! if let Some(st) = ix.file_state(&hash) { /* skip if st.complete; else resume at st.first_missing_page */ }
//! ix.begin_file(&hash, path, title, page_count)?;
//! ix.add_page(PageRecord { file_hash, page, text, vectors, n_tokens, image_rows, merged_grid })?;
//! ix.add_pages(&records)?;                                   // a batch: packing on all cores
//! ix.finish_file(&hash)?;
//! ix.remove_file(&hash)?;                                     // tombstones (changed / vanished files)
//! let info: CommitInfo = ix.commit()?;                        // atomic, survives SIGKILL anywhere
//! let s: Searcher = ix.searcher()?;                           // snapshot of the last commit, Send + Sync
//! let hits: Vec<Hit> = s.search(&Query { vectors, n_tokens, text, mode, top_k, visual_weight, scorer })?;
//! let hm: PageHeatmap = s.heatmap(page_id, &q, nq)?;
//! let sn: Vec<Option<Snippet>> = s.snippets(&page_ids, "query words")?;  // terms highlighted
//! Index::open(dir)?;  Index::verify(dir)?;  ix.stats();  ix.compact()?;
//! let mut r = IndexReader::open(dir)?;                       // kept open: checks each segment once
//! let s: Searcher = r.searcher()?;                            // reopens only after a commit
//! ```
//! Other scorers plug in through `search::PageScorer` (`Searcher::visual_with`): the CPU kernels
//! (`search::CpuExact`, `maxsim`) and `tensor_scorer::TensorScorer`, MaxSim as batched matmuls over
//! page tiles resident on a candle device (VRAM on CUDA), by default through the fused CUDA kernel
//! `maxsim_kernel` (host side: `page_table`). `sharded_scorer::ShardedScorer` spreads a snapshot's
//! pages over several such scorers, one per device (`shards`: the split by capacity and the
//! exact merge of the shards' top-k).

pub mod binary;
#[cfg(target_arch = "x86_64")]
mod binary_avx512;
pub mod env_vars;
pub mod file_identity;
pub mod format;
pub mod fusion;
pub mod hooks;
pub mod kernel_source;
pub mod manifest;
pub mod maxsim;
#[cfg(target_arch = "x86_64")]
mod maxsim_avx512;
#[cfg(feature = "cuda")]
pub mod maxsim_kernel;
#[cfg(target_arch = "aarch64")]
mod maxsim_neon;
#[cfg(target_arch = "x86_64")]
mod maxsim_rows;
pub mod page_table;
pub mod pooling;
pub mod provenance;
pub mod reader;
pub mod search;
pub mod segment;
pub mod sharded_scorer;
pub mod shards;
pub mod snapshot;
pub mod snippet;
pub mod store;
pub mod synthetic;
pub mod tensor_scorer;
pub mod text;
pub mod vectors;
pub mod verify;

pub use format::{IndexError, Result, FORMAT_VERSION};
pub use provenance::Provenance;
pub use reader::IndexReader;
pub use search::{Hit, PageHeatmap, PageScorer, Query, Scorer, SearchMode, Searcher};
pub use snippet::Snippet;
pub use store::{CommitInfo, FileState, Index, OpenOptions, PageRecord};
pub use verify::VerifyReport;

/// Index-level statistics (the engine converts to its `IndexStats` event).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct IndexStatsLike {
    pub path: std::path::PathBuf,
    pub files: u64,
    pub files_complete: u64,
    pub pages: u64,
    pub vectors: u64,
    pub deleted_pages: u64,
    pub segments: u64,
    pub bytes_on_disk: u64,
    pub bytes_per_page: f64,
    pub generation: u64,
    pub model: String,
    pub provenance: Provenance,
}

impl Index {
    pub fn verify(dir: &std::path::Path) -> Result<VerifyReport> {
        verify::verify(dir)
    }

    pub fn stats(&self) -> IndexStatsLike {
        let snap = &self.committed;
        let vectors = snap
            .pages
            .iter()
            .map(|r| snap.segments[r.seg as usize].entries[r.idx as usize].n_tokens as u64)
            .sum();
        let seg_bytes: u64 = snap.segments.iter().map(|s| s.file_len()).sum();
        let bytes_on_disk = dir_size(&self.dir);
        let stored: u64 = snap.segments.iter().map(|s| s.entries.len() as u64).sum();
        let pages = snap.pages.len() as u64;
        IndexStatsLike {
            path: self.dir.clone(),
            files: self.manifest.files.len() as u64,
            files_complete: self.manifest.files.iter().filter(|f| f.complete).count() as u64,
            pages,
            vectors,
            deleted_pages: stored - pages,
            segments: snap.segments.len() as u64,
            bytes_on_disk,
            bytes_per_page: if stored > 0 {
                seg_bytes as f64 / stored as f64
            } else {
                0.0
            },
            generation: snap.generation,
            model: self.manifest.provenance.describe(),
            provenance: self.manifest.provenance.clone(),
        }
    }
}

fn dir_size(p: &std::path::Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|rd| rd.flatten().map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}
