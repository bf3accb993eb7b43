//! Model-shaped inputs that need no PDF: what the embedding benchmark times and the GPU checks
//! compare, identical on every machine.

use anyhow::Result;
use candle_core::{Device, Tensor};

/// `pages` copies of one page of deterministic synthetic pixels in the normalised range, grid
/// `grid_h × grid_w` patches (a model-shaped input for timing and GPU checks): the pixel rows
/// [pages · grid_h · grid_w, 1176] on the CPU and the grids.
pub fn synthetic_pages(pages: usize, grid_h: u32, grid_w: u32) -> Result<(Tensor, Vec<[u32; 3]>)> {
    let n = (grid_h * grid_w) as usize;
    let patch_dim = 3 * 2 * 14 * 14;
    let page: Vec<f32> = (0..n * patch_dim)
        .map(|i| ((i * 2_654_435_761) % 1000) as f32 / 500.0 - 1.0)
        .collect();
    let page = Tensor::from_vec(page, (n, patch_dim), &Device::Cpu)?;
    Ok((
        Tensor::cat(&vec![&page; pages], 0)?,
        vec![[1, grid_h, grid_w]; pages],
    ))
}

/// `pages` pages of `tokens` unit vectors of `dim` each, the same every run (a fixed LCG): a
/// stand-in index on which two ways of embedding a query must rank the same pages.
pub fn unit_vector_pages(pages: usize, tokens: usize, dim: usize) -> Vec<Vec<f32>> {
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    (0..pages)
        .map(|_| {
            let mut page: Vec<f32> = (0..tokens * dim)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
                })
                .collect();
            for t in page.chunks_exact_mut(dim) {
                let n = t.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
                t.iter_mut().for_each(|v| *v /= n);
            }
            page
        })
        .collect()
}

/// The indexes of the 10 best of `pages` for the query `q` (both `dim`-wide token vectors) by
/// exact MaxSim summed in f64, ties to the lower index.
pub fn top10_maxsim(q: &[f32], dim: usize, pages: &[Vec<f32>]) -> Vec<usize> {
    let maxsim = |p: &[f32]| -> f64 {
        q.chunks_exact(dim)
            .map(|qt| {
                p.chunks_exact(dim)
                    .map(|pt| qt.iter().zip(pt).map(|(a, b)| *a as f64 * *b as f64).sum())
                    .fold(f64::MIN, f64::max)
            })
            .sum()
    };
    let mut scored: Vec<(f64, usize)> = pages
        .iter()
        .enumerate()
        .map(|(i, p)| (maxsim(p), i))
        .collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    scored.iter().take(10).map(|s| s.1).collect()
}
