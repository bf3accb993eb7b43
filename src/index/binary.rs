//! Compressed scoring: 1-bit sign codes per token, MaxSim by Hamming similarity
//! (`dim − 2·popcount(q ⊕ d)` is the dot product of the ±1 vectors), used as a prefilter whose
//! best candidates are rescored exactly. 16 bytes per 128-d token instead of 256.

use super::segment::code_bytes;

/// Sign codes of the query, as u64 words per token.
pub fn query_words(q: &[f32], nq: usize, dim: usize) -> Vec<u64> {
    let bytes = super::vectors::sign_codes(q, nq, dim);
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default()))
        .collect()
}

/// Hamming MaxSim of the query's words against a page's codes.
pub fn hamming_maxsim(qw: &[u64], nq: usize, dim: usize, codes: &[u8], n_tokens: usize) -> f32 {
    let words = code_bytes(dim) / 8;
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("popcnt") {
            // SAFETY: popcnt is present (checked).
            return unsafe { hamming_popcnt(qw, nq, words, dim, codes, n_tokens) };
        }
    }
    hamming_generic(qw, nq, words, dim, codes, n_tokens)
}

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
        // doc token's 16 bytes are read once.
        let mut best = [dim as u32; 64];
        for qchunk in qw.chunks(2 * 64).take(nq.div_ceil(64)) {
            let nqc = qchunk.len() / 2;
            best[..nqc].fill(dim as u32);
            for d in codes[..n * 16].chunks_exact(16) {
                let (d0, d1) = (word(&d[..8]), word(&d[8..]));
                for (b, q) in best[..nqc].iter_mut().zip(qchunk.chunks_exact(2)) {
                    *b = (*b).min((q[0] ^ d0).count_ones() + (q[1] ^ d1).count_ones());
                }
            }
            total += best[..nqc]
                .iter()
                .map(|&b| dim as i64 - 2 * b as i64)
                .sum::<i64>();
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
