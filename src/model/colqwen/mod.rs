//! ColQwen2.5 in candle: one file per model part (see ../shared/reference.md).

pub mod config;
pub mod image_input;
pub mod layers;
pub mod lora;
pub mod model;
pub mod processor;
pub mod profile;
pub mod rotary;
pub mod source;
pub mod text;
pub mod vision;
pub mod weights;
pub mod window;

pub use model::{ColQwen, ModelIdentity, PageEmbedding, RANDOM_WARNING};
