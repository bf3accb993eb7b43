//! ColQwen2.5 as a library: configuration, the processor (tokenizer and image preprocessing),
//! the vision tower, the language model and the projection head, LoRA adapters, NF4 / Q4_K
//! quantisation with its on-disk cache, and the CUDA kernels the forward pass runs on. Usable on
//! its own by anyone who only wants embeddings: no PDF, index or GUI code.
//!
//! - `settings`: which checkpoint, device, precision and quantisation; `device_set`: the devices
//!   an ingest runs its model replicas on.
//! - `colqwen`: the model, one file per part.
//! - `quant`: NF4 (bit-exact with bitsandbytes), Q4_K, the quantised linears, the weight cache.
//! - `gpu`: the forward pass's kernels (fused steps, flash attention, cuBLASLt, NF4 dequant).
//! - `hub`: downloads from the Hugging Face hub into its standard cache (resumed, verified,
//!   cancellable, with progress), and the offline check of what the cache holds.
//! - `parallel`: the CPU forward's work split over every core (candle's spinning pool).
//! - `synthetic`: deterministic model-shaped page inputs for benchmarks and checks.
//! - `resize`, `preprocess`: the reference processor's smart_resize, bicubic resize, normalise
//!   and patchify (the loader's render workers call them).

pub mod colqwen;
pub mod device_set;
pub mod env_vars;
pub mod error;
pub mod gpu;
pub mod hub;
mod parallel;
pub mod preprocess;
pub mod quant;
pub mod resize;
pub mod settings;
pub mod synthetic;

pub use colqwen::{ColQwen, ModelIdentity, PageEmbedding, RANDOM_WARNING};
pub use device_set::DeviceSet;
pub use preprocess::{patchify_into, preprocess_rgb, PreprocessConfig};
pub use resize::smart_resize;
pub use settings::{
    Compute, DType, DeviceChoice, GpuKernels, LoraMode, ModelSettings, Quant, QuantCacheSetting,
    QuantScope,
};
