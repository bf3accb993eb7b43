//! The GPU side of ingestion: pinned staging buffers, the four transfer modes, a pipelined
//! executor that copies batch N+1 while batch N computes, and NVRTC kernels (8-bit patchify,
//! NF4 dequantisation). Everything that touches CUDA is behind the `cuda` feature; a CPU build
//! keeps the pageable staging ring; `TransferMode::check_supported` refuses the GPU modes there.

pub mod attention_tiles;
pub mod batch;
pub mod fused;
pub mod staging;
pub mod timings;
pub mod upload;

#[cfg(feature = "cuda")]
pub mod custom_op;
#[cfg(feature = "cuda")]
pub mod flash_kernel;
#[cfg(feature = "cuda")]
pub mod fused_kernel;
#[cfg(feature = "cuda")]
pub mod lt_gemm;
#[cfg(feature = "cuda")]
pub mod nf4_kernel;
// The NVRTC helper lives in the index (its fused MaxSim kernel needs it; index must not import
// engine): one helper for both.
#[cfg(feature = "cuda")]
pub use crate::index::nvrtc;
#[cfg(feature = "cuda")]
pub mod patchify_kernel;
#[cfg(feature = "cuda")]
pub mod pipelined;
#[cfg(feature = "cuda")]
pub mod transfer;
#[cfg(feature = "cuda")]
pub mod vram;
