//! Page-locked host memory: the staging ring's pinned buffers and the model's small per-batch
//! uploads both copy from it, so a host-to-device copy never waits for the stream to drain.

use anyhow::{bail, Result};
use candle_core::cuda_backend::cudarc::driver::{result as cu, CudaContext};
use std::sync::Arc;

/// Page-locked host memory from `cuMemHostAlloc` without the write-combined flag: the packer
/// reads back what it wrote (the repeated temporal frame), which is very slow on
/// write-combined memory.
pub struct PinnedBuffer<T: bytemuck::Pod> {
    ptr: *mut T,
    len: usize,
    ctx: Arc<CudaContext>,
}

// The buffer is plain host memory owned by this value; CUDA only reads it during copies that
// the owner orders with events.
unsafe impl<T: bytemuck::Pod> Send for PinnedBuffer<T> {}

impl<T: bytemuck::Pod> PinnedBuffer<T> {
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).filter(|&b| b > 0);
        let Some(bytes) = bytes else {
            bail!("pinned buffer of {len} elements: size is zero or overflows")
        };
        ctx.bind_to_thread()?;
        let ptr = unsafe { cu::malloc_host(bytes, 0) }.map_err(|e| {
            anyhow::anyhow!(
                "could not pin {:.1} MiB of host memory: {e}",
                bytes as f64 / (1 << 20) as f64
            )
        })? as *mut T;
        // Zero once so that nothing ever reads uninitialised memory (allocated once per run).
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) };
        Ok(PinnedBuffer {
            ptr,
            len,
            ctx: ctx.clone(),
        })
    }
    pub fn as_slice(&self) -> &[T] {
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: bytemuck::Pod> Drop for PinnedBuffer<T> {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        if let Err(e) = unsafe { cu::free_host(self.ptr as *mut std::ffi::c_void) } {
            tracing::warn!("freeing pinned host memory failed: {e}");
        }
    }
}
