//! What our own allocations hold on the GPU, from the device's default memory pool (cudarc
//! allocates stream-ordered from it): bytes in use now and their high-water mark. This is the
//! figure PyTorch's `max_memory_allocated` gives for the seed pipeline — tensors, weights and
//! workspaces, not the CUDA context or loaded kernels — so the two peaks compare; NVML's
//! device-wide "used" (the metrics' VRAM) also counts the context and the pool's reserve.

use anyhow::{anyhow, Result};
use candle_core::cuda_backend::cudarc::driver::sys;

#[derive(Clone, Copy, Debug)]
pub struct PoolUsage {
    pub used_bytes: u64,
    pub used_high_bytes: u64,
    pub reserved_bytes: u64,
}

fn default_pool(ordinal: usize) -> Result<sys::CUmemoryPool> {
    let mut dev: sys::CUdevice = 0;
    let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
    // SAFETY: both calls write one value of the pointed-to type into the locals passed; an
    // ordinal with no device, or a driver not yet initialised, comes back as an error code.
    unsafe {
        sys::cuDeviceGet(&mut dev, ordinal as i32)
            .result()
            .map_err(|e| anyhow!("GPU {ordinal}: {e:?}"))?;
        sys::cuDeviceGetDefaultMemPool(&mut pool, dev)
            .result()
            .map_err(|e| anyhow!("GPU {ordinal}'s memory pool: {e:?}"))?;
    }
    Ok(pool)
}

fn attribute(pool: sys::CUmemoryPool, attr: sys::CUmemPool_attribute) -> Result<u64> {
    let mut v = 0u64;
    // SAFETY: `pool` is a device's default pool (`default_pool`), and the attributes asked for
    // (used and reserved bytes, `pool_usage`) are `cuuint64_t`s: the driver writes one u64 into
    // `v`, a live local.
    unsafe { sys::cuMemPoolGetAttribute(pool, attr, &mut v as *mut u64 as *mut _) }
        .result()
        .map_err(|e| anyhow!("reading the memory pool: {e:?}"))?;
    Ok(v)
}

/// Pool usage of GPU `ordinal` (its context must exist, e.g. a candle device made).
pub fn pool_usage(ordinal: usize) -> Result<PoolUsage> {
    use sys::CUmemPool_attribute as A;
    let pool = default_pool(ordinal)?;
    Ok(PoolUsage {
        used_bytes: attribute(pool, A::CU_MEMPOOL_ATTR_USED_MEM_CURRENT)?,
        used_high_bytes: attribute(pool, A::CU_MEMPOOL_ATTR_USED_MEM_HIGH)?,
        reserved_bytes: attribute(pool, A::CU_MEMPOOL_ATTR_RESERVED_MEM_CURRENT)?,
    })
}

/// Restarts the high-water mark from the bytes in use now.
pub fn reset_pool_high(ordinal: usize) -> Result<()> {
    let pool = default_pool(ordinal)?;
    let mut zero = 0u64;
    // SAFETY: `pool` is a device's default pool, and `USED_MEM_HIGH` takes a `cuuint64_t` (only
    // zero may be set); the driver reads one u64 from `zero`, a live local.
    unsafe {
        sys::cuMemPoolSetAttribute(
            pool,
            sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_USED_MEM_HIGH,
            &mut zero as *mut u64 as *mut _,
        )
    }
    .result()
    .map_err(|e| anyhow!("resetting the memory pool's high-water mark: {e:?}"))
}
