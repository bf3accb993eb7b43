//! The host side of the tiled attention kernel (`flash_kernel`): which head dimensions it takes
//! and the tile tables that say, per block, which query slots it owns and which keys they see.
//! Plain integers, so the vision tower and the language model build them on any device.

use candle_core::{Device, Tensor};

/// Keys per step of the kernel (its shared K and V tiles).
pub const KEY_TILE: usize = 64;

/// Query slots per tile of the vision tower's windows: a window's 64 slots, 4 warps × 16 rows.
pub const WINDOW_TILE: usize = 64;

/// Query slots per tile of a whole segment (an image, a sequence): 8 warps × 16 rows, so each K
/// and V tile brought into shared memory serves twice the rows of a window tile.
pub const SEGMENT_TILE: usize = 128;

/// Whether the kernel takes `head_dim`: whole mma k-steps, and at most 128 (its output rows
/// live in registers, 4 × hd / 8 floats per thread).
pub fn fits(head_dim: usize) -> bool {
    head_dim.is_multiple_of(16) && head_dim > 0 && head_dim <= 128
}

/// Whether the kernel is built for tiles of `query_tile` slots (the Q tile passes through the
/// second stage's K and V buffers, so at most two key tiles).
pub fn tile_fits(query_tile: usize) -> bool {
    query_tile == WINDOW_TILE || query_tile == SEGMENT_TILE
}

/// Dynamic shared memory of one block: two stages of K and V tiles (64 × (hd + 8) bf16 each)
/// and their key masks (64 f32 each) — 68.5 KiB at hd 128, within every sm_80+ GPU's 99 KiB.
pub fn shared_bytes(head_dim: usize) -> usize {
    2 * 2 * KEY_TILE * (head_dim + 8) * 2 + 2 * KEY_TILE * 4
}

/// A tile table being built: `{q_begin, q_end, k_begin, k_end}` per tile of at most
/// `query_tile` query slots. The kernel is launched for the same tile size as the table's.
#[derive(Clone, Debug)]
pub struct TileTable {
    query_tile: usize,
    tiles: Vec<u32>,
}

impl TileTable {
    pub fn new(query_tile: usize) -> Self {
        assert!(
            tile_fits(query_tile),
            "no kernel for {query_tile}-slot tiles"
        );
        TileTable {
            query_tile,
            tiles: Vec::new(),
        }
    }

    /// Appends tiles over the query slots `[begin, end)`, each seeing the keys `[k_begin, end)`.
    pub fn push_segment(&mut self, begin: usize, end: usize, k_begin: usize) {
        let mut q = begin;
        while q < end {
            let q_end = (q + self.query_tile).min(end);
            self.tiles
                .extend_from_slice(&[q as u32, q_end as u32, k_begin as u32, end as u32]);
            q = q_end;
        }
    }

    pub fn query_tile(&self) -> usize {
        self.query_tile
    }

    /// The tiles, four numbers each.
    pub fn as_slice(&self) -> &[u32] {
        &self.tiles
    }

    /// The table as the kernel reads it: `[n_tiles, 4]` u32 on `device`.
    pub fn to_device(&self, device: &Device) -> candle_core::Result<DeviceTiles> {
        let n = self.tiles.len() / 4;
        Ok(DeviceTiles {
            tiles: super::upload::upload(self.tiles.clone(), (n, 4), device)?,
            query_tile: self.query_tile,
        })
    }
}

/// A tile table on the device, with the tile size the kernel must be launched for.
#[derive(Clone, Debug)]
pub struct DeviceTiles {
    pub tiles: Tensor,
    pub query_tile: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_tiles_cover_every_query_once() {
        let mut t = TileTable::new(WINDOW_TILE);
        t.push_segment(10, 150, 12);
        let tiles: Vec<_> = t.as_slice().chunks(4).collect();
        assert_eq!(tiles.len(), 3);
        assert_eq!(tiles[0], &[10, 74, 12, 150]);
        assert_eq!(tiles[1], &[74, 138, 12, 150]);
        assert_eq!(tiles[2], &[138, 150, 12, 150]);
        t.push_segment(5, 5, 5);
        assert_eq!(t.as_slice().len(), 12, "an empty segment has no tiles");
    }

    #[test]
    fn segment_tiles_follow_the_table_size() {
        let mut t = TileTable::new(SEGMENT_TILE);
        t.push_segment(0, 300, 0);
        let tiles: Vec<_> = t.as_slice().chunks(4).collect();
        assert_eq!(
            tiles,
            [&[0, 128, 0, 300], &[128, 256, 0, 300], &[256, 300, 0, 300]]
        );
        assert_eq!(t.query_tile(), 128);
    }

    #[test]
    #[should_panic(expected = "no kernel for 96-slot tiles")]
    fn tiles_without_a_kernel_are_refused() {
        TileTable::new(96);
    }

    #[test]
    fn head_dims_of_the_model_fit() {
        assert!(fits(80) && fits(128) && fits(16));
        assert!(!fits(72) && !fits(0) && !fits(256));
        assert_eq!(shared_bytes(128), 70_144);
        assert!(shared_bytes(128) <= 99 * 1024);
        // The Q tile passes through the second stage's K and V buffers.
        assert!(SEGMENT_TILE <= 2 * KEY_TILE && tile_fits(WINDOW_TILE));
    }
}
