//! CUDA C shared by the crates' kernels, from the `.cu` files beside this module, compiled at run
//! time by `nvrtc` (`cuda` feature). Outside that feature so that the CPU tests check it.

/// `spin_cycles`: keeps a stream busy for a number of clock cycles (the transfer tests delay a
/// stream with it).
pub const SPIN: &str = include_str!("spin_kernel.cu");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spin_source_declares_its_kernel() {
        assert!(!SPIN.contains('\0') && !SPIN.contains("#include"));
        assert!(SPIN.contains("extern \"C\" __global__ void spin_cycles("));
    }
}
