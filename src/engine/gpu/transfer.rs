//! Host-to-device transfer of one batch of pixels in one of the four `TransferMode`s, timed
//! with CUDA events.
//!
//! - `pageable`: from a plain `Vec`, on the compute stream, the host waits for it.
//! - `sync`: from pinned memory, otherwise as `pageable` (what the seed pipeline does).
//! - `async`: from pinned memory on a dedicated copy stream into one of K persistent device
//!   slots; the host does not wait.
//! - `async-u8`: as `async` with 8-bit RGB; patchify runs on the compute stream.
//!
//! Ordering (candle runs a kernel on the stream of its input buffer, see shared/gpu.md): the
//! tensors handed to the model are always allocated on the compute stream. In the async modes
//! the copy lands in a device slot allocated once (and synchronised) at setup; the compute
//! stream waits on the event after the copy, then moves the slot's contents into a fresh tensor
//! (a device-to-device copy, or the patchify kernel for 8-bit) and records the slot's "free"
//! event; the copy stream waits on that event before it writes the slot again. A fresh
//! stream-ordered allocation would not do as the copy target: it becomes valid on the copy
//! stream only once the compute stream reaches it, i.e. after the previous batch's forward
//! pass, which would serialise copy and compute. The host refills a staging buffer only after
//! the event recorded after its copy (`StagingRing`).

use super::batch::PatchifyParams;
use super::patchify_kernel::PatchifyKernel;
use super::timings::BatchGpuTimings;
use crate::settings::TransferMode;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::cuda_backend::cudarc::driver::{
    result as cu, sys, CudaContext, CudaEvent, CudaFunction, CudaSlice, CudaStream, DevicePtr,
    DevicePtrMut, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits,
};
use candle_core::cuda_backend::{CudaDevice, CudaStorage};
use candle_core::op::BackpropOp;
use candle_core::{Device, Storage, Tensor};
use pagesight_common::kernel_source;
use pagesight_common::nvrtc;
use pagesight_model::gpu::custom_op;
use pagesight_model::gpu::pinned::PinnedBuffer;
use std::sync::Arc;

/// Pixels of one batch in host memory: f32 patch rows, or 8-bit RGB pages back to back.
pub enum HostPixels<'a> {
    F32 {
        data: &'a [f32],
        rows: usize,
        row_len: usize,
    },
    U8 {
        data: &'a [u8],
        dims: &'a [(u32, u32)],
    },
}

impl HostPixels<'_> {
    pub fn bytes(&self) -> u64 {
        match self {
            HostPixels::F32 { data, .. } => std::mem::size_of_val(*data) as u64,
            HostPixels::U8 { data, .. } => data.len() as u64,
        }
    }
}

/// A persistent device buffer the copy stream writes into.
struct DeviceSlot<T> {
    buf: CudaSlice<T>,
    /// Recorded on the compute stream after the slot's contents were consumed.
    free: Option<CudaEvent>,
}

/// K persistent device slots, used round-robin.
struct SlotRing<T> {
    slots: Vec<DeviceSlot<T>>,
    next: usize,
}

impl<T: DeviceRepr + ValidAsZeroBits> SlotRing<T> {
    fn empty() -> Self {
        SlotRing {
            slots: Vec::new(),
            next: 0,
        }
    }
    /// The next slot, (re)allocated with at least `len` elements. Growing waits for both streams.
    fn take(&mut self, dev: &CudaDevice, copy: &CudaStream, k: usize, len: usize) -> Result<usize> {
        if self.slots.len() != k || self.slots.iter().any(|s| s.buf.len() < len) {
            copy.synchronize()?;
            dev.cuda_stream().synchronize()?;
            self.slots.clear();
            for _ in 0..k {
                // Zeroed on the compute stream, then synchronised: valid on every stream.
                self.slots.push(DeviceSlot {
                    buf: dev.alloc_zeros::<T>(len)?,
                    free: None,
                });
            }
            dev.cuda_stream().synchronize()?;
            self.next = 0;
        }
        let i = self.next;
        self.next = (self.next + 1) % k;
        Ok(i)
    }
}

enum DeviceBuf {
    /// Allocated on the compute stream and filled there (`pageable`, `sync`).
    Fresh {
        slice: CudaSlice<f32>,
        rows: usize,
        row_len: usize,
    },
    /// In slot `slot` of the f32 ring (`async`).
    SlotF32 {
        slot: usize,
        rows: usize,
        row_len: usize,
    },
    /// In slot `slot` of the u8 ring (`async-u8`).
    SlotU8 { slot: usize, dims: Vec<(u32, u32)> },
}

/// A copy that has been issued; `begin_compute` turns it into a tensor on the compute stream.
pub struct IssuedCopy {
    mode: TransferMode,
    buf: DeviceBuf,
    bytes: u64,
    separate_stream: bool,
    copy_start: CudaEvent,
    copy_end: CudaEvent,
}

/// A batch result on its way to a pinned host buffer (`GpuTransfer::fetch_async`).
pub struct PendingFetch {
    done: CudaEvent,
    len: usize,
    shape: candle_core::Shape,
}

impl PendingFetch {
    /// Waits for the copy and returns the result as a CPU tensor.
    pub fn wait(&self, host: &PinnedBuffer<f32>) -> Result<Tensor> {
        self.done.synchronize()?;
        Ok(Tensor::from_slice(
            &host.as_slice()[..self.len],
            self.shape.clone(),
            &Device::Cpu,
        )?)
    }
}

/// The compute stream's share of one batch; `end_compute` closes it.
pub struct ComputeTicket {
    mode: TransferMode,
    bytes: u64,
    separate_stream: bool,
    copy_start: CudaEvent,
    copy_end: CudaEvent,
    wait_start: CudaEvent,
    wait_end: CudaEvent,
    patchify_end: Option<CudaEvent>,
    vision_end: Option<CudaEvent>,
    compute_end: Option<CudaEvent>,
}

pub struct GpuTransfer {
    dev: CudaDevice,
    compute: Arc<CudaStream>,
    copy: Arc<CudaStream>,
    /// Results back to the host: a stream of its own, since a result waits for its batch's
    /// forward pass and the next host-to-device copy must not queue behind that.
    fetch: Arc<CudaStream>,
    patchify: PatchifyKernel,
    spin: CudaFunction,
    epoch: CudaEvent,
    copy_delay_cycles: u64,
    slots: usize,
    ring_f32: SlotRing<f32>,
    ring_u8: SlotRing<u8>,
}

/// The card's pinned host-to-device bandwidth in bytes/s: one pinned buffer of `bytes` copied
/// on a stream of its own, timed with events in `rounds` rounds of 10 copies, the best round
/// counted — the peak that the ingest's copies are compared with ("H2D % of peak"). The first
/// copies run untimed for ~0.2 s: an idle GPU's PCIe link runs slower until traffic wakes it.
pub fn measure_pinned_h2d_peak(device: &Device, bytes: usize, rounds: usize) -> Result<f64> {
    let dev = device
        .as_cuda_device()
        .map_err(|_| anyhow!("measuring H2D bandwidth needs a CUDA device, got {device:?}"))?;
    let ctx = dev.cuda_stream().context().clone();
    let stream = ctx
        .new_stream()
        .context("creating a stream for the H2D probe")?;
    let host = PinnedBuffer::<u8>::new(&ctx, bytes)?;
    // SAFETY: the buffer is only ever a copy target here and is never read back, so its unset
    // contents are never observed; any byte is a valid u8 anyway.
    let mut dst = unsafe { stream.alloc::<u8>(bytes) }?;
    let ptr = dst.device_ptr_mut(&stream).0;
    let copy = || {
        // SAFETY: `dst` is a u8 allocation of `bytes` elements made on `stream`, the stream the
        // copy runs on, and `host` holds exactly `bytes` u8s. `host` is pinned and outlives every
        // copy: the closure borrows it, each round ends with `end.synchronize()`, and `dst` is
        // freed and the stream synchronised before `host` drops at the end of the function.
        unsafe { cu::memcpy_htod_async(ptr, host.as_slice(), stream.cu_stream()) }
            .map_err(|e| anyhow!("H2D probe copy: {e}"))
    };
    let warm_up = std::time::Instant::now();
    while warm_up.elapsed().as_secs_f64() < 0.2 {
        copy()?;
        stream.synchronize()?;
    }
    let mut best: f64 = 0.0;
    for _ in 0..rounds.max(1) {
        let start = timing_event(&stream)?;
        for _ in 0..10 {
            copy()?;
        }
        let end = timing_event(&stream)?;
        end.synchronize()?;
        let ms = start.elapsed_ms(&end)? as f64;
        best = best.max(bytes as f64 * 10.0 / (ms / 1e3));
    }
    drop(dst);
    stream.synchronize()?;
    Ok(best)
}

fn timing_event(stream: &Arc<CudaStream>) -> Result<CudaEvent> {
    let ev = stream
        .context()
        .new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))?;
    ev.record(stream)?;
    Ok(ev)
}

impl GpuTransfer {
    /// Sets up the copy stream and kernels for `device` (must be the model's CUDA device, used
    /// from this thread: candle's stream is the per-thread default stream). `slots` device
    /// buffers per kind are used round-robin in the async modes.
    pub fn new(device: &Device, slots: usize) -> Result<Self> {
        let dev = device
            .as_cuda_device()
            .map_err(|_| anyhow!("the GPU transfer modes need a CUDA device, got {device:?}"))?
            .clone();
        let compute = dev.cuda_stream();
        let ctx = compute.context().clone();
        // Ordering across our two streams is explicit (events above). cudarc's automatic
        // per-buffer event tracking would otherwise switch on for every candle tensor once a
        // second stream exists, recording events around every kernel launch of the model.
        // SAFETY: every buffer that crosses streams is ordered by our own events instead: the
        // device slots are allocated zeroed on the compute stream and synchronised before any
        // copy stream use (`SlotRing::take`), the copy stream waits on a slot's `free` event
        // before writing it again, the compute stream waits on `copy_end` before reading it, the
        // fetch stream waits on the batch's `compute_end` before reading a result, and slots are
        // freed only after both streams are synchronised (`SlotRing::take` on growth, `Drop`).
        // Every other tensor lives on the compute stream alone.
        unsafe { dev.disable_event_tracking() };
        let copy = ctx.new_stream().context("creating the copy stream")?;
        let fetch = ctx.new_stream().context("creating the result stream")?;
        let patchify = PatchifyKernel::load(&compute)?;
        let spin_mod = nvrtc::load_module(&ctx, "pagesight_spin", kernel_source::SPIN)?;
        let spin = nvrtc::function(&spin_mod, "spin_cycles")?;
        let epoch = timing_event(&compute)?;
        Ok(GpuTransfer {
            dev,
            compute,
            copy,
            fetch,
            patchify,
            spin,
            epoch,
            copy_delay_cycles: 0,
            slots: slots.max(2),
            ring_f32: SlotRing::empty(),
            ring_u8: SlotRing::empty(),
        })
    }

    pub fn compute_stream(&self) -> &Arc<CudaStream> {
        &self.compute
    }
    pub fn copy_stream(&self) -> &Arc<CudaStream> {
        &self.copy
    }
    pub fn context(&self) -> &Arc<CudaContext> {
        self.compute.context()
    }

    /// Test knob: before every async copy the copy stream spins this many SM clock cycles (how
    /// long that lasts follows the card's clock), so any read of a batch before its copy shows up.
    pub fn set_copy_delay_cycles(&mut self, cycles: u64) {
        self.copy_delay_cycles = cycles;
    }

    fn delay_copy_stream(&self) -> Result<()> {
        if self.copy_delay_cycles == 0 {
            return Ok(());
        }
        let cycles = self.copy_delay_cycles as i64;
        let cfg = LaunchConfig {
            grid_dim: (1, 1, 1),
            block_dim: (1, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.copy.launch_builder(&self.spin);
        b.arg(&cycles);
        // SAFETY: `spin_cycles(long long)` takes exactly the one i64 pushed above and touches no
        // memory; one thread in one block.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }

    /// Issues the copy of one batch. Returns the copy and the event after which the host buffer
    /// may be refilled. `pageable`/`sync` block until the copy is done.
    pub fn issue_copy(
        &mut self,
        mode: TransferMode,
        pixels: HostPixels<'_>,
    ) -> Result<(IssuedCopy, CudaEvent)> {
        let bytes = pixels.bytes();
        let separate = matches!(mode, TransferMode::Async | TransferMode::AsyncU8);
        let (buf, dst, stream) = match (&pixels, mode) {
            (
                HostPixels::F32 {
                    data,
                    rows,
                    row_len,
                },
                m,
            ) if m != TransferMode::AsyncU8 => {
                if data.len() != rows * row_len {
                    bail!("batch of {rows} rows × {row_len} has {} values", data.len());
                }
                if separate {
                    let slot = self
                        .ring_f32
                        .take(&self.dev, &self.copy, self.slots, data.len())?;
                    let s = &mut self.ring_f32.slots[slot];
                    if let Some(free) = s.free.take() {
                        self.copy.wait(&free)?;
                    }
                    let dst = s.buf.device_ptr_mut(&self.copy).0;
                    (
                        DeviceBuf::SlotF32 {
                            slot,
                            rows: *rows,
                            row_len: *row_len,
                        },
                        dst,
                        &self.copy,
                    )
                } else {
                    // SAFETY: allocated on the compute stream, which fills all `data.len()`
                    // elements with the copy below before anything reads the buffer (the tensor
                    // is made in `begin_compute`, on the same stream); any bits are a valid f32.
                    let mut slice = unsafe { self.dev.alloc::<f32>(data.len()) }?;
                    let dst = slice.device_ptr_mut(&self.compute).0;
                    (
                        DeviceBuf::Fresh {
                            slice,
                            rows: *rows,
                            row_len: *row_len,
                        },
                        dst,
                        &self.compute,
                    )
                }
            }
            (HostPixels::U8 { data, dims }, TransferMode::AsyncU8) => {
                let need: u64 = dims.iter().map(|&(h, w)| h as u64 * w as u64 * 3).sum();
                if need != data.len() as u64 {
                    bail!(
                        "8-bit batch holds {} bytes, its pages need {need}",
                        data.len()
                    );
                }
                let slot = self
                    .ring_u8
                    .take(&self.dev, &self.copy, self.slots, data.len())?;
                let s = &mut self.ring_u8.slots[slot];
                if let Some(free) = s.free.take() {
                    self.copy.wait(&free)?;
                }
                let dst = s.buf.device_ptr_mut(&self.copy).0;
                (
                    DeviceBuf::SlotU8 {
                        slot,
                        dims: dims.to_vec(),
                    },
                    dst,
                    &self.copy,
                )
            }
            _ => bail!(
                "transfer mode '{mode}' got the wrong kind of staged pixels \
                 (async-u8 takes 8-bit RGB, the others f32 rows)"
            ),
        };
        let stream = stream.clone();
        if separate {
            self.delay_copy_stream()?;
        }
        let copy_start = timing_event(&stream)?;
        // Both arms: `dst` was allocated for the element type of `data` with at least
        // `data.len()` elements (a fresh slice of exactly that length, or a slot `take` grew to
        // it), and is written on `stream` only after what last read it (the copy stream has
        // waited on the slot's `free` event). The host memory stays untouched until the copy
        // has read it: `pageable`/`sync` wait for `copy_end` below before returning, and in the
        // async modes `data` is a pinned staging buffer that the caller refills only after
        // `host_free` (`StagingRing::acquire`, and its `Drop` waits before freeing).
        let res = match &pixels {
            // SAFETY: see above; f32 rows into an f32 buffer.
            HostPixels::F32 { data, .. } => unsafe {
                cu::memcpy_htod_async(dst, data, stream.cu_stream())
            },
            // SAFETY: see above; 8-bit RGB into a u8 slot.
            HostPixels::U8 { data, .. } => unsafe {
                cu::memcpy_htod_async(dst, data, stream.cu_stream())
            },
        };
        res.map_err(|e| anyhow!("host-to-device copy of {bytes} bytes failed: {e}"))?;
        let copy_end = timing_event(&stream)?;
        let host_free = stream.record_event(None)?;
        if !separate {
            // The blocking copy of `pageable` and `sync`: the host goes on once it is done.
            copy_end.synchronize()?;
        }
        let copy = IssuedCopy {
            mode,
            buf,
            bytes,
            separate_stream: separate,
            copy_start,
            copy_end,
        };
        Ok((copy, host_free))
    }

    /// Makes the compute stream wait for the copy, moves the pixels into a fresh tensor on the
    /// compute stream (patchify for 8-bit batches) and frees the slot for the next copy.
    /// Returns an f32 `[rows, row_len]` tensor.
    pub fn begin_compute(
        &mut self,
        copy: IssuedCopy,
        params: &PatchifyParams,
    ) -> Result<(Tensor, ComputeTicket)> {
        let wait_start = timing_event(&self.compute)?;
        if copy.separate_stream {
            self.compute.wait(&copy.copy_end)?;
        }
        let wait_end = timing_event(&self.compute)?;
        let (slice, rows, row_len, patchify_end) = match copy.buf {
            DeviceBuf::Fresh {
                slice,
                rows,
                row_len,
            } => (slice, rows, row_len, None),
            DeviceBuf::SlotF32 {
                slot,
                rows,
                row_len,
            } => {
                let n = rows * row_len;
                // SAFETY: allocated on the compute stream and filled whole (all `n` elements) by
                // the device-to-device copy queued right after on the same stream, before any
                // kernel reads it.
                let mut out = unsafe { self.dev.alloc::<f32>(n) }?;
                let s = &mut self.ring_f32.slots[slot];
                self.compute.memcpy_dtod(&s.buf.slice(0..n), &mut out)?;
                s.free = Some(self.compute.record_event(None)?);
                (out, rows, row_len, None)
            }
            DeviceBuf::SlotU8 { slot, dims } => {
                let mut rows = 0;
                for &(h, w) in &dims {
                    rows += params.rows(h, w)?;
                }
                let row_len = params.row_len();
                // SAFETY: allocated on the compute stream; the patchify kernel queued next on the
                // same stream writes all `row_len` values of each of the `rows` rows (one block
                // per row) before any kernel reads it.
                let mut out = unsafe { self.dev.alloc::<f32>(rows * row_len) }?;
                let s = &mut self.ring_u8.slots[slot];
                self.patchify
                    .launch(&self.compute, &s.buf, &dims, params, &mut out)?;
                s.free = Some(self.compute.record_event(None)?);
                (out, rows, row_len, Some(timing_event(&self.compute)?))
            }
        };
        let storage = CudaStorage::wrap_cuda_slice(slice, self.dev.clone());
        let tensor = Tensor::from_storage(
            Storage::Cuda(storage),
            (rows, row_len),
            BackpropOp::none(),
            false,
        );
        let ticket = ComputeTicket {
            mode: copy.mode,
            bytes: copy.bytes,
            separate_stream: copy.separate_stream,
            copy_start: copy.copy_start,
            copy_end: copy.copy_end,
            wait_start,
            wait_end,
            patchify_end,
            vision_end: None,
            compute_end: None,
        };
        Ok((tensor, ticket))
    }

    /// Marks the end of the vision tower's kernels on the compute stream.
    pub fn mark_vision_end(&self, ticket: &mut ComputeTicket) -> Result<()> {
        ticket.vision_end = Some(timing_event(&self.compute)?);
        Ok(())
    }

    /// Marks the end of the batch's work on the compute stream (after the last kernel is queued).
    pub fn end_compute(&self, ticket: &mut ComputeTicket) -> Result<()> {
        ticket.compute_end = Some(timing_event(&self.compute)?);
        Ok(())
    }

    /// Starts copying a batch's f32 result to the host on the fetch stream, once the compute
    /// stream has finished the batch (its `end_compute` event), so the host can collect it while
    /// the next batch already computes. None for results this path does not take (other dtypes);
    /// the caller then reads them on the compute stream.
    pub fn fetch_async(
        &self,
        out: &Tensor,
        ticket: &ComputeTicket,
        host: &mut PinnedBuffer<f32>,
    ) -> Result<Option<PendingFetch>> {
        let end = ticket
            .compute_end
            .as_ref()
            .ok_or_else(|| anyhow!("fetch asked before end_compute"))?;
        if out.dtype() != candle_core::DType::F32 || !out.is_contiguous() {
            return Ok(None);
        }
        let n = out.elem_count();
        if host.as_slice().len() < n {
            bail!("result buffer of {} floats for {n}", host.as_slice().len());
        }
        let (storage, layout) = out.storage_and_layout();
        let Storage::Cuda(cuda) = &*storage else {
            return Ok(None);
        };
        let slice = custom_op::view::<f32>(cuda, layout)?;
        self.fetch.wait(end)?;
        let (src, _guard) = slice.device_ptr(&self.fetch);
        // SAFETY: `src` is the contiguous f32 view of `out` with `n` elements, and the copy writes
        // `n` f32s into a host slice checked to hold them. The fetch stream waited on the batch's
        // `compute_end`, so the kernels that write `out` have run; `out` stays alive in the
        // caller's in-flight batch until `PendingFetch::wait`. `host` is pinned and is neither
        // read nor replaced before `wait` has synchronised on `done` (the pipeline alternates two
        // result buffers, and a buffer's previous batch completed before this one launched).
        unsafe {
            cu::memcpy_dtoh_async(&mut host.as_mut_slice()[..n], src, self.fetch.cu_stream())
        }
        .map_err(|e| anyhow!("device-to-host copy of the batch result failed: {e}"))?;
        let done = self.fetch.record_event(None)?;
        Ok(Some(PendingFetch {
            done,
            len: n,
            shape: out.shape().clone(),
        }))
    }

    /// Reads the batch's events (waits for them). Times are relative to this transfer's epoch.
    pub fn timings(&self, t: &ComputeTicket, pages: usize) -> Result<BatchGpuTimings> {
        let end = t
            .compute_end
            .as_ref()
            .ok_or_else(|| anyhow!("timings asked before end_compute"))?;
        let at = |e: &CudaEvent| -> Result<f64> { Ok(self.epoch.elapsed_ms(e)? as f64) };
        let copy_start_ms = at(&t.copy_start)?;
        let copy_end_ms = at(&t.copy_end)?;
        let copy_wait_ms = if t.separate_stream {
            t.wait_start.elapsed_ms(&t.wait_end)? as f64
        } else {
            copy_end_ms - copy_start_ms
        };
        Ok(BatchGpuTimings {
            mode: t.mode,
            pages,
            h2d_bytes: t.bytes,
            copy_start_ms,
            copy_end_ms,
            compute_start_ms: at(&t.wait_end)?,
            compute_end_ms: at(end)?,
            copy_wait_ms: copy_wait_ms.max(0.0),
            patchify_ms: match &t.patchify_end {
                Some(p) => t.wait_end.elapsed_ms(p)? as f64,
                None => 0.0,
            },
            vision_ms: match &t.vision_end {
                Some(v) => t
                    .patchify_end
                    .as_ref()
                    .unwrap_or(&t.wait_end)
                    .elapsed_ms(v)? as f64,
                None => 0.0,
            },
            lm_ms: match &t.vision_end {
                Some(v) => v.elapsed_ms(end)? as f64,
                None => 0.0,
            },
            copy_on_separate_stream: t.separate_stream
                && self.copy.cu_stream() != self.compute.cu_stream(),
        })
    }
}

impl Drop for GpuTransfer {
    fn drop(&mut self) {
        // The slots are freed on the compute stream: the copy stream must be done with them.
        let _ = self.copy.synchronize();
        let _ = self.compute.synchronize();
    }
}
