//! Settings shared by the CLI, the GUI and benchmarks. Every setting has a real default and a
//! parser so that `--flag value` on the command line and the GUI's widgets mean the same thing.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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

/// Weight quantisation applied at load time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quant {
    #[default]
    None,
    Nf4,
    Q4k,
}

impl Quant {
    pub fn name(self) -> &'static str {
        match self {
            Quant::None => "none",
            Quant::Nf4 => "nf4",
            Quant::Q4k => "q4k",
        }
    }
}

/// Which linear layers `quant` applies to (`--quant-scope`). No effect unquantised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum QuantScope {
    /// Every linear layer of the language model and the vision tower (merger included), as
    /// transformers' bitsandbytes loading does; `custom_text_proj` stays dense.
    #[default]
    #[serde(rename = "all")]
    AllLinear,
    /// Only the language model; the vision tower (`visual.*`) stays dense.
    #[serde(rename = "lm")]
    LanguageModelOnly,
}

impl QuantScope {
    pub const ALL: [QuantScope; 2] = [QuantScope::AllLinear, QuantScope::LanguageModelOnly];
    pub fn name(self) -> &'static str {
        match self {
            QuantScope::AllLinear => "all",
            QuantScope::LanguageModelOnly => "lm",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    #[default]
    F32,
    Bf16,
    F16,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::Bf16 => "bf16",
            DType::F16 => "f16",
        }
    }
    pub fn candle(self) -> candle_core::DType {
        match self {
            DType::F32 => candle_core::DType::F32,
            DType::Bf16 => candle_core::DType::BF16,
            DType::F16 => candle_core::DType::F16,
        }
    }
}

/// `cpu`, `cuda:N`, or `auto` (CUDA 0 when built with CUDA and a device is present, else CPU).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    #[default]
    Auto,
    Cpu,
    Cuda(usize),
}

impl DeviceChoice {
    /// Opens the device. Asking for CUDA in a build without the `cuda` feature is an error that
    /// says so, never a silent fallback to the CPU.
    pub fn open(self) -> Result<candle_core::Device> {
        match self {
            DeviceChoice::Cpu => Ok(candle_core::Device::Cpu),
            DeviceChoice::Cuda(n) => {
                if !cfg!(feature = "cuda") {
                    bail!(
                        "device cuda:{n} requested, but this pagesight was built without the `cuda` \
                         feature; rebuild with `cargo build --release --features cuda` or use --device cpu"
                    );
                }
                Ok(candle_core::Device::new_cuda(n)?)
            }
            DeviceChoice::Auto => {
                if cfg!(feature = "cuda") {
                    if let Ok(d) = candle_core::Device::new_cuda(0) {
                        return Ok(d);
                    }
                }
                Ok(candle_core::Device::Cpu)
            }
        }
    }
}

macro_rules! parse_by_name {
    ($t:ty, $all:expr, $what:literal) => {
        impl FromStr for $t {
            type Err = anyhow::Error;
            fn from_str(s: &str) -> Result<Self> {
                let s = s.trim().to_ascii_lowercase();
                for v in $all {
                    if v.name() == s {
                        return Ok(v);
                    }
                }
                let names: Vec<&str> = $all.iter().map(|v| v.name()).collect();
                bail!(
                    "unknown {} '{}': expected one of {}",
                    $what,
                    s,
                    names.join(", ")
                )
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
parse_by_name!(TransferMode, TransferMode::ALL, "transfer mode");
parse_by_name!(Quant, [Quant::None, Quant::Nf4, Quant::Q4k], "quantisation");
parse_by_name!(QuantScope, QuantScope::ALL, "quantisation scope");
parse_by_name!(DType, [DType::F32, DType::Bf16, DType::F16], "dtype");

impl FromStr for DeviceChoice {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:").map(str::parse::<usize>) {
                Some(Ok(n)) => Ok(DeviceChoice::Cuda(n)),
                _ => bail!("unknown device '{s}': expected auto, cpu, cuda or cuda:N"),
            },
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Which model makes the vectors: a local snapshot dir, a hub id (resolved from the local Hugging
/// Face cache), or `random:tiny` / `random:3b` (deterministic random weights; rankings meaningless).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelSettings {
    pub model: String,
    pub adapter: Option<PathBuf>,
    pub device: DeviceChoice,
    pub dtype: DType,
    pub quant: Quant,
    /// Which layers `quant` applies to (absent in older saved settings: all).
    #[serde(default)]
    pub quant_scope: QuantScope,
    /// Upper bound on visual tokens per page (max_pixels = this · 28 · 28).
    pub max_visual_tokens: usize,
    /// Where `quant` keeps the quantised weights between runs (absent in older saved settings).
    #[serde(default)]
    pub quant_cache: QuantCacheSetting,
}

impl ModelSettings {
    /// The scope that shapes the vectors: unquantised, every scope gives the same model, so
    /// it is recorded as the default and indexes made with either accept each other's vectors.
    pub fn effective_quant_scope(&self) -> QuantScope {
        if self.quant == Quant::None {
            QuantScope::default()
        } else {
            self.quant_scope
        }
    }
}

/// Where quantised weights (`--quant nf4|q4k`) are cached, so that a later load of the same
/// model with the same settings reads them instead of quantising again.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum QuantCacheSetting {
    /// `paths::quant_cache_dir()`: next to the default indexes, unless `PAGESIGHT_QUANT_CACHE`
    /// says `off` or names another folder.
    #[default]
    Default,
    /// Quantise at every load (`--no-quant-cache`).
    Off,
    /// This folder (`--quant-cache DIR`).
    Dir(PathBuf),
}

impl QuantCacheSetting {
    /// The folder to use, or None when caching is off.
    pub fn dir(&self) -> Option<PathBuf> {
        match self {
            QuantCacheSetting::Default => crate::paths::quant_cache_dir(),
            QuantCacheSetting::Off => None,
            QuantCacheSetting::Dir(d) => Some(d.clone()),
        }
    }
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            model: "random:tiny".into(),
            adapter: None,
            device: DeviceChoice::Auto,
            dtype: DType::F32,
            quant: Quant::None,
            quant_scope: QuantScope::AllLinear,
            max_visual_tokens: 768,
            quant_cache: QuantCacheSetting::Default,
        }
    }
}

/// Loader settings: rendering and the prefetching pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoaderSettings {
    /// Number of render worker processes (default: number of cores).
    pub workers: usize,
    /// Rendered pages buffered ahead of the model (bounded queue; backpressure beyond it).
    pub prefetch: usize,
    /// Render resolution before the model's smart_resize.
    pub dpi: f32,
    /// Per-page render timeout; a worker over it is killed and replaced, the file marked failed.
    pub page_timeout_secs: f32,
    /// Cap on rendered pixels per page (memory bound for huge page boxes).
    pub max_render_pixels: u64,
    /// Path of the executable that runs render workers (`<exe> __render-worker`). Defaults to the
    /// current executable; tests point it at the built `pagesight` binary.
    pub worker_exe: Option<PathBuf>,
}

impl Default for LoaderSettings {
    fn default() -> Self {
        LoaderSettings {
            workers: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            prefetch: 16,
            dpi: 144.0,
            page_timeout_secs: 60.0,
            max_render_pixels: 40_000_000,
            worker_exe: None,
        }
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
}

impl IngestSettings {
    pub fn with_defaults() -> Self {
        IngestSettings {
            commit_every_pages: 64,
            commit_every_secs: 10.0,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn parse_and_display_roundtrip() {
        for m in TransferMode::ALL {
            assert_eq!(m.to_string().parse::<TransferMode>().unwrap(), m);
        }
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        let e = "warp".parse::<TransferMode>().unwrap_err().to_string();
        assert!(e.contains("async-u8"), "{e}");
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        for q in QuantScope::ALL {
            assert_eq!(q.to_string().parse::<QuantScope>().unwrap(), q);
        }
        let e = "vision".parse::<QuantScope>().unwrap_err().to_string();
        assert!(e.contains("all, lm"), "{e}");
    }
    #[test]
    fn model_settings_saved_before_quant_scope_load_as_all() {
        let mut v = serde_json::to_value(ModelSettings {
            quant: Quant::Nf4,
            quant_scope: QuantScope::LanguageModelOnly,
            ..ModelSettings::default()
        })
        .unwrap();
        assert_eq!(v["quant_scope"], "lm");
        let back: ModelSettings = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.effective_quant_scope(), QuantScope::LanguageModelOnly);
        v.as_object_mut().unwrap().remove("quant_scope");
        let old: ModelSettings = serde_json::from_value(v).unwrap();
        assert_eq!(old.quant_scope, QuantScope::AllLinear);
        let unquantised = ModelSettings {
            quant_scope: QuantScope::LanguageModelOnly,
            ..ModelSettings::default()
        };
        assert_eq!(unquantised.effective_quant_scope(), QuantScope::AllLinear);
    }
    #[test]
    fn cuda_without_feature_is_refused_with_reason() {
        if cfg!(feature = "cuda") {
            return;
        }
        let e = DeviceChoice::Cuda(0).open().unwrap_err().to_string();
        assert!(e.contains("without the `cuda` feature"), "{e}");
    }
}
