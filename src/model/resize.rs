//! Model-resolution sizing (`smart_resize`) and the bicubic resampler, both as the reference
//! Qwen2-VL image processor does them.
//!
//! The resampler is the antialiased bicubic of PIL / torch on 8-bit images (what torchvision's
//! `resize(..., BICUBIC, antialias=True)` runs for the reference's fast processor): cubic kernel
//! with a = −0.5, support widened by the downscale factor, weights normalised per output pixel,
//! separable (horizontal pass, then vertical) with fixed-point weights and an 8-bit intermediate.

use anyhow::{bail, Result};

/// Aspect ratios above this are refused, as the reference does.
pub const MAX_ASPECT_RATIO: f64 = 200.0;

/// Output size `(height, width)` for an image of `height × width`: both multiples of `factor`,
/// area within `[min_pixels, max_pixels]`, aspect ratio kept as well as possible. Mirrors the
/// reference exactly, including Python's ties-to-even `round` and its floor/ceil branches.
pub fn smart_resize(
    height: u32,
    width: u32,
    factor: u32,
    min_pixels: u32,
    max_pixels: u32,
) -> Result<(u32, u32)> {
    if height == 0 || width == 0 {
        bail!("image has zero size ({height}×{width})");
    }
    if factor == 0 {
        bail!("resize factor must be positive");
    }
    let (h, w, f) = (height as f64, width as f64, factor as f64);
    let ratio = h.max(w) / h.min(w);
    if ratio > MAX_ASPECT_RATIO {
        bail!(
            "aspect ratio {ratio:.1} of the page image ({width} wide, {height} high) is above the model's limit of {MAX_ASPECT_RATIO}"
        );
    }
    // No lower bound here (the reference has none): a side under factor/2 rounds to 0, which
    // sends the image through the min_pixels branch.
    let mut h_bar = (h / f).round_ties_even() * f;
    let mut w_bar = (w / f).round_ties_even() * f;
    if h_bar * w_bar > max_pixels as f64 {
        let beta = ((h * w) / max_pixels as f64).sqrt();
        h_bar = f.max((h / beta / f).floor() * f);
        w_bar = f.max((w / beta / f).floor() * f);
    } else if h_bar * w_bar < min_pixels as f64 {
        let beta = (min_pixels as f64 / (h * w)).sqrt();
        h_bar = (h * beta / f).ceil() * f;
        w_bar = (w * beta / f).ceil() * f;
    }
    Ok((h_bar as u32, w_bar as u32))
}

/// Bicubic kernel with a = −0.5 (the one PIL and torch's antialiased path use).
fn cubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// Precomputed taps for one axis, in fixed point: output `i` reads `len[i]` inputs from
/// `start[i]` with integer weights `weights[i * max_taps ..]` scaled by `2^precision`.
///
/// The reference (torch's uint8 antialiased resize, itself modelled on Pillow-SIMD) computes
/// normalised weights in f64, picks the largest precision at which the biggest weight still fits
/// in i16, rounds the weights half away from zero, sums in integers, rounds the sum half up and
/// saturates to 8 bits. Doing the same makes our pixels equal the reference's, not just close.
struct Taps {
    start: Vec<usize>,
    len: Vec<usize>,
    weights: Vec<i32>,
    max_taps: usize,
    precision: u32,
}

fn taps(in_size: usize, out_size: usize) -> Taps {
    let scale = in_size as f64 / out_size as f64;
    // Downscaling widens the kernel by the scale factor (antialiasing); upscaling does not.
    let filter_scale = scale.max(1.0);
    let support = 2.0 * filter_scale;
    let max_taps = (support.ceil() as usize) * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut len = Vec::with_capacity(out_size);
    let mut wf = vec![0.0f64; out_size * max_taps];
    let mut w_max = 0.0f64;
    for i in 0..out_size {
        let center = (i as f64 + 0.5) * scale;
        // C-style truncation, as the reference: negative values clamp to 0 either way.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).clamp(0, in_size as i64) as usize;
        let n = xmax.saturating_sub(xmin).min(max_taps);
        let row = &mut wf[i * max_taps..i * max_taps + n];
        let mut total = 0.0;
        for (j, w) in row.iter_mut().enumerate() {
            *w = cubic((j as f64 + xmin as f64 - center + 0.5) / filter_scale);
            total += *w;
        }
        for w in row.iter_mut() {
            if total != 0.0 {
                *w /= total;
            }
            w_max = w_max.max(*w);
        }
        start.push(xmin);
        len.push(n);
    }
    let mut precision = 0u32;
    while precision < 22 {
        if (0.5 + w_max * (1u32 << (precision + 1)) as f64) as i64 >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    let one = (1u32 << precision) as f64;
    let weights = wf
        .iter()
        .map(|&w| {
            let v = w * one;
            (if v < 0.0 { v - 0.5 } else { v + 0.5 }) as i32
        })
        .collect();
    Taps {
        start,
        len,
        weights,
        max_taps,
        precision,
    }
}

#[inline]
fn to_u8(acc: i32, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// One horizontal pass: `h` rows of `src_w` pixels → `h` rows of `dst_w` pixels.
fn resize_rows(src: &[u8], h: usize, src_w: usize, dst_w: usize, out: &mut [u8]) {
    let t = taps(src_w, dst_w);
    let round = 1i32 << t.precision.saturating_sub(1);
    for y in 0..h {
        let in_row = &src[y * src_w * 3..(y + 1) * src_w * 3];
        let out_row = &mut out[y * dst_w * 3..(y + 1) * dst_w * 3];
        for x in 0..dst_w {
            let (s, n) = (t.start[x], t.len[x]);
            let ws = &t.weights[x * t.max_taps..x * t.max_taps + n];
            let (mut r, mut g, mut b) = (round, round, round);
            // Slices zipped with the weights: no per-tap bounds checks.
            for (&wk, px) in ws.iter().zip(in_row[s * 3..(s + n) * 3].chunks_exact(3)) {
                r += wk * px[0] as i32;
                g += wk * px[1] as i32;
                b += wk * px[2] as i32;
            }
            out_row[x * 3] = to_u8(r, t.precision);
            out_row[x * 3 + 1] = to_u8(g, t.precision);
            out_row[x * 3 + 2] = to_u8(b, t.precision);
        }
    }
}

/// One vertical pass: `src_h` rows → `dst_h` rows of `row_len` bytes (weighted sums of whole
/// rows: contiguous, vectorises well).
fn resize_cols(src: &[u8], src_h: usize, dst_h: usize, row_len: usize, out: &mut [u8]) {
    let t = taps(src_h, dst_h);
    let round = 1i32 << t.precision.saturating_sub(1);
    let mut acc = vec![0i32; row_len];
    for y in 0..dst_h {
        let (s, n) = (t.start[y], t.len[y]);
        let ws = &t.weights[y * t.max_taps..y * t.max_taps + n];
        acc.iter_mut().for_each(|a| *a = round);
        for (k, &wk) in ws.iter().enumerate() {
            let in_row = &src[(s + k) * row_len..(s + k + 1) * row_len];
            for (a, &v) in acc.iter_mut().zip(in_row) {
                *a += wk * v as i32;
            }
        }
        let out_row = &mut out[y * row_len..(y + 1) * row_len];
        for (o, &a) in out_row.iter_mut().zip(&acc) {
            *o = to_u8(a, t.precision);
        }
    }
}

/// Resizes packed 8-bit RGB `src` (`src_h × src_w`) to `dst_h × dst_w` into `dst` (resized to
/// fit): horizontal pass first into an 8-bit intermediate, then vertical, each pass skipped when
/// its axis keeps its size — the reference's order and rounding.
pub fn resize_bicubic_rgb(
    src: &[u8],
    src_h: usize,
    src_w: usize,
    dst_h: usize,
    dst_w: usize,
    dst: &mut Vec<u8>,
) -> Result<()> {
    if src.len() != src_h * src_w * 3 {
        bail!(
            "RGB buffer holds {} bytes, expected {}×{}×3",
            src.len(),
            src_h,
            src_w
        );
    }
    if src_h == 0 || src_w == 0 || dst_h == 0 || dst_w == 0 {
        bail!("cannot resize {src_h}×{src_w} to {dst_h}×{dst_w}");
    }
    dst.clear();
    dst.resize(dst_h * dst_w * 3, 0);
    match (src_w != dst_w, src_h != dst_h) {
        (false, false) => dst.copy_from_slice(src),
        (true, false) => resize_rows(src, src_h, src_w, dst_w, dst),
        (false, true) => resize_cols(src, src_h, dst_h, dst_w * 3, dst),
        (true, true) => {
            let mut tmp = vec![0u8; src_h * dst_w * 3];
            resize_rows(src, src_h, src_w, dst_w, &mut tmp);
            resize_cols(&tmp, src_h, dst_h, dst_w * 3, dst);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weights_sum_to_one_and_cover_input() {
        for (i, o) in [(100, 37), (37, 100), (1684, 896), (5, 5), (3, 1)] {
            let t = taps(i, o);
            for k in 0..o {
                let s: i32 = t.weights[k * t.max_taps..k * t.max_taps + t.len[k]]
                    .iter()
                    .sum();
                let one = 1i32 << t.precision;
                assert!(
                    (s - one).abs() <= t.len[k] as i32,
                    "{i}->{o} out {k}: {s} vs {one}"
                );
                assert!(t.start[k] + t.len[k] <= i);
            }
        }
    }

    #[test]
    fn constant_image_stays_constant() {
        let src = vec![200u8; 50 * 70 * 3];
        let mut dst = Vec::new();
        resize_bicubic_rgb(&src, 50, 70, 28, 56, &mut dst).unwrap();
        assert!(dst.iter().all(|&v| v == 200));
        resize_bicubic_rgb(&src, 50, 70, 112, 84, &mut dst).unwrap();
        assert!(dst.iter().all(|&v| v == 200));
    }

    #[test]
    fn smart_resize_basic() {
        // A4 at 144 DPI-ish: the documented example.
        assert_eq!(
            smart_resize(1684, 1190, 28, 3136, 602112).unwrap(),
            (896, 644)
        );
        assert!(smart_resize(10, 2500, 28, 3136, 602112).is_err());
        assert!(smart_resize(0, 10, 28, 3136, 602112).is_err());
    }
}
