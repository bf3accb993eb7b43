//! The attention kernel in the model's three shapes (the vision tower's windows and whole images,
//! the language model's causal GQA), each segment shape in both tile sizes the kernel is built
//! for: time per call and TFLOP/s of the products it must compute (a causal row sees only the
//! keys up to itself). Part of `bench gemm`: a kernel diagnosis beside the linear layers', not a
//! figure of what the user gets.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use pagesight_model::gpu::attention_tiles::{TileTable, SEGMENT_TILE, WINDOW_TILE};
use pagesight_model::gpu::fused::{self, TiledAttentionShape};
use std::time::Instant;

/// Patches of one page in the vision tower (64 × 46) and tokens of one page in the language
/// model, as `bench gemm`'s rows count them.
const PAGE_PATCHES: usize = 64 * 46;
const PAGE_TOKENS: usize = 756;

struct Shape {
    name: String,
    rows: usize,
    attention: TiledAttentionShape,
    tiles: TileTable,
    gather: Option<Vec<u32>>,
    /// Query·key pairs the products cover.
    pairs: f64,
}

fn shapes(vision_rows: usize, lm_rows: usize) -> Vec<Shape> {
    let vision = TiledAttentionShape {
        heads: 16,
        kv_heads: 16,
        head_dim: 80,
        causal: false,
    };
    let lm = TiledAttentionShape {
        heads: 16,
        kv_heads: 2,
        head_dim: 128,
        causal: true,
    };
    let mut out = Vec::new();
    // Windows of 64 patches, gathered in order (the kernel reads the gather table either way).
    let windows = vision_rows / WINDOW_TILE;
    let mut tiles = TileTable::new(WINDOW_TILE);
    for w in 0..windows {
        tiles.push_segment(w * WINDOW_TILE, (w + 1) * WINDOW_TILE, w * WINDOW_TILE);
    }
    out.push(Shape {
        name: "vision windows".into(),
        rows: windows * WINDOW_TILE,
        attention: vision,
        tiles,
        gather: Some((0..(windows * WINDOW_TILE) as u32).collect()),
        pairs: (windows * WINDOW_TILE * WINDOW_TILE) as f64,
    });
    for tile in [WINDOW_TILE, SEGMENT_TILE] {
        let images = (vision_rows / PAGE_PATCHES).max(1);
        out.push(segments("vision full", PAGE_PATCHES, images, vision, tile));
        let seqs = (lm_rows / PAGE_TOKENS).max(1);
        out.push(segments("lm causal", PAGE_TOKENS, seqs, lm, tile));
    }
    out
}

/// `count` segments of `len` slots, each attending within itself, in tiles of `tile` slots.
fn segments(
    name: &str,
    len: usize,
    count: usize,
    attention: TiledAttentionShape,
    tile: usize,
) -> Shape {
    let mut tiles = TileTable::new(tile);
    for i in 0..count {
        tiles.push_segment(i * len, (i + 1) * len, i * len);
    }
    // A causal row sees the keys up to itself.
    let pairs_each = match attention.causal {
        true => len * (len + 1) / 2,
        false => len * len,
    };
    Shape {
        name: format!("{name}, {tile}-slot tiles"),
        rows: count * len,
        attention,
        tiles,
        gather: None,
        pairs: (count * pairs_each) as f64,
    }
}

/// Prints the table; `reps` timed calls per shape after one untimed.
pub fn run(device: &Device, reps: usize, vision_rows: usize, lm_rows: usize) -> Result<()> {
    println!();
    println!("| attention (its RoPE included: in place, or in the kernel for windows) | rows | tiles | ms | TFLOP/s |");
    println!("|---|---|---|---|---|");
    for s in shapes(vision_rows, lm_rows) {
        let a = s.attention;
        let row_len = (a.heads + 2 * a.kv_heads) * a.head_dim;
        let qkv = Tensor::randn(0f32, 1.0, (s.rows, row_len), device)?.to_dtype(DType::BF16)?;
        let cos_sin = super::gpu_attention_check::identity_rope(s.rows, a.head_dim, device)?;
        let tiles = s.tiles.to_device(device)?;
        let gather = match &s.gather {
            Some(g) => Some(Tensor::from_vec(g.clone(), g.len(), device)?),
            None => None,
        };
        let call = || -> Result<()> {
            fused::tiled_attention(qkv.clone(), &cos_sin, &tiles, gather.as_ref(), a)?
                .ok_or_else(|| anyhow::anyhow!("{}: the attention kernel did not run", s.name))?;
            Ok(())
        };
        call()?;
        device.synchronize()?;
        let t = Instant::now();
        for _ in 0..reps {
            call()?;
        }
        device.synchronize()?;
        let secs = t.elapsed().as_secs_f64() / reps as f64;
        // Q·Kᵀ and P·V: two multiply-adds per pair, head dimension and head.
        let flop = 4.0 * s.pairs * (a.head_dim * a.heads) as f64;
        println!(
            "| {} | {} | {} | {:.3} | {:.0} |",
            s.name,
            s.rows,
            s.tiles.as_slice().len() / 4,
            secs * 1e3,
            flop / secs / 1e12
        );
    }
    Ok(())
}
