//! Host staging buffers that the loader packs pixels straight into, so no extra copy happens
//! between packing and the host-to-device transfer. A ring of K buffers is allocated once:
//! pinned (page-locked) for the CUDA modes, plain `Vec`s for `pageable` and the CPU build.
//!
//! A buffer is only handed out again after the device finished reading it: each slot keeps the
//! event recorded after its last copy, and `acquire` waits on it.

use anyhow::{bail, Result};

#[cfg(feature = "cuda")]
use candle_core::cuda_backend::cudarc::driver::{CudaContext, CudaEvent};
#[cfg(feature = "cuda")]
use pagesight_model::gpu::pinned::PinnedBuffer;
#[cfg(feature = "cuda")]
use std::sync::Arc;

/// One staging buffer: pinned or pageable.
pub enum HostBuffer<T: bytemuck::Pod> {
    Pageable(Vec<T>),
    #[cfg(feature = "cuda")]
    Pinned(PinnedBuffer<T>),
}

impl<T: bytemuck::Pod> HostBuffer<T> {
    pub fn is_pinned(&self) -> bool {
        !matches!(self, HostBuffer::Pageable(_))
    }
    pub fn capacity(&self) -> usize {
        self.as_slice().len()
    }
    pub fn as_slice(&self) -> &[T] {
        match self {
            HostBuffer::Pageable(v) => v,
            #[cfg(feature = "cuda")]
            HostBuffer::Pinned(p) => p.as_slice(),
        }
    }
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        match self {
            HostBuffer::Pageable(v) => v,
            #[cfg(feature = "cuda")]
            HostBuffer::Pinned(p) => p.as_mut_slice(),
        }
    }
}

struct Slot<T: bytemuck::Pod> {
    buffer: HostBuffer<T>,
    /// Recorded after the last copy out of this buffer; the host waits on it before refilling.
    #[cfg(feature = "cuda")]
    read_done: Option<CudaEvent>,
}

/// K staging buffers used round-robin.
pub struct StagingRing<T: bytemuck::Pod> {
    slots: Vec<Slot<T>>,
    next: usize,
}

impl<T: bytemuck::Pod> StagingRing<T> {
    /// `slots` plain `Vec` buffers of `capacity` elements each.
    pub fn pageable(slots: usize, capacity: usize) -> Self {
        StagingRing {
            slots: (0..slots.max(1))
                .map(|_| Slot {
                    buffer: HostBuffer::Pageable(vec![T::zeroed(); capacity]),
                    #[cfg(feature = "cuda")]
                    read_done: None,
                })
                .collect(),
            next: 0,
        }
    }

    /// `slots` pinned buffers of `capacity` elements each, allocated now (pinning is slow:
    /// tens of ms per 50 MB, so never per batch).
    #[cfg(feature = "cuda")]
    pub fn pinned(ctx: &Arc<CudaContext>, slots: usize, capacity: usize) -> Result<Self> {
        let mut v = Vec::new();
        for _ in 0..slots.max(1) {
            v.push(Slot {
                buffer: HostBuffer::Pinned(PinnedBuffer::new(ctx, capacity)?),
                read_done: None,
            });
        }
        Ok(StagingRing { slots: v, next: 0 })
    }

    pub fn slots(&self) -> usize {
        self.slots.len()
    }
    pub fn capacity(&self) -> usize {
        self.slots[0].buffer.capacity()
    }
    pub fn is_pinned(&self) -> bool {
        self.slots[0].buffer.is_pinned()
    }

    /// The next buffer in turn, once the device has finished reading it. Returns its index.
    pub fn acquire(&mut self) -> Result<usize> {
        let i = self.next;
        self.next = (self.next + 1) % self.slots.len();
        #[cfg(feature = "cuda")]
        if let Some(ev) = self.slots[i].read_done.take() {
            ev.synchronize()
                .map_err(|e| anyhow::anyhow!("waiting for the staging buffer's copy: {e}"))?;
        }
        Ok(i)
    }

    /// The whole buffer `i` for the packer to write into (`len` ≤ capacity elements are used).
    pub fn buffer_mut(&mut self, i: usize, len: usize) -> Result<&mut [T]> {
        let cap = self.capacity();
        if len > cap {
            bail!("batch needs {len} staging elements but the buffers hold {cap}; raise the ring's capacity");
        }
        Ok(&mut self.slots[i].buffer.as_mut_slice()[..len])
    }

    pub fn buffer(&self, i: usize) -> &HostBuffer<T> {
        &self.slots[i].buffer
    }

    /// Marks buffer `i` as being read by the device until `event` completes.
    #[cfg(feature = "cuda")]
    pub fn set_read_done(&mut self, i: usize, event: CudaEvent) {
        self.slots[i].read_done = Some(event);
    }
}

/// Pinned memory must not be freed while a copy still reads it.
#[cfg(feature = "cuda")]
impl<T: bytemuck::Pod> Drop for StagingRing<T> {
    fn drop(&mut self) {
        for s in &mut self.slots {
            if let Some(ev) = s.read_done.take() {
                let _ = ev.synchronize();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn pageable_ring_rotates_and_bounds_length() {
        let mut r = StagingRing::<f32>::pageable(3, 10);
        assert_eq!((r.slots(), r.capacity(), r.is_pinned()), (3, 10, false));
        let order: Vec<usize> = (0..4).map(|_| r.acquire().unwrap()).collect();
        assert_eq!(order, vec![0, 1, 2, 0]);
        r.buffer_mut(1, 4)
            .unwrap()
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(&r.buffer(1).as_slice()[..4], &[1.0, 2.0, 3.0, 4.0]);
        let e = r.buffer_mut(0, 11).unwrap_err().to_string();
        assert!(e.contains("11") && e.contains("10"), "{e}");
    }
}
