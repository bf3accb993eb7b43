//! Host side of the fused MaxSim kernel (`maxsim_kernel`, CUDA builds): the page table one launch
//! walks, the query padded to the kernel's 16- or 32-row tiles, and the per-group partial scores
//! summed. Kept apart from the CUDA code so the CPU tests cover it.
//!
//! Table: two u64 per page, `[address of its first token, len | out << 32]`. Pages are row-major
//! f16 `[len, dim]` (padded with copies of their first token to a multiple of `TOKEN_MULTIPLE`,
//! so the kernel needs no mask), 16-byte aligned. The kernel writes page `i`'s score for query
//! group `g` to `partial[g · n_out + out_i]`.

use super::format::{IndexError, Result};

/// The kernel consumes a page 32 tokens per loop step.
pub const TOKEN_MULTIPLE: usize = 32;

/// How the fused kernel brings page tokens to the tensor cores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FusedLoads {
    /// 16-byte global loads into a register double buffer.
    Registers,
    /// `cp.async` copies into a ring of stages in shared memory, read back into fragments.
    #[default]
    SharedRing,
}

impl FusedLoads {
    pub fn name(self) -> &'static str {
        match self {
            FusedLoads::Registers => "register loads",
            FusedLoads::SharedRing => "shared-memory ring",
        }
    }
}

/// Where one resident chunk `[pages, len, dim]` (f16) lives on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkAddr {
    pub base: u64,
    pub pages: usize,
    pub len: usize,
}

/// One page of a launch: row `row` of chunk `chunk`, scored into output slot `out`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TableEntry {
    pub chunk: usize,
    pub row: usize,
    pub out: usize,
}

/// Whether the kernel is built for `dim`-dimensional vectors: each lane loads 16-byte chunks of
/// 8 dims, four lanes per token; past 128 the query fragments no longer fit in registers.
pub fn kernel_supports(dim: usize) -> bool {
    dim > 0 && dim.is_multiple_of(TOKEN_MULTIPLE) && dim <= 128
}

fn invalid(msg: String) -> IndexError {
    IndexError::Invalid(format!("fused MaxSim page table: {msg}"))
}

/// The table for `entries` over `chunks` of `dim`-d f16 tokens.
pub fn encode(entries: &[TableEntry], chunks: &[ChunkAddr], dim: usize) -> Result<Vec<u64>> {
    if !kernel_supports(dim) {
        return Err(invalid(format!("{dim}-d vectors are not supported")));
    }
    let mut table = Vec::with_capacity(entries.len() * 2);
    for e in entries {
        let c = chunks
            .get(e.chunk)
            .ok_or_else(|| invalid(format!("chunk {} of {}", e.chunk, chunks.len())))?;
        if e.row >= c.pages {
            return Err(invalid(format!(
                "row {} of a {}-page chunk",
                e.row, c.pages
            )));
        }
        if c.len == 0 || !c.len.is_multiple_of(TOKEN_MULTIPLE) || c.len > u32::MAX as usize {
            return Err(invalid(format!(
                "page length {} is not a positive multiple of {TOKEN_MULTIPLE}",
                c.len
            )));
        }
        if !c.base.is_multiple_of(16) {
            return Err(invalid(format!(
                "chunk base {:#x} is not 16-byte aligned",
                c.base
            )));
        }
        let out = u32::try_from(e.out).map_err(|_| invalid(format!("output slot {}", e.out)))?;
        let offset = (e.row as u64) * (c.len as u64) * (dim as u64) * 2;
        table.push(c.base + offset);
        table.push(c.len as u64 | (out as u64) << 32);
    }
    Ok(table)
}

/// A query as the kernel reads it: f16 rows, `groups` groups of `rows` (16 or 32) rows each,
/// rows past `nq` zero. A zero row's similarity is 0 with every token, so its max adds 0.
#[derive(Clone, Debug, PartialEq)]
pub struct PaddedQuery {
    pub values: Vec<half::f16>,
    pub groups: usize,
    pub rows: usize,
}

/// `q` (`nq × dim` row-major, nq ≥ 1) padded: one 16-row group when it fits (half the tensor
/// core work), else groups of 32 rows (each group re-reads the pages, so few is better).
pub fn pad_query(q: &[f32], nq: usize, dim: usize) -> PaddedQuery {
    let rows = if nq <= 16 { 16 } else { 32 };
    let groups = nq.div_ceil(rows).max(1);
    let mut values = vec![half::f16::ZERO; groups * rows * dim];
    for (dst, &x) in values.iter_mut().zip(&q[..nq * dim]) {
        *dst = half::f16::from_f32(x);
    }
    PaddedQuery {
        values,
        groups,
        rows,
    }
}

/// Page scores from the kernel's `[groups, n_out]` partial scores (groups added in order).
pub fn sum_groups(partial: &[f32], groups: usize, n_out: usize) -> Vec<f32> {
    let mut out = partial[..n_out].to_vec();
    for g in 1..groups {
        for (o, p) in out.iter_mut().zip(&partial[g * n_out..(g + 1) * n_out]) {
            *o += p;
        }
    }
    out
}
