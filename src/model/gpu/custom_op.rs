//! candle's custom-op traits for CUDA-only ops: each op type implements an inherent method that
//! does the work on the GPU, and `cuda_op!` writes the trait impl around it (the CPU entry point
//! refuses: the callers run candle's own op chain there).

use candle_core::cuda_backend::cudarc::driver::{CudaView, CudaViewMut};
use candle_core::cuda_backend::{CudaDType, CudaStorage};
use candle_core::{Layout, Result, Shape};

/// The elements of a contiguous input, as the kernels read them.
pub fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("CUDA kernel: input not contiguous".into()))?;
    Ok(s.as_cuda_slice::<T>()?.slice(a..b))
}

/// The elements of a contiguous output, as the kernels write them.
pub fn view_mut<'a, T: CudaDType>(
    s: &'a mut CudaStorage,
    l: &Layout,
) -> Result<CudaViewMut<'a, T>> {
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg("CUDA kernel: output not contiguous".into()))?;
    Ok(s.as_cuda_slice_mut::<T>()?.slice_mut(a..b))
}

pub fn no_cpu<T>(name: &str) -> Result<T> {
    candle_core::bail!("{name} is a CUDA kernel; the CPU runs candle's own ops")
}

/// An op with an optional bias input (a linear layer), both forms through `run`:
/// `cuda_op!(linear, Type, "name", "name-with-bias")` makes it a `CustomOp2` without the bias
/// and a `CustomOp3` with it.
pub trait WithBias {
    fn run(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        bias: Option<(&CudaStorage, &Layout)>,
    ) -> Result<(CudaStorage, Shape)>;

    fn without_bias(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(x, xl, w, wl, None)
    }

    #[allow(clippy::too_many_arguments)]
    fn with_bias(
        &self,
        x: &CudaStorage,
        xl: &Layout,
        w: &CudaStorage,
        wl: &Layout,
        b: &CudaStorage,
        bl: &Layout,
    ) -> Result<(CudaStorage, Shape)> {
        self.run(x, xl, w, wl, Some((b, bl)))
    }
}

/// `cuda_op!(N, Type, "name", method)`: `CustomOpN` (N = 1, 2, 3) or `inplace N` (`InplaceOpN`, N = 2, 3)
/// for `Type`, forwarding `cuda_fwd` to `self.method(a, al, …)`.
macro_rules! cuda_op {
    (linear, $ty:ty, $name:literal, $name_bias:literal) => {
        $crate::gpu::custom_op::cuda_op!(2, $ty, $name, without_bias);
        $crate::gpu::custom_op::cuda_op!(3, $ty, $name_bias, with_bias);
    };
    (1, $ty:ty, $name:literal, $method:ident) => {
        impl candle_core::CustomOp1 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::gpu::custom_op::no_cpu($name)
            }
            fn cuda_fwd(
                &self,
                a: &candle_core::cuda_backend::CudaStorage,
                al: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::cuda_backend::CudaStorage, candle_core::Shape)>
            {
                self.$method(a, al)
            }
        }
    };
    (2, $ty:ty, $name:literal, $method:ident) => {
        impl candle_core::CustomOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::gpu::custom_op::no_cpu($name)
            }
            fn cuda_fwd(
                &self,
                a: &candle_core::cuda_backend::CudaStorage,
                al: &candle_core::Layout,
                b: &candle_core::cuda_backend::CudaStorage,
                bl: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::cuda_backend::CudaStorage, candle_core::Shape)>
            {
                self.$method(a, al, b, bl)
            }
        }
    };
    (3, $ty:ty, $name:literal, $method:ident) => {
        impl candle_core::CustomOp3 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            #[allow(clippy::too_many_arguments)]
            fn cpu_fwd(
                &self,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
                $crate::gpu::custom_op::no_cpu($name)
            }
            #[allow(clippy::too_many_arguments)]
            fn cuda_fwd(
                &self,
                a: &candle_core::cuda_backend::CudaStorage,
                al: &candle_core::Layout,
                b: &candle_core::cuda_backend::CudaStorage,
                bl: &candle_core::Layout,
                c: &candle_core::cuda_backend::CudaStorage,
                cl: &candle_core::Layout,
            ) -> candle_core::Result<(candle_core::cuda_backend::CudaStorage, candle_core::Shape)>
            {
                self.$method(a, al, b, bl, c, cl)
            }
        }
    };
    (inplace 2, $ty:ty, $name:literal, $method:ident) => {
        impl candle_core::InplaceOp2 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &mut candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<()> {
                $crate::gpu::custom_op::no_cpu($name)
            }
            fn cuda_fwd(
                &self,
                a: &mut candle_core::cuda_backend::CudaStorage,
                al: &candle_core::Layout,
                b: &candle_core::cuda_backend::CudaStorage,
                bl: &candle_core::Layout,
            ) -> candle_core::Result<()> {
                self.$method(a, al, b, bl)
            }
        }
    };
    (inplace 3, $ty:ty, $name:literal, $method:ident) => {
        impl candle_core::InplaceOp3 for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn cpu_fwd(
                &self,
                _: &mut candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
                _: &candle_core::CpuStorage,
                _: &candle_core::Layout,
            ) -> candle_core::Result<()> {
                $crate::gpu::custom_op::no_cpu($name)
            }
            #[allow(clippy::too_many_arguments)]
            fn cuda_fwd(
                &self,
                a: &mut candle_core::cuda_backend::CudaStorage,
                al: &candle_core::Layout,
                b: &candle_core::cuda_backend::CudaStorage,
                bl: &candle_core::Layout,
                c: &candle_core::cuda_backend::CudaStorage,
                cl: &candle_core::Layout,
            ) -> candle_core::Result<()> {
                self.$method(a, al, b, bl, c, cl)
            }
        }
    };
}
pub(crate) use cuda_op;
