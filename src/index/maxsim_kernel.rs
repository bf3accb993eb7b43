//! Fused exact MaxSim on tensor cores (CUDA builds): one kernel reads every resident page token
//! once and writes one f32 score per page, instead of cuBLAS writing the `[nq, pages·len]`
//! similarity matrix to VRAM for a max and a sum to read back.
//!
//! Each warp scores whole pages (grid-stride over the page table, see `page_table`). The query
//! (f16, 16 or 32 rows, zero-padded) sits in registers as `mma.sync.m16n8k16` A fragments for
//! the whole launch; page tokens stream from global memory straight into B fragments with
//! 16-byte loads, 16 tokens (4 KiB) in flight per warp while the previous 16 are multiplied.
//! Products are f16 × f16 with f32 accumulation; the running max per (query row, token column)
//! and the final sum stay in f32.
//!
//! No shared memory and no ldmatrix: a dot product may sum its k dimension in any order as long
//! as A and B use the same one. Lane (g = lane / 4, t = lane % 4) loads, of token g of an 8-token
//! tile, the 16-byte chunks c = 4i + t (dims 8c .. 8c + 7); its registers (x, y) serve k-step
//! 2i as b0, b1 and (z, w) k-step 2i + 1. Under that mapping, logical k (2t, 2t + 1) of step
//! 2i + j is dims 8c + 4j + (0, 1) and (2t + 8, 2t + 9) is 8c + 4j + (2, 3): the A fragments load
//! the query's dims in the same order. Four lanes read a token's 64 contiguous bytes per load,
//! so every 32-byte sector fetched is used whole.
//!
//! Two ways of getting the tokens there (`FusedLoads`): straight into registers, as above, or
//! staged through a per-warp ring in shared memory by `cp.async` (the default). The products,
//! maxima and sums are the same instructions in the same order, so both give bit-identical
//! scores; the ring keeps a warp's next stages in flight without holding registers for them.
//!
//! The kernel's CUDA C is `maxsim_kernel.cu` (`kernel_source`), compiled by NVRTC once per
//! context and dimension.

use super::format::{IndexError, Result};
use super::kernel_source;
use super::page_table::{self, ChunkAddr, FusedLoads, TableEntry};
use candle_core::cuda_backend::cudarc::driver::{
    sys, CudaFunction, CudaSlice, CudaStream, DevicePtr, LaunchConfig, PushKernelArg,
};
use candle_core::{Device, Storage, Tensor};
use pagesight_common::nvrtc;
use std::sync::{Arc, Mutex};

/// Warps per block, 4 blocks per SM (the kernels are bound to 128 registers a thread); `RING_WARPS` in `maxsim_kernel.cu` is the same number (the ring kernels
/// index their shared memory by warp).
const WARPS_PER_BLOCK: u32 = 4;
const BLOCKS_PER_SM: u32 = 4;

fn err(what: &str) -> impl FnOnce(String) -> IndexError + '_ {
    move |e| IndexError::Invalid(format!("fused MaxSim kernel: {what}: {e}"))
}

struct Functions {
    q16: CudaFunction,
    q32: CudaFunction,
    q16_ring: CudaFunction,
    q32_ring: CudaFunction,
}

impl Functions {
    fn get(&self, loads: FusedLoads, rows: usize) -> &CudaFunction {
        match (loads, rows == 16) {
            (FusedLoads::Registers, true) => &self.q16,
            (FusedLoads::Registers, false) => &self.q32,
            (FusedLoads::SharedRing, true) => &self.q16_ring,
            (FusedLoads::SharedRing, false) => &self.q32_ring,
        }
    }
}

/// Compiled modules per (CUDA context, dim): compiling takes NVRTC a fraction of a second.
static COMPILED: Mutex<Vec<(usize, usize, Arc<Functions>)>> = Mutex::new(Vec::new());

fn functions(stream: &Arc<CudaStream>, dim: usize) -> Result<Arc<Functions>> {
    let key = Arc::as_ptr(stream.context()) as usize;
    let mut all = COMPILED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, f)) = all.iter().find(|(k, d, _)| *k == key && *d == dim) {
        return Ok(f.clone());
    }
    let src = kernel_source::maxsim(dim);
    let compiled = (|| {
        let m = nvrtc::load_module(stream.context(), &format!("pagesight_maxsim_{dim}"), &src)?;
        let f = Functions {
            q16: nvrtc::function(&m, "maxsim_f16_q16")?,
            q32: nvrtc::function(&m, "maxsim_f16_q32")?,
            q16_ring: nvrtc::function(&m, "maxsim_f16_q16_ring")?,
            q32_ring: nvrtc::function(&m, "maxsim_f16_q32_ring")?,
        };
        // The rings need 4 blocks' static shared memory on each SM: ask for the carveout
        // that leaves it (the rest stays L1, which these streaming loads bypass anyway).
        for ring in [&f.q16_ring, &f.q32_ring] {
            ring.set_attribute(
                sys::CUfunction_attribute::CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT,
                100,
            )
            .map_err(|e| anyhow::anyhow!("setting the shared-memory carveout: {e:?}"))?;
        }
        anyhow::Ok(f)
    })()
    .map_err(|e| err("compiling")(format!("{e:#}")))?;
    let f = Arc::new(compiled);
    all.push((key, dim, f.clone()));
    Ok(f)
}

/// The fused kernel over a `TensorScorer`'s resident chunks. Holds raw device addresses of the
/// chunk tensors: its owner keeps those tensors alive and unchanged for as long as it lives.
pub struct FusedMaxSim {
    stream: Arc<CudaStream>,
    functions: Arc<Functions>,
    loads: FusedLoads,
    max_blocks: u32,
    dim: usize,
    chunks: Vec<ChunkAddr>,
    /// The table of every resident page, output slots as the owner numbered them.
    full_table: CudaSlice<u64>,
    full_pages: usize,
}

fn chunk_addr(stream: &CudaStream, t: &Tensor) -> Result<ChunkAddr> {
    let (pages, len, _) = t.dims3().map_err(|e| err("chunk shape")(e.to_string()))?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cuda(cs) = &*storage else {
        return Err(err("chunk")("not on a CUDA device".into()));
    };
    let slice = cs
        .as_cuda_slice::<half::f16>()
        .map_err(|e| err("chunk")(e.to_string()))?;
    let base = slice.device_ptr(stream).0 + (layout.start_offset() * 2) as u64;
    Ok(ChunkAddr { base, pages, len })
}

impl FusedMaxSim {
    /// Compiles (once per context and dim) and records where `chunks` (`[pages, len, dim]` f16,
    /// contiguous) live; `full` lists every page for `score_full`.
    pub fn new(
        device: &Device,
        chunks: &[&Tensor],
        dim: usize,
        full: &[TableEntry],
    ) -> Result<Self> {
        let Device::Cuda(dev) = device else {
            return Err(err("device")("the fused kernel runs on CUDA only".into()));
        };
        if !page_table::kernel_supports(dim) {
            return Err(err("shape")(format!(
                "{dim}-d vectors (needs a multiple of 32, ≤ 128)"
            )));
        }
        let stream = dev.cuda_stream();
        let functions = functions(&stream, dim)?;
        let sms = stream
            .context()
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(|e| err("reading the SM count")(format!("{e:?}")))?;
        let chunks = chunks
            .iter()
            .map(|t| {
                if !t.is_contiguous() {
                    return Err(err("chunk")("not contiguous".into()));
                }
                chunk_addr(&stream, t)
            })
            .collect::<Result<Vec<_>>>()?;
        let table = page_table::encode(full, &chunks, dim)?;
        let full_table = upload(&stream, &table)?;
        Ok(FusedMaxSim {
            stream,
            functions,
            loads: FusedLoads::default(),
            max_blocks: (sms.max(1) as u32) * BLOCKS_PER_SM,
            dim,
            chunks,
            full_table,
            full_pages: full.len(),
        })
    }

    pub fn loads(&self) -> FusedLoads {
        self.loads
    }

    /// Switches how tokens reach the tensor cores (benchmarks compare both; scores are equal).
    pub fn set_loads(&mut self, loads: FusedLoads) {
        self.loads = loads;
    }

    /// Scores of every page of the full table, `n_out` slots (slots of no page stay 0).
    pub fn score_full(&self, q: &[f32], nq: usize, n_out: usize) -> Result<Vec<f32>> {
        self.score(&self.full_table, self.full_pages, q, nq, n_out)
    }

    /// Scores of `entries` (a subset, e.g. a prefilter's candidates) into `n_out` slots.
    pub fn score_entries(
        &self,
        entries: &[TableEntry],
        q: &[f32],
        nq: usize,
        n_out: usize,
    ) -> Result<Vec<f32>> {
        let table = page_table::encode(entries, &self.chunks, self.dim)?;
        if table.is_empty() {
            return Ok(vec![0.0; n_out]);
        }
        let table = upload(&self.stream, &table)?;
        self.score(&table, entries.len(), q, nq, n_out)
    }

    /// Milliseconds the kernel alone takes over the full table (CUDA events; excludes the
    /// query upload, the copy back and the host's top-k).
    pub fn time_full_kernel(&self, q: &[f32], nq: usize, n_out: usize) -> Result<f64> {
        let ctx = self.stream.context();
        let ev = || {
            ctx.new_event(Some(sys::CUevent_flags::CU_EVENT_DEFAULT))
                .map_err(|e| err("creating a timing event")(format!("{e:?}")))
        };
        let (start, end) = (ev()?, ev()?);
        let padded = page_table::pad_query(q, nq, self.dim);
        let qd = upload(&self.stream, &padded.values)?;
        let mut out = self.alloc_out(padded.groups * n_out)?;
        let rec = |e: &candle_core::cuda_backend::cudarc::driver::CudaEvent| {
            e.record(&self.stream)
                .map_err(|x| err("recording a timing event")(format!("{x:?}")))
        };
        rec(&start)?;
        self.launch(
            &self.full_table,
            self.full_pages,
            &qd,
            &padded,
            &mut out,
            n_out,
        )?;
        rec(&end)?;
        let ms = start
            .elapsed_ms(&end)
            .map_err(|e| err("reading the timing events")(format!("{e:?}")))?;
        Ok(ms as f64)
    }

    fn alloc_out(&self, n: usize) -> Result<CudaSlice<f32>> {
        self.stream
            .alloc_zeros::<f32>(n.max(1))
            .map_err(|e| err("allocating the scores")(format!("{e:?}")))
    }

    fn score(
        &self,
        table: &CudaSlice<u64>,
        n: usize,
        q: &[f32],
        nq: usize,
        n_out: usize,
    ) -> Result<Vec<f32>> {
        if nq == 0 || q.len() < nq * self.dim {
            return Err(err("query")(format!(
                "{} values for {nq} tokens of {}",
                q.len(),
                self.dim
            )));
        }
        let padded = page_table::pad_query(q, nq, self.dim);
        let qd = upload(&self.stream, &padded.values)?;
        let mut out = self.alloc_out(padded.groups * n_out)?;
        self.launch(table, n, &qd, &padded, &mut out, n_out)?;
        let partial = self
            .stream
            .clone_dtoh(&out)
            .map_err(|e| err("copying scores back")(format!("{e:?}")))?;
        Ok(page_table::sum_groups(&partial, padded.groups, n_out))
    }

    fn launch(
        &self,
        table: &CudaSlice<u64>,
        n: usize,
        qd: &CudaSlice<half::f16>,
        padded: &page_table::PaddedQuery,
        out: &mut CudaSlice<f32>,
        n_out: usize,
    ) -> Result<()> {
        if n == 0 {
            return Ok(());
        }
        let (n32, n_out32) = match (u32::try_from(n), u32::try_from(n_out)) {
            (Ok(a), Ok(b)) => (a, b),
            _ => return Err(err("launch")(format!("{n} pages / {n_out} slots"))),
        };
        let f = self.functions.get(self.loads, padded.rows);
        let blocks = n32.div_ceil(WARPS_PER_BLOCK).min(self.max_blocks);
        let cfg = LaunchConfig {
            grid_dim: (blocks, padded.groups as u32, 1),
            block_dim: (32 * WARPS_PER_BLOCK, 1, 1),
            shared_mem_bytes: 0,
        };
        let mut b = self.stream.launch_builder(f);
        b.arg(table).arg(&n32).arg(qd).arg(out).arg(&n_out32);
        // SAFETY: the arguments match `maxsim_f16_q16`/`_q32` (and their `_ring` twins, same
        // signature) in order and type, the variant chosen by `padded.rows`. `table` holds `n` entries from `page_table::encode`, each the
        // 16-byte-aligned address of a page inside a chunk tensor (row < pages checked) with a
        // length that is a multiple of 32 tokens, so every 16-byte load stays in that page; the
        // chunk tensors stay alive and unchanged while `self` lives (the owner's promise, see
        // `FusedMaxSim`), and the kernel runs on their stream. `qd` holds `groups` groups of
        // `rows × dim` f16 (`pad_query`), one per grid row, and `out` holds `groups × n_out`
        // floats; every entry's output slot is below `n_out` (the scorer numbers them by page
        // position, `n_out` being the page count).
        unsafe { b.launch(cfg) }.map_err(|e| err("launching")(format!("{e:?}")))?;
        Ok(())
    }
}

fn upload<T: candle_core::cuda_backend::cudarc::driver::DeviceRepr>(
    stream: &Arc<CudaStream>,
    host: &[T],
) -> Result<CudaSlice<T>> {
    stream
        .clone_htod(host)
        .map_err(|e| err("uploading")(format!("{e:?}")))
}
