//! What the model hands every layer when quantising after loading: the shared NF4 scratch, the
//! options, which layers stay dense, and a record of what each layer became.

use std::fmt;
use std::sync::{Arc, Mutex};

use candle_core::Device;

use super::nf4::NF4_BLOCKSIZE;
use super::scratch::Nf4Scratch;
use crate::settings::{Compute, Quant};

/// Which linear layers a quantisation applies to (a user setting, `--quant-scope`).
pub use crate::settings::QuantScope;

/// How a layer ended up stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerStorage {
    Dense,
    Nf4,
    /// candle GGML format (Q4K, or Q4_0 for rows not a multiple of 256).
    Ggml(candle_core::quantized::GgmlDType),
}

impl fmt::Display for LayerStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayerStorage::Dense => write!(f, "dense"),
            LayerStorage::Nf4 => write!(f, "nf4"),
            LayerStorage::Ggml(d) => write!(f, "{d:?}"),
        }
    }
}

/// One quantised (or deliberately kept) layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerRecord {
    pub name: String,
    /// `(out_features, in_features)`.
    pub shape: (usize, usize),
    pub requested: Quant,
    pub storage: LayerStorage,
    pub bytes_before: usize,
    pub bytes_after: usize,
    /// Why the layer is stored otherwise than requested, if it is.
    pub note: Option<String>,
}

/// Totals over a model's layers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct QuantSummary {
    pub layers: usize,
    pub nf4_layers: usize,
    pub ggml_layers: usize,
    pub dense_layers: usize,
    pub bytes_before: usize,
    pub bytes_after: usize,
}

#[derive(Debug)]
pub struct QuantContext {
    scratch: Arc<Nf4Scratch>,
    /// NF4 block size (bitsandbytes and transformers: 64).
    pub nf4_blocksize: usize,
    /// Double quantisation of NF4 absmax (`bnb_4bit_use_double_quant`).
    pub double_quant: bool,
    pub scope: QuantScope,
    records: Mutex<Vec<LayerRecord>>,
}

impl QuantContext {
    /// Defaults: block 64, double quantisation on, every linear layer but `custom_text_proj`,
    /// the NF4 layers' GEMMs in the compute dtype.
    pub fn new(device: &Device) -> Self {
        QuantContext {
            scratch: Nf4Scratch::new(device, Compute::Dtype),
            nf4_blocksize: NF4_BLOCKSIZE,
            double_quant: true,
            scope: QuantScope::AllLinear,
            records: Mutex::new(Vec::new()),
        }
    }

    pub fn with_double_quant(mut self, on: bool) -> Self {
        self.double_quant = on;
        self
    }

    /// The NF4 layers' GEMMs as `compute` says (before any layer is quantised: their scratch is
    /// the context's).
    pub fn with_compute(mut self, compute: Compute) -> Self {
        self.scratch = Nf4Scratch::new(self.scratch.device(), compute);
        self
    }

    /// Whether the NF4 layer called `name` computes in FP8 (the scratch's compute says so and
    /// the layer is one `fp8::layer_takes_fp8` names; an unnamed layer, outside the model's
    /// policy as in [`Self::quant_for`], always is).
    pub fn fp8_for(&self, name: &str) -> bool {
        self.scratch.compute() == Compute::Fp8
            && (name.is_empty() || super::fp8::layer_takes_fp8(name))
    }

    pub fn with_scope(mut self, scope: QuantScope) -> Self {
        self.scope = scope;
        self
    }

    pub fn scratch(&self) -> &Arc<Nf4Scratch> {
        &self.scratch
    }

    /// The quantisation a layer of this name gets under this context's scope: `None` for
    /// `custom_text_proj` and the patch embedding (a Conv3d in the reference, which bitsandbytes
    /// leaves alone), and for the vision tower when only the language model is quantised.
    pub fn quant_for(&self, name: &str, requested: Quant) -> Quant {
        let is_projection = name
            .split('.')
            .any(|part| part == "custom_text_proj" || part == "patch_embed");
        let is_vision = name.split('.').any(|part| part == "visual");
        if is_projection || (self.scope == QuantScope::LanguageModelOnly && is_vision) {
            Quant::None
        } else {
            requested
        }
    }

    pub(crate) fn record(&self, record: LayerRecord) {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(record);
    }

    /// Every layer quantised through this context so far, in order.
    pub fn records(&self) -> Vec<LayerRecord> {
        self.records
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn summary(&self) -> QuantSummary {
        let records = self.records.lock().unwrap_or_else(|p| p.into_inner());
        let mut s = QuantSummary::default();
        for r in records.iter() {
            s.layers += 1;
            match r.storage {
                LayerStorage::Dense => s.dense_layers += 1,
                LayerStorage::Nf4 => s.nf4_layers += 1,
                LayerStorage::Ggml(_) => s.ggml_layers += 1,
            }
            s.bytes_before += r.bytes_before;
            s.bytes_after += r.bytes_after;
        }
        s
    }
}
