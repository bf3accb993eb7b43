//! Weight quantisation: NF4 exactly as bitsandbytes, and candle k-quants. Every linear layer of
//! the model is a `QLinear`, so the model code never knows how its weights are stored.

pub mod linear;

pub use linear::QLinear;
