//! The vision tower's attention layout, planned on the host from the image grids (host data, so
//! planning never waits on the device).
//!
//! The reference reorders patches into window order before the blocks and back after the merger.
//! Attention inside a window does not depend on token order, and the MLPs and the merger act per
//! token / per merge group, so we keep patches in their original (merge-block) order and instead
//! gather each window into a padded batch `[n_windows, window_len, …]` for windowed blocks
//! (mask on padded keys), and scatter back. Full-attention blocks attend over each frame.

use crate::gpu::upload::upload;
use anyhow::Result;
use candle_core::{Device, Tensor};

use super::layers::MASKED;

pub struct WindowPlan {
    pub n_windows: usize,
    /// Max patches per window (merged_window² · merge²; 64 for the real model).
    pub window_len: usize,
    /// [n_windows · window_len] u32: patch row to gather into each slot; padding slots read row
    /// `n_patches` (a zero row appended before gathering).
    pub gather: Tensor,
    /// [n_patches] u32: the slot each patch's output sits in.
    pub scatter: Tensor,
    /// [n_windows, 1, 1, window_len] f32 additive key mask.
    pub key_mask: Tensor,
    /// (start, len) of each frame's patches, for full-attention blocks.
    pub frames: Vec<(usize, usize)>,
    pub n_patches: usize,
}

/// Plans windows for `grids` (t, h, w in patches), patches in merge-block order per frame.
/// `merged_window` is the window side in merged tokens, `merge` the spatial merge size.
pub fn plan_windows(
    grids: &[[u32; 3]],
    merged_window: usize,
    merge: usize,
    device: &Device,
) -> Result<WindowPlan> {
    let unit = merge * merge;
    let window_len = merged_window * merged_window * unit;
    let mut windows: Vec<Vec<u32>> = Vec::new();
    let mut frames = Vec::new();
    let mut offset = 0usize;
    for &[t, h, w] in grids {
        let (mh, mw) = (h as usize / merge, w as usize / merge);
        for _ in 0..t {
            frames.push((offset, mh * mw * unit));
            for wr in 0..mh.div_ceil(merged_window) {
                for wc in 0..mw.div_ceil(merged_window) {
                    let mut win = Vec::with_capacity(window_len);
                    for r in wr * merged_window..((wr + 1) * merged_window).min(mh) {
                        for c in wc * merged_window..((wc + 1) * merged_window).min(mw) {
                            let first = offset + (r * mw + c) * unit;
                            win.extend((first..first + unit).map(|p| p as u32));
                        }
                    }
                    windows.push(win);
                }
            }
            offset += mh * mw * unit;
        }
    }
    let n_patches = offset;
    let n_windows = windows.len();
    let mut gather = vec![n_patches as u32; n_windows * window_len];
    let mut scatter = vec![0u32; n_patches];
    let mut key_mask = vec![MASKED; n_windows * window_len];
    for (wi, win) in windows.iter().enumerate() {
        for (slot, &p) in win.iter().enumerate() {
            let at = wi * window_len + slot;
            gather[at] = p;
            scatter[p as usize] = at as u32;
            key_mask[at] = 0.0;
        }
    }
    Ok(WindowPlan {
        n_windows,
        window_len,
        gather: upload(gather, n_windows * window_len, device)?,
        scatter: upload(scatter, n_patches, device)?,
        key_mask: upload(key_mask, (n_windows, 1, 1, window_len), device)?,
        frames,
        n_patches,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_every_patch_once() {
        // 10×6 merged tokens → windows of 4: 3 × 2 windows, edge windows partial.
        let p = plan_windows(&[[1, 20, 12], [1, 8, 8]], 4, 2, &Device::Cpu).unwrap();
        assert_eq!(p.n_windows, 6 + 1);
        assert_eq!(p.n_patches, 240 + 64);
        let gather = p.gather.to_vec1::<u32>().unwrap();
        let scatter = p.scatter.to_vec1::<u32>().unwrap();
        for (patch, &slot) in scatter.iter().enumerate() {
            assert_eq!(gather[slot as usize] as usize, patch);
        }
        let real = gather
            .iter()
            .filter(|&&g| (g as usize) < p.n_patches)
            .count();
        assert_eq!(real, p.n_patches);
        assert_eq!(p.frames, vec![(0, 240), (240, 64)]);
    }
}
