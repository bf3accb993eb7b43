//! The host side of the tiled attention kernel (`flash_kernel`): which head dimensions it takes
//! and the tile tables that say, per block, which query slots it owns and which keys they see.
//! Plain integers, so the vision tower and the language model build them on any device.

use candle_core::{Device, Tensor};

/// Query slots per tile (the kernel's block: 4 warps × 16 query rows; keys go 64 at a time).
pub const TILE: usize = 64;

/// Whether the kernel takes `head_dim`: whole mma k-steps, and at most 128 (its output rows
/// live in registers, 4 × hd / 8 floats per thread).
pub fn fits(head_dim: usize) -> bool {
    head_dim.is_multiple_of(16) && head_dim > 0 && head_dim <= 128
}

/// Dynamic shared memory of one block: two stages of K and V tiles (64 × (hd + 8) bf16 each)
/// and their key masks (64 f32 each) — 68.5 KiB at hd 128, within every sm_80+ GPU's 99 KiB.
pub fn shared_bytes(head_dim: usize) -> usize {
    2 * 2 * TILE * (head_dim + 8) * 2 + 2 * TILE * 4
}

/// Appends tiles of up to `TILE` query slots over `[begin, end)`, each seeing the keys
/// `[k_begin, end)`, as `{q_begin, q_end, k_begin, k_end}`.
pub fn push_segment_tiles(tiles: &mut Vec<u32>, begin: usize, end: usize, k_begin: usize) {
    let mut q = begin;
    while q < end {
        let q_end = (q + TILE).min(end);
        tiles.extend_from_slice(&[q as u32, q_end as u32, k_begin as u32, end as u32]);
        q = q_end;
    }
}

/// A tile table as the kernel reads it: `[n_tiles, 4]` u32 on `device`.
pub fn tiles_tensor(tiles: Vec<u32>, device: &Device) -> candle_core::Result<Tensor> {
    let n = tiles.len() / 4;
    super::upload::upload(tiles, (n, 4), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_tiles_cover_every_query_once() {
        let mut t = Vec::new();
        push_segment_tiles(&mut t, 10, 150, 12);
        let tiles: Vec<_> = t.chunks(4).collect();
        assert_eq!(tiles.len(), 3);
        assert_eq!(tiles[0], &[10, 74, 12, 150]);
        assert_eq!(tiles[1], &[74, 138, 12, 150]);
        assert_eq!(tiles[2], &[138, 150, 12, 150]);
        push_segment_tiles(&mut t, 5, 5, 5);
        assert_eq!(t.len(), 12, "an empty segment has no tiles");
    }

    #[test]
    fn head_dims_of_the_model_fit() {
        assert!(fits(80) && fits(128) && fits(16));
        assert!(!fits(72) && !fits(0) && !fits(256));
        assert_eq!(shared_bytes(128), 70_144);
        assert!(shared_bytes(128) <= 99 * 1024);
    }
}
