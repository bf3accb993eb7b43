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
                for (j, c) in seg.iter_mut().enumerate() {
                    let f = flat + j;
                    let byte = weight.packed[f / 2];
                    let nibble = if f % 2 == 0 { byte >> 4 } else { byte & 0x0f };
                    *c = NF4_CODE[nibble as usize];
                }
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
    let mut y = vec![0f32; rows * out_features];
    for (o, col) in columns.iter().enumerate() {
        for (r, v) in col.iter().enumerate() {
            y[r * out_features + o] = *v;
        }
    }
    y
}
