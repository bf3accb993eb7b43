//! Fused steps of the forward pass: on a CUDA device with bf16 activations each is one kernel
//! (`fused_kernel`), elsewhere — the CPU, other dtypes, non-contiguous inputs, or
//! `PAGESIGHT_FUSED_KERNELS=0` — the equivalent chain of candle ops. The CPU path is what the
//! reference-parity tests check; the GPU selftest checks the fused path against it.

use candle_core::{DType, Result, Tensor};
use std::sync::atomic::{AtomicU8, Ordering};

/// 0 = not read yet, 1 = on, 2 = off.
static FUSED: AtomicU8 = AtomicU8::new(0);

/// Whether the fused kernels serve CUDA tensors (default on; `PAGESIGHT_FUSED_KERNELS=0` turns
/// them off, to compare speed or results with candle's own ops).
pub fn enabled() -> bool {
    match FUSED.load(Ordering::Relaxed) {
        1 => true,
        2 => false,
        _ => {
            let on = std::env::var("PAGESIGHT_FUSED_KERNELS").map_or(true, |v| v != "0");
            set_enabled(on);
            on
        }
    }
}

/// Overrides the environment for the whole process (benchmarks and the GPU selftest A/B).
pub fn set_enabled(on: bool) {
    FUSED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn fused_for(t: &Tensor, dtype: DType) -> bool {
    t.device().is_cuda() && t.dtype() == dtype && t.is_contiguous() && enabled()
}

/// `y + bias` broadcast over rows (`bias` [cols], `y` [.., cols]); in place on the GPU, so pass
/// a fresh tensor (a GEMM's output) that nothing else aliases.
pub fn add_bias(y: Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let Some(bias) = bias else { return Ok(y) };
    let bias = bias.to_dtype(y.dtype())?;
    #[cfg(feature = "cuda")]
    if fused_for(&y, DType::BF16) && bias.is_contiguous() {
        y.inplace_op2(&bias, &cuda::BiasAdd)?;
        return Ok(y);
    }
    y.broadcast_add(&bias)
}

/// `x + h` for the f32 residual stream `x` and a layer output `h` of any float dtype.
pub fn residual_add(x: &Tensor, h: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if fused_for(x, DType::F32) && fused_for(h, DType::BF16) && x.shape() == h.shape() {
        return x.apply_op2_no_bwd(h, &cuda::ResidualAdd);
    }
    x + h.to_dtype(DType::F32)?
}

/// `silu(gate) · up`.
pub fn silu_mul(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if fused_for(gate, DType::BF16) && fused_for(up, DType::BF16) && gate.shape() == up.shape() {
        return gate.apply_op2_no_bwd(up, &cuda::SiluMul);
    }
    candle_nn::ops::silu(gate)? * up
}

/// RMSNorm over the last dim computed in f32 (`weight` f32), output in `out_dtype`.
pub fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32, out_dtype: DType) -> Result<Tensor> {
    #[cfg(feature = "cuda")]
    if out_dtype == DType::BF16 && fused_for(x, DType::F32) && fused_for(weight, DType::F32) {
        return x.apply_op2_no_bwd(weight, &cuda::RmsNorm { eps });
    }
    candle_nn::ops::rms_norm(&x.to_dtype(DType::F32)?, weight, eps)?.to_dtype(out_dtype)
}

/// The window attention of a vision block in one kernel, when it applies: `qkv` [n, 3·heads·hd]
/// bf16 (the qkv projection's output, bias added), `cos_sin` [n, hd] f32 (cos then sin),
/// `gather` [n_windows · window_len] u32 (padding slots last, = n). Returns [n, heads·hd] bf16,
/// or None where the caller must run the unfused path.
pub fn window_attention(
    qkv: &Tensor,
    cos_sin: &Tensor,
    gather: &Tensor,
    shape: WindowAttentionShape,
) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if fused_for(qkv, DType::BF16)
        && fused_for(cos_sin, DType::F32)
        && fused_for(gather, DType::U32)
        && shape.window_len <= super::fused_kernel::FusedKernels::max_window_len(shape.head_dim)
    {
        return qkv
            .apply_op3_no_bwd(cos_sin, gather, &cuda::WindowAttention(shape))
            .map(Some);
    }
    let _ = (qkv, cos_sin, gather, shape);
    Ok(None)
}

/// The language model's causal self-attention in one kernel, when it applies: `qkv`
/// [b, s, (heads + 2·kv_heads)·hd] bf16 (q, k, v projections side by side, biases added),
/// `cos_sin` [b, s, hd] f32 (M-RoPE cos then sin), `key_start` [b] u32 (the left padding of
/// each row: keys before it are never attended, rows before it come out as zeros). Returns
/// [b, s, heads·hd] bf16, or None where the caller must run the unfused path.
pub fn causal_attention(
    qkv: &Tensor,
    cos_sin: &Tensor,
    key_start: &Tensor,
    shape: CausalAttentionShape,
) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if fused_for(qkv, DType::BF16)
        && fused_for(cos_sin, DType::F32)
        && fused_for(key_start, DType::U32)
        && super::fused_kernel::FusedKernels::causal_fits(shape.head_dim)
    {
        return qkv
            .apply_op3_no_bwd(cos_sin, key_start, &cuda::CausalAttention(shape))
            .map(Some);
    }
    let _ = (qkv, cos_sin, key_start, shape);
    Ok(None)
}

/// Unmasked attention for q [h, lq, d], k and v [h, l, d] (bf16, contiguous): scores on tensor
/// cores straight to f32 (no casts of q and k), one pass of scaled softmax to bf16 probabilities,
/// and a bf16 product with v — the arithmetic of the reference's own bf16 attention. None where
/// the caller must run the unfused path.
pub fn full_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Option<Tensor>> {
    #[cfg(feature = "cuda")]
    if fused_for(q, DType::BF16) && fused_for(k, DType::BF16) && fused_for(v, DType::BF16) {
        let scores = q.apply_op2_no_bwd(k, &cuda::ScoresF32)?;
        let probs = scores.apply_op1_no_bwd(&cuda::SoftmaxRows {
            scale: scale as f32,
        })?;
        return probs.matmul(v).map(Some);
    }
    let _ = (q, k, v, scale);
    Ok(None)
}

#[derive(Clone, Copy, Debug)]
pub struct CausalAttentionShape {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

#[derive(Clone, Copy, Debug)]
pub struct WindowAttentionShape {
    pub n_windows: usize,
    pub window_len: usize,
    pub heads: usize,
    pub head_dim: usize,
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::super::fused_kernel::{elementwise_config, CausalShape, FusedKernels, WindowShape};
    use super::{CausalAttentionShape, WindowAttentionShape};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda_backend::cudarc::driver::{CudaView, LaunchConfig, PushKernelArg};
    use candle_core::cuda_backend::{CudaDType, CudaStorage};
    use candle_core::{CpuStorage, Layout, Result, Shape};
    use half::bf16;

    fn view<'a, T: CudaDType>(s: &'a CudaStorage, l: &Layout) -> Result<CudaView<'a, T>> {
        let (a, b) = l
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("fused kernel: input not contiguous".into()))?;
        Ok(s.as_cuda_slice::<T>()?.slice(a..b))
    }

    fn kernels(s: &CudaStorage) -> Result<std::sync::Arc<FusedKernels>> {
        FusedKernels::for_stream(&s.device().cuda_stream())
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))
    }

    fn no_cpu<T>(name: &str) -> Result<T> {
        candle_core::bail!("{name} is a CUDA kernel; the CPU runs the candle op chain")
    }

    /// Implements candle's `CustomOp{N}` for a CUDA-only op whose inherent `cuda` method does the
    /// work: the CPU never gets here (the wrappers above run candle's op chain there).
    macro_rules! cuda_op {
        (1, $ty:ty, $name:literal) => {
            impl candle_core::CustomOp1 for $ty {
                fn name(&self) -> &'static str {
                    $name
                }
                fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
                    no_cpu($name)
                }
                fn cuda_fwd(&self, a: &CudaStorage, al: &Layout) -> Result<(CudaStorage, Shape)> {
                    self.cuda(a, al)
                }
            }
        };
        (2, $ty:ty, $name:literal) => {
            impl candle_core::CustomOp2 for $ty {
                fn name(&self) -> &'static str {
                    $name
                }
                fn cpu_fwd(
                    &self,
                    _: &CpuStorage,
                    _: &Layout,
                    _: &CpuStorage,
                    _: &Layout,
                ) -> Result<(CpuStorage, Shape)> {
                    no_cpu($name)
                }
                fn cuda_fwd(
                    &self,
                    a: &CudaStorage,
                    al: &Layout,
                    b: &CudaStorage,
                    bl: &Layout,
                ) -> Result<(CudaStorage, Shape)> {
                    self.cuda(a, al, b, bl)
                }
            }
        };
        (3, $ty:ty, $name:literal) => {
            impl candle_core::CustomOp3 for $ty {
                fn name(&self) -> &'static str {
                    $name
                }
                fn cpu_fwd(
                    &self,
                    _: &CpuStorage,
                    _: &Layout,
                    _: &CpuStorage,
                    _: &Layout,
                    _: &CpuStorage,
                    _: &Layout,
                ) -> Result<(CpuStorage, Shape)> {
                    no_cpu($name)
                }
                fn cuda_fwd(
                    &self,
                    a: &CudaStorage,
                    al: &Layout,
                    b: &CudaStorage,
                    bl: &Layout,
                    c: &CudaStorage,
                    cl: &Layout,
                ) -> Result<(CudaStorage, Shape)> {
                    self.cuda(a, al, b, bl, c, cl)
                }
            }
        };
    }

    pub struct BiasAdd;
    impl candle_core::InplaceOp2 for BiasAdd {
        fn name(&self) -> &'static str {
            "fused-bias-add"
        }
        fn cpu_fwd(
            &self,
            _: &mut CpuStorage,
            _: &Layout,
            _: &CpuStorage,
            _: &Layout,
        ) -> Result<()> {
            no_cpu(self.name())
        }
        fn cuda_fwd(
            &self,
            y: &mut CudaStorage,
            yl: &Layout,
            b: &CudaStorage,
            bl: &Layout,
        ) -> Result<()> {
            let k = kernels(y)?;
            let stream = y.device().cuda_stream();
            let cols = bl.shape().elem_count();
            let n = yl.shape().elem_count();
            let (start, _) = yl
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("bias add: output not contiguous".into()))?;
            if cols == 0 || n % cols != 0 || yl.dims().last() != Some(&cols) {
                candle_core::bail!("bias add: bias of {cols} for output {:?}", yl.dims());
            }
            let bv = view::<bf16>(b, bl)?;
            let ys = y.as_cuda_slice_mut::<bf16>()?;
            let mut yv = ys.slice_mut(start..start + n);
            let (n64, c32) = (n as u64, cols as u32);
            let mut l = stream.launch_builder(&k.elementwise.bias_add_bf16);
            l.arg(&mut yv).arg(&bv).arg(&n64).arg(&c32);
            unsafe { l.launch(elementwise_config(n)) }.map_err(candle_core::Error::wrap)?;
            Ok(())
        }
    }

    /// out (f32) from x (f32) and h (bf16) of the same shape.
    pub struct ResidualAdd;
    cuda_op!(2, ResidualAdd, "fused-residual-add");
    impl ResidualAdd {
        fn cuda(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            h: &CudaStorage,
            hl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let k = kernels(x)?;
            let dev = x.device().clone();
            let stream = dev.cuda_stream();
            let n = xl.shape().elem_count();
            let (xv, hv) = (view::<f32>(x, xl)?, view::<bf16>(h, hl)?);
            let mut out = unsafe { dev.alloc::<f32>(n)? };
            let n64 = n as u64;
            let mut l = stream.launch_builder(&k.elementwise.residual_add_f32_bf16);
            l.arg(&xv).arg(&hv).arg(&mut out).arg(&n64);
            unsafe { l.launch(elementwise_config(n)) }.map_err(candle_core::Error::wrap)?;
            Ok((CudaStorage::wrap_cuda_slice(out, dev), xl.shape().clone()))
        }
    }

    pub struct SiluMul;
    cuda_op!(2, SiluMul, "fused-silu-mul");
    impl SiluMul {
        fn cuda(
            &self,
            g: &CudaStorage,
            gl: &Layout,
            u: &CudaStorage,
            ul: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let k = kernels(g)?;
            let dev = g.device().clone();
            let stream = dev.cuda_stream();
            let n = gl.shape().elem_count();
            let (gv, uv) = (view::<bf16>(g, gl)?, view::<bf16>(u, ul)?);
            let mut out = unsafe { dev.alloc::<bf16>(n)? };
            let n64 = n as u64;
            let mut l = stream.launch_builder(&k.elementwise.silu_mul_bf16);
            l.arg(&gv).arg(&uv).arg(&mut out).arg(&n64);
            unsafe { l.launch(elementwise_config(n)) }.map_err(candle_core::Error::wrap)?;
            Ok((CudaStorage::wrap_cuda_slice(out, dev), gl.shape().clone()))
        }
    }

    pub struct RmsNorm {
        pub eps: f32,
    }
    cuda_op!(2, RmsNorm, "fused-rms-norm");
    impl RmsNorm {
        fn cuda(
            &self,
            x: &CudaStorage,
            xl: &Layout,
            w: &CudaStorage,
            wl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let k = kernels(x)?;
            let dev = x.device().clone();
            let stream = dev.cuda_stream();
            let dim = wl.shape().elem_count();
            let n = xl.shape().elem_count();
            if dim == 0 || xl.dims().last() != Some(&dim) {
                candle_core::bail!("rms norm: weight of {dim} for input {:?}", xl.dims());
            }
            let (xv, wv) = (view::<f32>(x, xl)?, view::<f32>(w, wl)?);
            let mut out = unsafe { dev.alloc::<bf16>(n)? };
            let (dim32, eps) = (dim as u32, self.eps);
            let cfg = LaunchConfig {
                grid_dim: ((n / dim) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = stream.launch_builder(&k.elementwise.rms_norm_f32_bf16);
            l.arg(&xv).arg(&wv).arg(&mut out).arg(&dim32).arg(&eps);
            unsafe { l.launch(cfg) }.map_err(candle_core::Error::wrap)?;
            Ok((CudaStorage::wrap_cuda_slice(out, dev), xl.shape().clone()))
        }
    }

    pub struct WindowAttention(pub WindowAttentionShape);
    cuda_op!(3, WindowAttention, "fused-window-attention");
    impl WindowAttention {
        fn cuda(
            &self,
            qkv: &CudaStorage,
            ql: &Layout,
            cs: &CudaStorage,
            cl: &Layout,
            g: &CudaStorage,
            gl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let k = kernels(qkv)?;
            let dev = qkv.device().clone();
            let stream = dev.cuda_stream();
            let s = self.0;
            let hid = s.heads * s.head_dim;
            let (n, row) = ql.shape().dims2()?;
            if row != 3 * hid {
                candle_core::bail!("window attention: qkv rows of {row}, expected {}", 3 * hid);
            }
            let mut out = unsafe { dev.alloc::<bf16>(n * hid)? };
            k.window_attention(
                &stream,
                &view::<bf16>(qkv, ql)?,
                &view::<f32>(cs, cl)?,
                &view::<u32>(g, gl)?,
                &mut out,
                WindowShape {
                    n_patches: n,
                    n_windows: s.n_windows,
                    window_len: s.window_len,
                    heads: s.heads,
                    head_dim: s.head_dim,
                },
            )
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev),
                Shape::from((n, hid)),
            ))
        }
    }

    pub struct CausalAttention(pub CausalAttentionShape);
    cuda_op!(3, CausalAttention, "fused-causal-attention");
    impl CausalAttention {
        fn cuda(
            &self,
            qkv: &CudaStorage,
            ql: &Layout,
            cs: &CudaStorage,
            cl: &Layout,
            ks: &CudaStorage,
            kl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            let k = kernels(qkv)?;
            let dev = qkv.device().clone();
            let stream = dev.cuda_stream();
            let s = self.0;
            let (b, seq, row) = ql.shape().dims3()?;
            if row != (s.heads + 2 * s.kv_heads) * s.head_dim {
                candle_core::bail!("causal attention: qkv rows of {row} for {s:?}");
            }
            let hid = s.heads * s.head_dim;
            let mut out = unsafe { dev.alloc::<bf16>(b * seq * hid)? };
            k.causal_attention(
                &stream,
                &view::<bf16>(qkv, ql)?,
                &view::<f32>(cs, cl)?,
                &view::<u32>(ks, kl)?,
                &mut out,
                CausalShape {
                    batch: b,
                    seq,
                    heads: s.heads,
                    kv_heads: s.kv_heads,
                    head_dim: s.head_dim,
                },
            )
            .map_err(|e| candle_core::Error::Msg(format!("{e:#}")))?;
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev),
                Shape::from((b, seq, hid)),
            ))
        }
    }

    /// q [h, lq, d] · k [h, l, d]ᵀ → f32 [h, lq, l] with cuBLAS (bf16 in, f32 out and accumulate).
    pub struct ScoresF32;
    cuda_op!(2, ScoresF32, "fused-scores-f32");
    impl ScoresF32 {
        fn cuda(
            &self,
            q: &CudaStorage,
            ql: &Layout,
            k: &CudaStorage,
            kl: &Layout,
        ) -> Result<(CudaStorage, Shape)> {
            use candle_core::cuda_backend::cudarc::cublas::{result as blas, sys};
            use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
            let dev = q.device().clone();
            let stream = dev.cuda_stream();
            let (h, lq, d) = ql.shape().dims3()?;
            let (hk, l, dk) = kl.shape().dims3()?;
            if h != hk || d != dk {
                candle_core::bail!("scores: q {:?} and k {:?} differ", ql.dims(), kl.dims());
            }
            let (qv, kv) = (view::<bf16>(q, ql)?, view::<bf16>(k, kl)?);
            let mut out = unsafe { dev.alloc::<f32>(h * lq * l)? };
            let blas_handle = dev.cublas_handle();
            let (alpha, beta) = (1.0f32, 0.0f32);
            {
                let (qp, _g1) = qv.device_ptr(&stream);
                let (kp, _g2) = kv.device_ptr(&stream);
                let (op, _g3) = out.device_ptr_mut(&stream);
                // Column-major view: Cᵀ (l × lq) = K (l × d, stored transposed) · Qᵀ (d × lq).
                unsafe {
                    blas::gemm_strided_batched_ex(
                        *blas_handle.handle(),
                        sys::cublasOperation_t::CUBLAS_OP_T,
                        sys::cublasOperation_t::CUBLAS_OP_N,
                        l as i32,
                        lq as i32,
                        d as i32,
                        (&alpha) as *const f32 as *const _,
                        kp as *const _,
                        sys::cudaDataType_t::CUDA_R_16BF,
                        d as i32,
                        (l * d) as i64,
                        qp as *const _,
                        sys::cudaDataType_t::CUDA_R_16BF,
                        d as i32,
                        (lq * d) as i64,
                        (&beta) as *const f32 as *const _,
                        op as *mut _,
                        sys::cudaDataType_t::CUDA_R_32F,
                        l as i32,
                        (lq * l) as i64,
                        h as i32,
                        sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                        sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT_TENSOR_OP,
                    )
                }
                .map_err(|e| candle_core::Error::Msg(format!("cuBLAS scores: {e:?}")))?;
            }
            Ok((
                CudaStorage::wrap_cuda_slice(out, dev),
                Shape::from((h, lq, l)),
            ))
        }
    }

    /// Row softmax of f32 scores times `scale`, to bf16.
    pub struct SoftmaxRows {
        pub scale: f32,
    }
    cuda_op!(1, SoftmaxRows, "fused-softmax-rows");
    impl SoftmaxRows {
        fn cuda(&self, x: &CudaStorage, xl: &Layout) -> Result<(CudaStorage, Shape)> {
            let k = kernels(x)?;
            let dev = x.device().clone();
            let stream = dev.cuda_stream();
            let cols = *xl.dims().last().unwrap_or(&0);
            let n = xl.shape().elem_count();
            if cols == 0 {
                candle_core::bail!("softmax: empty rows");
            }
            let xv = view::<f32>(x, xl)?;
            let mut out = unsafe { dev.alloc::<bf16>(n)? };
            let (c32, scale) = (cols as u32, self.scale);
            let cfg = LaunchConfig {
                grid_dim: ((n / cols) as u32, 1, 1),
                block_dim: (256, 1, 1),
                shared_mem_bytes: 0,
            };
            let mut l = stream.launch_builder(&k.elementwise.softmax_rows_f32_bf16);
            l.arg(&xv).arg(&mut out).arg(&c32).arg(&scale);
            unsafe { l.launch(cfg) }.map_err(candle_core::Error::wrap)?;
            Ok((CudaStorage::wrap_cuda_slice(out, dev), xl.shape().clone()))
        }
    }
}
