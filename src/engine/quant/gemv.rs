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
    let mut y = vec![0f32; rows * out_features];
    for (o, col) in columns.iter().enumerate() {
        for (r, v) in col.iter().enumerate() {
            y[r * out_features + o] = *v;
        }
    }
    y
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
