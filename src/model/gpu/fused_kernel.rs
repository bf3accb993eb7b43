//! Fused CUDA kernels for the model's memory-bound steps (bf16 activations).
//!
//! Memory-bound chains of candle ops (broadcast adds, dtype casts, copies) took most of the
//! forward's kernel time (profiles in `bench/gpu-notes.md`). Each kernel here replaces such a
//! chain with one pass over memory; the arithmetic is the same as the op chain it replaces (f32 inside, one rounding
//! to bf16 where the chain rounded), see `gpu::fused` for the wrappers and fallbacks.
//!
//! Their CUDA C is in `fused_kernel.cu`, after the bf16 conversions of `fused_common.cuh`
//! (`kernel_source`), compiled by NVRTC once per context.

use super::kernel_source;
use anyhow::Result;
use candle_core::cuda_backend::cudarc::driver::{CudaFunction, CudaStream, LaunchConfig};
use pagesight_common::nvrtc;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct ElementwiseKernels {
    pub bias_add_bf16: CudaFunction,
    pub residual_add_f32_bf16: CudaFunction,
    /// `silu(gate) · up` row by row, for stacked or separate projections.
    pub silu_mul_rows_bf16: CudaFunction,
    /// RMSNorm of f32 rows to bf16, with or without the residual add before it.
    pub residual_rms_norm_f32_bf16: CudaFunction,
    pub rope_qk_bf16: CudaFunction,
    /// bf16 rows to FP8 E4M3 codes and a scale per row (sm_89 and later).
    pub quantize_rows_fp8: CudaFunction,
    /// SiLU·mul of each row straight to FP8 E4M3 codes and a scale per row (sm_89 and later).
    pub silu_mul_fp8_rows: CudaFunction,
    /// An FP8 GEMM's raw f32 sums scaled to bf16, where the GEMM could not scale them.
    pub fp8_rescale_bf16: CudaFunction,
}

/// Kernels compiled once per CUDA context (the attention kernel once per head dimension and
/// query tile).
pub struct FusedKernels {
    pub elementwise: ElementwiseKernels,
    flash_attention: Mutex<HashMap<(usize, usize, bool), Arc<CudaFunction>>>,
    stream: Arc<CudaStream>,
}

static KERNELS: Mutex<Vec<(usize, Arc<FusedKernels>)>> = Mutex::new(Vec::new());

/// Launch shape for a grid-stride elementwise kernel over `n` elements.
pub fn elementwise_config(n: usize) -> LaunchConfig {
    let block = 256u32;
    LaunchConfig {
        grid_dim: ((n.div_ceil(block as usize)).clamp(1, 132 * 32) as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl FusedKernels {
    /// The kernels for `stream`'s context, compiled on first use.
    pub fn for_stream(stream: &Arc<CudaStream>) -> Result<Arc<FusedKernels>> {
        // By the driver's context: candle makes a new `CudaContext` value for each device it
        // creates, all on the same primary context.
        let key = stream.context().cu_ctx() as usize;
        let mut all = KERNELS.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, k)) = all.iter().find(|(k, _)| *k == key) {
            return Ok(k.clone());
        }
        let m = nvrtc::load_module(
            stream.context(),
            "pagesight_fused",
            &kernel_source::elementwise(),
        )?;
        let k = Arc::new(FusedKernels {
            elementwise: ElementwiseKernels {
                bias_add_bf16: nvrtc::function(&m, "bias_add_bf16")?,
                residual_add_f32_bf16: nvrtc::function(&m, "residual_add_f32_bf16")?,
                silu_mul_rows_bf16: nvrtc::function(&m, "silu_mul_rows_bf16")?,
                residual_rms_norm_f32_bf16: nvrtc::function(&m, "residual_rms_norm_f32_bf16")?,
                rope_qk_bf16: nvrtc::function(&m, "rope_qk_bf16")?,
                quantize_rows_fp8: nvrtc::function(&m, "quantize_rows_fp8")?,
                silu_mul_fp8_rows: nvrtc::function(&m, "silu_mul_fp8_rows")?,
                fp8_rescale_bf16: nvrtc::function(&m, "fp8_rescale_bf16")?,
            },
            flash_attention: Mutex::new(HashMap::new()),
            stream: stream.clone(),
        });
        all.push((key, k.clone()));
        Ok(k)
    }

    /// The attention kernel for one head dimension and query tile, rotating q and k itself or
    /// not (`rope`), compiled on first use.
    pub(super) fn flash_attention_for(
        &self,
        head_dim: usize,
        query_tile: usize,
        rope: bool,
    ) -> Result<Arc<CudaFunction>> {
        let mut map = self
            .flash_attention
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let key = (head_dim, query_tile, rope);
        if let Some(f) = map.get(&key) {
            return Ok(f.clone());
        }
        let src = kernel_source::flash_attention(head_dim, query_tile, rope);
        let m = nvrtc::load_module(
            self.stream.context(),
            &format!(
                "pagesight_flash_attention_{head_dim}_{query_tile}{}",
                if rope { "_rope" } else { "" }
            ),
            &src,
        )?;
        let f = Arc::new(nvrtc::function(&m, "flash_attention_bf16")?);
        map.insert(key, f.clone());
        Ok(f)
    }
}
