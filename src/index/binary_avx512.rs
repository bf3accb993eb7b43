//! Hamming MaxSim of 128-bit sign codes with AVX-512 VPOPCNTDQ, in inline assembly (same code in
//! every build profile, see `maxsim_avx512`).
//!
//! The page's codes are token-major (two u64 words per token). Eight tokens at a time are loaded
//! (two zmm) and split with `vpermt2q` into their first and second words; then for each of 8
//! query tokens: xor with the broadcast query words, `vpopcntq` both, add, and an unsigned min
//! into that query token's accumulator. A partial last group repeats the page's first token (a
//! duplicate never changes a min), so no lane is ever masked in the loop.
//!
//! A page's codes (12 KB at 750 tokens) sit after its vectors, one island per ~200 KB: the L2
//! streamer restarts at every page and, on 16 busy cores, a scan waited on memory for about
//! half its time. So the first pass over a page prefetches, per group of 8 tokens, the two
//! lines at the same offset in the next page's codes: the next page arrives while this one is
//! scored.

use std::arch::asm;

/// Query row `$r` (accumulator zmm$r), its words at byte offsets `$w0`, `$w1` from `{q}`.
macro_rules! hamming_row {
    ($r:literal, $w0:literal, $w1:literal) => {
        concat!(
            "vpxorq zmm11, zmm10, qword ptr [{q} + ",
            $w0,
            "]{{1to8}}\n",
            "vpxorq zmm12, zmm8, qword ptr [{q} + ",
            $w1,
            "]{{1to8}}\n",
            "vpopcntq zmm11, zmm11\n",
            "vpopcntq zmm12, zmm12\n",
            "vpaddq zmm11, zmm11, zmm12\n",
            "vpminuq zmm",
            $r,
            ", zmm",
            $r,
            ", zmm11\n",
        )
    };
}

/// Query tokens per pass over the page.
pub const ROWS: usize = 8;

/// Per query token (of `q_words.len() / 2`, padded to a multiple of `ROWS`), the minimum Hamming
/// distance over the page's `n` tokens.
///
/// # Safety
/// The CPU must have AVX-512F and AVX512_VPOPCNTDQ; `codes` must hold `n × 16` bytes, `n ≥ 1`,
/// and `q_words` 2 words per row for a multiple of `ROWS` rows. `next` is only prefetched (it
/// may be any address: a prefetch never faults).
#[target_feature(enable = "avx512f,avx512vpopcntdq")]
pub unsafe fn min_distances(
    q_words: &[u64],
    codes: &[u8],
    n: usize,
    out: &mut [u64],
    next: *const u8,
) {
    let rows = q_words.len() / 2;
    debug_assert!(
        rows.is_multiple_of(ROWS) && out.len() >= rows && codes.len() >= n * 16 && n >= 1
    );
    let full = n / 8;
    let rest = n % 8;
    // Lanes of the last, partial group of 8 tokens: 2 qwords per token, split over two loads.
    let lo_mask: u8 = ((1u32 << (2 * rest.min(4))) - 1) as u8;
    let hi_mask: u8 = ((1u32 << (2 * rest.saturating_sub(4))) - 1) as u8;
    const EVEN: [u64; 8] = [0, 2, 4, 6, 8, 10, 12, 14];
    const ODD: [u64; 8] = [1, 3, 5, 7, 9, 11, 13, 15];
    let mut r = 0;
    while r < rows {
        let q = q_words.as_ptr().add(2 * r);
        let o = out.as_mut_ptr().add(r);
        let mut lanes = [[0u64; 8]; ROWS];
        // Later passes read this page from L1 and prefetch nothing new (step 0).
        let (pf, pf_step) = if r == 0 {
            (next, 128usize)
        } else {
            (codes.as_ptr(), 0)
        };
        asm!(
            "vmovdqu64 zmm30, zmmword ptr [{even}]",
            "vmovdqu64 zmm31, zmmword ptr [{odd}]",
            "vpternlogq zmm0, zmm0, zmm0, 0xff", // all ones = u64::MAX: the start of a min
            "vmovdqa64 zmm1, zmm0",
            "vmovdqa64 zmm2, zmm0",
            "vmovdqa64 zmm3, zmm0",
            "vmovdqa64 zmm4, zmm0",
            "vmovdqa64 zmm5, zmm0",
            "vmovdqa64 zmm6, zmm0",
            "vmovdqa64 zmm7, zmm0",
            "test {g}, {g}",
            "jz 3f",
            "2:",
            "prefetcht0 byte ptr [{pf}]",
            "prefetcht0 byte ptr [{pf} + 64]",
            "add {pf}, {pf_step}",
            "vmovdqu64 zmm8, zmmword ptr [{c}]",
            "vmovdqu64 zmm9, zmmword ptr [{c} + 64]",
            "call 5f",
            "add {c}, 128",
            "dec {g}",
            "jnz 2b",
            "3:",
            "test {rest}, {rest}",
            "jz 4f",
            // Partial group: unloaded lanes keep the first token's words.
            "vbroadcasti32x4 zmm8, xmmword ptr [{first}]",
            "vmovdqa64 zmm9, zmm8",
            "kmovw k1, {lo:e}",
            "kmovw k2, {hi:e}",
            "vmovdqu64 zmm8 {{k1}}, zmmword ptr [{c}]",
            "vmovdqu64 zmm9 {{k2}}, zmmword ptr [{c} + 64]",
            "call 5f",
            "4:",
            "vmovdqu64 zmmword ptr [{l}], zmm0",
            "vmovdqu64 zmmword ptr [{l} + 64], zmm1",
            "vmovdqu64 zmmword ptr [{l} + 128], zmm2",
            "vmovdqu64 zmmword ptr [{l} + 192], zmm3",
            "vmovdqu64 zmmword ptr [{l} + 256], zmm4",
            "vmovdqu64 zmmword ptr [{l} + 320], zmm5",
            "vmovdqu64 zmmword ptr [{l} + 384], zmm6",
            "vmovdqu64 zmmword ptr [{l} + 448], zmm7",
            "jmp 6f",
            // Subroutine: the 8 tokens in zmm8/zmm9 against the 8 query rows.
            "5:",
            "vmovdqa64 zmm10, zmm8",
            "vpermt2q zmm10, zmm30, zmm9", // first words of the 8 tokens
            "vpermt2q zmm8, zmm31, zmm9",  // second words
            hamming_row!("0", "0", "8"),
            hamming_row!("1", "16", "24"),
            hamming_row!("2", "32", "40"),
            hamming_row!("3", "48", "56"),
            hamming_row!("4", "64", "72"),
            hamming_row!("5", "80", "88"),
            hamming_row!("6", "96", "104"),
            hamming_row!("7", "112", "120"),
            "ret",
            "6:",
            even = in(reg) EVEN.as_ptr(),
            odd = in(reg) ODD.as_ptr(),
            g = inout(reg) full => _,
            c = inout(reg) codes.as_ptr() => _,
            pf = inout(reg) pf => _,
            pf_step = in(reg) pf_step,
            first = in(reg) codes.as_ptr(),
            rest = in(reg) rest,
            lo = in(reg) lo_mask as u32,
            hi = in(reg) hi_mask as u32,
            q = in(reg) q,
            l = in(reg) lanes.as_mut_ptr(),
            out("zmm0") _, out("zmm1") _, out("zmm2") _, out("zmm3") _,
            out("zmm4") _, out("zmm5") _, out("zmm6") _, out("zmm7") _,
            out("zmm8") _, out("zmm9") _, out("zmm10") _, out("zmm11") _,
            out("zmm12") _, out("zmm30") _, out("zmm31") _,
            out("k1") _, out("k2") _,
        );
        for (j, l) in lanes.iter().enumerate() {
            *o.add(j) = l.iter().copied().min().unwrap_or(u64::MAX);
        }
        r += ROWS;
    }
}
