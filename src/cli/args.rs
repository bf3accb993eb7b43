//! Flags shared by several subcommands, so `--model`, `--workers`, … mean the same everywhere.

use clap::Args;
use pagesight_engine::settings::{
    default_precision, Compute, DType, DeviceChoice, DeviceSet, IngestSettings, LiveSettings,
    LoaderSettings, LoraMode, ModelSettings, Precision, Quant, QuantCacheSetting, QuantScope,
    TransferMode,
};
use pagesight_index::Provenance;
use pagesight_model::hub::{DEFAULT_ADAPTER, DEFAULT_MODEL};
use pagesight_model::GpuKernels;
use std::path::PathBuf;

/// A folder to ingest, where its index goes, and how: what `pagesight ingest` and `bench journey`
/// take alike, so the journey runs the user's defaults.
#[derive(Args, Debug, Clone)]
pub struct IngestTargetArgs {
    /// Folder to walk for PDFs (recursively).
    pub folder: PathBuf,
    /// Index folder (default: one per corpus under the platform data dir).
    #[arg(long)]
    pub index: Option<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub pipeline: PipelineArgs,
}

impl IngestTargetArgs {
    /// The index folder: `--index`, else the corpus's default one.
    pub fn index_dir(&self) -> PathBuf {
        self.index
            .clone()
            .unwrap_or_else(|| pagesight_common::paths::default_index_for(&self.folder))
    }

    /// The settings for this folder's index: the index's own precision when it exists.
    pub fn settings(&self) -> anyhow::Result<(IngestSettings, bool)> {
        let existing = pagesight_index::Index::provenance_at(&self.index_dir())?;
        let settings = self
            .pipeline
            .ingest_settings(&self.model, existing.as_ref())?;
        Ok((settings, existing.is_some()))
    }
}

#[derive(Args, Debug, Clone)]
pub struct ModelArgs {
    /// Local snapshot dir, Hugging Face hub id (from the local cache, else downloaded into it),
    /// `random:tiny` or `random:3b` (random weights, for tests). Default: the index's own model
    /// when adding to an existing index, else the published ColQwen2.5
    /// (vidore/colqwen2.5-base with the vidore/colqwen2.5-v0.2 adapter).
    #[arg(long)]
    pub model: Option<String>,
    /// PEFT LoRA adapter dir or hub id (e.g. vidore/colqwen2.5-v0.2). Over quantised weights it
    /// runs beside them, as the reference computes it; dense weights merge it. Default: the
    /// model's own (the index's adapter, or the published one with the default model); none
    /// with another --model.
    #[arg(long)]
    pub adapter: Option<PathBuf>,
    /// Merge the adapter into the weights before quantising them: one GEMM per layer, but not
    /// the reference's model (default: the index's own when adding to an existing index, else
    /// unmerged).
    #[arg(long)]
    pub merge_lora: bool,
    /// cpu, cuda, cuda:N or auto; for an ingest also a list, one model replica per entry
    /// (cuda:0,2,3; cpu,cpu), or cuda:all (every GPU). Commands that run one model take the
    /// list's first device.
    #[arg(long, default_value = "auto")]
    pub device: DeviceSet,
    /// Compute dtype: f32, bf16 or f16 (default: the index's own when adding to an existing
    /// index, else the device's best: bf16 on a CUDA GPU, f32 on the CPU).
    #[arg(long)]
    pub dtype: Option<DType>,
    /// Weight quantisation: none, nf4 or q4k (default: the index's own when adding to an
    /// existing index, else the device's best: nf4 on a CUDA GPU, none on the CPU).
    #[arg(long)]
    pub quant: Option<Quant>,
    /// Which linear layers --quant applies to: all (language model and vision tower, as
    /// bitsandbytes does) or lm (the language model only; the vision tower stays dense).
    /// Default: the index's own, else all.
    #[arg(long)]
    pub quant_scope: Option<QuantScope>,
    /// The NF4 layers' GEMMs: dtype (in the compute dtype, bf16 on a GPU; also `bf16`) or fp8
    /// (W4A8: weights to FP8 E4M3 per output channel, activations per token, on FP8 tensor
    /// cores, sm_89 and later; on the CPU an f32 emulation, for checking). Default: the index's
    /// own when adding to an existing index, else dtype.
    #[arg(long)]
    pub compute: Option<Compute>,
    /// Upper bound on visual tokens per page (default: the index's own when adding to an
    /// existing index, else the checkpoint's, from its preprocessor_config.json).
    #[arg(long)]
    pub max_visual_tokens: Option<usize>,
    #[command(flatten)]
    pub quant_cache: QuantCacheArgs,
    #[command(flatten)]
    pub gpu_kernels: GpuKernelArgs,
}

/// Our own CUDA kernels, on unless turned off (to compare with candle's own ops).
#[derive(Args, Debug, Clone, Default)]
pub struct GpuKernelArgs {
    /// Run candle's op chains instead of the fused elementwise and flash-attention kernels.
    #[arg(long)]
    pub no_fused_kernels: bool,
    /// Run linear layers as candle's matmul plus a bias pass instead of cuBLASLt.
    #[arg(long)]
    pub no_cublaslt: bool,
    /// Dequantise NF4 weights before a query's few rows instead of multiplying from the codes.
    #[arg(long)]
    pub no_nf4_rows: bool,
    /// With `--compute fp8`: the kernels before an FP8 GEMM (the vision tower's norm, both
    /// towers' SiLU·mul) write bf16 rows that the GEMM quantises, instead of its codes.
    #[arg(long)]
    pub no_fp8_codes: bool,
}

impl GpuKernelArgs {
    pub fn setting(&self) -> GpuKernels {
        GpuKernels {
            fused: !self.no_fused_kernels,
            cublaslt: !self.no_cublaslt,
            nf4_rows: !self.no_nf4_rows,
            fp8_codes: !self.no_fp8_codes,
        }
    }
}

/// Where `--quant` keeps quantised weights between runs.
#[derive(Args, Debug, Clone, Default)]
pub struct QuantCacheArgs {
    /// Folder of the quantised-weight cache (default: `quant-cache` in the data dir, next to the
    /// indexes; `PAGESIGHT_QUANT_CACHE` overrides it).
    #[arg(long, value_name = "DIR", conflicts_with = "no_quant_cache")]
    pub quant_cache: Option<PathBuf>,
    /// Quantise at every load instead of reading (and writing) the quantised-weight cache.
    #[arg(long)]
    pub no_quant_cache: bool,
}

impl QuantCacheArgs {
    pub fn setting(&self) -> QuantCacheSetting {
        match (&self.quant_cache, self.no_quant_cache) {
            (_, true) => QuantCacheSetting::Off,
            (Some(dir), false) => QuantCacheSetting::Dir(dir.clone()),
            (None, false) => QuantCacheSetting::Default,
        }
    }
}

impl ModelArgs {
    /// The settings for a new index, or for adding to `existing` (the index's provenance): what
    /// a flag does not say comes from the index, else from the device (`default_precision`).
    pub fn settings_for(&self, existing: Option<&Provenance>) -> anyhow::Result<ModelSettings> {
        let precision = default_precision(existing, self.device.will_use_cuda(), self.fp8_cards())?;
        let mut settings = self.with_precision(precision, existing);
        if settings.max_visual_tokens.is_none() {
            settings.max_visual_tokens = existing.map(|p| p.max_visual_tokens);
        }
        Ok(settings)
    }

    /// The settings with nothing recorded to follow: flags, else the device's best.
    pub fn settings(&self) -> ModelSettings {
        self.with_precision(
            Precision::best_for(self.device.will_use_cuda(), self.fp8_cards()),
            None,
        )
    }

    /// Whether every card the run uses has FP8 tensor cores (the driver is asked; never on the
    /// CPU).
    fn fp8_cards(&self) -> bool {
        self.device.will_use_cuda()
            && pagesight_engine::cuda_cards::fp8_for(
                &self.device,
                &pagesight_engine::cuda_cards::list(),
            )
    }

    /// The checkpoint and adapter: the flags; without --model the index's own (`existing`),
    /// else the published model.
    fn checkpoint(&self, existing: Option<&Provenance>) -> (String, Option<PathBuf>) {
        match (&self.model, existing) {
            (Some(m), _) => (m.clone(), self.adapter.clone()),
            (None, Some(p)) => (
                p.model.clone(),
                self.adapter
                    .clone()
                    .or_else(|| p.adapter.as_ref().map(PathBuf::from)),
            ),
            (None, None) => (
                DEFAULT_MODEL.to_string(),
                Some(
                    self.adapter
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ADAPTER.into()),
                ),
            ),
        }
    }

    /// The flags, with `precision` for the precision flags not given and `existing`'s model
    /// when --model is not.
    fn with_precision(&self, precision: Precision, existing: Option<&Provenance>) -> ModelSettings {
        let (model, adapter) = self.checkpoint(existing);
        ModelSettings {
            model,
            adapter,
            device: self.device.primary(),
            dtype: self.dtype.unwrap_or(precision.dtype),
            quant: self.quant.unwrap_or(precision.quant),
            quant_scope: self.quant_scope.unwrap_or(precision.quant_scope),
            lora: if self.merge_lora {
                LoraMode::Merged
            } else {
                precision.lora
            },
            compute: self.compute.unwrap_or(precision.compute),
            max_visual_tokens: self.max_visual_tokens,
            quant_cache: self.quant_cache.setting(),
            gpu_kernels: self.gpu_kernels.setting(),
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct PipelineArgs {
    /// Render worker processes (default: number of cores).
    #[arg(long)]
    pub workers: Option<usize>,
    /// Rendered pages buffered ahead of the model.
    #[arg(long, default_value_t = 16)]
    pub prefetch: usize,
    /// Render resolution before the model's resize.
    #[arg(long, default_value_t = 144.0)]
    pub dpi: f32,
    /// Pages per model batch (default: 8 on a GPU, else 4).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Host→GPU transfer: pageable, sync, async or async-u8 (default: async on a GPU, else pageable).
    #[arg(long)]
    pub transfer: Option<TransferMode>,
    /// Per-page render timeout in seconds.
    #[arg(long, default_value_t = 60.0)]
    pub page_timeout: f32,
    /// Cap on rendered pixels per page, in megapixels: bigger page boxes render at reduced
    /// resolution (bounds each render worker's memory).
    #[arg(long, default_value_t = 40.0)]
    pub max_render_megapixels: f64,
    #[command(flatten)]
    pub worker_memory: WorkerMemoryArgs,
}

/// The render workers' memory cap, for every command that starts render workers.
#[derive(Args, Debug, Clone, Default)]
pub struct WorkerMemoryArgs {
    /// Cap on each render worker's memory in MB (default: 1 GiB + 16 bytes per pixel of the
    /// render cap); a page needing more fails instead of the machine swapping.
    #[arg(long, value_name = "MB")]
    pub worker_memory_mb: Option<u64>,
}

impl WorkerMemoryArgs {
    /// Sets the cap in `loader` when one was given (else keeps the derived default).
    pub fn apply(&self, loader: &mut LoaderSettings) {
        if let Some(mb) = self.worker_memory_mb {
            loader.worker_memory_mb = Some(mb.max(1));
        }
    }
}

impl PipelineArgs {
    pub fn loader(&self) -> LoaderSettings {
        let d = LoaderSettings::default();
        let mut s = LoaderSettings {
            workers: self.workers.unwrap_or(d.workers).max(1),
            prefetch: self.prefetch.max(1),
            dpi: self.dpi,
            page_timeout_secs: self.page_timeout,
            max_render_pixels: (self.max_render_megapixels.max(0.01) * 1e6) as u64,
            ..d
        };
        self.worker_memory.apply(&mut s);
        s
    }

    /// The flags, with the device's best for those not given.
    pub fn live(&self, device: DeviceChoice) -> LiveSettings {
        let best = LiveSettings::best_for(device.will_use_cuda());
        LiveSettings {
            batch_size: self.batch_size.unwrap_or(best.batch_size).max(1),
            transfer: self.transfer.unwrap_or(best.transfer),
        }
    }

    /// Settings for ingesting into an index made with `existing` (None: a new index).
    pub fn ingest_settings(
        &self,
        model: &ModelArgs,
        existing: Option<&Provenance>,
    ) -> anyhow::Result<IngestSettings> {
        let mut settings = IngestSettings {
            model: model.settings_for(existing)?,
            loader: self.loader(),
            live: self.live(model.device.primary()),
            ..IngestSettings::with_defaults()
        };
        settings.set_devices(&model.device);
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Pipeline {
        #[command(flatten)]
        args: PipelineArgs,
    }

    fn live(argv: &[&str], device: DeviceChoice) -> LiveSettings {
        let argv = std::iter::once("pagesight").chain(argv.iter().copied());
        Pipeline::parse_from(argv).args.live(device)
    }

    #[test]
    fn batch_and_transfer_follow_the_device_unless_given() {
        assert_eq!(live(&[], DeviceChoice::Cpu), LiveSettings::best_for(false));
        assert_eq!(live(&[], DeviceChoice::Cpu).batch_size, 4);
        let given = live(
            &["--batch-size", "3", "--transfer", "sync"],
            DeviceChoice::Cpu,
        );
        assert_eq!((given.batch_size, given.transfer), (3, TransferMode::Sync));
        // Where the build can use CUDA, the GPU's best: batch 8, async.
        let cuda = DeviceChoice::Cuda(0);
        assert_eq!(
            live(&[], cuda),
            LiveSettings::best_for(cuda.will_use_cuda())
        );
        assert_eq!(LiveSettings::best_for(true).batch_size, 8);
        assert_eq!(LiveSettings::best_for(true).transfer, TransferMode::Async);
    }
}
