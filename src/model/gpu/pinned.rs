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

// SAFETY: the raw pointer is the only thing that keeps `PinnedBuffer` from being `Send`, and it
// names a host allocation that this value owns alone (no other handle to it exists, and it is
// freed only by `Drop`). `T: Pod` holds no references or thread-bound state, and the context
// handle is an `Arc<CudaContext>`, itself `Send`; `Drop` binds that context on whichever thread
// it runs before freeing. No `Sync` is claimed, so shared access stays on one thread.
unsafe impl<T: bytemuck::Pod> Send for PinnedBuffer<T> {}

impl<T: bytemuck::Pod> PinnedBuffer<T> {
    pub fn new(ctx: &Arc<CudaContext>, len: usize) -> Result<Self> {
        let bytes = len.checked_mul(std::mem::size_of::<T>()).filter(|&b| b > 0);
        let Some(bytes) = bytes else {
            bail!("pinned buffer of {len} elements: size is zero or overflows")
        };
        ctx.bind_to_thread()?;
        // SAFETY: `bytes` is non-zero and did not overflow (checked above), and `ctx` is bound to
        // this thread, so the memory belongs to it. The memory comes back unset; it is zeroed
        // below before any `T` is read from it.
        let ptr = unsafe { cu::malloc_host(bytes, 0) }.map_err(|e| {
            anyhow::anyhow!(
                "could not pin {:.1} MiB of host memory: {e}",
                bytes as f64 / (1 << 20) as f64
            )
        })? as *mut T;
        // Zero once so that nothing ever reads uninitialised memory (allocated once per run).
        // SAFETY: `ptr` is the start of the `bytes`-byte allocation just returned (non-null on
        // success), which nothing else refers to yet.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0, bytes) };
        Ok(PinnedBuffer {
            ptr,
            len,
            ctx: ctx.clone(),
        })
    }
    pub fn as_slice(&self) -> &[T] {
        // SAFETY: `ptr` is non-null and aligned for any `T` (the driver hands out page-aligned
        // pinned memory), and points at `len × size_of::<T>()` bytes owned by `self` and zeroed
        // in `new`; every bit pattern is a valid `T: Pod`. The slice borrows `self`, so it cannot
        // outlive the allocation. A device-to-host copy into the buffer is waited for before its
        // values are read (`PendingFetch::wait`).
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        // SAFETY: as in `as_slice`; `&mut self` makes this the only reference into the buffer.
        // A device copy may still read or write the memory asynchronously: the owners wait on
        // the event recorded after that copy before they write or read here (`StagingRing`,
        // the upload ring, `PendingFetch::wait`).
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl<T: bytemuck::Pod> Drop for PinnedBuffer<T> {
    fn drop(&mut self) {
        let _ = self.ctx.bind_to_thread();
        // SAFETY: `ptr` came from `malloc_host` in `new` (non-null on success) and is freed only
        // here, once. The owners wait for the copies that use the buffer before dropping it
        // (`StagingRing`'s `Drop`, the upload ring's events, a result buffer's batch).
        if let Err(e) = unsafe { cu::free_host(self.ptr as *mut std::ffi::c_void) } {
            tracing::warn!("freeing pinned host memory failed: {e}");
        }
    }
}
