//! The GPU side of ingestion: pinned staging buffers, the four transfer modes, a pipelined
//! executor that copies batch N+1 while batch N computes, and NVRTC kernels (8-bit patchify,
//! NF4 dequantisation). Everything that touches CUDA is behind the `cuda` feature; a CPU build
//! keeps the pageable staging ring and refuses the GPU transfer modes with the reason.

pub mod staging;
pub mod timings;

#[cfg(feature = "cuda")]
pub mod nf4_kernel;
#[cfg(feature = "cuda")]
pub mod nvrtc;
#[cfg(feature = "cuda")]
pub mod patchify_kernel;
#[cfg(feature = "cuda")]
pub mod pipelined;
#[cfg(feature = "cuda")]
pub mod transfer;

use crate::engine::settings::TransferMode;
use anyhow::{bail, Result};

/// Why `mode` cannot run on `device`, or None when it can. `Pageable` runs everywhere (on the
/// CPU it is the plain path); the other modes need pinned memory and CUDA streams.
pub fn transfer_unavailable_reason(
    mode: TransferMode,
    device: &candle_core::Device,
) -> Option<String> {
    if !mode.needs_cuda() {
        return None;
    }
    if !cfg!(feature = "cuda") {
        return Some(format!(
            "transfer mode '{mode}' needs CUDA, but this pagesight was built without the `cuda` feature \
             (build with scripts/build-cuda.sh, or use --transfer pageable)"
        ));
    }
    if !device.is_cuda() {
        return Some(format!(
            "transfer mode '{mode}' needs a CUDA device, but the model runs on the CPU \
             (use --device cuda, or --transfer pageable)"
        ));
    }
    None
}

/// `transfer_unavailable_reason` as an error: GPU modes are refused, never mapped to another mode.
pub fn check_transfer_mode(mode: TransferMode, device: &candle_core::Device) -> Result<()> {
    match transfer_unavailable_reason(mode, device) {
        Some(reason) => bail!(reason),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn cpu_refuses_gpu_modes_with_reason() {
        let cpu = candle_core::Device::Cpu;
        assert!(check_transfer_mode(TransferMode::Pageable, &cpu).is_ok());
        for m in [
            TransferMode::Sync,
            TransferMode::Async,
            TransferMode::AsyncU8,
        ] {
            let e = check_transfer_mode(m, &cpu).unwrap_err().to_string();
            assert!(e.contains(m.name()) && e.contains("CUDA"), "{e}");
        }
    }
}
