//! `pagesight __index-stress`: a deterministic synthetic ingest the index crash tests
//! (`tests/index/`) SIGKILL at random moments, and the fuzz README uses to make seed indexes.

use clap::Args;
use pagesight_index::Index;
use std::path::{Path, PathBuf};

/// `pagesight __index-stress`: a deterministic synthetic ingest the crash tests SIGKILL at random
/// moments. Prints `committed <pages_total>` after each commit and `done` at the end.
#[derive(Args, Debug)]
pub struct StressArgs {
    #[arg(long)]
    pub index: PathBuf,
    #[arg(long, default_value_t = 6)]
    pub files: u64,
    #[arg(long, default_value_t = 5)]
    pub pages: u32,
    #[arg(long, default_value_t = 32)]
    pub dim: usize,
    #[arg(long, default_value_t = 40)]
    pub tokens: usize,
    #[arg(long, default_value_t = 3)]
    pub commit_every: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn stress_provenance(dim: usize) -> pagesight_index::Provenance {
    pagesight_index::Provenance {
        model: "synthetic".into(),
        adapter: None,
        checkpoint_hash: "synthetic-stress".into(),
        quant: "none".into(),
        quant_scope: "all".into(),
        dtype: "f32".into(),
        lora: None,
        compute: None,
        max_visual_tokens: 0,
        query_prompt: String::new(),
        dim,
        random_weights: true,
    }
}

/// Content hash of synthetic file `i`.
pub fn stress_file_hash(seed: u64, i: u64) -> [u8; 32] {
    *blake3::hash(format!("stress-{seed}-{i}").as_bytes()).as_bytes()
}

/// Text of synthetic page `p` of file `i`.
pub fn stress_page_text(i: u64, p: u32) -> String {
    format!("file{i} page{p} token{}", i * 1000 + p as u64)
}

pub fn run_stress(a: StressArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let corpus = pagesight_index::synthetic::Corpus::new(a.seed, a.dim, 16);
    let mut ix = Index::open_or_create(&a.index, &stress_provenance(a.dim))?;
    let mut since = 0;
    let mut out = std::io::stdout().lock();
    for i in 0..a.files {
        let hash = stress_file_hash(a.seed, i);
        let state = ix.file_state(&hash);
        if state.as_ref().is_some_and(|s| s.complete) {
            continue;
        }
        ix.begin_file(
            &hash,
            Path::new(&format!("/synthetic/file{i}.pdf")),
            Some(&format!("File {i}")),
            a.pages,
        )?;
        for p in 1..=a.pages {
            if ix
                .file_state(&hash)
                .is_some_and(|s| s.first_missing_page.is_none_or(|m| m > p))
            {
                continue;
            }
            let v = corpus.page(i * 1000 + p as u64, a.tokens);
            let text = stress_page_text(i, p);
            let img = 2..a.tokens - 2;
            let grid = (2u32, (img.len() / 2) as u32);
            let img = img.start..img.start + (grid.0 * grid.1) as usize;
            ix.add_page(pagesight_index::PageRecord {
                file_hash: hash,
                page: p,
                text: &text,
                vectors: &v,
                n_tokens: a.tokens,
                image_rows: img,
                merged_grid: grid,
            })?;
            since += 1;
            if since >= a.commit_every {
                let info = ix.commit()?;
                writeln!(out, "committed {}", info.pages_total)?;
                out.flush()?;
                since = 0;
            }
        }
        ix.finish_file(&hash)?;
    }
    let info = ix.commit()?;
    writeln!(out, "committed {}", info.pages_total)?;
    writeln!(out, "done")?;
    out.flush()?;
    Ok(())
}
