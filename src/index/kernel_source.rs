//! The CUDA C of the fused MaxSim kernel, from `maxsim_kernel.cu` beside this module, as
//! `maxsim_kernel` hands it to NVRTC at run time. Outside the `cuda` feature so that the CPU
//! tests check it.

const MAXSIM: &str = include_str!("maxsim_kernel.cu");

/// The MaxSim module for `dim`-d vectors (`page_table::kernel_supports`).
pub fn maxsim(dim: usize) -> String {
    format!("#define DIM {dim}\n{MAXSIM}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagesight_common::kernel_source::{declares_kernel, is_self_contained};

    #[test]
    fn maxsim_source_declares_its_kernels_for_the_dim() {
        let src = maxsim(128);
        assert!(is_self_contained(&src));
        assert!(src.starts_with("#define DIM 128\n"));
        for kernel in [
            "maxsim_f16_q16",
            "maxsim_f16_q32",
            "maxsim_f16_q16_ring",
            "maxsim_f16_q32_ring",
        ] {
            assert!(declares_kernel(&src, kernel), "{kernel} missing");
        }
    }
}
