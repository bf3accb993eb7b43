//! The one dequantisation buffer every NF4 layer of a model shares.
//!
//! A large batch multiplies by an NF4 weight by dequantising it into this buffer and calling the
//! ordinary GEMM. One buffer, sized for the largest layer, serves every layer in turn — a buffer
//! per layer would bring the dense weights' memory back. Layers hold an `Arc` to it; a mutex
//! serialises its users so two threads never overwrite each other's weight mid-matmul.

use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{anyhow, Context, Result};
use candle_core::{CpuStorage, DType, Device, InplaceOp1, Layout, Tensor};

use super::nf4::Nf4Weight;
pub use super::scratch_weight::ScratchWeight;
use crate::settings::Compute;

/// An NF4 weight resident on the GPU (the CUDA build), or nothing (CPU build).
#[cfg(feature = "cuda")]
pub type DeviceNf4 = crate::gpu::nf4_kernel::Nf4DeviceBuffers;
#[cfg(not(feature = "cuda"))]
#[derive(Debug)]
pub enum DeviceNf4 {}

pub struct Nf4Scratch {
    device: Device,
    /// How the layers that share this scratch compute their GEMMs.
    compute: Compute,
    state: Mutex<ScratchState>,
    /// The CUDA dequantisation kernels, compiled on first use.
    #[cfg(feature = "cuda")]
    kernels: std::sync::OnceLock<Result<crate::gpu::nf4_kernel::Nf4Kernels, String>>,
}

impl std::fmt::Debug for Nf4Scratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nf4Scratch")
            .field("device", &self.device)
            .finish()
    }
}

#[derive(Debug, Default)]
struct ScratchState {
    /// Elements of the largest layer registered so far.
    capacity: usize,
    /// Allocated lazily on first use, in the compute dtype; replaced if a larger layer or
    /// another dtype comes.
    buffer: Option<Tensor>,
}

/// Holds the scratch for one layer's dequantise-then-matmul.
pub struct ScratchLease<'a> {
    state: MutexGuard<'a, ScratchState>,
    scratch: &'a Nf4Scratch,
}

impl Nf4Scratch {
    pub fn new(device: &Device, compute: Compute) -> Arc<Self> {
        Arc::new(Nf4Scratch {
            device: device.clone(),
            compute,
            state: Mutex::new(ScratchState::default()),
            #[cfg(feature = "cuda")]
            kernels: std::sync::OnceLock::new(),
        })
    }

    /// Copies a weight's codes and absmax state to the GPU once, so forward passes dequantise
    /// there (None on the CPU, or when the upload fails: then the host path serves).
    /// With `fp8`, also the row scales its FP8 dequantisation reads.
    pub fn upload(&self, weight: &Nf4Weight, fp8: bool) -> Option<Arc<DeviceNf4>> {
        #[cfg(feature = "cuda")]
        if let Device::Cuda(d) = &self.device {
            match DeviceNf4::upload(&d.cuda_stream(), weight, fp8) {
                Ok(b) => return Some(Arc::new(b)),
                Err(e) => tracing::warn!("NF4 weight stays on the host (dequantised there): {e:#}"),
            }
        }
        let _ = (weight, fp8);
        None
    }

    #[cfg(feature = "cuda")]
    pub(crate) fn kernels(&self) -> Result<&crate::gpu::nf4_kernel::Nf4Kernels> {
        let Device::Cuda(d) = &self.device else {
            anyhow::bail!("NF4 kernels need a CUDA device")
        };
        self.kernels
            .get_or_init(|| {
                crate::gpu::nf4_kernel::Nf4Kernels::load(&d.cuda_stream())
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("compiling the NF4 dequantisation kernel: {e}"))
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Whether a `gemm_shape` product of these device weights runs in FP8: the scratch's
    /// compute says so, the activations are bf16 on a GPU, every weight carries its row scales,
    /// and the shape fits (`fp8::shape_fits`). Otherwise the dtype's GEMM serves.
    #[cfg(feature = "cuda")]
    pub(crate) fn takes_fp8<'w>(
        &self,
        dtype: DType,
        device: &Device,
        (out, inp): (usize, usize),
        mut weights: impl Iterator<Item = &'w DeviceNf4>,
    ) -> bool {
        self.compute == Compute::Fp8
            && dtype == DType::BF16
            && device.is_cuda()
            && super::fp8::shape_fits((out, inp))
            && weights.all(|w| w.has_fp8_scales())
    }

    /// Makes room for a layer of `numel` weights (called when a layer is quantised, so the buffer
    /// is sized for the largest one before the first forward).
    pub fn reserve(&self, numel: usize) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.capacity = s.capacity.max(numel);
    }

    /// Elements the buffer holds (or will hold once allocated).
    pub fn capacity(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .capacity
    }

    /// Bytes currently allocated.
    pub fn allocated_bytes(&self) -> usize {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.buffer
            .as_ref()
            .map(|b| b.elem_count() * b.dtype().size_in_bytes())
            .unwrap_or(0)
    }

    /// Locks the buffer for one layer; the lease ends when dropped.
    pub fn lease(&self) -> ScratchLease<'_> {
        ScratchLease {
            state: self.state.lock().unwrap_or_else(|p| p.into_inner()),
            scratch: self,
        }
    }
}

impl ScratchLease<'_> {
    /// The shared buffer, at least `numel` elements of `dtype` (grown, and the capacity raised,
    /// when it is not).
    fn buffer(&mut self, numel: usize, dtype: DType, device: &Device) -> Result<Tensor> {
        self.state.capacity = self.state.capacity.max(numel);
        let capacity = self.state.capacity;
        let fits = matches!(&self.state.buffer,
            Some(b) if b.dtype() == dtype && b.elem_count() >= capacity);
        if !fits {
            // Drop the old buffer first so the two never coexist.
            self.state.buffer = None;
            let buf = Tensor::zeros(capacity, dtype, device).with_context(|| {
                format!("allocating the NF4 scratch buffer ({capacity} × {dtype:?})")
            })?;
            self.state.buffer = Some(buf);
        }
        self.state
            .buffer
            .clone()
            .ok_or_else(|| anyhow!("NF4 scratch missing"))
    }

    /// Dequantises the device-resident weights `parts` (all `[out_i, in]`) one under the other
    /// into the buffer and returns the `[Σ out_i, in]` weight: layers that read the same input
    /// (`StackedLinear`) then run as one GEMM. It aliases the buffer.
    #[cfg(feature = "cuda")]
    pub fn dequantize_stack(
        &mut self,
        parts: &[(&Nf4Weight, &DeviceNf4)],
        dtype: DType,
        device: &Device,
    ) -> Result<ScratchWeight> {
        let inp = parts.first().map(|(w, _)| w.shape.1).unwrap_or(0);
        anyhow::ensure!(
            inp > 0
                && parts
                    .iter()
                    .all(|(w, _)| w.shape.1 == inp && w.numel() % 64 == 0),
            "NF4 scratch: stacked weights must share their input width (and be whole 64-blocks)"
        );
        let out: usize = parts.iter().map(|(w, _)| w.shape.0).sum();
        if self
            .scratch
            .takes_fp8(dtype, device, (out, inp), parts.iter().map(|(_, d)| *d))
        {
            return self.dequantize_fp8(parts, (out, inp));
        }
        let numel = out * inp;
        let buffer = self.buffer(numel, dtype, device)?;
        let mut offset = 0;
        for (w, dw) in parts {
            let view = buffer.narrow(0, offset, w.numel())?;
            view.inplace_op1(&crate::gpu::nf4_kernel::Nf4DequantOp {
                kernels: self.scratch.kernels()?,
                weight: dw,
                layout: crate::gpu::nf4_kernel::Nf4Layout::Flat,
            })?;
            offset += w.numel();
        }
        Ok(ScratchWeight::Dense(
            buffer.narrow(0, 0, numel)?.reshape((out, inp))?,
        ))
    }

    /// `parts` (each `[out_i, cols_i]` inside a `[rows_i, gemm.1]` block) as FP8 codes with
    /// their row scales, one block under the other, into the buffer (as bytes).
    #[cfg(feature = "cuda")]
    fn dequantize_fp8(
        &mut self,
        parts: &[(&Nf4Weight, &DeviceNf4)],
        gemm: (usize, usize),
    ) -> Result<ScratchWeight> {
        use crate::gpu::fp8::{Fp8DequantOp, Fp8Weight};
        let layout = Fp8Weight::layout(gemm);
        let buffer = self.buffer(layout.bytes(), DType::U8, &self.scratch.device)?;
        let view = buffer.narrow(0, 0, layout.bytes())?;
        let mut row = 0;
        for (i, (w, dw)) in parts.iter().enumerate() {
            // A single weight fills the whole GEMM shape (padded); stacked ones their own rows.
            let rows_pad = if i + 1 == parts.len() {
                gemm.0 - row
            } else {
                w.shape.0
            };
            view.inplace_op1(&Fp8DequantOp {
                kernels: self.scratch.kernels()?,
                weight: dw,
                shape: w.shape,
                block: (row, rows_pad),
                layout,
            })?;
            row += rows_pad;
        }
        Ok(ScratchWeight::Fp8(Fp8Weight {
            bytes: view,
            layout,
        }))
    }

    /// Dequantises `weight` into the buffer for activations of `dtype` and returns it in the
    /// `gemm_shape`: the `[out, in]` weight in its top-left corner, zeros around it where
    /// `gemm_shape` is larger (the padded GEMM shape of `Nf4Linear`). On CUDA the kernel writes
    /// the padded matrix directly. In `dtype`, or as FP8 codes and scales (emulated in f32 on
    /// the CPU) under `Compute::Fp8`. It aliases the buffer: use it before the lease is dropped.
    pub fn dequantize(
        &mut self,
        weight: &Nf4Weight,
        device_weight: Option<&DeviceNf4>,
        dtype: DType,
        device: &Device,
        gemm_shape: (usize, usize),
        fp8: bool,
    ) -> Result<ScratchWeight> {
        #[cfg(feature = "cuda")]
        if let Some(dw) = device_weight {
            if fp8
                && self
                    .scratch
                    .takes_fp8(dtype, device, gemm_shape, std::iter::once(dw))
            {
                return self.dequantize_fp8(&[(weight, dw)], gemm_shape);
            }
        }
        if fp8
            && self.scratch.compute == Compute::Fp8
            && device.is_cpu()
            && super::fp8::shape_fits(gemm_shape)
        {
            let w = self.dequantize_in(weight, None, DType::F32, device, gemm_shape, true)?;
            return Ok(ScratchWeight::EmulatedFp8(w));
        }
        let w = self.dequantize_in(weight, device_weight, dtype, device, gemm_shape, false)?;
        Ok(ScratchWeight::Dense(w))
    }

    /// The weight as `dtype` in the `gemm_shape` (see [`Self::dequantize`]), each row rounded
    /// as FP8 codes times their scale when `fp8_rounded` (the CPU's emulation).
    fn dequantize_in(
        &mut self,
        weight: &Nf4Weight,
        device_weight: Option<&DeviceNf4>,
        dtype: DType,
        device: &Device,
        gemm_shape: (usize, usize),
        fp8_rounded: bool,
    ) -> Result<Tensor> {
        let numel = gemm_shape.0 * gemm_shape.1;
        let (out, inp) = weight.shape;
        anyhow::ensure!(
            gemm_shape.0 >= out && gemm_shape.1 >= inp,
            "NF4 scratch: a {out}×{inp} weight does not fit a {}×{} GEMM",
            gemm_shape.0,
            gemm_shape.1
        );
        let buffer = self.buffer(numel, dtype, device)?;
        #[cfg(feature = "cuda")]
        if let (Some(dw), false) = (device_weight, device.is_cpu()) {
            let view = buffer.narrow(0, 0, numel)?;
            let op = crate::gpu::nf4_kernel::Nf4DequantOp {
                kernels: self.scratch.kernels()?,
                weight: dw,
                layout: crate::gpu::nf4_kernel::Nf4Layout::for_gemm(weight.shape, gemm_shape),
            };
            view.inplace_op1(&op)?;
            return Ok(view.reshape(gemm_shape)?);
        }
        let _ = (device_weight, &self.scratch);
        let view = buffer.narrow(0, 0, weight.numel())?;
        if device.is_cpu() {
            let absmax = weight.absmax.decode();
            let fp8_scales = match fp8_rounded {
                true => Some(super::fp8::weight_row_scales(weight)?),
                false => None,
            };
            view.inplace_op1(&DequantizeOp {
                weight,
                absmax: &absmax,
                fp8_scales: fp8_scales.as_deref(),
            })?;
        } else {
            // No device copy of the weight: dequantise on the host and copy (correct, slow).
            let host = host_dequantize(weight, dtype)?;
            buffer.slice_set(&host.to_device(device)?, 0, 0)?;
        }
        let w = view.reshape(weight.shape)?;
        if gemm_shape == weight.shape {
            return Ok(w);
        }
        // A padded copy: a few MB, against the GEMM it speeds up.
        Ok(w.pad_with_zeros(0, 0, gemm_shape.0 - out)?
            .pad_with_zeros(1, 0, gemm_shape.1 - inp)?)
    }
}

fn host_dequantize(weight: &Nf4Weight, dtype: DType) -> Result<Tensor> {
    let n = weight.numel();
    Ok(match dtype {
        DType::F32 => Tensor::from_vec(weight.dequantize::<f32>()?, n, &Device::Cpu)?,
        DType::BF16 => Tensor::from_vec(weight.dequantize::<half::bf16>()?, n, &Device::Cpu)?,
        DType::F16 => Tensor::from_vec(weight.dequantize::<half::f16>()?, n, &Device::Cpu)?,
        other => anyhow::bail!("NF4: cannot dequantise to {other:?} (use f32, bf16 or f16)"),
    })
}

/// Writes a weight's dequantised values into a CPU buffer in place.
struct DequantizeOp<'a> {
    weight: &'a Nf4Weight,
    absmax: &'a [f32],
    /// Each row's FP8 `(scale, inverse)`: the values then rounded as the FP8 GEMM reads them
    /// (the CPU's emulation of `Compute::Fp8`; f32 only).
    fp8_scales: Option<&'a [(f32, f32)]>,
}

impl InplaceOp1 for DequantizeOp<'_> {
    fn name(&self) -> &'static str {
        "nf4-dequantize"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
        let n = self.weight.numel();
        let start = layout.start_offset();
        if !layout.is_contiguous() || layout.shape().elem_count() != n {
            candle_core::bail!(
                "nf4-dequantize: the scratch view must be contiguous with {n} elements"
            );
        }
        let run = |r: Result<()>| r.map_err(|e| candle_core::Error::Msg(format!("{e:#}")));
        match (storage, self.fp8_scales) {
            (CpuStorage::F32(v), Some(scales)) => {
                let values = &mut v[start..start + n];
                run(self.weight.dequantize_with_absmax(self.absmax, values))?;
                let cols = self.weight.shape.1;
                for (row, &pair) in values.chunks_mut(cols).zip(scales) {
                    super::fp8::round_row(row, pair);
                }
                Ok(())
            }
            (_, Some(_)) => candle_core::bail!("nf4-dequantize: the FP8 emulation runs in f32"),
            (CpuStorage::F32(v), None) => run(self
                .weight
                .dequantize_with_absmax(self.absmax, &mut v[start..start + n])),
            (CpuStorage::BF16(v), None) => run(self
                .weight
                .dequantize_with_absmax(self.absmax, &mut v[start..start + n])),
            (CpuStorage::F16(v), None) => run(self
                .weight
                .dequantize_with_absmax(self.absmax, &mut v[start..start + n])),
            _ => candle_core::bail!("nf4-dequantize: the scratch dtype must be f32, bf16 or f16"),
        }
    }
}
