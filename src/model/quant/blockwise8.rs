//! bitsandbytes' signed 8-bit dynamic map and its blockwise 8-bit quantisation, used for the
//! double quantisation of NF4 absmax values.
//!
//! Bit-exactness notes (bitsandbytes 0.50.2, CPU backend, torch 2.13):
//! - `create_dynamic_map` builds its fractions with `torch.linspace(0.1, 1, n)` in f32; torch
//!   computes each point as `start + step·i` (or `end − step·(n−1−i)` past the middle) with a
//!   fused multiply-add, then multiplies the midpoints by `f32(10^e)`.
//! - `quantize_blockwise` on the CPU is the C++ `quantize_cpu`: absmax per block, `x · (1/absmax)`,
//!   then a 65 536-entry lookup table indexed by `trunc(fma((v+1)·0.5, 65535, 0.5))` (the compiler
//!   fused that multiply-add), whose entries are the nearest code by midpoints. A zero block
//!   gets code 0 and absmax 0.

use std::sync::OnceLock;

const LUT_SIZE: usize = 65_536;

/// `create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)`: 256 sorted f32 values.
pub fn dynamic_map() -> &'static [f32; 256] {
    static MAP: OnceLock<[f32; 256]> = OnceLock::new();
    MAP.get_or_init(build_dynamic_map)
}

/// `torch.linspace(start, end, steps, dtype=float32)` as torch's CPU kernel computes it.
fn torch_linspace_f32(start: f32, end: f32, steps: usize) -> Vec<f32> {
    if steps == 1 {
        return vec![start];
    }
    let step = (end - start) / (steps - 1) as f32;
    let halfway = steps / 2;
    (0..steps)
        .map(|i| {
            if i < halfway {
                step.mul_add(i as f32, start)
            } else {
                (-step).mul_add((steps - 1 - i) as f32, end)
            }
        })
        .collect()
}

fn build_dynamic_map() -> [f32; 256] {
    const MAX_EXPONENT_BITS: u32 = 7;
    // 10^(-(max_exponent_bits-1)+i) as Python evaluates it (a double), for i = 0..6.
    const SCALES: [f64; 7] = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0];
    let mut data: Vec<f32> = Vec::with_capacity(256);
    for (i, &scale) in SCALES.iter().enumerate().take(MAX_EXPONENT_BITS as usize) {
        // signed: 2^(i + non_sign_bits - max_exponent_bits) + 1 = 2^i + 1 fraction items.
        let boundaries = torch_linspace_f32(0.1, 1.0, (1usize << i) + 1);
        let scale = scale as f32;
        let means: Vec<f32> = boundaries.windows(2).map(|w| (w[0] + w[1]) / 2.0).collect();
        data.extend(means.iter().map(|m| scale * m));
        data.extend(means.iter().map(|m| -(scale * m)));
    }
    // additional_items = 2^(7-7) - 1 = 0: nothing more; then 0 and 1.
    data.push(0.0);
    data.push(1.0);
    debug_assert_eq!(data.len(), 256);
    data.sort_by(f32::total_cmp);
    let mut out = [0f32; 256];
    out.copy_from_slice(&data);
    out
}

/// The 65 536-entry table bitsandbytes' CPU kernel maps normalised values through.
fn quantize_lut() -> &'static [u8] {
    static LUT: OnceLock<Vec<u8>> = OnceLock::new();
    LUT.get_or_init(|| {
        let code = dynamic_map();
        let midpoints: Vec<f32> = code.windows(2).map(|w| 0.5 * (w[0] + w[1])).collect();
        let mut lut = vec![0u8; LUT_SIZE];
        let mut code_idx = 0usize;
        for (i, slot) in lut.iter_mut().enumerate() {
            let val = -1.0f32 + (2.0f32 * i as f32) / (LUT_SIZE - 1) as f32;
            while code_idx < 255 && midpoints[code_idx] < val {
                code_idx += 1;
            }
            *slot = code_idx as u8;
        }
        lut
    })
}

#[inline(always)]
fn lut_index(normalised: f32) -> usize {
    let v = normalised.clamp(-1.0, 1.0);
    let idx = ((v + 1.0) * 0.5).mul_add((LUT_SIZE - 1) as f32, 0.5);
    // `as` saturates (NaN → 0), as the C++ truncating conversion does for in-range values.
    idx as u16 as usize
}

/// Blockwise 8-bit quantisation with the dynamic map: returns (codes, absmax per block).
pub fn quantize_blockwise(values: &[f32], blocksize: usize) -> (Vec<u8>, Vec<f32>) {
    let lut = quantize_lut();
    let mut codes = vec![0u8; values.len()];
    let mut absmax = Vec::with_capacity(values.len().div_ceil(blocksize.max(1)));
    for (block, out) in values.chunks(blocksize).zip(codes.chunks_mut(blocksize)) {
        // std::max(acc, |x|) keeps acc when the comparison is false.
        let amax = block
            .iter()
            .fold(0f32, |acc, x| if acc < x.abs() { x.abs() } else { acc });
        absmax.push(amax);
        if amax == 0.0 {
            continue; // codes stay 0, as in bitsandbytes
        }
        let inv = 1.0f32 / amax;
        for (o, &x) in out.iter_mut().zip(block) {
            *o = lut[lut_index(x * inv)];
        }
    }
    (codes, absmax)
}

/// `code[q] · absmax[i / blocksize]` for every code, in f32.
pub fn dequantize_blockwise(codes: &[u8], absmax: &[f32], blocksize: usize) -> Vec<f32> {
    let code = dynamic_map();
    codes
        .chunks(blocksize)
        .zip(absmax)
        .flat_map(|(block, &scale)| block.iter().map(move |&q| code[q as usize] * scale))
        .collect()
}
