//! The model's settings: which checkpoint, on which device, in which precision and
//! quantisation, and where quantised weights are cached. Each has a real default and a parser, so
//! `--flag value` on the command line and the GUI's widgets mean the same thing.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

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

/// How a LoRA adapter meets quantised weights (`--merge-lora`). No effect without an adapter,
/// nor on the layers that stay dense, where merging is exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LoraMode {
    /// The reference's form (transformers' 4-bit loading, then PEFT): the base weights are
    /// quantised and the adapter runs beside them in the compute dtype,
    /// `y = Q(W)·x + (α/r)·B·(A·x)`.
    #[default]
    Unmerged,
    /// The adapter is merged first and the sum quantised, `y = Q(W + (α/r)·B·A)·x`: one GEMM
    /// per layer, but a different model from the reference's.
    Merged,
}

impl LoraMode {
    pub const ALL: [LoraMode; 2] = [LoraMode::Unmerged, LoraMode::Merged];
    pub fn name(self) -> &'static str {
        match self {
            LoraMode::Unmerged => "unmerged",
            LoraMode::Merged => "merged",
        }
    }
}

/// The arithmetic of the quantised layers' GEMMs (`--compute`). No effect on dense layers, nor
/// without NF4.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compute {
    /// In the compute dtype (`--dtype`; bf16 on a GPU): the NF4 weight dequantised to it.
    #[default]
    Dtype,
    /// W4A8: the NF4 weight dequantised to FP8 E4M3 with a scale per output channel, the
    /// activations quantised to E4M3 with a scale per token, products summed in f32 — on FP8
    /// tensor cores (sm_89 and later). On the CPU the same rounding is emulated in f32: how the
    /// GPU's results are checked, not a fast path.
    Fp8,
}

impl Compute {
    pub const ALL: [Compute; 2] = [Compute::Dtype, Compute::Fp8];
    pub fn name(self) -> &'static str {
        match self {
            Compute::Dtype => "dtype",
            Compute::Fp8 => "fp8",
        }
    }
}

impl FromStr for Compute {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            // The compute dtype's own GEMMs, by its name too (`--compute bf16`).
            "dtype" | "bf16" | "f16" | "f32" => Ok(Compute::Dtype),
            "fp8" => Ok(Compute::Fp8),
            other => bail!("unknown compute '{other}': expected dtype (or bf16) or fp8"),
        }
    }
}

impl fmt::Display for Compute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
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
    /// Whether the model will run on a CUDA GPU: a CUDA build, not `cpu`, and (for `auto`) a
    /// device present. Decides the defaults (`best_precision`, the transfer mode).
    pub fn will_use_cuda(self) -> bool {
        match self {
            DeviceChoice::Cpu => false,
            DeviceChoice::Cuda(_) => cfg!(feature = "cuda"),
            DeviceChoice::Auto => cfg!(feature = "cuda") && candle_core::utils::cuda_is_available(),
        }
    }

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

/// `FromStr` (case-insensitive, listing the choices on error) and `Display` for a settings enum
/// from its `name()` and the list of its values, so the command line and the GUI parse alike.
#[macro_export]
macro_rules! parse_by_name {
    ($t:ty, $all:expr, $what:literal) => {
        impl ::std::str::FromStr for $t {
            type Err = ::anyhow::Error;
            fn from_str(s: &str) -> ::anyhow::Result<Self> {
                let s = s.trim().to_ascii_lowercase();
                for v in $all {
                    if v.name() == s {
                        return Ok(v);
                    }
                }
                let names: Vec<&str> = $all.iter().map(|v| v.name()).collect();
                ::anyhow::bail!(
                    "unknown {} '{}': expected one of {}",
                    $what,
                    s,
                    names.join(", ")
                )
            }
        }
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
parse_by_name!(Quant, [Quant::None, Quant::Nf4, Quant::Q4k], "quantisation");
parse_by_name!(QuantScope, QuantScope::ALL, "quantisation scope");
parse_by_name!(LoraMode, LoraMode::ALL, "LoRA mode");
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
    /// How the adapter meets quantised weights (absent in older saved settings: unmerged).
    #[serde(default)]
    pub lora: LoraMode,
    /// The quantised layers' arithmetic (absent in older saved settings: the dtype's).
    #[serde(default)]
    pub compute: Compute,
    /// Upper bound on visual tokens per page (max_pixels = this · 28 · 28); None: the
    /// checkpoint's own budget (its `preprocessor_config.json`), as colpali-engine takes it.
    #[serde(default)]
    pub max_visual_tokens: Option<usize>,
    /// Where `quant` keeps the quantised weights between runs (absent in older saved settings).
    #[serde(default)]
    pub quant_cache: QuantCacheSetting,
    /// Which of our own CUDA kernels the forward pass uses (absent in older saved settings: all).
    #[serde(default)]
    pub gpu_kernels: GpuKernels,
}

/// Our own kernels on a CUDA device with bf16 activations, each replacing a chain of candle ops;
/// off, candle's ops run instead — to compare speed or results with candle's own. All on by
/// default. They apply to the whole process: the model loaded last sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GpuKernels {
    /// Fused elementwise steps and tiled flash attention (`gpu::fused`).
    pub fused: bool,
    /// Linear layers on cuBLASLt with the bias in the GEMM's epilogue.
    pub cublaslt: bool,
    /// A few rows (a query) times an NF4 weight straight from its codes on tensor cores,
    /// instead of dequantising the weight first.
    pub nf4_rows: bool,
    /// Under `Compute::Fp8`, the kernels that make an FP8 GEMM's input (the vision tower's
    /// RMSNorm before its MLP, the SiLU·mul of both towers) write it as that GEMM's codes instead
    /// of bf16 rows the GEMM quantises (the same codes, bit for bit). Absent from settings saved
    /// before it: on.
    #[serde(default = "on")]
    pub fp8_codes: bool,
}

fn on() -> bool {
    true
}

impl Default for GpuKernels {
    fn default() -> Self {
        GpuKernels {
            fused: true,
            cublaslt: true,
            nf4_rows: true,
            fp8_codes: true,
        }
    }
}

impl ModelSettings {
    /// How an adapter meets the weights under these settings: merged when nothing is
    /// quantised (merging is exact there), else as `lora` says.
    pub fn lora_in_effect(&self) -> LoraMode {
        match self.quant {
            Quant::None => LoraMode::Merged,
            _ => self.lora,
        }
    }

    /// The quantised layers' arithmetic in force: fp8 applies to NF4 weights only.
    pub fn compute_in_effect(&self) -> Compute {
        match self.quant {
            Quant::Nf4 => self.compute,
            _ => Compute::Dtype,
        }
    }

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
            QuantCacheSetting::Default => pagesight_common::paths::quant_cache_dir(),
            QuantCacheSetting::Off => None,
            QuantCacheSetting::Dir(d) => Some(d.clone()),
        }
    }
}

/// The compute dtype, quantisation and GEMM arithmetic a run uses when none is asked for: the
/// measured best for the device. On a CUDA GPU bf16 with NF4 weights (tensor-core GEMMs, a
/// quarter of the weight memory, several times the pages/s of f32), the MLPs' GEMMs in FP8
/// where every card has FP8 tensor cores (`fp8_cards`: faster, and within the fidelity goal,
/// `docs/benchmarks.md`); on the CPU f32 unquantised (activations are f32 there whatever the
/// weights, and NF4 would add a dequantisation to every product).
pub fn best_precision(cuda: bool, fp8_cards: bool) -> (DType, Quant, Compute) {
    match (cuda, fp8_cards) {
        (true, true) => (DType::Bf16, Quant::Nf4, Compute::Fp8),
        (true, false) => (DType::Bf16, Quant::Nf4, Compute::Dtype),
        (false, _) => (DType::F32, Quant::None, Compute::Dtype),
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
            lora: LoraMode::Unmerged,
            compute: Compute::Dtype,
            max_visual_tokens: None,
            quant_cache: QuantCacheSetting::Default,
            gpu_kernels: GpuKernels::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_kernels_saved_before_fp8_codes_read_with_it_on() {
        let old = r#"{"fused": true, "cublaslt": false, "nf4_rows": true}"#;
        let k: GpuKernels = serde_json::from_str(old).unwrap();
        assert!(k.fused && !k.cublaslt && k.nf4_rows && k.fp8_codes);
        assert!(GpuKernels::default().fp8_codes);
        let round: GpuKernels = serde_json::from_str(
            &serde_json::to_string(&GpuKernels {
                fp8_codes: false,
                ..k
            })
            .unwrap(),
        )
        .unwrap();
        assert!(!round.fp8_codes);
    }
    #[test]
    fn parse_and_display_roundtrip() {
        assert_eq!(
            "cuda:1".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(1)
        );
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
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
