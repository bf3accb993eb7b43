//! One task of the product: a block of output columns for every row, walked in chunks
//! of the input so the rows stay in L1, and the row tiles that do the arithmetic.

#[cfg(target_arch = "aarch64")]
use super::neon;
use super::simd::{Portable, Simd};
use super::stream::{ChunkValues, Decoded, Dense, Nf4Stream, Stream};
#[cfg(target_arch = "x86_64")]
use super::x86;
use super::{CpuIsa, Weight, KC};
use crate::parallel::SharedOut;

/// The widest vector, in 32-bit words (`Simd::WORDS`).
pub(super) const MAX_WORDS: usize = 16;

/// A thread's working memory, reused across its tasks.
#[derive(Default)]
pub(super) struct Scratch {
    /// The task's absmax values (NF4).
    pub(super) absmax: Vec<f32>,
    /// See [`Sums::partial`].
    pub(super) partial: Vec<f32>,
    /// See [`Sums::out`].
    pub(super) out: Vec<f32>,
}

/// Where a task's tiles add up.
pub(super) struct Sums<'a> {
    /// `[o1 - o0][rows]`, the task's share of the result (zeroed).
    pub(super) out: &'a mut [f32],
    /// One vector of running sums per output and row between `KC` chunks (lanes not yet
    /// added: each row's sum is reduced across lanes once, after its last chunk).
    pub(super) partial: &'a mut [f32],
}

/// The whole vectors of `x` (`rows × in`, `in` rounded down to `lanes`) laid out
/// `[in / lanes][rows][lanes]`, 64-byte aligned from the returned offset: at each step a tile's
/// rows are one contiguous run, so its loads are a constant displacement from one pointer that
/// moves once per step. With the rows `in` apart (the plain layout) each load needed its own
/// address add, and those adds took the FMA ports' issue slots; rows 8 KiB apart also met in one
/// L1 set, and 32- or 64-byte loads from a 16-byte-aligned buffer split cache lines.
///
/// With `bf16` (a bf16-product set) each value is rounded to bf16 (nearest even) here, once per
/// call, and a vector's `lanes` values take `lanes / 2` words, two to a word, first in the low
/// half (as the set's operand vectors hold them).
pub(super) fn packed_rows(
    x: &[f32],
    rows: usize,
    inp: usize,
    lanes: usize,
    bf16: bool,
) -> (Vec<f32>, usize) {
    let words = if bf16 { lanes / 2 } else { lanes };
    let vectors = inp / lanes;
    let mut packed = vec![0f32; vectors * rows * words + 16];
    let at = packed.as_ptr().align_offset(64).min(15);
    let dst = SharedOut::new(&mut packed);
    // Vectors `v0..v1` of every row: a task's share (rounding to bf16 is ~1 ns a value, a
    // ms for a down projection's input on one core).
    let pack = |v0: usize, v1: usize| {
        for (r, row) in x.chunks_exact(inp.max(1)).enumerate() {
            for v in v0..v1 {
                let src = &row[v * lanes..][..lanes];
                // SAFETY: `(v × rows + r + 1) × words` ≤ `vectors × rows × words`: inside
                // `packed` past `at`; tasks write disjoint vectors.
                let dst = unsafe { dst.part(at + (v * rows + r) * words, words) };
                if bf16 {
                    for (d, pair) in dst.iter_mut().zip(src.chunks_exact(2)) {
                        let lo = half::bf16::from_f32(pair[0]).to_bits() as u32;
                        let hi = half::bf16::from_f32(pair[1]).to_bits() as u32;
                        *d = f32::from_bits(lo | hi << 16);
                    }
                } else {
                    dst.copy_from_slice(src);
                }
            }
        }
    };
    const VECTORS_PER_TASK: usize = 16;
    let tasks = vectors.div_ceil(VECTORS_PER_TASK);
    crate::parallel::for_each_over(rows * inp, tasks, |t| {
        let v0 = t * VECTORS_PER_TASK;
        pack(v0, (v0 + VECTORS_PER_TASK).min(vectors));
    });
    (packed, at)
}

/// Output columns per task: about four tasks per thread, 4–64 columns.
pub(super) fn column_block(out: usize) -> usize {
    (out / (crate::parallel::threads() * 4)).clamp(4, 64)
}

/// `f(scratch, t)` for each task `t` in `0..tasks` on every core ([`crate::parallel`]), each
/// thread with its own [`Scratch`].
pub(super) fn for_each_task(tasks: usize, f: impl Fn(&mut Scratch, usize) + Sync) {
    thread_local! {
        static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
    }
    crate::parallel::for_each(tasks, |t| SCRATCH.with(|s| f(&mut s.borrow_mut(), t)));
}

/// How many columns ahead [`Job::tile`] prefetches the weights.
pub(super) const PREFETCH_COLUMNS: usize = 2;

/// Asks for the cache line at `p` in L1 (a hint: any address is fine).
#[inline(always)]
pub(super) fn prefetch(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch never faults, whatever the address; SSE is in every x86_64 CPU.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// One task: the columns `o0..o1` of the product for every row.
pub(super) struct Job<'a> {
    /// The input rows, `in` floats apart (for the tail).
    pub(super) x: &'a [f32],
    /// The input's whole vectors, see [`packed_rows`].
    pub(super) packed: &'a [f32],
    pub(super) rows: usize,
    pub(super) inp: usize,
    pub(super) o0: usize,
    pub(super) o1: usize,
}

impl Job<'_> {
    /// Adds this task's share of `x · wᵀ` into `sums.out` on `isa`.
    pub(super) fn run_weight(
        &self,
        isa: CpuIsa,
        w: Weight,
        absmax: &mut Vec<f32>,
        sums: &mut Sums,
    ) {
        match w {
            Weight::F32(v) => self.run(isa, &Dense(v.as_ptr()), sums),
            Weight::Bf16(v) => self.run(isa, &Dense(v.as_ptr()), sums),
            Weight::F16(v) => self.run(isa, &Dense(v.as_ptr()), sums),
            Weight::Nf4(n) => {
                let stream = Nf4Stream::for_columns(n, self.inp, self.o0, self.o1, absmax);
                self.run(isa, &stream, sums)
            }
        }
    }

    /// Adds this task's share of the product into `sums.out` on `isa`.
    pub(super) fn run<W: Stream>(&self, isa: CpuIsa, w: &W, sums: &mut Sums) {
        let k_end = match isa {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is available (asserted by `matmul_rows_isa`).
            CpuIsa::Avx512Bf16 => unsafe { x86::avx512bf16(self, w, sums) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is available (asserted by `matmul_rows_isa`).
            CpuIsa::Avx512 => unsafe { x86::avx512(self, w, sums) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `isa` is available (asserted by `matmul_rows_isa`).
            CpuIsa::Avx2 => unsafe { x86::avx2(self, w, sums) },
            #[cfg(target_arch = "aarch64")]
            // SAFETY: `isa` is available (asserted by `matmul_rows_isa`).
            CpuIsa::Neon => unsafe { neon::neon(self, w, sums) },
            // SAFETY: the portable kernel's primitives read in bounds as every kernel's do.
            _ => unsafe { self.columns::<Portable, W>(w, sums) },
        };
        self.tail(w, k_end, sums.out);
    }

    /// The vector part, `k < k_end`, of every column; returns `k_end`.
    #[inline(always)]
    pub(super) unsafe fn columns<S: Simd, W: Stream>(&self, w: &W, sums: &mut Sums) -> usize {
        let k_end = w.vector_end(self.inp, S::LANES);
        let tiles = self.rows.div_ceil(S::RMAX);
        // Even tiles: 22 rows on 12-row tiles are 11 + 11, not 12 + 10.
        let tile = self.rows.div_ceil(tiles);
        let mut decoded = Decoded::<W> {
            values: ChunkValues([0.0; KC]),
            source: w,
            k0: 0,
        };
        let mut k0 = 0;
        while k0 < k_end {
            // `KC` words of each row: twice the values where they are bf16 pairs.
            let k1 = (k0 + KC / S::WORDS * S::LANES).min(k_end);
            let k = (k0, k1, k_end);
            if tiles > 1 && W::DECODES {
                // Several row tiles: each column's chunk decoded once into L1 for all of them,
                // not once per tile.
                for o in self.o0..self.o1 {
                    decoded.fill::<S>(o, k0, k1, self.inp);
                    let mut r0 = 0;
                    while r0 < self.rows {
                        let n = tile.min(self.rows - r0);
                        S::tile(self, &decoded, n, r0, k, (o, o + 1), sums);
                        r0 += n;
                    }
                }
            } else {
                let mut r0 = 0;
                while r0 < self.rows {
                    let n = tile.min(self.rows - r0);
                    S::tile(self, w, n, r0, k, (self.o0, self.o1), sums);
                    r0 += n;
                }
            }
            k0 = k1;
        }
        k_end
    }

    /// Rows `r0 .. r0 + R`, inputs `k0..k1` (whole vectors; `k = (k0, k1, k_end)`) of every
    /// column: running sums from `sums.partial` (none at `k0 = 0`) back to it, or after the last
    /// chunk (`k1 = k_end`) reduced into `sums.out`.
    #[inline(always)]
    pub(super) unsafe fn tile<S: Simd, W: Stream, const R: usize>(
        &self,
        w: &W,
        r0: usize,
        (k0, k1, k_end): (usize, usize, usize),
        (c0, c1): (usize, usize),
        sums: &mut Sums,
    ) {
        let step = self.rows * S::WORDS;
        let x0 = self
            .packed
            .as_ptr()
            .add((k0 / S::LANES) * step + r0 * S::WORDS);
        for o in c0..c1 {
            let at = (o - self.o0) * self.rows + r0;
            let part = sums.partial.as_mut_ptr().add(at * S::WORDS);
            let mut acc: [S::V; R] = if k0 == 0 {
                [S::zero(); R]
            } else {
                std::array::from_fn(|i| S::load(part.add(i * S::WORDS)))
            };
            let mut k = k0;
            let mut x = x0;
            while k < k1 {
                // The weights two columns on, at this k: a column's chunk is a few cache lines
                // 1–2 rows of the weight apart from the last, which the hardware prefetchers
                // do not foresee.
                prefetch(w.addr(o + PREFETCH_COLUMNS, k, self.inp));
                let wv = w.vec::<S>(o, k, self.inp);
                for (i, s) in acc.iter_mut().enumerate() {
                    *s = S::fma(S::load(x.add(i * S::WORDS)), wv, *s);
                }
                x = x.add(step);
                k += S::LANES;
            }
            if k1 == k_end {
                for (out, s) in sums.out[at..at + R].iter_mut().zip(acc) {
                    *out += S::hsum(s);
                }
            } else {
                for (i, s) in acc.into_iter().enumerate() {
                    S::store(part.add(i * S::WORDS), s);
                }
            }
        }
    }

    /// Inputs `k_end..in`, one at a time.
    pub(super) fn tail<W: Stream>(&self, w: &W, k_end: usize, acc: &mut [f32]) {
        for k in k_end..self.inp {
            for o in self.o0..self.o1 {
                let wv = w.get(o, k, self.inp);
                let col = &mut acc[(o - self.o0) * self.rows..][..self.rows];
                for (r, a) in col.iter_mut().enumerate() {
                    *a += self.x[r * self.inp + k] * wv;
                }
            }
        }
    }
}
