//! The model's errors that callers act on, as types: a device that ran out of memory is retried
//! with smaller batches by the engine, anything else is reported.

use std::error::Error as StdError;

/// An error of the model that its caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The device could not allocate what a forward pass of `pages` pages needs.
    #[error("the device ran out of memory on a batch of {pages} pages")]
    OutOfMemory { pages: usize },
}

/// Whether `e` (or any error it wraps) is the device running out of memory: our own
/// `ModelError::OutOfMemory`, or on CUDA the driver's `CUDA_ERROR_OUT_OF_MEMORY` or cuBLAS's
/// failed allocation, wherever candle or our kernels raised it. Matched by type, never by text.
pub fn is_out_of_memory(e: &anyhow::Error) -> bool {
    e.chain().any(cause_is_out_of_memory)
}

fn cause_is_out_of_memory(cause: &(dyn StdError + 'static)) -> bool {
    if let Some(ModelError::OutOfMemory { .. }) = cause.downcast_ref::<ModelError>() {
        return true;
    }
    if let Some(c) = cause.downcast_ref::<candle_core::Error>() {
        return candle_is_out_of_memory(c);
    }
    device_is_out_of_memory(cause)
}

fn candle_is_out_of_memory(e: &candle_core::Error) -> bool {
    use candle_core::Error;
    match e {
        Error::WithBacktrace { inner, .. } | Error::Context { inner, .. } => {
            candle_is_out_of_memory(inner)
        }
        Error::Cuda(boxed) => device_is_out_of_memory(boxed.as_ref()),
        _ => false,
    }
}

#[cfg(feature = "cuda")]
fn device_is_out_of_memory(e: &(dyn StdError + 'static)) -> bool {
    use candle_core::cuda_backend::cudarc::cublas::{result::CublasError, sys::cublasStatus_t};
    use candle_core::cuda_backend::cudarc::driver::{sys::cudaError_enum, DriverError};
    use candle_core::cuda_backend::CudaError;
    let driver = |d: &DriverError| d.0 == cudaError_enum::CUDA_ERROR_OUT_OF_MEMORY;
    let cublas = |c: &CublasError| c.0 == cublasStatus_t::CUBLAS_STATUS_ALLOC_FAILED;
    if let Some(d) = e.downcast_ref::<DriverError>() {
        return driver(d);
    }
    if let Some(c) = e.downcast_ref::<CublasError>() {
        return cublas(c);
    }
    match e.downcast_ref::<CudaError>() {
        Some(CudaError::Cuda(d)) => driver(d),
        Some(CudaError::Cublas(c)) => cublas(c),
        _ => false,
    }
}

#[cfg(not(feature = "cuda"))]
fn device_is_out_of_memory(_: &(dyn StdError + 'static)) -> bool {
    // Without CUDA the model runs on the host, where a failed allocation aborts the process.
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_memory_is_recognised_by_type_through_contexts() {
        let e =
            anyhow::Error::new(ModelError::OutOfMemory { pages: 4 }).context("embedding a batch");
        assert!(is_out_of_memory(&e));
        let candle = candle_core::Error::wrap(ModelError::OutOfMemory { pages: 2 });
        // candle's own wrapper keeps only the message: not a type any more, so not recognised.
        assert!(!is_out_of_memory(&anyhow::Error::new(candle)));
    }

    #[test]
    fn a_message_that_says_out_of_memory_is_not_out_of_memory() {
        let e = anyhow::anyhow!("CUDA_ERROR_OUT_OF_MEMORY: out of memory");
        assert!(!is_out_of_memory(&e));
        assert!(!is_out_of_memory(&anyhow::anyhow!("bad request")));
    }
}
