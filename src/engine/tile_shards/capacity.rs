//! What each device of a search's list may hold of the index's page tiles: on CUDA a share of
//! the card's free memory (the driver's figure; a card named twice shares it), on the CPU (test
//! stand-ins) no limit, so the pages split evenly; the `SHARD_CAPACITY` test hook replaces both.

use super::hooks;
use crate::resident_tiles::RESIDENT_SHARE_OF_FREE_VRAM;
use crate::settings::DeviceChoice;

/// Each device's capacity in bytes, in the list's order, or why it could not be read.
pub fn capacities(devices: &[DeviceChoice]) -> Result<Vec<u64>, String> {
    if let Some(hooked) = hooks::capacities(devices.len()) {
        return Ok(hooked);
    }
    devices
        .iter()
        .map(|&d| {
            let same = devices.iter().filter(|&&o| o == d).count().max(1) as u64;
            Ok(match d {
                DeviceChoice::Cuda(n) => {
                    (RESIDENT_SHARE_OF_FREE_VRAM * free_vram(n)? as f64) as u64 / same
                }
                // Equal shares of a limit no index reaches.
                _ => u64::MAX / devices.len().max(1) as u64,
            })
        })
        .collect()
}

/// Free memory of CUDA card `ordinal`, from the driver.
#[cfg(feature = "cuda")]
fn free_vram(ordinal: usize) -> Result<u64, String> {
    use candle_core::cuda_backend::cudarc::driver::CudaContext;
    CudaContext::new(ordinal)
        .and_then(|ctx| ctx.mem_get_info())
        .map(|(free, _total)| free as u64)
        .map_err(|e| format!("reading the free memory of cuda:{ordinal}: {e:?}"))
}

#[cfg(not(feature = "cuda"))]
fn free_vram(ordinal: usize) -> Result<u64, String> {
    Err(format!(
        "cuda:{ordinal} requested, but this pagesight was built without the `cuda` feature"
    ))
}
