//! Compressed scoring: 1-bit sign codes per token, MaxSim by Hamming similarity
//! (`dim − 2·popcount(q ⊕ d)` is the dot product of the ±1 vectors), used as a prefilter whose
//! best candidates are rescored exactly. 16 bytes per 128-d token instead of 256.

use super::segment::code_bytes;

/// Query rows the SIMD kernel takes per pass (the query's words are padded to a multiple).
#[cfg(target_arch = "x86_64")]
const PAD_ROWS: usize = super::binary_avx512::ROWS;
#[cfg(not(target_arch = "x86_64"))]
const PAD_ROWS: usize = 1;

/// Sign codes of the query, as u64 words per token; zero rows pad it to whole kernel tiles
/// (only the first `nq` rows are ever summed).
pub fn query_words(q: &[f32], nq: usize, dim: usize) -> Vec<u64> {
    let bytes = super::vectors::sign_codes(q, nq, dim);
    let mut words: Vec<u64> = bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect();
    let per_row = code_bytes(dim) / 8;
    words.resize(nq.div_ceil(PAD_ROWS) * PAD_ROWS * per_row, 0);
    words
}

/// Whether the AVX-512 VPOPCNTDQ kernel runs (128-d codes on a CPU that has it).
pub fn simd_available(dim: usize) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        code_bytes(dim) == 16
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vpopcntdq")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = dim;
        false
    }
}

/// One page's sign codes (`n_tokens` × `code_bytes(dim)`), and the codes of the page scored after
/// it, if known, which the SIMD kernel prefetches meanwhile.
#[derive(Clone, Copy)]
pub struct PageCodes<'a> {
    pub codes: &'a [u8],
    pub n_tokens: usize,
    pub next: Option<&'a [u8]>,
}

/// Hamming MaxSim of the query's words (from `query_words`) against a page's codes.
pub fn hamming_maxsim(qw: &[u64], nq: usize, dim: usize, page: PageCodes<'_>) -> f32 {
    hamming_maxsim_with(simd_available(dim), qw, nq, dim, page)
}

/// As `hamming_maxsim`, choosing the kernel: `simd` only takes effect where `simd_available`.
pub fn hamming_maxsim_with(
    simd: bool,
    qw: &[u64],
    nq: usize,
    dim: usize,
    page: PageCodes<'_>,
) -> f32 {
    let PageCodes {
        codes,
        n_tokens,
        next,
    } = page;
    let words = code_bytes(dim) / 8;
    if n_tokens == 0 || nq == 0 {
        return 0.0;
    }
    #[cfg(target_arch = "x86_64")]
    if simd && simd_available(dim) && qw.len().is_multiple_of(2 * PAD_ROWS) && qw.len() >= 2 * nq {
        assert!(
            codes.len() >= n_tokens * 16,
            "page codes shorter than its tokens"
        );
        let rows = qw.len() / 2;
        let mut stack = [0u64; 64];
        let mut heap = Vec::new();
        let out: &mut [u64] = if rows <= stack.len() {
            &mut stack[..rows]
        } else {
            heap.resize(rows, 0);
            &mut heap
        };
        // Without a next page the first pass prefetches past this one's end: harmless.
        let next = next.unwrap_or(&codes[codes.len()..]).as_ptr();
        // SAFETY: `simd_available` detected AVX-512F and VPOPCNTDQ. `qw` has 2 words per row
        // for a multiple of `ROWS` rows (`PAD_ROWS`, checked), `out` has one slot per row,
        // `codes` holds `n_tokens × 16` bytes (asserted) and `n_tokens ≥ 1` (0 returned early);
        // `next` is only prefetched.
        unsafe { super::binary_avx512::min_distances(qw, codes, n_tokens, out, next) };
        return out[..nq]
            .iter()
            .map(|&m| dim as i64 - 2 * m as i64)
            .sum::<i64>() as f32;
    }
    let _ = (simd, next);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: POPCNT was detected just above; the function body is safe code.
            return unsafe { hamming_popcnt(qw, nq, words, dim, codes, n_tokens) };
        }
    }
    hamming_generic(qw, nq, words, dim, codes, n_tokens)
}

/// `hamming_generic` compiled with the `popcnt` instruction.
///
/// # Safety
/// The CPU must have POPCNT; the body itself is safe code.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "popcnt")]
unsafe fn hamming_popcnt(
    qw: &[u64],
    nq: usize,
    words: usize,
    dim: usize,
    codes: &[u8],
    n: usize,
) -> f32 {
    hamming_generic(qw, nq, words, dim, codes, n)
}

#[inline(always)]
fn hamming_generic(qw: &[u64], nq: usize, words: usize, dim: usize, codes: &[u8], n: usize) -> f32 {
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or_default());
    let mut total = 0i64;
    if words == 2 {
        // The common 128-d case: all query tokens against one doc token at a time, so each
        // doc token's 16 bytes are read once. Plain indexed loops: fast even at opt-level 1.
        let mut best = [dim as u32; 64];
        let mut q0 = [0u64; 64];
        let mut q1 = [0u64; 64];
        let mut start = 0;
        while start < nq {
            let nqc = (nq - start).min(64);
            for j in 0..nqc {
                q0[j] = qw[2 * (start + j)];
                q1[j] = qw[2 * (start + j) + 1];
                best[j] = dim as u32;
            }
            for t in 0..n {
                let d0 = word(&codes[16 * t..16 * t + 8]);
                let d1 = word(&codes[16 * t + 8..16 * t + 16]);
                for j in 0..nqc {
                    let c = (q0[j] ^ d0).count_ones() + (q1[j] ^ d1).count_ones();
                    if c < best[j] {
                        best[j] = c;
                    }
                }
            }
            for &b in &best[..nqc] {
                total += dim as i64 - 2 * b as i64;
            }
            start += nqc;
        }
    } else {
        let doc: Vec<u64> = codes[..n * words * 8].chunks_exact(8).map(word).collect();
        for q in qw.chunks_exact(words).take(nq) {
            let best = doc
                .chunks_exact(words)
                .map(|d| {
                    q.iter()
                        .zip(d)
                        .map(|(a, b)| (a ^ b).count_ones())
                        .sum::<u32>()
                })
                .min()
                .unwrap_or(dim as u32);
            total += dim as i64 - 2 * best as i64;
        }
    }
    total as f32
}
