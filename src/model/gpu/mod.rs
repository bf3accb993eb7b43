//! The model's GPU kernels: fused elementwise steps, tiled flash attention, cuBLASLt linears,
//! NF4 dequantisation, non-blocking uploads of small per-batch tensors and their pinned host
//! memory. Everything that touches CUDA is behind the `cuda` feature; the CPU build runs the
//! equivalent candle op chains (`fused`) and plain uploads (`upload`). The kernels' CUDA C, in
//! `.cu` files beside their wrappers, is in every build (`kernel_source`), so the CPU tests see it.

pub mod attention_tiles;
pub mod fused;
pub mod kernel_source;
pub mod upload;

#[cfg(feature = "cuda")]
pub mod custom_op;
#[cfg(feature = "cuda")]
pub mod flash_kernel;
#[cfg(feature = "cuda")]
pub mod fp8;
#[cfg(feature = "cuda")]
pub mod fused_kernel;
#[cfg(feature = "cuda")]
pub mod lt_fp8;
#[cfg(feature = "cuda")]
pub mod lt_gemm;
#[cfg(feature = "cuda")]
pub mod nf4_kernel;
#[cfg(feature = "cuda")]
pub mod nf4_rows;
#[cfg(feature = "cuda")]
pub mod pinned;
#[cfg(feature = "cuda")]
pub mod vram;
