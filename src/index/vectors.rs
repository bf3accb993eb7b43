//! Conversions between the engine's row-major f32 vectors and the stored forms: f16 packed in
//! 16-token blocks (dimension-major inside a block) and 1-bit sign codes.

use super::format::BLOCK_TOKENS;
use super::segment::{code_bytes, n_blocks};
use half::f16;

/// Packs `n × dim` row-major f32 into f16 blocks; padding tokens are zero. Each block's rows
/// are converted together (F16C, 8 lanes at a time where present) and then transposed, so the
/// stores run along the output; one value at a time this was most of the cost of ingest.
pub fn pack_blocks(vectors: &[f32], n: usize, dim: usize) -> Vec<u16> {
    use half::slice::HalfFloatSliceExt;
    let mut out = vec![0u16; n_blocks(n) * dim * BLOCK_TOKENS];
    let mut rows = vec![f16::ZERO; BLOCK_TOKENS * dim];
    let rows_in = &vectors[..n * dim];
    for (b, src) in rows_in.chunks(BLOCK_TOKENS * dim).enumerate() {
        let tokens = src.len() / dim;
        rows[..src.len()].convert_from_f32_slice(src);
        let block = &mut out[b * dim * BLOCK_TOKENS..(b + 1) * dim * BLOCK_TOKENS];
        for (d, lanes) in block.chunks_exact_mut(BLOCK_TOKENS).enumerate() {
            for (t, slot) in lanes[..tokens].iter_mut().enumerate() {
                *slot = rows[t * dim + d].to_bits();
            }
        }
    }
    out
}

/// Token `t` of a packed page back as f32.
pub fn unpack_token(packed: &[u16], dim: usize, t: usize) -> Vec<f32> {
    let base = (t / BLOCK_TOKENS) * dim * BLOCK_TOKENS + t % BLOCK_TOKENS;
    (0..dim)
        .map(|d| f16::from_bits(packed[base + d * BLOCK_TOKENS]).to_f32())
        .collect()
}

/// All tokens of a packed page as row-major f32.
pub fn unpack_all(packed: &[u16], dim: usize, n: usize) -> Vec<f32> {
    let mut rows = vec![0u16; n * dim];
    unpack_rows_bits(packed, dim, n, &mut rows);
    rows.into_iter()
        .map(|b| f16::from_bits(b).to_f32())
        .collect()
}

/// The first `n` tokens of a packed page as row-major f16 bits into `out` (`n × dim` long).
pub fn unpack_rows_bits(packed: &[u16], dim: usize, n: usize, out: &mut [u16]) {
    for (b, rows) in out[..n * dim].chunks_mut(BLOCK_TOKENS * dim).enumerate() {
        let block = &packed[b * dim * BLOCK_TOKENS..(b + 1) * dim * BLOCK_TOKENS];
        for (d, lanes) in block.chunks_exact(BLOCK_TOKENS).enumerate() {
            for (t, &bits) in lanes[..rows.len() / dim].iter().enumerate() {
                rows[t * dim + d] = bits;
            }
        }
    }
}

/// Sign bits of each row (bit set where the value is ≥ 0), `code_bytes(dim)` bytes per row.
pub fn sign_codes(vectors: &[f32], n: usize, dim: usize) -> Vec<u8> {
    let cb = code_bytes(dim);
    let mut out = vec![0u8; n * cb];
    for (row, code) in vectors
        .chunks_exact(dim)
        .take(n)
        .zip(out.chunks_exact_mut(cb))
    {
        // Eight values → one byte, bit i for value i: a branch-free loop the compiler vectorises.
        for (byte, vals) in code.iter_mut().zip(row.chunks(8)) {
            *byte = vals
                .iter()
                .enumerate()
                .fold(0u8, |b, (i, &x)| b | (((x >= 0.0) as u8) << i));
        }
    }
    out
}

/// Rounds every value through f16, as stored; references compare against this.
pub fn round_f16(vectors: &[f32]) -> Vec<f32> {
    vectors.iter().map(|&x| f16::from_f32(x).to_f32()).collect()
}
