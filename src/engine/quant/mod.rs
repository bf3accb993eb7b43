//! Weight quantisation: NF4 exactly as bitsandbytes, and candle k-quants. Every linear layer of
//! the model is a `QLinear`, so the model code never knows how its weights are stored.

pub mod blockwise8;
pub mod context;
pub mod element;
pub mod gemv;
pub mod kquant;
pub mod linear;
pub mod nf4;
pub mod nf4_linear;
pub mod scratch;

pub use context::{LayerRecord, LayerStorage, QuantContext, QuantScope, QuantSummary};
pub use element::QuantElement;
pub use kquant::{kquant_format, KQuantLinear};
pub use linear::QLinear;
pub use nf4::{AbsmaxState, Nf4Weight, NF4_BLOCKSIZE, NF4_CODE};
pub use nf4_linear::{Nf4Linear, DIRECT_ROWS_MAX};
pub use scratch::Nf4Scratch;
