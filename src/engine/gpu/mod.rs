//! The GPU side of ingestion: pinned staging buffers, the four transfer modes, a pipelined
//! executor that copies batch N+1 while batch N computes, and the 8-bit patchify kernel of
//! `async-u8`. Everything that touches CUDA is behind the `cuda` feature; a CPU build keeps the
//! pageable staging ring; `TransferMode::check_supported` refuses the GPU modes there. The
//! model's own kernels (attention, fused steps, NF4) are in `pagesight-model`.

pub mod batch;
pub mod kernel_source;
pub mod staging;
pub mod timings;

#[cfg(feature = "cuda")]
pub mod patchify_kernel;
#[cfg(feature = "cuda")]
pub mod pipelined;
#[cfg(feature = "cuda")]
pub mod transfer;
