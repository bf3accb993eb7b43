//! The NEON exact MaxSim (AArch64: Apple silicon, Graviton). Each 16-token block is widened to f32
//! once (`half`'s slice conversion, on the CPU's f16 instructions where it has them), then the
//! query runs over it in groups of 4 rows. Per dimension, the block's 16 values (4 vectors) are
//! loaded once and multiplied into 16 accumulators, 4 rows × 4 token vectors, each row's value
//! taken from a lane of one 4-row load (`vfmaq_laneq_f32`). The portable kernel instead loads the
//! block's row again for every query row. Rows past the query are zero and left out of the sum, as
//! tokens past the page are left out of each row's max.

use super::format::BLOCK_TOKENS;
use super::maxsim::{valid_lanes, widen_block};
use super::segment::n_blocks;
use std::arch::aarch64::*;

/// Query rows per group: one 4-lane load holds one value of each.
const GROUP: usize = 4;

/// The query's rows in groups of `GROUP`, each dimension's `GROUP` values side by side (rows past
/// `nq` zero): `[group][dim][GROUP]`.
fn grouped_query(q: &[f32], nq: usize, dim: usize) -> Vec<f32> {
    let groups = nq.div_ceil(GROUP);
    let mut out = vec![0f32; groups * dim * GROUP];
    for r in 0..nq {
        let (g, lane) = (r / GROUP, r % GROUP);
        for k in 0..dim {
            out[(g * dim + k) * GROUP + lane] = q[r * dim + k];
        }
    }
    out
}

/// MaxSim of `q` (`nq × dim` row-major f32) against a packed page of `n_tokens` tokens.
///
/// # Safety
/// NEON must be present (it is on every AArch64 CPU); `q` must hold `nq × dim` values and
/// `packed` `n_blocks(n_tokens) × dim × 16`.
#[target_feature(enable = "neon")]
pub unsafe fn maxsim(q: &[f32], nq: usize, dim: usize, packed: &[u16], n_tokens: usize) -> f32 {
    let grouped = grouped_query(q, nq, dim);
    let mut runmax = vec![f32::NEG_INFINITY; nq];
    let mut block = vec![0f32; dim * BLOCK_TOKENS];
    let mut lanes = [0f32; BLOCK_TOKENS];
    for b in 0..n_blocks(n_tokens) {
        widen_block(packed, b, dim, &mut block);
        let valid = valid_lanes(b, n_tokens);
        for (g, rows) in grouped.chunks_exact(dim * GROUP).enumerate() {
            let mut acc = [[vdupq_n_f32(0.0); 4]; GROUP];
            let (mut t, mut qv) = (block.as_ptr(), rows.as_ptr());
            for _ in 0..dim {
                let tv = [
                    vld1q_f32(t),
                    vld1q_f32(t.add(4)),
                    vld1q_f32(t.add(8)),
                    vld1q_f32(t.add(12)),
                ];
                let r = vld1q_f32(qv);
                for j in 0..4 {
                    acc[0][j] = vfmaq_laneq_f32::<0>(acc[0][j], tv[j], r);
                    acc[1][j] = vfmaq_laneq_f32::<1>(acc[1][j], tv[j], r);
                    acc[2][j] = vfmaq_laneq_f32::<2>(acc[2][j], tv[j], r);
                    acc[3][j] = vfmaq_laneq_f32::<3>(acc[3][j], tv[j], r);
                }
                t = t.add(BLOCK_TOKENS);
                qv = qv.add(GROUP);
            }
            for (i, row) in acc.iter().enumerate() {
                let Some(m) = runmax.get_mut(g * GROUP + i) else {
                    break;
                };
                for (j, v) in row.iter().enumerate() {
                    vst1q_f32(lanes.as_mut_ptr().add(4 * j), *v);
                }
                *m = lanes[..valid].iter().copied().fold(*m, f32::max);
            }
        }
    }
    runmax.iter().sum()
}

#[cfg(test)]
mod tests {
    use crate::maxsim::{maxsim_naive, Isa, PreparedQuery, Scratch};
    use crate::vectors::pack_blocks;

    /// The kernel against the plain f64 MaxSim: row counts around the groups of 4, pages around
    /// the 16-token blocks, odd widths. (`tests/index/kernels.rs` checks every kernel of the target
    /// too; this one runs with the index crate alone, e.g. under qemu-aarch64.)
    #[test]
    fn neon_equals_the_naive_maxsim() {
        let mut s = 7u64;
        let mut r = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 2000) as f32 / 1000.0 - 1.0
        };
        for (nq, n, dim) in [
            (1, 1, 1),
            (3, 5, 4),
            (5, 65, 128),
            (23, 33, 96),
            (29, 750, 128),
        ] {
            let q: Vec<f32> = (0..nq * dim).map(|_| r()).collect();
            let doc: Vec<f32> = (0..n * dim).map(|_| r() * 0.5 - 0.75).collect();
            let rounded: Vec<f32> = doc
                .iter()
                .map(|&x| half::f16::from_f32(x).to_f32())
                .collect();
            let got = PreparedQuery::new(Isa::Neon, &q, nq, dim).score(
                &mut Scratch::default(),
                &pack_blocks(&doc, n, dim),
                n,
            );
            let want = maxsim_naive(&q, nq, dim, &rounded, n);
            assert!(
                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "nq {nq} n {n} dim {dim}: {got} vs {want}"
            );
        }
    }
}
