//! The environment variables this crate reads, in one place (the README lists every crate's).

/// The tokenizer file the built-in `random:*` models use, instead of the shipped one.
pub const TOKENIZER: &str = "PAGESIGHT_TOKENIZER";

/// Caps the instruction set of the CPU's few-row matrix kernels (`quant::gemm`): `avx512`,
/// `avx2` or `scalar` (default: the best the CPU runs), e.g. to measure the AVX2 path on an
/// AVX-512 machine.
pub const CPU_ISA: &str = "PAGESIGHT_CPU_ISA";

/// Test hook (`test-hooks` builds only): a forward pass over more than this many pages fails as
/// the device running out of memory (`ModelError::OutOfMemory`), so the engine's retry in smaller
/// batches can be tested without a GPU.
pub const OOM_ABOVE_PAGES: &str = "PAGESIGHT_OOM_ABOVE_PAGES";
