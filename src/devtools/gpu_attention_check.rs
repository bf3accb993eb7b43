//! The tiled attention kernel on the GPU (selftest part), against a plain f64 softmax attention on
//! the host over the same bf16 inputs, in the three shapes the model uses: the language model's
//! causal GQA attention over a left-padded batch (a row with one real token, a length that is not
//! a multiple of the tile), the vision tower's windows (slots gathered from a shuffled order,
//! padding slots) and its whole-image attention (two images of different lengths). The causal and
//! whole-image cases run in both tile sizes the kernel is built for. q and k are rotated by a
//! RoPE table of varied angles: in place before the kernel, or by the kernel itself (the
//! windows); the host rotates them the same way, rounding each value to bf16 once.

use super::gpu_nf4_check::Nf4Check as Check;
use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};
use pagesight_model::gpu::attention_tiles::{TileTable, SEGMENT_TILE, WINDOW_TILE};
use pagesight_model::gpu::fused::{self, TiledAttentionShape};

/// The kernel's output may differ from f64 by the rounding of P to bf16 (~2⁻⁹ per weight) and of
/// the output: a few 1e-3 relative.
const TOLERANCE: f64 = 1e-2;

struct Case {
    name: String,
    n_rows: usize,
    shape: TiledAttentionShape,
    tiles: TileTable,
    gather: Option<Vec<u32>>,
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let vision = TiledAttentionShape {
        heads: 16,
        kv_heads: 16,
        head_dim: 80,
        causal: false,
    };
    // The segments in both tile sizes the kernel is built for.
    for tile in [SEGMENT_TILE, WINDOW_TILE] {
        // Language model: 3 sequences of 150 (not a multiple of either tile), keys from the
        // first real token.
        let (seq, starts) = (150usize, [0usize, 37, 149]);
        let mut tiles = TileTable::new(tile);
        for (b, s) in starts.iter().enumerate() {
            tiles.push_segment(b * seq, (b + 1) * seq, b * seq + s);
        }
        out.push(Case {
            name: format!("causal_gqa_left_padded_q{tile}"),
            n_rows: 3 * seq,
            shape: TiledAttentionShape {
                heads: 16,
                kv_heads: 2,
                head_dim: 128,
                causal: true,
            },
            tiles,
            gather: None,
        });
        // Whole images of 130 and 170 patches.
        let mut tiles = TileTable::new(tile);
        tiles.push_segment(0, 130, 0);
        tiles.push_segment(130, 300, 130);
        out.push(Case {
            name: format!("vision_full_two_images_q{tile}"),
            n_rows: 300,
            shape: vision,
            tiles,
            gather: None,
        });
    }
    // Vision windows: 300 patches in a shuffled order, windows of 64 slots, some part empty.
    let n = 300usize;
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    for i in (1..n).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    let (mut gather, mut tiles, mut taken) = (Vec::new(), TileTable::new(WINDOW_TILE), 0usize);
    for (w, size) in [64usize, 50, 64, 30, 64, 28].into_iter().enumerate() {
        gather.extend_from_slice(&order[taken..taken + size]);
        gather.extend(std::iter::repeat_n(n as u32, WINDOW_TILE - size));
        tiles.push_segment(w * WINDOW_TILE, (w + 1) * WINDOW_TILE, w * WINDOW_TILE);
        taken += size;
    }
    out.push(Case {
        name: "vision_windows_gathered".into(),
        n_rows: n,
        shape: vision,
        tiles,
        gather: Some(gather),
    });
    out
}

/// Host attention in f64 over bf16 inputs: for each tile's query slots, softmax over its visible
/// keys. Rows no tile covers, or with no visible key, stay zero.
fn reference(c: &Case, qkv: &[f32]) -> Vec<f32> {
    let s = c.shape;
    let (hd, row_len) = (s.head_dim, (s.heads + 2 * s.kv_heads) * s.head_dim);
    let mut out = vec![0f32; c.n_rows * s.heads * hd];
    let row_of = |slot: u32| -> Option<usize> {
        let r = c
            .gather
            .as_ref()
            .map_or(slot as usize, |g| g[slot as usize] as usize);
        (r < c.n_rows).then_some(r)
    };
    let scale = 1.0 / (hd as f64).sqrt();
    for t in c.tiles.as_slice().chunks(4) {
        for qs in t[0]..t[1] {
            let Some(qr) = row_of(qs) else { continue };
            for h in 0..s.heads {
                let kvh = h / (s.heads / s.kv_heads);
                let q = &qkv[qr * row_len + h * hd..][..hd];
                let keys: Vec<usize> = (t[2]..t[3])
                    .filter(|&ks| !s.causal || ks <= qs)
                    .filter_map(row_of)
                    .collect();
                if keys.is_empty() {
                    continue;
                }
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&kr| {
                        let k = &qkv[kr * row_len + (s.heads + kvh) * hd..][..hd];
                        q.iter()
                            .zip(k)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::MIN, f64::max);
                let w: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
                let sum: f64 = w.iter().sum();
                let o = &mut out[(qr * s.heads + h) * hd..][..hd];
                for (&kr, wk) in keys.iter().zip(&w) {
                    let v = &qkv[kr * row_len + (s.heads + s.kv_heads + kvh) * hd..][..hd];
                    for (od, vd) in o.iter_mut().zip(v) {
                        *od += (wk / sum * *vd as f64) as f32;
                    }
                }
            }
        }
    }
    out
}

/// The RoPE table of the identity rotation (cos 1, sin 0) for `rows` rows: the attention kernel's
/// input then stays as it is.
pub fn identity_rope(rows: usize, head_dim: usize, device: &Device) -> Result<Tensor> {
    let half = head_dim / 2;
    Ok(Tensor::cat(
        &[
            Tensor::ones((rows, half), DType::F32, device)?,
            Tensor::zeros((rows, half), DType::F32, device)?,
        ],
        1,
    )?)
}

/// A RoPE table [rows, head_dim] (cos then sin, head_dim/2 each) of rotations by angles that
/// differ per row and frequency, as positions through the model's inverse frequencies give.
fn varied_rope(rows: usize, head_dim: usize) -> Vec<f32> {
    let half = head_dim / 2;
    let mut table = vec![0f32; rows * head_dim];
    for (r, row) in table.chunks_mut(head_dim).enumerate() {
        for f in 0..half {
            let angle = (r as f32 * 0.37 + 1.0) / 10000f32.powf(f as f32 / half as f32);
            row[f] = angle.cos();
            row[half + f] = angle.sin();
        }
    }
    table
}

/// q and k heads of `qkv` rotated by `table` as the model rotates them: rotate-half in f32, each
/// value rounded to bf16 once.
fn rotate_qk(c: &Case, qkv: &mut [f32], table: &[f32]) {
    let s = c.shape;
    let (hd, half) = (s.head_dim, s.head_dim / 2);
    let row_len = (s.heads + 2 * s.kv_heads) * hd;
    let round = |v: f32| half::bf16::from_f32(v).to_f32();
    for (r, row) in qkv.chunks_mut(row_len).enumerate() {
        let (cos, sin) = table[r * hd..][..hd].split_at(half);
        for head in row[..(s.heads + s.kv_heads) * hd].chunks_mut(hd) {
            for f in 0..half {
                let (x1, x2) = (head[f], head[half + f]);
                head[f] = round(x1 * cos[f] - x2 * sin[f]);
                head[half + f] = round(x2 * cos[f] + x1 * sin[f]);
            }
        }
    }
}

pub fn run(device: &Device) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    for c in cases() {
        let s = c.shape;
        let row_len = (s.heads + 2 * s.kv_heads) * s.head_dim;
        // Scores of a few units, as in the model.
        let qkv = (Tensor::randn(0f32, 1.0, (c.n_rows, row_len), &Device::Cpu)? * 1.5)?
            .to_dtype(DType::BF16)?;
        let mut host: Vec<f32> = qkv.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        // The kernel rotates q and k (in place before it, or itself as tiles land: the windows).
        let table = varied_rope(c.n_rows, s.head_dim);
        rotate_qk(&c, &mut host, &table);
        let cos_sin = Tensor::from_vec(table, (c.n_rows, s.head_dim), device)?;
        let tiles = c.tiles.to_device(device)?;
        let gather = match &c.gather {
            Some(g) => Some(Tensor::from_vec(g.clone(), g.len(), device)?),
            None => None,
        };
        let got =
            fused::tiled_attention(qkv.to_device(device)?, &cos_sin, &tiles, gather.as_ref(), s)?
                .context("the tiled attention kernel did not run (fused kernels off?)")?;
        let got: Vec<f32> = got.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        let want = reference(&c, &host);
        let err = super::model_parity::rel_err(&got, &want);
        // Rows with no visible key (the padding of the causal case) must come out as exact zeros.
        let zero_rows_ok = got.iter().zip(&want).all(|(g, w)| *w != 0.0 || *g == 0.0);
        checks.push(Check {
            name: format!("attention_kernel_{}", c.name),
            ok: err < TOLERANCE && zero_rows_ok && got.iter().all(|v| v.is_finite()),
            detail: format!(
                "rel err {err:.2e} vs f64 (bound {TOLERANCE:.0e}); zero rows {}; {} tiles × {} heads",
                if zero_rows_ok { "zero" } else { "NOT zero" },
                c.tiles.as_slice().len() / 4,
                s.heads
            ),
        });
    }
    Ok(checks)
}
