//! Rotary position tables, built on the host from host-side positions (no device round trip):
//! the vision tower's 2D RoPE and the language model's multimodal RoPE (M-RoPE).
//!
//! Both use the non-interleaved layout (`rotate_half`), so a table holds the half-dimension
//! (`cos`/`sin` of [.., head_dim/2]) and `candle_nn::rotary_emb::rope` applies it.

use crate::gpu::upload::upload;
use anyhow::Result;
use candle_core::{Device, Tensor};

/// `1 / theta^(2i/dim)` for i in 0..dim/2, in f32 as the reference computes it.
pub fn inv_freq(dim: usize, theta: f64) -> Vec<f32> {
    (0..dim / 2)
        .map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / dim as f32))
        .collect()
}

/// (row, col) of every patch of one image in merge-block order: for each merged row, merged
/// column, the `merge`×`merge` patches inside it, raster within the block.
pub fn patch_positions_merge_order(
    grid_h: usize,
    grid_w: usize,
    merge: usize,
) -> Vec<(usize, usize)> {
    let mut out = Vec::with_capacity(grid_h * grid_w);
    for mr in 0..grid_h / merge {
        for mc in 0..grid_w / merge {
            for py in 0..merge {
                for px in 0..merge {
                    out.push((mr * merge + py, mc * merge + px));
                }
            }
        }
    }
    out
}

/// Vision 2D RoPE for all images: per patch, concat(freqs(row), freqs(col)) over `head_dim/4`
/// frequencies each. Returns (cos, sin), f32 [n_patches, head_dim/2].
pub fn vision_rope(
    grids: &[[u32; 3]],
    head_dim: usize,
    theta: f64,
    merge: usize,
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv = inv_freq(head_dim / 2, theta);
    let half = head_dim / 2;
    let mut cos = Vec::new();
    let mut sin = Vec::new();
    for &[t, h, w] in grids {
        let pos = patch_positions_merge_order(h as usize, w as usize, merge);
        for _ in 0..t {
            for &(r, c) in &pos {
                for p in [r, c] {
                    for f in &inv {
                        let a = p as f32 * f;
                        cos.push(a.cos());
                        sin.push(a.sin());
                    }
                }
            }
        }
    }
    let n = cos.len() / half;
    Ok((
        upload(cos, (n, half), device)?,
        upload(sin, (n, half), device)?,
    ))
}

/// M-RoPE for a batch: `positions[b][axis][s]` (axis = t, h, w). Frequency j of the half
/// dimension takes its position from axis 0 for j < s0, axis 1 for j < s0+s1, else axis 2
/// (`mrope_section` = [s0, s1, s2]). Returns (cos, sin), f32 [b, seq, head_dim/2].
pub fn mrope(
    positions: &[[Vec<i64>; 3]],
    head_dim: usize,
    theta: f64,
    mrope_section: &[usize],
    device: &Device,
) -> Result<(Tensor, Tensor)> {
    let inv = inv_freq(head_dim, theta);
    let half = head_dim / 2;
    let axis_of: Vec<usize> = (0..half)
        .map(|j| {
            if j < mrope_section[0] {
                0
            } else if j < mrope_section[0] + mrope_section[1] {
                1
            } else {
                2
            }
        })
        .collect();
    let b = positions.len();
    let seq = positions.first().map(|p| p[0].len()).unwrap_or(0);
    let mut cos = Vec::with_capacity(b * seq * half);
    let mut sin = Vec::with_capacity(b * seq * half);
    for row in positions {
        // `s` indexes whichever axis `axis_of[j]` picks, not one slice.
        #[allow(clippy::needless_range_loop)]
        for s in 0..seq {
            for j in 0..half {
                let a = row[axis_of[j]][s] as f32 * inv[j];
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
    }
    Ok((
        upload(cos, (b, seq, half), device)?,
        upload(sin, (b, seq, half), device)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_order_visits_blocks() {
        let p = patch_positions_merge_order(4, 4, 2);
        assert_eq!(&p[..6], &[(0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (0, 3)]);
        assert_eq!(p.len(), 16);
    }

    #[test]
    fn mrope_with_equal_axes_is_plain_rope() {
        let pos = vec![[vec![0, 1, 5], vec![0, 1, 5], vec![0, 1, 5]]];
        let (c, _) = mrope(&pos, 8, 10000.0, &[1, 1, 2], &Device::Cpu).unwrap();
        let c = c.to_vec3::<f32>().unwrap();
        let inv = inv_freq(8, 10000.0);
        for j in 0..4 {
            assert!((c[0][2][j] - (5.0 * inv[j]).cos()).abs() < 1e-6);
        }
    }
}
