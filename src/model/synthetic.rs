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
