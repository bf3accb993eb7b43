//! `async-u8` on the device: 8-bit RGB at model resolution crosses the bus, and this kernel
//! rescales, normalises and patchifies it into the f32 rows the vision tower reads — the same
//! values, bit for bit, as the loader's CPU patchify: both look every byte up in the same
//! per-channel table (`PreprocessConfig::normalise_table`), so no arithmetic can differ.
//!
//! The kernel's CUDA C is `patchify_kernel.cu` (`kernel_source`).

use super::batch::PatchifyParams;
use super::kernel_source;
use anyhow::{bail, Result};
use candle_core::cuda_backend::cudarc::driver::{
    CudaFunction, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use pagesight_common::nvrtc;
use std::sync::Arc;

pub struct PatchifyKernel {
    func: CudaFunction,
}

impl PatchifyKernel {
    pub fn load(stream: &Arc<CudaStream>) -> Result<Self> {
        let module = nvrtc::load_module(
            stream.context(),
            "pagesight_patchify",
            kernel_source::PATCHIFY,
        )?;
        Ok(PatchifyKernel {
            func: nvrtc::function(&module, "patchify_u8")?,
        })
    }

    /// Launches on `stream`: `rgb` holds the pages (`dims` = (h, w) each) back to back; writes
    /// `out` (rows × row_len f32, allocated by the caller on the same stream).
    pub fn launch(
        &self,
        stream: &Arc<CudaStream>,
        rgb: &CudaSlice<u8>,
        dims: &[(u32, u32)],
        params: &PatchifyParams,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        let mut offsets = Vec::with_capacity(dims.len());
        let mut starts = vec![0u32];
        let mut widths = Vec::with_capacity(dims.len());
        let mut bytes = 0u64;
        for &(h, w) in dims {
            offsets.push(bytes);
            bytes += h as u64 * w as u64 * 3;
            starts.push(starts.last().copied().unwrap_or(0) + params.rows(h, w)? as u32);
            widths.push(w);
        }
        let rows = *starts.last().unwrap_or(&0) as usize;
        if dims.is_empty() || rows == 0 {
            bail!("patchify: empty batch");
        }
        if (rgb.len() as u64) < bytes || out.len() < rows * params.row_len() {
            bail!("patchify: buffers too small ({} bytes of RGB for {bytes}, {} floats for {rows} rows)", rgb.len(), out.len());
        }
        let flat: Vec<f32> = params.table.iter().flatten().copied().collect();
        // Small tables: copied on the compute stream from pageable memory (staged by the driver).
        let table = stream.clone_htod(&flat)?;
        let offsets = stream.clone_htod(&offsets)?;
        let starts_d = stream.clone_htod(&starts)?;
        let widths = stream.clone_htod(&widths)?;
        let (n, patch, merge, temporal) = (
            dims.len() as i32,
            params.patch as i32,
            params.merge as i32,
            params.temporal as i32,
        );
        let cfg = LaunchConfig {
            grid_dim: (rows as u32, 1, 1),
            block_dim: (256, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = stream.launch_builder(&self.func);
        b.arg(rgb)
            .arg(&table)
            .arg(&offsets)
            .arg(&starts_d)
            .arg(&widths);
        b.arg(&n).arg(&patch).arg(&merge).arg(&temporal).arg(out);
        // SAFETY: the arguments match `patchify_u8`'s parameters in order and type. One block per
        // output row, `rows = starts[n_pages]`, so the page search stays within `starts`, and a
        // block writes the `row_len` values of its own row of `out` (checked to hold `rows ×
        // row_len`). `params.rows` accepted each page only with sides that are multiples of
        // `patch · merge`, so every pixel a row reads lies inside its page, and the pages lie
        // inside `rgb` (checked ≥ `bytes`); the table has 3 × 256 entries for a channel and a
        // byte value.
        unsafe { b.launch(cfg) }?;
        Ok(())
    }
}
