//! How a batch of pages becomes vectors. The pump hands batches to a `BatchRunner` and sinks
//! whatever comes back: the synchronous runner (CPU, or a GPU in a blocking mode without the
//! executor) returns each batch's result at once; the pipelined GPU runner returns the previous
//! batch's result while this one's copy overlaps its compute; the replica pool (`replicas/`)
//! hands batches to one such runner per device.

use super::embed_step::{embed_with_retry, CopyTimings};
use crate::event::ReplicaSummary;
use crate::settings::TransferMode;
use crate::stage::StageClock;
use anyhow::Result;
use pagesight_loader::RenderedPage;
use pagesight_model::colqwen::{ColQwen, PageEmbedding};
use pagesight_model::PreprocessConfig;

/// One finished batch.
pub struct Done {
    pub pages: Vec<RenderedPage>,
    pub embeddings: Vec<PageEmbedding>,
    pub copy: CopyTimings,
    /// Compute-stream busy time, when measured with device events.
    pub gpu_busy_secs: Option<f64>,
    /// The compute stream's start and end for this batch (ms since the executor's epoch event).
    pub gpu_span_ms: Option<(f64, f64)>,
    /// The batch had to be split after running out of device memory.
    pub split: bool,
}

pub trait BatchRunner {
    fn submit(
        &mut self,
        mode: TransferMode,
        pages: Vec<RenderedPage>,
        clock: &mut StageClock,
    ) -> Result<Vec<Done>>;
    /// Results of batches still in flight.
    fn flush(&mut self, clock: &mut StageClock) -> Result<Vec<Done>>;
    /// Each model replica's figures so far (multi-device runs; none with one device).
    fn replica_summaries(&self) -> Vec<ReplicaSummary> {
        Vec::new()
    }
}

/// Every step finishes before the next (the CPU path; timings from host clocks after a device
/// synchronise).
pub struct SyncRunner<'a> {
    pub model: &'a ColQwen,
    pub pre: &'a PreprocessConfig,
    pub staging: Vec<f32>,
}

impl BatchRunner for SyncRunner<'_> {
    fn submit(
        &mut self,
        _mode: TransferMode,
        pages: Vec<RenderedPage>,
        clock: &mut StageClock,
    ) -> Result<Vec<Done>> {
        let (embeddings, copy, split) =
            embed_with_retry(self.model, &pages, self.pre, &mut self.staging, clock)?;
        Ok(vec![Done {
            pages,
            embeddings,
            copy,
            gpu_busy_secs: None,
            gpu_span_ms: None,
            split,
        }])
    }
    fn flush(&mut self, _clock: &mut StageClock) -> Result<Vec<Done>> {
        Ok(Vec::new())
    }
}

/// The runner for a model on `device`: the pipelined executor on CUDA, else synchronous.
pub fn for_model<'a>(
    model: &'a ColQwen,
    pre: &'a PreprocessConfig,
    batch_size: usize,
) -> Result<Box<dyn BatchRunner + 'a>> {
    #[cfg(feature = "cuda")]
    if model.device().is_cuda() {
        return Ok(Box::new(gpu::GpuRunner::new(model, pre, batch_size)?));
    }
    let _ = batch_size;
    Ok(Box::new(SyncRunner {
        model,
        pre,
        staging: Vec::new(),
    }))
}

#[cfg(feature = "cuda")]
mod gpu {
    use super::*;
    use crate::gpu::batch::{BatchModel, LoaderBatch, PatchifyParams};
    use crate::gpu::pipelined::{Finished, PipelineConfig, PipelinedExecutor, SubmitError};
    use candle_core::Tensor;

    /// The model as the executor drives it: queue vision and LM without waiting; fetch waits.
    struct ColQwenBatch<'m>(&'m ColQwen);

    impl BatchModel for ColQwenBatch<'_> {
        type Output = Vec<PageEmbedding>;
        fn vision(&mut self, px: &Tensor, g: &[[u32; 3]]) -> Result<Tensor> {
            self.0.vision_forward(px, g)
        }
        fn lm(&mut self, v: &Tensor, g: &[[u32; 3]]) -> Result<Tensor> {
            Ok(self.0.lm_project(v, g)?.0)
        }
        fn fetch(&mut self, out: &Tensor, g: &[[u32; 3]]) -> Result<Vec<PageEmbedding>> {
            self.0.page_embeddings_for(out, g)
        }
    }

    pub struct GpuRunner<'a> {
        model: &'a ColQwen,
        pre: &'a PreprocessConfig,
        exec: PipelinedExecutor<LoaderBatch>,
    }

    impl<'a> GpuRunner<'a> {
        pub fn new(
            model: &'a ColQwen,
            pre: &'a PreprocessConfig,
            batch_size: usize,
        ) -> Result<Self> {
            let exec = PipelinedExecutor::new(
                model.device(),
                PatchifyParams::from_config(pre),
                PipelineConfig {
                    slots: 3,
                    max_batch: batch_size.max(1),
                    max_pixels_per_page: pre.max_pixels as usize,
                },
            )?;
            Ok(GpuRunner { model, pre, exec })
        }

        fn done(f: Finished<LoaderBatch, Vec<PageEmbedding>>) -> Done {
            let t = &f.timings;
            Done {
                copy: CopyTimings {
                    h2d_bytes: t.h2d_bytes,
                    h2d_secs: t.copy_ms() / 1e3,
                    copy_critical_secs: t.copy_wait_ms / 1e3,
                },
                gpu_busy_secs: Some(t.compute_ms() / 1e3),
                gpu_span_ms: Some((t.compute_start_ms, t.compute_end_ms)),
                pages: f.batch.pages,
                embeddings: f.output,
                split: false,
            }
        }

        /// Out of memory: the unfinished batches are retried in halves, in order, blocking, so
        /// no page is lost or delivered twice.
        fn recover(
            &mut self,
            mode: TransferMode,
            e: SubmitError<LoaderBatch, Vec<PageEmbedding>>,
            clock: &mut StageClock,
        ) -> Result<Vec<Done>> {
            let oom = pagesight_model::error::is_out_of_memory(&e.error);
            let mut out: Vec<Done> = e.finished.into_iter().map(Self::done).collect();
            if !oom {
                return Err(e.error);
            }
            for b in e.unfinished {
                if b.pages.len() <= 1 {
                    return Err(e.error.context(
                        "the GPU ran out of memory on a single page; lower --max-visual-tokens",
                    ));
                }
                let mut pages = b.pages;
                let second = pages.split_off(pages.len() / 2);
                for half in [pages, second] {
                    let mut r = self.submit_blocking(mode, half, clock)?;
                    r.iter_mut().for_each(|d| d.split = true);
                    out.extend(r);
                }
            }
            Ok(out)
        }

        fn submit_blocking(
            &mut self,
            mode: TransferMode,
            pages: Vec<RenderedPage>,
            clock: &mut StageClock,
        ) -> Result<Vec<Done>> {
            let blocking = if mode == TransferMode::Pageable {
                mode
            } else {
                TransferMode::Sync
            };
            let batch = LoaderBatch {
                pages,
                cfg: self.pre.clone(),
            };
            match self
                .exec
                .submit(blocking, batch, &mut ColQwenBatch(self.model), clock)
            {
                Ok(f) => Ok(f.into_iter().map(Self::done).collect()),
                Err(e) => self.recover(blocking, e, clock),
            }
        }
    }

    impl BatchRunner for GpuRunner<'_> {
        fn submit(
            &mut self,
            mode: TransferMode,
            pages: Vec<RenderedPage>,
            clock: &mut StageClock,
        ) -> Result<Vec<Done>> {
            let batch = LoaderBatch {
                pages,
                cfg: self.pre.clone(),
            };
            match self
                .exec
                .submit(mode, batch, &mut ColQwenBatch(self.model), clock)
            {
                Ok(f) => Ok(f.into_iter().map(Self::done).collect()),
                Err(e) => self.recover(mode, e, clock),
            }
        }
        fn flush(&mut self, clock: &mut StageClock) -> Result<Vec<Done>> {
            match self.exec.flush(&mut ColQwenBatch(self.model), clock) {
                Ok(f) => Ok(f.into_iter().map(Self::done).collect()),
                Err(e) => self.recover(TransferMode::Sync, e, clock),
            }
        }
    }
}
