//! The environment variables this crate reads, in one place (the README lists every crate's).

/// The tokenizer file the built-in `random:*` models use, instead of the shipped one.
pub const TOKENIZER: &str = "PAGESIGHT_TOKENIZER";

/// Caps the instruction set of the CPU's few-row matrix kernels (`quant::gemm`): `avx512bf16`,
/// `avx512`, `avx2`, `neon` or `scalar` (default: the best the CPU runs), e.g. to measure the AVX2 path
/// on an AVX-512 machine, or `avx512` for f32 products where the CPU has AVX-512 BF16 (whose
/// products round their operands to bf16).
pub const CPU_ISA: &str = "PAGESIGHT_CPU_ISA";

/// Test hook (`test-hooks` builds only): a forward pass over more than this many pages fails as
/// the device running out of memory (`ModelError::OutOfMemory`), so the engine's retry in smaller
/// batches can be tested without a GPU.
pub const OOM_ABOVE_PAGES: &str = "PAGESIGHT_OOM_ABOVE_PAGES";

/// The Hugging Face tools' own variables, honoured as they do (`hub::config`).
pub const HF_HOME: &str = "HF_HOME";
pub const HF_HUB_CACHE: &str = "HF_HUB_CACHE";
pub const HF_ENDPOINT: &str = "HF_ENDPOINT";
pub const HF_TOKEN: &str = "HF_TOKEN";
pub const HF_TOKEN_PATH: &str = "HF_TOKEN_PATH";
pub const HF_HUB_OFFLINE: &str = "HF_HUB_OFFLINE";

/// Test hook (`test-hooks` builds only): the free disk space the download's check sees.
pub const HUB_FREE_BYTES: &str = "PAGESIGHT_HUB_FREE_BYTES";

/// Test hook (`test-hooks` builds only): a download's writes fail with ENOSPC after this many
/// bytes, as on a disk that fills mid-way.
pub const HUB_DISK_FULL_AFTER: &str = "PAGESIGHT_HUB_DISK_FULL_AFTER";
