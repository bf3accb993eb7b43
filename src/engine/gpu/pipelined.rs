//! A double/triple-buffered batch executor: while batch N computes, batch N+1 is packed into a
//! pinned staging buffer and copied on the copy stream. Drop-in for the pump's batch step:
//! `submit(batch)` hands back the previous batch's result (or this one's in the blocking
//! modes), `flush()` the last one. The transfer mode may change between any two submits.

use super::batch::{BatchModel, PatchifyParams, StagePages};
use super::staging::StagingRing;
use super::timings::BatchGpuTimings;
use super::transfer::{ComputeTicket, GpuTransfer, HostPixels, PendingFetch};
use crate::settings::TransferMode;
use crate::stage::{Stage, StageClock};
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};
use pagesight_model::gpu::pinned::PinnedBuffer;

pub struct Finished<B, R> {
    pub batch: B,
    pub output: R,
    pub timings: BatchGpuTimings,
}

/// A submit or flush that failed. `finished` holds results completed before the failure;
/// `unfinished` every batch whose result was not delivered (oldest first), so the caller can
/// retry them, e.g. halved after out-of-memory. No page is lost or delivered twice.
pub struct SubmitError<B, R> {
    pub error: anyhow::Error,
    pub finished: Vec<Finished<B, R>>,
    pub unfinished: Vec<B>,
}

impl<B, R> std::fmt::Debug for SubmitError<B, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:#} ({} batches finished, {} unfinished)",
            self.error,
            self.finished.len(),
            self.unfinished.len()
        )
    }
}

struct InFlight<B> {
    batch: B,
    grid: Vec<[u32; 3]>,
    /// Kept alive until its result has reached the host.
    out: Tensor,
    ticket: ComputeTicket,
    /// The result's copy to `results[result_slot]`, when it went that way.
    fetch: Option<PendingFetch>,
    result_slot: usize,
}

/// A batch's patch grid per page (`[1, h / patch, w / patch]`), its pages' pixel sizes, and the
/// patch rows they make together.
type BatchGrid = (Vec<[u32; 3]>, Vec<(u32, u32)>, usize);

pub struct PipelineConfig {
    /// Staging buffers per kind (2 = double, 3 = triple buffering).
    pub slots: usize,
    /// Largest batch the staging buffers are sized for (grown on demand).
    pub max_batch: usize,
    /// Most pixels one page has at model resolution (`PreprocessConfig::max_pixels`).
    pub max_pixels_per_page: usize,
}

pub struct PipelinedExecutor<B> {
    transfer: GpuTransfer,
    params: PatchifyParams,
    config: PipelineConfig,
    pinned_f32: Option<StagingRing<f32>>,
    pageable_f32: Option<StagingRing<f32>>,
    pinned_u8: Option<StagingRing<u8>>,
    in_flight: Option<InFlight<B>>,
    /// Pinned host buffers for batch results, alternating: the next batch's result may be on its
    /// way while the previous one is read.
    results: [Option<PinnedBuffer<f32>>; 2],
    next_result_slot: usize,
}

impl<B: StagePages> PipelinedExecutor<B> {
    pub fn new(device: &Device, params: PatchifyParams, config: PipelineConfig) -> Result<Self> {
        Ok(PipelinedExecutor {
            transfer: GpuTransfer::new(device, config.slots)?,
            params,
            config,
            pinned_f32: None,
            pageable_f32: None,
            pinned_u8: None,
            in_flight: None,
            results: [None, None],
            next_result_slot: 0,
        })
    }

    pub fn transfer(&self) -> &GpuTransfer {
        &self.transfer
    }
    pub fn transfer_mut(&mut self) -> &mut GpuTransfer {
        &mut self.transfer
    }

    fn grid(&self, batch: &B) -> Result<BatchGrid> {
        let n = batch.page_count();
        if n == 0 {
            bail!("empty batch");
        }
        let mut grid = Vec::with_capacity(n);
        let mut dims = Vec::with_capacity(n);
        let mut rows = 0;
        for i in 0..n {
            let (h, w) = batch.page_dims(i);
            rows += self.params.rows(h, w)?;
            grid.push([1, h / self.params.patch, w / self.params.patch]);
            dims.push((h, w));
        }
        Ok((grid, dims, rows))
    }

    fn ring_capacity(&self, pages: usize, elems_per_pixel: usize) -> usize {
        self.config.max_batch.max(pages) * self.config.max_pixels_per_page * elems_per_pixel
    }

    /// Packs and copies `batch`; returns what `begin_compute` needs.
    fn stage(
        &mut self,
        mode: TransferMode,
        batch: &B,
        clock: &mut StageClock,
    ) -> Result<(Vec<[u32; 3]>, super::transfer::IssuedCopy)> {
        clock.switch(Stage::Stage);
        let (grid, dims, rows) = self.grid(batch)?;
        let row_len = self.params.row_len();
        // f32 rows: pixels · 3 channels · temporal frames values per page.
        let f32_per_pixel = 3 * self.params.temporal as usize;
        let ctx = self.transfer.context().clone();
        let slots = self.config.slots;
        match mode {
            TransferMode::AsyncU8 => {
                let need = dims
                    .iter()
                    .map(|&(h, w)| h as usize * w as usize * 3)
                    .sum::<usize>();
                let cap = self.ring_capacity(batch.page_count(), 3);
                if self.pinned_u8.as_ref().is_none_or(|r| r.capacity() < need) {
                    self.pinned_u8 = Some(StagingRing::pinned(&ctx, slots, cap.max(need))?);
                }
                let ring = self.pinned_u8.as_mut().expect("allocated above");
                let i = ring.acquire()?;
                let buf = ring.buffer_mut(i, need)?;
                let mut at = 0;
                for (p, &(h, w)) in dims.iter().enumerate().take(batch.page_count()) {
                    let rgb = batch.page_rgb(p);
                    if rgb.len() != h as usize * w as usize * 3 {
                        bail!("page {p} has {} RGB bytes for {h}×{w}", rgb.len());
                    }
                    buf[at..at + rgb.len()].copy_from_slice(rgb);
                    at += rgb.len();
                }
                clock.switch(Stage::H2d);
                let (copy, host_free) = self.transfer.issue_copy(
                    mode,
                    HostPixels::U8 {
                        data: &buf[..need],
                        dims: &dims,
                    },
                )?;
                ring.set_read_done(i, host_free);
                Ok((grid, copy))
            }
            _ => {
                let need = rows * row_len;
                let cap = self.ring_capacity(batch.page_count(), f32_per_pixel);
                let slot = if mode == TransferMode::Pageable {
                    &mut self.pageable_f32
                } else {
                    &mut self.pinned_f32
                };
                if slot.as_ref().is_none_or(|r| r.capacity() < need) {
                    *slot = Some(if mode == TransferMode::Pageable {
                        StagingRing::pageable(slots, cap.max(need))
                    } else {
                        StagingRing::pinned(&ctx, slots, cap.max(need))?
                    });
                }
                let ring = slot.as_mut().expect("allocated above");
                let i = ring.acquire()?;
                let buf = ring.buffer_mut(i, need)?;
                batch.pack_f32(buf)?;
                clock.switch(Stage::H2d);
                let (copy, host_free) = self.transfer.issue_copy(
                    mode,
                    HostPixels::F32 {
                        data: buf,
                        rows,
                        row_len,
                    },
                )?;
                ring.set_read_done(i, host_free);
                Ok((grid, copy))
            }
        }
    }

    fn launch<M: BatchModel>(
        &mut self,
        model: &mut M,
        grid: &[[u32; 3]],
        copy: super::transfer::IssuedCopy,
        clock: &mut StageClock,
    ) -> Result<(Tensor, ComputeTicket)> {
        clock.switch(Stage::Vision);
        let (pixels, mut ticket) = self.transfer.begin_compute(copy, &self.params)?;
        let vision = model.vision(&pixels, grid)?;
        self.transfer.mark_vision_end(&mut ticket)?;
        let out = model.lm(&vision, grid)?;
        self.transfer.end_compute(&mut ticket)?;
        Ok((out, ticket))
    }

    /// Starts the copy of `out` to a pinned result buffer (see `GpuTransfer::fetch_async`).
    fn start_fetch(
        &mut self,
        out: &Tensor,
        ticket: &ComputeTicket,
    ) -> Result<(Option<PendingFetch>, usize)> {
        let slot = self.next_result_slot;
        self.next_result_slot ^= 1;
        let n = out.elem_count();
        // The buffer's previous batch was completed before this one launched.
        if self.results[slot]
            .as_ref()
            .is_none_or(|b| b.as_slice().len() < n)
        {
            let ctx = self.transfer.context().clone();
            self.results[slot] = Some(PinnedBuffer::new(&ctx, n.max(1 << 20))?);
        }
        let host = self.results[slot].as_mut().expect("allocated above");
        Ok((self.transfer.fetch_async(out, ticket, host)?, slot))
    }

    /// Completes `f` and appends its result to `finished`; on failure hands the batch back
    /// with the error, so the caller can report it as unfinished.
    #[allow(clippy::type_complexity)]
    fn complete_into<M: BatchModel>(
        &mut self,
        model: &mut M,
        f: InFlight<B>,
        clock: &mut StageClock,
        finished: &mut Vec<Finished<B, M::Output>>,
    ) -> std::result::Result<(), (anyhow::Error, B)> {
        match self.complete(model, &f, clock) {
            Ok((output, timings)) => {
                finished.push(Finished {
                    batch: f.batch,
                    output,
                    timings,
                });
                Ok(())
            }
            Err(e) => Err((e, f.batch)),
        }
    }

    fn complete<M: BatchModel>(
        &mut self,
        model: &mut M,
        f: &InFlight<B>,
        clock: &mut StageClock,
    ) -> Result<(M::Output, BatchGpuTimings)> {
        // The host waits here for the GPU; the events split that wait into vision and LM.
        clock.switch(Stage::Lm);
        let output = match (&f.fetch, &self.results[f.result_slot]) {
            (Some(pending), Some(host)) => model.fetch(&pending.wait(host)?, &f.grid)?,
            _ => model.fetch(&f.out, &f.grid)?,
        };
        let timings = self.transfer.timings(&f.ticket, f.batch.page_count())?;
        // The host's waits for the device (while queueing this batch and here) cannot say which
        // part of the device's work they covered; the events say how the device's time divided.
        clock.switch(Stage::Lm);
        let gpu = timings.vision_ms + timings.lm_ms;
        if gpu > 0.0 {
            clock.split(Stage::Vision, Stage::Lm, timings.vision_ms / gpu);
        }
        Ok((output, timings))
    }

    /// Submits a batch. Host time is attributed on `clock`: packing to `stage`, issuing (and in
    /// the blocking modes waiting for) the copy to `h2d`; queueing kernels and waiting for the
    /// device to `vision` and `lm`, divided as the device's events divided the batch. In
    /// `async`/`async-u8` it is copied while the previous batch computes, its forward is queued
    /// behind that one, and the previous batch's result is returned; in `pageable`/`sync` it runs
    /// to the end and its own result is returned (after any batch still in flight).
    #[allow(clippy::type_complexity)]
    pub fn submit<M: BatchModel>(
        &mut self,
        mode: TransferMode,
        batch: B,
        model: &mut M,
        clock: &mut StageClock,
    ) -> Result<Vec<Finished<B, M::Output>>, SubmitError<B, M::Output>> {
        let pipelined = matches!(mode, TransferMode::Async | TransferMode::AsyncU8);
        let mut finished = Vec::new();
        let fail = |error: anyhow::Error, finished, mut unfinished: Vec<B>, this: Option<B>| {
            unfinished.extend(this);
            SubmitError {
                error,
                finished,
                unfinished,
            }
        };
        if !pipelined {
            if let Some(f) = self.in_flight.take() {
                if let Err((e, b)) = self.complete_into(model, f, clock, &mut finished) {
                    return Err(fail(e, finished, vec![b], Some(batch)));
                }
            }
        }
        let (grid, copy) = match self.stage(mode, &batch, clock) {
            Ok(s) => s,
            Err(e) => {
                let pending: Vec<B> = self.in_flight.take().map(|f| f.batch).into_iter().collect();
                return Err(fail(e, finished, pending, Some(batch)));
            }
        };
        if !pipelined {
            let (out, ticket) = match self.launch(model, &grid, copy, clock) {
                Ok(x) => x,
                Err(e) => return Err(fail(e, finished, Vec::new(), Some(batch))),
            };
            let f = InFlight {
                batch,
                grid,
                out,
                ticket,
                fetch: None,
                result_slot: 0,
            };
            if let Err((e, b)) = self.complete_into(model, f, clock, &mut finished) {
                return Err(fail(e, finished, vec![b], None));
            }
            return Ok(finished);
        }
        // Pipelined: this batch's kernels are queued behind the previous batch's before the host
        // waits for that one, so the GPU goes from one batch to the next without waiting for the
        // host (collecting results, building the next batch's tables) — and the previous
        // result comes back on the copy stream, not behind this batch's forward pass.
        let launched = match self.launch(model, &grid, copy, clock) {
            Ok((out, ticket)) => match self.start_fetch(&out, &ticket) {
                Ok((fetch, result_slot)) => Ok(InFlight {
                    batch,
                    grid,
                    out,
                    ticket,
                    fetch,
                    result_slot,
                }),
                Err(e) => Err((e, batch)),
            },
            Err(e) => Err((e, batch)),
        };
        if let Some(f) = self.in_flight.take() {
            if let Err((e, b)) = self.complete_into(model, f, clock, &mut finished) {
                // Whatever this batch did, its result comes after the failed one's: retry both.
                let this = match launched {
                    Ok(f) => f.batch,
                    Err((_, b)) => b,
                };
                return Err(fail(e, finished, vec![b, this], None));
            }
        }
        match launched {
            Ok(f) => self.in_flight = Some(f),
            Err((e, b)) => return Err(fail(e, finished, Vec::new(), Some(b))),
        }
        Ok(finished)
    }

    /// Finishes the batch still in flight, if any.
    #[allow(clippy::type_complexity)]
    pub fn flush<M: BatchModel>(
        &mut self,
        model: &mut M,
        clock: &mut StageClock,
    ) -> Result<Option<Finished<B, M::Output>>, SubmitError<B, M::Output>> {
        let Some(f) = self.in_flight.take() else {
            return Ok(None);
        };
        match self.complete(model, &f, clock) {
            Ok((output, timings)) => Ok(Some(Finished {
                batch: f.batch,
                output,
                timings,
            })),
            Err(error) => Err(SubmitError {
                error,
                finished: Vec::new(),
                unfinished: vec![f.batch],
            }),
        }
    }
}
