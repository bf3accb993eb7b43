//! Attention on tensor cores, flash style, for every attention of the model: the vision tower's
//! window blocks (query and key slots gathered per window) and full blocks (one segment per
//! image), and the language model's causal attention over a left-padded batch (one segment per
//! sequence, grouped-query heads).
//!
//! Attention as a chain of candle ops ran its dot products on CUDA cores in f32, a large share of
//! the forward (`bench/gpu-notes.md`). Here each warp owns 16 query rows and
//! runs `mma.sync.m16n8k16` (bf16 in, f32 accumulate) for Q·Kᵀ and P·V; the softmax is online in
//! f32 per key tile of 64; P is rounded to bf16 for the second product (as the reference's bf16
//! attention rounds its probabilities) and the row sums add the rounded values, so the weights
//! that multiply V are normalised exactly.
//!
//! Inputs: `qkv` rows of `(H + 2·KVH)·HD` bf16 (q heads, then k heads, then v heads; q and k
//! already rotated — see the `rope_qk_bf16` kernel — or rotated by this kernel from their RoPE
//! tables as each tile lands in shared memory, where every K tile is read once: the windows,
//! which then skip a pass over q and k), a tile table of
//! `{q_begin, q_end, k_begin, k_end}` slots (one block per tile and head), and an optional
//! gather table mapping slots to rows (a slot mapping to `n_rows` is padding: neither query nor
//! key). With `causal`, slot j is visible to slot i only when j ≤ i. Rows with no visible key
//! come out as zeros (left padding).
//!
//! A block owns a tile of 64 query slots (4 warps) or 128 (8 warps: every K and V tile it brings
//! into shared memory serves twice the rows); a warp skips key tiles that none of its rows sees.
//! The kernel's CUDA C is `flash_kernel.cu`, compiled by NVRTC once per head dimension and tile.

use super::attention_tiles::{fits, shared_bytes, tile_fits};
use super::fused_kernel::FusedKernels;
use anyhow::{bail, Result};
use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaSlice, CudaStream, CudaView, LaunchConfig, PushKernelArg,
};
use std::sync::Arc;

/// What `flash_attention` needs besides the buffers.
#[derive(Clone, Copy, Debug)]
pub struct FlashShape {
    pub n_rows: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub causal: bool,
    /// Query slots per tile of the table (`attention_tiles::TileTable`).
    pub query_tile: usize,
}

impl FusedKernels {
    /// `out` [n_rows, heads·hd] from `qkv` [n_rows, (heads + 2·kv_heads)·hd], `tiles`
    /// [n_tiles, 4] u32 and `gather` (slot → row) or None. q and k are rotated already, or
    /// `rope` holds their tables [n_rows, hd] (cos then sin) and the kernel rotates them.
    #[allow(clippy::too_many_arguments)]
    pub fn flash_attention(
        &self,
        stream: &Arc<CudaStream>,
        qkv: &CudaView<half::bf16>,
        tiles: &CudaView<u32>,
        gather: Option<&CudaView<u32>>,
        rope: Option<&CudaView<f32>>,
        out: &mut CudaSlice<half::bf16>,
        shape: FlashShape,
    ) -> Result<()> {
        let FlashShape {
            n_rows,
            heads,
            kv_heads,
            head_dim,
            causal,
            query_tile,
        } = shape;
        if !fits(head_dim) || kv_heads == 0 || heads % kv_heads != 0 || !tile_fits(query_tile) {
            bail!(
                "flash attention kernel: unsupported heads {heads}/{kv_heads} × {head_dim}, \
                 tiles of {query_tile}"
            );
        }
        if qkv.len() < n_rows * (heads + 2 * kv_heads) * head_dim
            || out.len() < n_rows * heads * head_dim
            || tiles.len() % 4 != 0
            || rope.is_some_and(|r| r.len() < n_rows * head_dim)
        {
            bail!("flash attention kernel: buffers too small for {n_rows} rows");
        }
        let n_tiles = tiles.len() / 4;
        if n_tiles == 0 {
            return Ok(());
        }
        let f = self.flash_attention_for(head_dim, query_tile, rope.is_some())?;
        let smem = shared_bytes(head_dim);
        // Above 48 KiB of dynamic shared memory a kernel must opt in.
        f.set_attribute(
            sys::CUfunction_attribute_enum::CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
            smem as i32,
        )?;
        let cfg = LaunchConfig {
            grid_dim: (n_tiles as u32, heads as u32, 1),
            // 16 query rows per warp.
            block_dim: (query_tile as u32 * 2, 1, 1),
            shared_mem_bytes: smem as u32,
        };
        let (n, h, kvh) = (n_rows as u32, heads as u32, kv_heads as u32);
        let scale_log2 = std::f32::consts::LOG2_E / (head_dim as f32).sqrt();
        let causal = causal as i32;
        let null = 0u64;
        let mut b = stream.launch_builder(&f);
        b.arg(qkv).arg(tiles);
        match gather {
            Some(g) => b.arg(g),
            None => b.arg(&null),
        };
        b.arg(out);
        match rope {
            Some(r) => b.arg(r),
            None => b.arg(&null),
        };
        b.arg(&n).arg(&h).arg(&kvh).arg(&scale_log2).arg(&causal);
        // SAFETY: the arguments match `flash_attention_bf16`'s parameters in order and type (the
        // gather table or a null pointer, which the kernel tests for; the RoPE tables or a null
        // pointer, which only the module built with `ROPE 1` reads, and that module is chosen
        // exactly when the tables are given). The lengths are checked above: `qkv` holds
        // `n_rows` rows of `(heads + 2·kv_heads)·hd`, `out` `n_rows` rows of `heads·hd`, the
        // tables `n_rows` rows of `hd`, and the kernel skips slots past a tile's end and rows
        // ≥ `n_rows` (padding); `hd` fits the kernel and `heads` is a multiple of `kv_heads`. The tiles'
        // slots are rows, or index the gather table the model built with them
        // (`window::plan_windows`). The dynamic shared memory is `shared_bytes(hd)`, the size
        // the function was just allowed, and the block has the 2·query_tile threads (16 rows
        // per warp) the function was compiled for (`QT`).
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}
