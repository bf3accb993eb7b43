//! The CUDA C of the model's kernels, from the `.cu` files beside this module, as the wrappers
//! (`fused_kernel`, `flash_kernel`, `nf4_kernel`) hand it to NVRTC at run time. Outside the
//! `cuda` feature so that the CPU tests check it.

/// bf16 ⇄ f32 conversions (round to nearest even) and the bf16 tensor-core step that every
/// module of the model's kernels starts with.
const FUSED_COMMON: &str = include_str!("fused_common.cuh");

/// The fused elementwise kernels: bias add, residual add into the f32 stream, SiLU·up, RMSNorm
/// to bf16, RoPE on q and k in place, and activation rows to FP8 codes with a scale each.
const ELEMENTWISE: &str = include_str!("fused_kernel.cu");

/// Tiled flash attention on tensor cores, for one head dimension `HD` and tile of `QT` query
/// slots (`flash_attention`).
const FLASH_ATTENTION: &str = include_str!("flash_kernel.cu");

/// NF4 dequantisation to bf16, f16, f32 and FP8 codes with row scales, and a query's few rows
/// from the codes.
const NF4: &str = include_str!("nf4_kernel.cu");

/// The elementwise module: the conversions, then the kernels.
pub fn elementwise() -> String {
    format!("{FUSED_COMMON}{ELEMENTWISE}")
}

/// The NF4 module: the conversions and the tensor-core step, then the kernels.
pub fn nf4() -> String {
    format!("{FUSED_COMMON}{NF4}")
}

/// The attention module for `head_dim` and tiles of `query_tile` query slots, after the
/// conversions; with `rope` it rotates q and k itself as their tiles land.
pub fn flash_attention(head_dim: usize, query_tile: usize, rope: bool) -> String {
    let rope = rope as u8;
    format!(
        "#define HD {head_dim}\n#define QT {query_tile}\n#define ROPE {rope}\n\
         {FUSED_COMMON}{FLASH_ATTENTION}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pagesight_common::kernel_source::{declares_kernel as declares, is_self_contained};

    #[test]
    fn elementwise_module_declares_its_kernels() {
        let src = elementwise();
        assert!(is_self_contained(&src));
        assert!(src.starts_with(FUSED_COMMON) && src.contains("f2bf(float f)"));
        for kernel in [
            "bias_add_bf16",
            "residual_add_f32_bf16",
            "residual_rms_norm_f32_bf16",
            "silu_mul_rows_bf16",
            "rope_qk_bf16",
            "quantize_rows_fp8",
            "silu_mul_fp8_rows",
            "fp8_rescale_bf16",
        ] {
            assert!(declares(&src, kernel), "{kernel} missing");
        }
    }

    #[test]
    fn flash_module_declares_its_kernel_for_the_head_dim() {
        for rope in [false, true] {
            let src = flash_attention(80, 128, rope);
            assert!(is_self_contained(&src));
            let head = format!(
                "#define HD 80\n#define QT 128\n#define ROPE {}\n",
                rope as u8
            );
            assert!(src.starts_with(&head) && src.contains("f2bf(float f)"));
            assert!(declares(&src, "flash_attention_bf16"));
            assert!(src.contains("rope_tile<KT>"));
        }
    }

    #[test]
    fn nf4_module_declares_its_kernels() {
        let src = nf4();
        assert!(is_self_contained(&src));
        assert!(src.starts_with(FUSED_COMMON) && src.contains("mma_bf16_16816("));
        // One macro, instantiated per output type.
        assert!(declares(&src, "NAME"));
        assert!(declares(&src, "nf4_rows_bf16"));
        assert!(declares(&src, "nf4_dequant_fp8"));
        // FP8 conversion exists from sm_89 on: guarded, so the module still builds for older cards.
        assert!(src.contains("#if __CUDA_ARCH__ >= 890"));
        for kernel in ["nf4_dequant_bf16", "nf4_dequant_f16", "nf4_dequant_f32"] {
            assert!(
                src.contains(&format!("NF4_KERNEL({kernel}, ")),
                "{kernel} missing"
            );
        }
    }
}
