//! NF4 matrix product for a few input rows on the CPU, reading the 4-bit codes directly instead
//! of dequantising the whole weight first (a query is ~20 tokens; dequantising 22 M weights to
//! multiply them by 20 rows would cost more than the product itself).

use rayon::prelude::*;

use super::nf4::{Nf4Weight, NF4_CODE};

/// `y[r, o] = Σ_k x[r, k] · code[w(o, k)] · absmax[block(o, k)]` for `x` of `rows × in` (row-major
/// f32); returns `rows × out`. Within a block the products with the codes are summed first and
/// scaled by the block's absmax once, so rounding differs slightly from dequantise-then-matmul.
pub fn nf4_matmul_rows(weight: &Nf4Weight, absmax: &[f32], x: &[f32], rows: usize) -> Vec<f32> {
    let (out_features, in_features) = weight.shape;
    let bs = weight.blocksize;
    debug_assert_eq!(x.len(), rows * in_features);
    let columns: Vec<Vec<f32>> = (0..out_features)
        .into_par_iter()
        .map(|o| {
            let mut acc = vec![0f32; rows];
            let mut codes = vec![0f32; bs];
            let row_start = o * in_features;
            let mut k = 0;
            while k < in_features {
                let flat = row_start + k;
                let block = flat / bs;
                let end = in_features.min((block + 1) * bs - row_start);
                let seg = &mut codes[..end - k];
                decode_codes(&weight.packed, flat, seg);
                let scale = absmax[block];
                for (r, a) in acc.iter_mut().enumerate() {
                    let xs = &x[r * in_features + k..r * in_features + end];
                    let partial: f32 = xs.iter().zip(seg.iter()).map(|(a, b)| a * b).sum();
                    *a += partial * scale;
                }
                k = end;
            }
            acc
        })
        .collect();
    rows_from_columns(&columns, rows, out_features)
}

/// `[out][rows]` per-output columns → `rows × out` row-major.
fn rows_from_columns(columns: &[Vec<f32>], rows: usize, out_features: usize) -> Vec<f32> {
    let mut y = vec![0f32; rows * out_features];
    for (o, col) in columns.iter().enumerate() {
        for (r, v) in col.iter().enumerate() {
            y[r * out_features + o] = *v;
        }
    }
    y
}

/// `y = x · wᵀ` for f32 `x` of `rows × in` and a half-precision weight `w` of `out × in`
/// (row-major, `widen` turning one element into f32), in f32, on all cores: each weight row is
/// widened once into a small buffer and multiplied by every input row, so a few rows (a query)
/// read the weight once instead of widening all of it first.
pub fn half_matmul_rows<T: Copy + Sync>(
    w: &[T],
    out_features: usize,
    in_features: usize,
    widen: impl Fn(T) -> f32 + Sync,
    x: &[f32],
    rows: usize,
) -> Vec<f32> {
    debug_assert_eq!(w.len(), out_features * in_features);
    debug_assert_eq!(x.len(), rows * in_features);
    let columns: Vec<Vec<f32>> = w
        .par_chunks(in_features.max(1))
        .map_init(
            || vec![0f32; in_features],
            |wide, row| {
                for (d, &v) in wide.iter_mut().zip(row) {
                    *d = widen(v);
                }
                x.chunks_exact(in_features.max(1))
                    .map(|xr| dot(xr, wide))
                    .collect()
            },
        )
        .collect();
    rows_from_columns(&columns, rows, out_features)
}

/// Dot product with 16 independent partial sums (so it vectorises).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    let (ca, cb) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for k in 0..16 {
            acc[k] += x[k] * y[k];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The code values of elements `first .. first + out.len()` of the packed weight.
#[inline]
fn decode_codes(packed: &[u8], first: usize, out: &mut [f32]) {
    let (head, rest) = if first % 2 == 1 {
        let (h, r) = out.split_at_mut(1);
        h[0] = NF4_CODE[(packed[first / 2] & 0x0f) as usize];
        (first + 1, r)
    } else {
        (first, out)
    };
    let bytes = &packed[head / 2..(head + rest.len()).div_ceil(2)];
    let mut pairs = rest.chunks_exact_mut(2);
    for (pair, &b) in (&mut pairs).zip(bytes) {
        pair[0] = NF4_CODE[(b >> 4) as usize];
        pair[1] = NF4_CODE[(b & 0x0f) as usize];
    }
    if let [last] = pairs.into_remainder() {
        *last = NF4_CODE[(bytes[bytes.len() - 1] >> 4) as usize];
    }
}
