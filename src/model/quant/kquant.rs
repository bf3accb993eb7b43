//! Linear layers in candle's GGML k-quants (`--quant q4k`).

use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Module, Tensor};

/// `y = x · Wᵀ + b` with `W` in a GGML block format.
#[derive(Clone, Debug)]
pub struct KQuantLinear {
    matmul: QMatMul,
    /// The quantised weight itself (shared with `matmul`), for the quantised-weight cache.
    weight: Arc<QTensor>,
    bias: Option<Tensor>,
    format: GgmlDType,
    shape: (usize, usize),
    weight_bytes: usize,
}

/// The GGML format for a layer of `in_features`: Q4K needs rows that are whole 256-value
/// super-blocks; Q4_0 (32-value blocks, 4.5 bits) serves rows that are not; `None` keeps the
/// layer dense (rows not a multiple of 32).
pub fn kquant_format(in_features: usize) -> Option<GgmlDType> {
    if in_features.is_multiple_of(GgmlDType::Q4K.block_size()) {
        Some(GgmlDType::Q4K)
    } else if in_features.is_multiple_of(GgmlDType::Q4_0.block_size()) {
        Some(GgmlDType::Q4_0)
    } else {
        None
    }
}

impl KQuantLinear {
    /// Quantises `weight` `[out, in]` to `format`.
    pub fn new(weight: &Tensor, bias: Option<Tensor>, format: GgmlDType) -> Result<Self> {
        let shape = weight.dims2()?;
        let q = QTensor::quantize(weight, format).with_context(|| {
            format!("quantising a {}×{} weight to {format:?}", shape.0, shape.1)
        })?;
        Self::from_quantized(Arc::new(q), bias)
    }

    /// A layer over an already quantised `[out, in]` weight (read back from the cache).
    pub fn from_quantized(weight: Arc<QTensor>, bias: Option<Tensor>) -> Result<Self> {
        let shape = weight.shape().dims2()?;
        let format = weight.dtype();
        ensure!(
            kquant_format(shape.1) == Some(format),
            "a {}×{} weight is not stored as {format:?}",
            shape.0,
            shape.1
        );
        Ok(KQuantLinear {
            matmul: QMatMul::from_arc(weight.clone())?,
            weight_bytes: weight.storage_size_in_bytes(),
            weight,
            bias,
            format,
            shape,
        })
    }

    /// The quantised weight.
    pub fn quantized(&self) -> &Arc<QTensor> {
        &self.weight
    }

    pub fn format(&self) -> GgmlDType {
        self.format
    }
    pub fn shape(&self) -> (usize, usize) {
        self.shape
    }
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
    /// Bytes of the quantised weight (bias excluded).
    pub fn quantized_bytes(&self) -> usize {
        self.weight_bytes
    }
}

impl Module for KQuantLinear {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        // candle's quantised matmul takes f32 activations on every backend.
        let dtype = x.dtype();
        let y = self
            .matmul
            .forward(&x.to_dtype(DType::F32)?.contiguous()?)?
            .to_dtype(dtype)?;
        match &self.bias {
            Some(b) => y.broadcast_add(&b.to_dtype(dtype)?),
            None => Ok(y),
        }
    }
}
