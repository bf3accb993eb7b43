//! NF4 dequantisation on the GPU, bandwidth-bound: one thread turns 8 packed bytes (16 weights)
//! into 16 outputs with one 8-byte load and 16-byte stores. Layout as bitsandbytes stores it
//! (and `quant`'s CPU side): codes packed two per byte, high nibble first; one absmax
//! per block of 64 weights, itself either f32 or double-quantised (u8 code into the signed
//! dynamic map, one f32 scale per 256 blocks, plus a mean offset).
//!
//! Bit-exact with the CPU: the nested absmax is `code2[q] · absmax2[b/256]` then `+ offset`,
//! each rounded separately (no fused multiply-add, as the CPU computes it), the weight is
//! `nf4[q] · absmax` in f32, rounded to the output type to nearest-even.
//!
//! The kernels' CUDA C is `nf4_kernel.cu` (one macro, instantiated per output type).

use super::kernel_source;
use anyhow::{bail, Result};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchArgs, LaunchConfig,
    PushKernelArg,
};
use pagesight_common::nvrtc;
use std::sync::Arc;

/// How the per-block absmax is stored.
pub enum Nf4Absmax<'a> {
    Plain(&'a CudaSlice<f32>),
    /// bitsandbytes' double quantisation: `code2[q[b]] · absmax2[b / 256] + offset`.
    Double {
        codes: &'a CudaSlice<u8>,
        absmax2: &'a CudaSlice<f32>,
        code2: &'a CudaSlice<f32>,
        offset: f32,
    },
}

/// One quantised weight on the device.
pub struct Nf4DeviceWeight<'a> {
    /// `ceil(n / 2)` bytes, high nibble first.
    pub packed: &'a CudaSlice<u8>,
    pub absmax: Nf4Absmax<'a>,
    /// The 16 NF4 code values.
    pub nf4_code: &'a CudaSlice<f32>,
    /// Number of weights.
    pub n: usize,
}

pub const BLOCK: usize = 64;
pub const ABSMAX2_BLOCK: usize = 256;

/// The kernels for one output type: the flat layout, and the zero-padded one.
pub struct Nf4Pair {
    flat: CudaFunction,
    padded: CudaFunction,
}

pub struct Nf4Kernels {
    bf16: Nf4Pair,
    f16: Nf4Pair,
    f32: Nf4Pair,
    pub(super) rows_bf16: CudaFunction,
    /// To FP8 E4M3 codes and row scales (`Compute::Fp8`; sm_89 and later).
    fp8: CudaFunction,
}

/// The most input rows [`Nf4Kernels::matmul_rows`] (`nf4_rows`) takes (two m16 tiles).
pub const ROWS_MAX: usize = 32;

/// Where the dequantised weight goes: the flat `[out, in]` order, or a zero-padded
/// `[rows_pad, cols_pad]` matrix (`cols_pad` a multiple of 8) holding the `[rows, cols]` weight
/// in its top-left corner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nf4Layout {
    Flat,
    Padded {
        rows: usize,
        cols: usize,
        rows_pad: usize,
        cols_pad: usize,
    },
}

impl Nf4Layout {
    /// The layout that writes an `(out, in)` weight into a `gemm` = `(out_pad, in_pad)` matrix.
    pub fn for_gemm(weight: (usize, usize), gemm: (usize, usize)) -> Self {
        if weight == gemm {
            return Nf4Layout::Flat;
        }
        Nf4Layout::Padded {
            rows: weight.0,
            cols: weight.1,
            rows_pad: gemm.0,
            cols_pad: gemm.1,
        }
    }

    /// Elements written for a weight of `n` values.
    pub fn len(&self, n: usize) -> usize {
        match *self {
            Nf4Layout::Flat => n,
            Nf4Layout::Padded {
                rows_pad, cols_pad, ..
            } => rows_pad * cols_pad,
        }
    }
}

/// Output element types the kernel writes.
pub trait Nf4Output: candle_core::cuda_backend::cudarc::driver::DeviceRepr {
    fn pick(k: &Nf4Kernels, layout: Nf4Layout) -> &CudaFunction {
        let pair = Self::pair(k);
        match layout {
            Nf4Layout::Flat => &pair.flat,
            Nf4Layout::Padded { .. } => &pair.padded,
        }
    }
    #[doc(hidden)]
    fn pair(k: &Nf4Kernels) -> &Nf4Pair;
}
impl Nf4Output for half::bf16 {
    fn pair(k: &Nf4Kernels) -> &Nf4Pair {
        &k.bf16
    }
}
impl Nf4Output for half::f16 {
    fn pair(k: &Nf4Kernels) -> &Nf4Pair {
        &k.f16
    }
}
impl Nf4Output for f32 {
    fn pair(k: &Nf4Kernels) -> &Nf4Pair {
        &k.f32
    }
}

impl Nf4Pair {
    fn load(
        m: &Arc<candle_core::cuda_backend::cudarc::driver::CudaModule>,
        ty: &str,
    ) -> Result<Self> {
        Ok(Nf4Pair {
            flat: nvrtc::function(m, &format!("nf4_dequant_{ty}"))?,
            padded: nvrtc::function(m, &format!("nf4_dequant_padded_{ty}"))?,
        })
    }
}

impl Nf4Kernels {
    pub fn load(stream: &Arc<CudaStream>) -> Result<Self> {
        let m = nvrtc::load_module(stream.context(), "pagesight_nf4", &kernel_source::nf4())?;
        Ok(Nf4Kernels {
            bf16: Nf4Pair::load(&m, "bf16")?,
            f16: Nf4Pair::load(&m, "f16")?,
            f32: Nf4Pair::load(&m, "f32")?,
            rows_bf16: nvrtc::function(&m, "nf4_rows_bf16")?,
            fp8: nvrtc::function(&m, "nf4_dequant_fp8")?,
        })
    }

    /// Dequantises `w` into the first `w.n` elements of `out` (a scratch buffer at least that
    /// long, 16-byte aligned as every cudaMalloc'd buffer is) on `stream`.
    pub fn dequantise<T: Nf4Output>(
        &self,
        stream: &Arc<CudaStream>,
        w: &Nf4DeviceWeight<'_>,
        out: &mut CudaSlice<T>,
    ) -> Result<()> {
        let len = out.len();
        let ptr = out.device_ptr_mut(stream).0;
        self.dequantise_to_ptr::<T>(stream, w, ptr, len, Nf4Layout::Flat)
    }

    /// As `dequantise`, into raw device memory of `out_len` elements of `T` at `out_ptr`
    /// (16-byte aligned: the kernel stores 16 bytes at a time), in `layout`.
    pub fn dequantise_to_ptr<T: Nf4Output>(
        &self,
        stream: &Arc<CudaStream>,
        w: &Nf4DeviceWeight<'_>,
        out_ptr: u64,
        out_len: usize,
        layout: Nf4Layout,
    ) -> Result<()> {
        let n = w.n;
        if let Nf4Layout::Padded {
            rows,
            cols,
            rows_pad,
            cols_pad,
        } = layout
        {
            if rows * cols != n || rows > rows_pad || cols > cols_pad || cols_pad % 8 != 0 {
                bail!("NF4 dequantise: cannot pad a {rows}×{cols} weight of {n} values to {rows_pad}×{cols_pad} (row length a multiple of 8)");
            }
        }
        if w.packed.len() < n.div_ceil(2) || out_len < layout.len(n) || w.nf4_code.len() < 16 {
            bail!("NF4 dequantise: buffers too small for {n} weights");
        }
        if !out_ptr.is_multiple_of(16) {
            bail!("NF4 dequantise: the output must be 16-byte aligned (scratch view at a nonzero offset?)");
        }
        let weight = WeightArgs::new(stream, w)?;
        // Flat: 16 outputs per thread; padded: 8.
        let per_thread = match layout {
            Nf4Layout::Flat => 16,
            Nf4Layout::Padded { .. } => 8,
        };
        let threads = layout.len(n).div_ceil(per_thread);
        let block_dim = 256u32;
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(block_dim as usize) as u32, 1, 1),
            block_dim: (block_dim, 1, 1),
            shared_mem_bytes: 0,
        };
        let n64 = n as u64;
        let dims = match layout {
            Nf4Layout::Flat => [0u64; 4],
            Nf4Layout::Padded {
                rows,
                cols,
                rows_pad,
                cols_pad,
            } => [rows, cols, rows_pad, cols_pad].map(|d| d as u64),
        };
        let mut b = stream.launch_builder(T::pick(self, layout));
        weight.push(&mut b);
        b.arg(&out_ptr);
        match layout {
            Nf4Layout::Flat => b.arg(&n64),
            Nf4Layout::Padded { .. } => b.arg(&dims[0]).arg(&dims[1]).arg(&dims[2]).arg(&dims[3]),
        };
        // SAFETY: the arguments match `nf4_dequant_*`'s (flat: `n`) or `nf4_dequant_padded_*`'s
        // (padded: rows, cols, rows_pad, cols_pad) parameters in order and type, the output
        // type being `T`'s kernel (`T::pick`). The buffer lengths are checked above: `n / 2`
        // packed bytes (read 8 at a time from 8-byte-aligned offsets of a device allocation),
        // one absmax (or code) per 64-weight block and one second-level scale per 256 blocks,
        // 16 NF4 and 256 dynamic-map codes. The output is `out_len ≥ layout.len(n)` elements at
        // a 16-byte aligned `out_ptr` (padded rows are a multiple of 8 elements, so every
        // thread's 8-element store stays aligned), which the callers take from a live
        // `CudaSlice` of `T` on `stream` (`dequantise`, `Nf4DequantOp` at the view's offset);
        // threads past the end do nothing.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

/// A weight's arguments in the order every NF4 kernel takes them first: packed codes, plain
/// f32 absmax table (or 0), double-quant codes (or 0), second-level scales (or 0), dynamic map
/// (or 0), offset, NF4 table. A null plain table selects the double-quantised path inside the
/// kernels; raw device pointers (u64) go in as parameters of pointer size.
pub(super) struct WeightArgs {
    packed: u64,
    plain: u64,
    codes: u64,
    absmax2: u64,
    code2: u64,
    offset: f32,
    nf4: u64,
}

impl WeightArgs {
    /// `w`'s arguments, with its absmax tables' lengths checked against its blocks.
    pub(super) fn new(stream: &Arc<CudaStream>, w: &Nf4DeviceWeight<'_>) -> Result<Self> {
        let blocks = w.n.div_ceil(BLOCK);
        let ptr_u8 = |s: &CudaSlice<u8>| s.device_ptr(stream).0;
        let ptr_f32 = |s: &CudaSlice<f32>| s.device_ptr(stream).0;
        let (plain, codes, absmax2, code2, offset) = match &w.absmax {
            Nf4Absmax::Plain(a) => {
                if a.len() < blocks {
                    bail!("NF4: {} absmax values for {blocks} blocks", a.len());
                }
                (ptr_f32(a), 0, 0, 0, 0.0)
            }
            Nf4Absmax::Double {
                codes,
                absmax2,
                code2,
                offset,
            } => {
                if codes.len() < blocks
                    || absmax2.len() < blocks.div_ceil(ABSMAX2_BLOCK)
                    || code2.len() < 256
                {
                    bail!("NF4: double-quantised absmax too short for {blocks} blocks");
                }
                (0, ptr_u8(codes), ptr_f32(absmax2), ptr_f32(code2), *offset)
            }
        };
        Ok(WeightArgs {
            packed: ptr_u8(w.packed),
            plain,
            codes,
            absmax2,
            code2,
            offset,
            nf4: ptr_f32(w.nf4_code),
        })
    }

    /// Pushes the seven arguments onto `b`.
    pub(super) fn push<'a>(&'a self, b: &mut LaunchArgs<'a>) {
        b.arg(&self.packed)
            .arg(&self.plain)
            .arg(&self.codes)
            .arg(&self.absmax2)
            .arg(&self.code2)
            .arg(&self.offset)
            .arg(&self.nf4);
    }
}

impl Nf4Kernels {
    /// `w` (`rows × cols`) as FP8 codes `e4m3(w · inv_r)` into the zero-padded
    /// `rows_pad × cols_pad` bytes at `out_ptr` (16-byte aligned, `cols_pad` a multiple of 16),
    /// and its row scales (1 for padding rows) into the `rows_pad` floats at `scale_ptr`.
    /// The caller owns both regions, on `stream`, at least that large.
    pub fn dequantise_fp8(
        &self,
        stream: &Arc<CudaStream>,
        w: &Nf4DeviceBuffers,
        (out_ptr, scale_ptr): (u64, u64),
        (rows, cols, rows_pad, cols_pad): (usize, usize, usize, usize),
    ) -> Result<()> {
        let Some(row_scale) = &w.fp8_rows else {
            bail!("NF4 to FP8: the weight was uploaded without its row scales");
        };
        if rows * cols != w.n || rows > rows_pad || cols > cols_pad || cols_pad % 16 != 0 {
            bail!("NF4 to FP8: cannot write a {rows}×{cols} weight of {} values as {rows_pad}×{cols_pad} (row length a multiple of 16)", w.n);
        }
        if row_scale.len() < 2 * rows || !out_ptr.is_multiple_of(16) || !scale_ptr.is_multiple_of(4)
        {
            bail!("NF4 to FP8: row scales too short, or an unaligned output");
        }
        let weight = WeightArgs::new(stream, &w.view())?;
        let scales = row_scale.device_ptr(stream).0;
        let threads = (rows_pad * cols_pad).div_ceil(16);
        let cfg = LaunchConfig {
            grid_dim: (threads.div_ceil(256) as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let dims = [rows, cols, rows_pad, cols_pad].map(|d| d as u64);
        let mut b = stream.launch_builder(&self.fp8);
        weight.push(&mut b);
        b.arg(&scales)
            .arg(&out_ptr)
            .arg(&scale_ptr)
            .arg(&dims[0])
            .arg(&dims[1])
            .arg(&dims[2])
            .arg(&dims[3]);
        // SAFETY: the arguments match `nf4_dequant_fp8`'s parameters in order and type. The
        // weight's tables are checked by `WeightArgs::new` and at upload (`n / 2` packed bytes, 16
        // NF4 codes), the row scales hold `2 · rows` floats (checked above); the caller
        // guarantees `rows_pad · cols_pad` bytes at the 16-byte aligned `out_ptr` (every
        // thread's 16-byte store lands inside, `cols_pad` being a multiple of 16) and
        // `rows_pad` floats at `scale_ptr`, live on `stream`.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}

/// An `crate::quant::Nf4Weight` resident on the device (uploaded once at load), with the code
/// tables the kernel reads: `NF4_CODE` and bitsandbytes' signed dynamic map.
pub struct Nf4DeviceBuffers {
    packed: CudaSlice<u8>,
    absmax_plain: Option<CudaSlice<f32>>,
    double: Option<(CudaSlice<u8>, CudaSlice<f32>, f32)>,
    code2: CudaSlice<f32>,
    nf4: CudaSlice<f32>,
    /// Each row's FP8 scale, then its inverse (`quant::fp8::weight_row_scales`), when the
    /// weight's layers compute in FP8.
    fp8_rows: Option<CudaSlice<f32>>,
    n: usize,
}

impl std::fmt::Debug for Nf4DeviceBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Nf4DeviceBuffers({} weights)", self.n)
    }
}

impl Nf4DeviceBuffers {
    /// With `fp8`, also the row scales the FP8 dequantisation reads.
    pub fn upload(
        stream: &Arc<CudaStream>,
        w: &crate::quant::Nf4Weight,
        fp8: bool,
    ) -> Result<Self> {
        use crate::quant::{blockwise8, AbsmaxState, NF4_CODE};
        if w.blocksize != BLOCK {
            bail!("the CUDA NF4 kernel handles blocksize {BLOCK} (bitsandbytes' default), this weight has {}", w.blocksize);
        }
        let (absmax_plain, double) = match &w.absmax {
            AbsmaxState::Plain(a) => (Some(stream.clone_htod(a)?), None),
            AbsmaxState::Double {
                codes,
                absmax2,
                offset,
            } => (
                None,
                Some((
                    stream.clone_htod(codes)?,
                    stream.clone_htod(absmax2)?,
                    *offset,
                )),
            ),
        };
        Ok(Nf4DeviceBuffers {
            packed: stream.clone_htod(&w.packed)?,
            absmax_plain,
            double,
            code2: stream.clone_htod(&blockwise8::dynamic_map()[..])?,
            nf4: stream.clone_htod(&NF4_CODE[..])?,
            fp8_rows: match fp8 {
                true => {
                    let pairs = crate::quant::fp8::weight_row_scales(w)?;
                    let (scales, inverses): (Vec<f32>, Vec<f32>) = pairs.into_iter().unzip();
                    Some(stream.clone_htod(&[scales, inverses].concat())?)
                }
                false => None,
            },
            n: w.numel(),
        })
    }

    pub fn numel(&self) -> usize {
        self.n
    }

    /// Whether the FP8 dequantisation can read this weight (uploaded with its row scales).
    pub fn has_fp8_scales(&self) -> bool {
        self.fp8_rows.is_some()
    }

    /// The kernel's view of this weight.
    pub fn view(&self) -> Nf4DeviceWeight<'_> {
        let absmax = match (&self.absmax_plain, &self.double) {
            (Some(a), _) => Nf4Absmax::Plain(a),
            (None, Some((codes, absmax2, offset))) => Nf4Absmax::Double {
                codes,
                absmax2,
                code2: &self.code2,
                offset: *offset,
            },
            (None, None) => unreachable!("upload sets one of the two"),
        };
        Nf4DeviceWeight {
            packed: &self.packed,
            absmax,
            nf4_code: &self.nf4,
            n: self.n,
        }
    }
}

/// Dequantises a device-resident NF4 weight in place into a contiguous tensor view on the GPU
/// (e.g. `crate::quant::Nf4Scratch`'s shared buffer): `view.inplace_op1(&Nf4DequantOp { .. })`.
pub struct Nf4DequantOp<'a> {
    pub kernels: &'a Nf4Kernels,
    pub weight: &'a Nf4DeviceBuffers,
    pub layout: Nf4Layout,
}

impl candle_core::InplaceOp1 for Nf4DequantOp<'_> {
    fn name(&self) -> &'static str {
        "nf4-dequantize-cuda"
    }

    fn cpu_fwd(
        &self,
        _: &mut candle_core::CpuStorage,
        _: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        candle_core::bail!(
            "nf4-dequantize-cuda runs on CUDA tensors; the CPU path dequantises on the host"
        )
    }

    fn cuda_fwd(
        &self,
        storage: &mut candle_core::cuda_backend::CudaStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        use candle_core::backend::BackendStorage;
        use candle_core::DType;
        let n = self.layout.len(self.weight.numel());
        if !layout.is_contiguous() || layout.shape().elem_count() != n {
            candle_core::bail!(
                "nf4-dequantize-cuda: the view must be contiguous with {n} elements"
            );
        }
        let start = layout.start_offset();
        let stream = storage.device().cuda_stream();
        let w = self.weight.view();
        let run = |r: Result<()>| r.map_err(|e| candle_core::Error::Msg(format!("{e:#}")));
        match storage.dtype() {
            DType::BF16 => {
                let s = storage.as_cuda_slice_mut::<half::bf16>()?;
                let ptr = s.device_ptr_mut(&stream).0 + (start * 2) as u64;
                run(self
                    .kernels
                    .dequantise_to_ptr::<half::bf16>(&stream, &w, ptr, n, self.layout))
            }
            DType::F16 => {
                let s = storage.as_cuda_slice_mut::<half::f16>()?;
                let ptr = s.device_ptr_mut(&stream).0 + (start * 2) as u64;
                run(self
                    .kernels
                    .dequantise_to_ptr::<half::f16>(&stream, &w, ptr, n, self.layout))
            }
            DType::F32 => {
                let s = storage.as_cuda_slice_mut::<f32>()?;
                let ptr = s.device_ptr_mut(&stream).0 + (start * 4) as u64;
                run(self
                    .kernels
                    .dequantise_to_ptr::<f32>(&stream, &w, ptr, n, self.layout))
            }
            other => {
                candle_core::bail!("nf4-dequantize-cuda: cannot write {other:?} (f32, bf16, f16)")
            }
        }
    }
}
