//! CUDA C shared by the crates' kernels, from the `.cu` files beside this module, compiled at run
//! time by `nvrtc` (`cuda` feature). Outside that feature so that the CPU tests check it.

/// `spin_cycles`: keeps a stream busy for a number of clock cycles (the transfer tests delay a
/// stream with it).
pub const SPIN: &str = include_str!("spin_kernel.cu");

/// Whether `source` can go to NVRTC as one module: no NUL byte, and no `#include`, since NVRTC is
/// given no headers.
pub fn is_self_contained(source: &str) -> bool {
    !source.contains('\0') && !source.contains("#include")
}

/// Whether `source` declares `kernel` as an `extern "C"` kernel (attributes such as
/// `__launch_bounds__` may stand before its name), the symbol NVRTC's module is asked for.
pub fn declares_kernel(source: &str, kernel: &str) -> bool {
    let name = format!(" {kernel}(");
    source
        .lines()
        .any(|l| l.contains("extern \"C\" __global__ void") && l.contains(&name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_source_declares_its_kernel() {
        assert!(is_self_contained(SPIN));
        assert!(declares_kernel(SPIN, "spin_cycles"));
        assert!(!declares_kernel(SPIN, "spin"));
        assert!(!is_self_contained("#include <cuda.h>"));
    }
}
