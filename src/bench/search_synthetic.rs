//! The synthetic pages and queries of `bench search` (shared with `bench qdrant` and `bench
//! engine-search`): their arguments, the fixed query set, and the cached index built from them.

use super::search::SearchBenchArgs;
use clap::Args;
use pagesight_index::search::{Query, Scorer, SearchMode};
use pagesight_index::synthetic::{Corpus, Rng};
use pagesight_index::{Index, PageRecord, Provenance};
use rayon::prelude::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Bumped whenever `synthetic::Corpus` draws different vectors: cached indexes are rebuilt.
pub(super) const CORPUS_VERSION: u32 = 2;

/// The synthetic pages and queries `bench search` and `bench qdrant` share (and their cached
/// indexes: the same folder serves both).
#[derive(Args, Debug)]
pub struct SyntheticCorpusArgs {
    /// Stored vectors per page.
    #[arg(long, default_value_t = 750)]
    pub tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Query tokens (ColQwen queries with their prompt are ~20–30).
    #[arg(long, default_value_t = 20)]
    pub query_tokens: usize,
    #[arg(long, default_value_t = 20)]
    pub queries: usize,
    /// Where the synthetic indexes go (reused across runs when complete).
    #[arg(long, default_value = "target/bench-search")]
    pub work_dir: PathBuf,
}

/// `count` exact top-10 visual queries of `tokens` vectors, each near a random page of the
/// `pages`-page synthetic corpus (fixed seed: every benchmark asks the same).
pub(super) fn synthetic_queries(
    corpus: &Corpus,
    pages: usize,
    count: usize,
    tokens: usize,
) -> Vec<Query> {
    let mut rng = Rng::new(7);
    (0..count)
        .map(|qi| Query {
            vectors: corpus.query(rng.below(pages as u64), tokens, qi as u64),
            n_tokens: tokens,
            text: String::new(),
            mode: SearchMode::Visual,
            top_k: 10,
            visual_weight: 1.0,
            scorer: Scorer::Exact,
        })
        .collect()
}

/// Pages generated per batch (all cores) while the previous batch is added and committed.
const GENERATE_BATCH: usize = 512;
/// Pages per commit (one segment each): ~0.8 GB of pending f16 vectors at 750 × 128, so 100k
/// pages are 25 segments and commits, not 200.
const COMMIT_PAGES: usize = 4096;

/// Builds (or reuses) the index of `n` pages, and the raw f16 page file for the reference when
/// `raw`. A generator thread draws the synthetic vectors (all cores) one batch ahead of this
/// thread, which adds them to the index and commits every `COMMIT_PAGES` pages, so memory stays
/// bounded and generation overlaps the serial index work.
pub(super) fn build(
    a: &SearchBenchArgs,
    corpus: &Corpus,
    n: usize,
    dir: &Path,
    raw: bool,
) -> anyhow::Result<Option<f64>> {
    build_with(
        a.synthetic.tokens,
        corpus,
        n,
        dir,
        raw,
        &Provenance::synthetic(a.synthetic.dim),
    )
}

/// `build` with the provenance given: what the engine reads to load the query model (the tests
/// build their synthetic indexes with it too).
pub fn build_with(
    tokens: usize,
    corpus: &Corpus,
    n: usize,
    dir: &Path,
    raw: bool,
    provenance: &Provenance,
) -> anyhow::Result<Option<f64>> {
    let dim = provenance.dim;
    let raw_path = dir.join("pages.f16");
    let want_raw = (n * tokens * dim * 2) as u64;
    if let Ok(ix) = Index::open_with(dir, pagesight_index::OpenOptions { verify_data: false }) {
        let raw_ok = std::fs::metadata(&raw_path).map(|m| m.len()).ok() == Some(want_raw);
        if ix.stats().pages == n as u64 && (raw_ok || !raw) && ix.provenance() == provenance {
            return Ok(None);
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir)?;
    }
    let t0 = Instant::now();
    let mut ix = Index::open_or_create(dir, provenance)?;
    let hash = *blake3::hash(format!("bench-{n}").as_bytes()).as_bytes();
    ix.begin_file(
        &hash,
        Path::new("/synthetic/corpus.pdf"),
        Some("synthetic"),
        n as u32,
    )?;
    let mut raw_out = if raw {
        Some(std::io::BufWriter::new(std::fs::File::create(&raw_path)?))
    } else {
        None
    };
    let (mut add_secs, mut commit_secs, mut wait_secs) = (0.0, 0.0, 0.0);
    let generate_secs = std::thread::scope(|scope| -> anyhow::Result<f64> {
        // Bounded: at most two batches wait, so memory stays ~2 × 512 pages of f32.
        let (tx, rx) = std::sync::mpsc::sync_channel::<(usize, Vec<Vec<f32>>)>(2);
        // Its own thread pool: on the global one, `add_pages`' parallel work would queue behind
        // a whole generated batch instead of sharing the cores with it.
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(rayon::current_num_threads())
            .build()?;
        let generator = scope.spawn(move || {
            let mut secs = 0.0;
            for start in (0..n).step_by(GENERATE_BATCH) {
                let t = Instant::now();
                let pages: Vec<Vec<f32>> = pool.install(|| {
                    (start..(start + GENERATE_BATCH).min(n))
                        .into_par_iter()
                        .map(|p| corpus.page(p as u64, tokens))
                        .collect()
                });
                secs += t.elapsed().as_secs_f64();
                if tx.send((start, pages)).is_err() {
                    break; // the index side failed; its error is reported
                }
            }
            secs
        });
        let mut since_commit = 0;
        loop {
            let t = Instant::now();
            let Ok((start, pages)) = rx.recv() else { break };
            wait_secs += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let texts: Vec<String> = (start..start + pages.len())
                .map(|p| format!("synthetic page {p}"))
                .collect();
            let records: Vec<PageRecord<'_>> = pages
                .iter()
                .zip(&texts)
                .enumerate()
                .map(|(i, (v, text))| PageRecord {
                    file_hash: hash,
                    page: (start + i + 1) as u32,
                    text,
                    vectors: v,
                    n_tokens: tokens,
                    image_rows: 0..0,
                    merged_grid: (0, 0),
                })
                .collect();
            ix.add_pages(&records)?;
            if let Some(out) = raw_out.as_mut() {
                for v in &pages {
                    let bits: Vec<u16> = v
                        .iter()
                        .map(|&x| half::f16::from_f32(x).to_bits())
                        .collect();
                    out.write_all(bytemuck::cast_slice(&bits))?;
                }
            }
            add_secs += t.elapsed().as_secs_f64();
            since_commit += pages.len();
            let done = start + pages.len();
            if since_commit >= COMMIT_PAGES || done == n {
                let t = Instant::now();
                ix.commit()?;
                commit_secs += t.elapsed().as_secs_f64();
                since_commit = 0;
            }
            eprint!("\r  built {done} / {n} pages");
        }
        generator
            .join()
            .map_err(|_| anyhow::anyhow!("the synthetic page generator panicked"))
    })?;
    ix.finish_file(&hash)?;
    let t = Instant::now();
    ix.commit()?;
    commit_secs += t.elapsed().as_secs_f64();
    if let Some(mut out) = raw_out {
        out.flush()?;
    }
    eprintln!(
        "\n  built in {:.0} s: generating the synthetic vectors {generate_secs:.0} s (all cores, overlapped), adding pages (all cores) {add_secs:.0} s, commits {commit_secs:.0} s, waiting for vectors {wait_secs:.0} s",
        t0.elapsed().as_secs_f64()
    );
    Ok(Some(t0.elapsed().as_secs_f64()))
}
