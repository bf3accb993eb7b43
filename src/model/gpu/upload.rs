//! Small per-batch tensors (token ids, RoPE tables, tile tables) to the device without making the
//! host wait. candle's `Tensor::from_vec` copies from pageable memory, which the driver performs
//! only after all work queued on the stream — so each such upload inside a forward pass held the
//! host until the GPU had drained, and the host could never queue a whole batch ahead of the GPU.
//! On CUDA the values go through a ring of pinned buffers and an asynchronous copy on the
//! compute stream (ordered before the kernels that read them); a buffer is refilled only after
//! the event recorded after its copy. Elsewhere this is `Tensor::from_vec`.

use candle_core::{Device, Result, Shape, Tensor, WithDType};

/// What `upload` takes: candle's element types (all of which CUDA can hold in a cuda build).
#[cfg(feature = "cuda")]
pub trait Element:
    WithDType
    + bytemuck::Pod
    + candle_core::cuda_backend::CudaDType
    + candle_core::cuda_backend::cudarc::driver::DeviceRepr
{
}
#[cfg(feature = "cuda")]
impl<T> Element for T where
    T: WithDType
        + bytemuck::Pod
        + candle_core::cuda_backend::CudaDType
        + candle_core::cuda_backend::cudarc::driver::DeviceRepr
{
}
#[cfg(not(feature = "cuda"))]
pub trait Element: WithDType + bytemuck::Pod {}
#[cfg(not(feature = "cuda"))]
impl<T: WithDType + bytemuck::Pod> Element for T {}

/// `data` as a tensor of `shape` on `device`.
pub fn upload<T: Element, S: Into<Shape>>(
    data: Vec<T>,
    shape: S,
    device: &Device,
) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if let Device::Cuda(dev) = device {
        if !data.is_empty() {
            return cuda::upload(dev, &data, shape.into());
        }
    }
    Tensor::from_vec(data, shape, device)
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::super::pinned::PinnedBuffer;
    use candle_core::cuda_backend::cudarc::driver::{result as cu, CudaEvent, DevicePtrMut};
    use candle_core::cuda_backend::{CudaDevice, CudaStorage};
    use candle_core::op::BackpropOp;
    use candle_core::{Result, Shape, Storage, Tensor};
    use std::sync::Mutex;

    /// Pinned buffers used round-robin; a few batches' worth of small uploads in flight.
    const RING: usize = 16;
    const MIN_BYTES: usize = 1 << 20;

    struct Slot {
        buf: PinnedBuffer<u8>,
        copied: Option<CudaEvent>,
    }

    struct Ring {
        key: (usize, std::thread::ThreadId),
        slots: Vec<Option<Slot>>,
        next: usize,
    }

    /// One ring per driver context and thread (the compute stream is the per-thread stream).
    static RINGS: Mutex<Vec<Ring>> = Mutex::new(Vec::new());

    fn err(what: &str, e: impl std::fmt::Display) -> candle_core::Error {
        candle_core::Error::Msg(format!("asynchronous upload: {what}: {e}"))
    }

    pub fn upload<T: super::Element>(dev: &CudaDevice, data: &[T], shape: Shape) -> Result<Tensor> {
        if shape.elem_count() != data.len() {
            candle_core::bail!("upload of {} values into shape {shape:?}", data.len());
        }
        let stream = dev.cuda_stream();
        let ctx = stream.context().clone();
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let key = (ctx.cu_ctx() as usize, std::thread::current().id());
        let mut rings = RINGS.lock().unwrap_or_else(|p| p.into_inner());
        let ring = match rings.iter().position(|r| r.key == key) {
            Some(i) => &mut rings[i],
            None => {
                rings.push(Ring {
                    key,
                    slots: (0..RING).map(|_| None).collect(),
                    next: 0,
                });
                rings.last_mut().expect("pushed")
            }
        };
        let i = ring.next;
        ring.next = (ring.next + 1) % RING;
        let slot = &mut ring.slots[i];
        if let Some(s) = slot.as_ref() {
            // The copy that last read this buffer must have run before the host refills it.
            if let Some(e) = &s.copied {
                e.synchronize()
                    .map_err(|e| err("waiting for a buffer", e))?;
            }
        }
        if slot
            .as_ref()
            .is_none_or(|s| s.buf.as_slice().len() < bytes.len())
        {
            let buf = PinnedBuffer::<u8>::new(&ctx, bytes.len().max(MIN_BYTES))
                .map_err(|e| err("pinning host memory", e))?;
            *slot = Some(Slot { buf, copied: None });
        }
        let s = slot.as_mut().expect("set above");
        s.buf.as_mut_slice()[..bytes.len()].copy_from_slice(bytes);
        // SAFETY: allocated on the compute stream, which fills every byte of it with the copy
        // below before the tensor's first kernel (queued later on the same stream) reads it.
        let mut dst = unsafe { dev.alloc::<T>(data.len())? };
        let ptr = dst.device_ptr_mut(&stream).0;
        // SAFETY: `dst` holds `data.len()` Ts, exactly the `bytes.len()` bytes copied (the bytes
        // of `data`, a `bytemuck` view, so the byte-wise copy gives back the same Ts), and was
        // allocated on `stream`, the stream the copy runs on. The pinned source stays alive and
        // unwritten until the copy has read it: the slot lives in `RINGS` for the whole process,
        // and before the host refills or replaces it, it waits on `copied`, recorded right after.
        unsafe { cu::memcpy_htod_async(ptr, &s.buf.as_slice()[..bytes.len()], stream.cu_stream()) }
            .map_err(|e| err("copy", e))?;
        s.copied = Some(
            stream
                .record_event(None)
                .map_err(|e| err("recording an event", e))?,
        );
        let storage = CudaStorage::wrap_cuda_slice(dst, dev.clone());
        Ok(Tensor::from_storage(
            Storage::Cuda(storage),
            shape,
            BackpropOp::none(),
            false,
        ))
    }
}
