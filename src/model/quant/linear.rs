//! A linear layer whose weight may be dense or quantised.

use anyhow::{bail, Result};
use candle_core::{Module, Tensor};

use super::context::{LayerRecord, LayerStorage, QuantContext};
use super::kquant::{kquant_format, KQuantLinear};
use super::lora_linear::LoraLinear;
use super::nf4::Nf4Weight;
use super::nf4_linear::Nf4Linear;
use super::stacked_linear::StackedLinear;
use crate::settings::Quant;

/// `y = x · Wᵀ + b`. The model builds every linear layer as `QLinear::dense` and then asks for
/// the quantisation it wants; forward is the same call whatever the storage.
#[derive(Clone, Debug)]
pub enum QLinear {
    Dense(candle_nn::Linear),
    Nf4(Nf4Linear),
    Q4k(KQuantLinear),
    /// A quantised layer with its LoRA adapter beside it, unmerged (`LoraMode::Unmerged`).
    Lora(LoraLinear),
    /// Quantised layers that read the same input, computed as one (`QLinear::stack`).
    Stack(StackedLinear),
}

fn tensor_bytes(t: &Tensor) -> usize {
    t.elem_count() * t.dtype().size_in_bytes()
}

impl QLinear {
    /// `weight` is `[out, in]`, `bias` `[out]`.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        QLinear::Dense(candle_nn::Linear::new(weight, bias))
    }

    /// `(out_features, in_features)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            QLinear::Dense(l) => l.weight().dims2().unwrap_or((0, 0)),
            QLinear::Nf4(l) => l.weight().shape,
            QLinear::Q4k(l) => l.shape(),
            QLinear::Lora(l) => l.base().shape(),
            QLinear::Stack(l) => l.shape(),
        }
    }

    pub fn in_features(&self) -> usize {
        self.shape().1
    }

    pub fn out_features(&self) -> usize {
        self.shape().0
    }

    fn bias(&self) -> Option<&Tensor> {
        match self {
            QLinear::Dense(l) => l.bias(),
            QLinear::Nf4(l) => l.bias(),
            QLinear::Q4k(l) => l.bias(),
            QLinear::Lora(l) => l.base().bias(),
            QLinear::Stack(l) => l.bias(),
        }
    }

    /// Bytes of weight storage, bias included (kept in its dtype).
    pub fn weight_bytes(&self) -> usize {
        match self {
            QLinear::Lora(l) => return l.base().weight_bytes() + l.factor_bytes(),
            QLinear::Stack(l) => return l.weight_bytes(),
            _ => {}
        }
        let bias = self.bias().map(tensor_bytes).unwrap_or(0);
        bias + match self {
            QLinear::Dense(l) => tensor_bytes(l.weight()),
            QLinear::Nf4(l) => l.weight().bytes(),
            QLinear::Q4k(l) => l.quantized_bytes(),
            QLinear::Lora(_) | QLinear::Stack(_) => 0,
        }
    }

    pub fn storage(&self) -> LayerStorage {
        match self {
            QLinear::Dense(_) => LayerStorage::Dense,
            QLinear::Nf4(_) => LayerStorage::Nf4,
            QLinear::Q4k(l) => LayerStorage::Ggml(l.format()),
            QLinear::Lora(l) => l.base().storage(),
            QLinear::Stack(l) => l.parts()[0].storage(),
        }
    }

    /// The layer without its LoRA adapter (itself when it has none): what the quantised-weight
    /// cache stores.
    pub fn base(&self) -> &QLinear {
        match self {
            QLinear::Lora(l) => l.base(),
            other => other,
        }
    }

    /// Converts a dense layer to `quant` (`Quant::None` keeps it). Unnamed: the context's layer
    /// policy is not applied; use [`Self::quantize_named`] from the model.
    pub fn quantize(self, quant: Quant, ctx: &QuantContext) -> Result<QLinear> {
        self.convert("", quant, ctx)
    }

    /// Converts the layer called `name` (its checkpoint key without `.weight`, e.g.
    /// `model.layers.3.mlp.down_proj` or `visual.merger.mlp.0`) to what `ctx` decides for
    /// `requested`, and records the outcome in `ctx`.
    pub fn quantize_named(
        self,
        name: &str,
        requested: Quant,
        ctx: &QuantContext,
    ) -> Result<QLinear> {
        let quant = ctx.quant_for(name, requested);
        let bytes_before = self.weight_bytes();
        let layer = self.convert(name, quant, ctx)?;
        layer.record_in(ctx, name, requested, bytes_before);
        Ok(layer)
    }

    /// Records in `ctx` that the layer `name`, asked to be `requested` and `bytes_before` bytes
    /// when dense, is now `self` (quantised here or read back from the quantised-weight cache).
    pub fn record_in(&self, ctx: &QuantContext, name: &str, requested: Quant, bytes_before: usize) {
        let shape = self.shape();
        let storage = self.storage();
        let wanted = match requested {
            Quant::None => LayerStorage::Dense,
            Quant::Nf4 => LayerStorage::Nf4,
            Quant::Q4k => LayerStorage::Ggml(candle_core::quantized::GgmlDType::Q4K),
        };
        let note = if storage == wanted {
            None
        } else if ctx.quant_for(name, requested) != requested {
            Some("kept dense by the layer policy".to_string())
        } else {
            Some(format!(
                "in_features {} is not a multiple of 256: stored {storage}",
                shape.1
            ))
        };
        ctx.record(LayerRecord {
            name: name.to_string(),
            shape,
            requested,
            storage,
            bytes_before,
            bytes_after: self.weight_bytes(),
            note,
        });
    }

    fn convert(self, name: &str, quant: Quant, ctx: &QuantContext) -> Result<QLinear> {
        let QLinear::Dense(linear) = self else {
            if quant == Quant::None {
                return Ok(self);
            }
            bail!(
                "layer {name:?} is already quantised ({}); quantise dense layers only",
                self.storage()
            );
        };
        let bias = linear.bias().cloned();
        match planned_storage(quant, linear.weight().dim(1)?) {
            LayerStorage::Dense => Ok(QLinear::Dense(linear)),
            LayerStorage::Nf4 => {
                let w = Nf4Weight::quantize_tensor(
                    linear.weight(),
                    ctx.nf4_blocksize,
                    ctx.double_quant,
                )
                .map_err(|e| e.context(format!("quantising layer {name:?} to NF4")))?;
                Ok(QLinear::Nf4(Nf4Linear::new(
                    w,
                    bias,
                    ctx.scratch().clone(),
                    ctx.fp8_for(name),
                )))
            }
            LayerStorage::Ggml(format) => Ok(QLinear::Q4k(
                KQuantLinear::new(linear.weight(), bias, format)
                    .map_err(|e| e.context(format!("quantising layer {name:?} to {format:?}")))?,
            )),
        }
    }
}

/// How a layer of `in_features` inputs is stored under `quant` (after the context's layer
/// policy, see [`QuantContext::quant_for`]): the one decision both quantising and the
/// quantised-weight cache follow.
pub fn planned_storage(quant: Quant, in_features: usize) -> LayerStorage {
    match quant {
        Quant::None => LayerStorage::Dense,
        Quant::Nf4 => LayerStorage::Nf4,
        Quant::Q4k => kquant_format(in_features)
            .map(LayerStorage::Ggml)
            .unwrap_or(LayerStorage::Dense),
    }
}

impl QLinear {
    /// Asks for the weight's host memory in huge pages ([`super::huge_pages`]): what the CPU
    /// query kernels stream. Returns the bytes advised (0 on a GPU).
    pub fn advise_huge_pages(&self) -> usize {
        match self {
            QLinear::Dense(l) => super::huge_pages::advise_tensor(l.weight()),
            QLinear::Nf4(l) => super::huge_pages::advise(&l.weight().packed),
            QLinear::Q4k(_) => 0,
            QLinear::Lora(l) => l.base().advise_huge_pages(),
            QLinear::Stack(l) => l.parts().iter().map(QLinear::advise_huge_pages).sum(),
        }
    }

    /// Whether [`Self::padded`] can widen this layer.
    pub fn can_pad(&self) -> bool {
        !matches!(self.base(), QLinear::Q4k(_) | QLinear::Stack(_))
    }

    /// The same layer computed as an `out_to × in_to` product (each ≥ its own size) with zero
    /// rows and columns: the input carries `in_to` features (the extra ones are ignored), the
    /// output `out_to` (the extra ones are exactly zero). cuBLAS runs bf16 GEMMs whose row
    /// lengths are multiples of 8 elements on its fast tensor-core kernels; the vision MLP's
    /// 3420 is not, and fell back to a much slower kernel (`bench/gpu-notes.md`).
    pub fn padded(self, out_to: usize, in_to: usize) -> Result<QLinear> {
        let (out, inp) = self.shape();
        if out_to < out || in_to < inp {
            bail!("cannot pad a {out}×{inp} layer down to {out_to}×{in_to}");
        }
        if (out_to, in_to) == (out, inp) {
            return Ok(self);
        }
        let pad_bias = |b: Option<&Tensor>| -> Result<Option<Tensor>> {
            Ok(match b {
                Some(b) => Some(b.pad_with_zeros(0, 0, out_to - out)?),
                None => None,
            })
        };
        match self {
            QLinear::Dense(l) => {
                let w = l
                    .weight()
                    .pad_with_zeros(0, 0, out_to - out)?
                    .pad_with_zeros(1, 0, in_to - inp)?;
                Ok(QLinear::dense(w, pad_bias(l.bias())?))
            }
            QLinear::Nf4(l) => {
                let bias = pad_bias(l.bias())?;
                Ok(QLinear::Nf4(l.with_gemm_shape((out_to, in_to), bias)))
            }
            QLinear::Q4k(_) => bail!("k-quant layers cannot be padded"),
            QLinear::Stack(_) => bail!("stacked layers cannot be padded"),
            QLinear::Lora(l) => Ok(QLinear::Lora(l.padded(out_to, in_to)?)),
        }
    }
}

impl QLinear {
    /// Whether [`Self::forward_onto`] adds in the GEMM for this input: the weight dense or NF4,
    /// and the GEMM able to add onto its output (`fused::accumulates_in_gemm`: CUDA, bf16).
    pub fn accumulates_onto(&self, x: &Tensor) -> bool {
        match self {
            QLinear::Stack(l) => l.accumulates_onto(x),
            QLinear::Dense(_) | QLinear::Nf4(_) => crate::gpu::fused::accumulates_in_gemm(x, x),
            _ => false,
        }
    }

    /// `c + x · Wᵀ`, the bias not added (the caller put it into `c`); in the GEMM itself where
    /// [`Self::accumulates_onto`] says so, else a product and an add.
    pub fn forward_onto(&self, x: &Tensor, c: Tensor) -> Result<Tensor> {
        use crate::gpu::fused;
        Ok(match self {
            QLinear::Dense(l) => fused::linear_onto(c, x, l.weight())?,
            QLinear::Nf4(l) => l.forward_onto(x, c)?,
            QLinear::Stack(l) => l.forward_onto(x, c)?,
            other => bail!(
                "adding a product onto another term needs a dense or NF4 layer, not {}",
                other.storage()
            ),
        })
    }

    /// The bias, if the layer has one.
    pub fn bias_tensor(&self) -> Option<&Tensor> {
        self.bias()
    }
}

impl Module for QLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            // On the GPU the bias goes on inside the GEMM (cuBLASLt) or in one fused pass:
            // candle's broadcast add is a separate pass over every output.
            QLinear::Dense(l) => crate::gpu::fused::linear(x, l.weight(), l.bias()),
            QLinear::Nf4(l) => l.forward(x),
            QLinear::Q4k(l) => l.forward(x),
            QLinear::Lora(l) => l.forward(x),
            QLinear::Stack(l) => Module::forward(l, x),
        }
    }
}

impl QLinear {
    /// Layers that read the same input as one, their outputs side by side in `parts`' order:
    /// dense layers become one dense layer; layers with a LoRA adapter beside them one layer
    /// whose base is their bases stacked, its A factors one under the other and its B factors
    /// block-diagonal (so each part's output sees only its own adapter); other quantised layers
    /// a `StackedLinear`. Exactly the parts' outputs, concatenated.
    pub fn stack(parts: Vec<QLinear>) -> Result<QLinear> {
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        if parts.iter().all(|p| matches!(p, QLinear::Dense(_))) {
            let weights = parts
                .iter()
                .filter_map(|p| match p {
                    QLinear::Dense(l) => Some(l.weight().clone()),
                    _ => None,
                })
                .collect::<Vec<_>>();
            let bias = StackedLinear::new(parts)?.bias().cloned();
            return Ok(QLinear::dense(Tensor::cat(&weights, 0)?, bias));
        }
        if parts.iter().all(|p| matches!(p, QLinear::Lora(_))) {
            let loras: Vec<&LoraLinear> = parts
                .iter()
                .filter_map(|p| match p {
                    QLinear::Lora(l) => Some(l),
                    _ => None,
                })
                .collect();
            let base = QLinear::stack(loras.iter().map(|l| l.base().clone()).collect())?;
            let down = Tensor::cat(
                &loras.iter().map(|l| l.down().clone()).collect::<Vec<_>>(),
                0,
            )?;
            let total_rank: usize = loras.iter().map(|l| l.rank()).sum();
            let mut before = 0;
            let mut ups = Vec::with_capacity(loras.len());
            for l in &loras {
                let r = l.rank();
                ups.push(l.up().pad_with_zeros(1, before, total_rank - before - r)?);
                before += r;
            }
            let up = Tensor::cat(&ups, 0)?;
            return Ok(QLinear::Lora(LoraLinear::new(base, down, up)?));
        }
        Ok(QLinear::Stack(StackedLinear::new(parts)?))
    }
}
