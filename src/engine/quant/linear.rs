//! A linear layer whose weight may be dense or quantised.

use candle_core::{Module, Result, Tensor};

/// `y = x · Wᵀ + b`. The model builds every linear layer as `QLinear::dense` and then asks for
/// the quantisation it wants; forward is the same call whatever the storage.
#[derive(Clone, Debug)]
pub enum QLinear {
    Dense(candle_nn::Linear),
}

impl QLinear {
    /// `weight` is `[out, in]`, `bias` `[out]`.
    pub fn dense(weight: Tensor, bias: Option<Tensor>) -> Self {
        QLinear::Dense(candle_nn::Linear::new(weight, bias))
    }

    pub fn in_features(&self) -> usize {
        match self {
            QLinear::Dense(l) => l.weight().dim(1).unwrap_or(0),
        }
    }

    pub fn out_features(&self) -> usize {
        match self {
            QLinear::Dense(l) => l.weight().dim(0).unwrap_or(0),
        }
    }
}

impl Module for QLinear {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            QLinear::Dense(l) => l.forward(x),
        }
    }
}
