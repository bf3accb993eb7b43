//! The CUDA C of the engine's kernel, from the `.cu` file beside this module, as
//! `patchify_kernel` hands it to NVRTC at run time. Outside the `cuda` feature so that the CPU
//! tests check it.

/// 8-bit RGB pages to the vision tower's f32 rows. Row layout: for each merged block
/// (row-major), its `merge × merge` patches; within a row `channel, frame, y, x` with the still
/// image repeated over `temporal` frames.
pub const PATCHIFY: &str = include_str!("patchify_kernel.cu");

#[cfg(test)]
mod tests {
    use super::*;
    use pagesight_common::kernel_source::{declares_kernel, is_self_contained};

    #[test]
    fn patchify_source_declares_its_kernel() {
        assert!(is_self_contained(PATCHIFY));
        assert!(declares_kernel(PATCHIFY, "patchify_u8"));
    }
}
