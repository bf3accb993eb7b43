//! What more than one Pagesight crate needs and no crate owns: where things live on disk,
//! making a directory entry durable and replacing a file atomically, compiling CUDA C at run
//! time and keeping what was compiled between runs, and the median the benchmarks and probes
//! report.

pub mod compiled_cache;
pub mod env_vars;
pub mod fs;
pub mod kernel_source;
#[cfg(feature = "cuda")]
pub mod nvrtc;
pub mod paths;
pub mod stats;
