//! Weight quantisation: NF4 exactly as bitsandbytes, and candle k-quants. Every linear layer of
//! the model is a `QLinear`, so the model code never knows how its weights are stored.
//!
//! How the model uses it, after loading the dense (bf16/f16/f32) weights:
//!
//! ```ignore
//! let ctx = QuantContext::new(&device)                 // one per model: owns the NF4 scratch
//!     .with_scope(QuantScope::AllLinear);             // or LanguageModelOnly
//! // for every linear layer, with its checkpoint key minus ".weight":
//! layer = layer.quantize_named("model.layers.0.self_attn.q_proj", settings.quant, &ctx)?;
//! layer = layer.quantize_named("visual.merger.mlp.0", settings.quant, &ctx)?;
//! layer = layer.quantize_named("custom_text_proj", settings.quant, &ctx)?; // stays dense
//! let summary = ctx.summary();                        // layers per storage, bytes before/after
//! ```
//!
//! Keep `ctx` (or at least `ctx.scratch()`) alive as long as the model: the NF4 layers hold an
//! `Arc` to its one scratch buffer. The layer policy lives in [`QuantContext::quant_for`].

pub mod blockwise8;
pub mod cache;
pub mod cache_file;
pub mod context;
pub mod element;
pub mod fp8;
pub mod gemm;
pub mod huge_pages;
pub mod kquant;
pub mod linear;
pub mod lora_linear;
pub mod nf4;
pub mod nf4_linear;
pub mod scratch;
pub mod scratch_weight;
pub mod stacked_linear;

pub use cache::{QuantCacheReport, QuantCacheSession};
pub use cache_file::CacheKey;
pub use context::{LayerRecord, LayerStorage, QuantContext, QuantScope, QuantSummary};
pub use element::QuantElement;
pub use kquant::{kquant_format, KQuantLinear};
pub use linear::QLinear;
pub use lora_linear::LoraLinear;
pub use nf4::{AbsmaxState, Nf4Weight, NF4_BLOCKSIZE, NF4_CODE};
pub use nf4_linear::{Nf4Linear, DIRECT_ROWS_MAX};
pub use scratch::Nf4Scratch;
pub use stacked_linear::StackedLinear;
