//! Settings shared by the CLI, the GUI and benchmarks. Every setting has a real default and a
//! parser so that `--flag value` on the command line and the GUI's widgets mean the same thing.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

pub use pagesight_loader::LoaderSettings;
pub use pagesight_model::device_set::DeviceSet;
pub use pagesight_model::settings::{
    best_precision, Compute, DType, DeviceChoice, LoraMode, ModelSettings, Quant,
    QuantCacheSetting, QuantScope,
};

/// How page pixels travel from host to GPU (see the GPU pipeline in ARCHITECTURE.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum TransferMode {
    /// Ordinary (pageable) memory, blocking copy. The only mode without CUDA.
    #[default]
    Pageable,
    /// Pinned memory, blocking copy, then compute (what the seed pipeline does).
    Sync,
    /// Pinned memory, non-blocking copy on a dedicated stream, overlapped with compute.
    Async,
    /// As `Async`, but 8-bit RGB crosses the bus and normalisation/patchify run on the GPU.
    AsyncU8,
}

impl TransferMode {
    pub const ALL: [TransferMode; 4] = [
        TransferMode::Pageable,
        TransferMode::Sync,
        TransferMode::Async,
        TransferMode::AsyncU8,
    ];
    pub fn name(self) -> &'static str {
        match self {
            TransferMode::Pageable => "pageable",
            TransferMode::Sync => "sync",
            TransferMode::Async => "async",
            TransferMode::AsyncU8 => "async-u8",
        }
    }
    /// Modes other than `Pageable` need pinned host memory and CUDA streams.
    pub fn needs_cuda(self) -> bool {
        self != TransferMode::Pageable
    }
    /// The best mode for a device: overlapped copies on CUDA, plain copies elsewhere.
    pub fn default_for(device: &candle_core::Device) -> TransferMode {
        if device.is_cuda() {
            TransferMode::Async
        } else {
            TransferMode::Pageable
        }
    }
    /// Refuses a mode the device cannot do, with the reason, instead of silently doing another.
    pub fn check_supported(self, device: &candle_core::Device) -> Result<()> {
        if self.needs_cuda() && !device.is_cuda() {
            bail!(
                "transfer mode '{}' needs a CUDA device (pinned memory and copy streams), but the model runs                  on the CPU{}; use --transfer pageable",
                self.name(),
                if cfg!(feature = "cuda") { "" } else { " (this build has no CUDA support)" }
            );
        }
        Ok(())
    }
}

/// Compute dtype, weight quantisation, its scope and how an adapter meets it: the settings
/// besides the checkpoint that shape an index's vectors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Precision {
    pub dtype: DType,
    pub quant: Quant,
    pub quant_scope: QuantScope,
    pub lora: LoraMode,
    pub compute: Compute,
}

impl Precision {
    /// The device's measured best (`best_precision`: `cuda`, and whether every card of the run
    /// has FP8 tensor cores) with the reference's adapter form.
    pub fn best_for(cuda: bool, fp8_cards: bool) -> Precision {
        let (dtype, quant, compute) = best_precision(cuda, fp8_cards);
        Precision {
            dtype,
            quant,
            quant_scope: QuantScope::default(),
            lora: LoraMode::default(),
            compute,
        }
    }

    /// These settings on `model`.
    pub fn apply_to(self, model: &mut ModelSettings) {
        model.dtype = self.dtype;
        model.quant = self.quant;
        model.quant_scope = self.quant_scope;
        model.lora = self.lora;
        model.compute = self.compute;
    }
}

/// The precision recorded in an index's provenance: what a run adding to it, or a query model
/// searching it, must use. An index without an adapter records no LoRA mode: the default then.
pub fn recorded_precision(p: &pagesight_index::Provenance) -> Result<Precision> {
    Ok(Precision {
        dtype: p.dtype.parse()?,
        quant: p.quant.parse()?,
        quant_scope: p.quant_scope.parse()?,
        lora: match p.lora_mode() {
            pagesight_index::provenance::NO_ADAPTER => LoraMode::default(),
            mode => mode.parse()?,
        },
        compute: p.compute().parse()?,
    })
}

/// The precision a run uses where no flag or choice says otherwise: the index's own when adding
/// to an existing one (`existing`), else the device's measured best (`best_precision`).
pub fn default_precision(
    existing: Option<&pagesight_index::Provenance>,
    cuda: bool,
    fp8_cards: bool,
) -> Result<Precision> {
    match existing {
        Some(p) => recorded_precision(p),
        None => Ok(Precision::best_for(cuda, fp8_cards)),
    }
}

/// Settings that may change between batches of a running ingest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LiveSettings {
    pub batch_size: usize,
    pub transfer: TransferMode,
}

impl Default for LiveSettings {
    fn default() -> Self {
        LiveSettings {
            batch_size: 4,
            transfer: TransferMode::Pageable,
        }
    }
}

impl LiveSettings {
    /// The device's measured best where no flag or choice says otherwise (`cuda`: the model
    /// runs on a CUDA GPU): there pinned buffers copied on their own stream and
    /// [`best_batch_size`]'s batch, elsewhere pageable memory (nothing to overlap).
    pub fn best_for(cuda: bool) -> LiveSettings {
        LiveSettings {
            batch_size: best_batch_size(cuda),
            transfer: if cuda {
                TransferMode::Async
            } else {
                TransferMode::Pageable
            },
        }
    }
}

/// Pages per batch where no flag or choice says otherwise. On a CUDA GPU 8: each NF4 layer is
/// dequantised into the GEMMs' scratch once per batch, and the adapter's thin products and every
/// other launch happen once per batch, so a larger batch spreads that fixed work over more pages;
/// the cost is activation memory, and a card that cannot hold a batch gets it halved by the
/// engine (`ModelError::OutOfMemory`). On the CPU 4: the products cost the same per page whatever
/// the batch, and a smaller one shows progress sooner.
pub fn best_batch_size(cuda: bool) -> usize {
    if cuda {
        8
    } else {
        4
    }
}

/// Everything an ingest run needs besides the folder and the index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct IngestSettings {
    pub model: ModelSettings,
    pub loader: LoaderSettings,
    pub live: LiveSettings,
    /// Commit every N pages or T seconds, whichever comes first.
    pub commit_every_pages: usize,
    pub commit_every_secs: f32,
    /// Remove files from the index that vanished from the folder.
    pub prune: bool,
    /// Stop after this many pages (benchmarks, A/B runs); None = all.
    pub max_pages: Option<usize>,
    /// The devices of a multi-device run, one model replica each; `model.device` is the first
    /// of them. None (and older saved settings): one replica, on `model.device`.
    #[serde(default)]
    pub devices: Option<DeviceSet>,
}

impl IngestSettings {
    pub fn with_defaults() -> Self {
        IngestSettings {
            commit_every_pages: 64,
            commit_every_secs: 10.0,
            ..Default::default()
        }
    }

    /// Runs on `set`: the model's device is its first; a list or `cuda:all` makes one model
    /// replica per device.
    pub fn set_devices(&mut self, set: &DeviceSet) {
        self.model.device = set.primary();
        self.devices = match set {
            DeviceSet::One(_) => None,
            several => Some(several.clone()),
        };
    }

    /// One device per model replica, the first being `model.device`.
    pub fn replica_devices(&self) -> Result<Vec<DeviceChoice>> {
        match &self.devices {
            None => Ok(vec![self.model.device]),
            Some(set) => set.resolve(),
        }
    }
}

pagesight_model::parse_by_name!(TransferMode, TransferMode::ALL, "transfer mode");

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_and_display_roundtrip() {
        for m in TransferMode::ALL {
            assert_eq!(m.to_string().parse::<TransferMode>().unwrap(), m);
        }
        let e = "warp".parse::<TransferMode>().unwrap_err().to_string();
        assert!(e.contains("async-u8"), "{e}");
    }
}
