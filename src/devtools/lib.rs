//! The developer's harnesses, which a user never runs: hostile-PDF and crash-consistency trials,
//! the GEMM comparison, the GPU pipeline selftest, the model's parity checks against the
//! reference's fixtures, and a mock Hugging Face hub (`mock_hub`: the download tests, `bench
//! gui-frames`). The `pagesight` binary includes them only with its `dev-tools` feature
//! (tests, CI and device builds turn it on), as `pagesight bench hostile|crash|gemm|gpu-selftest`.

#[cfg(feature = "cuda")]
pub mod attention_bench;
pub mod crash;
pub mod gemm;
#[cfg(feature = "cuda")]
pub mod gpu_attention_check;
#[cfg(feature = "cuda")]
pub mod gpu_elementwise_check;
#[cfg(feature = "cuda")]
pub mod gpu_fp8_check;
#[cfg(feature = "cuda")]
pub mod gpu_maxsim_check;
#[cfg(feature = "cuda")]
pub mod gpu_model_check;
#[cfg(feature = "cuda")]
pub mod gpu_nf4_check;
pub mod gpu_selftest;
pub mod hostile;
pub mod index_stress;
pub mod mock_hub;
pub mod model_parity;
