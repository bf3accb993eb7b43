//! `pagesight bench gpu-selftest`: the proofs of the GPU pipeline, run on the GPU machine as one
//! binary. Prints one `PASS name: …` / `FAIL name: …` line per check and a JSON report.
//!
//! - copies run on a stream other than the compute stream;
//! - copy N+1 overlaps compute N in ≥ 95 % of batches (CUDA events);
//! - a deliberately delayed copy stream leaves every result bit-identical (no early reads);
//! - async-u8's GPU patchify equals the loader's CPU patchify exactly;
//! - the NF4 kernel equals the CPU dequantisation bit-exactly, and its bandwidth;
//! - the fused MaxSim kernel (both ways of loading tokens) equals the CPU's exact MaxSim within
//!   the query's f16 rounding, the two loads bit-identically;
//! - the model's embeddings on the GPU (bf16, fused kernels on and off) are within the bf16
//!   tolerance of the f32 reference fixture, and fused equals unfused on 3B shapes.

use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct GpuSelftestArgs {
    /// CUDA device ordinal.
    #[arg(long, default_value_t = 0)]
    pub cuda: usize,
    /// Batches per pipelined run.
    #[arg(long, default_value_t = 40)]
    pub batches: usize,
    /// Pages per batch.
    #[arg(long, default_value_t = 4)]
    pub batch_size: usize,
    /// Write the full report here as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Run only these parts (pipeline, nf4, attention, elementwise, maxsim, fp8, model); all by
    /// default.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

#[cfg(not(feature = "cuda"))]
pub fn run(_args: GpuSelftestArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "the GPU self-test needs a build with the `cuda` feature (scripts/build-cuda.sh) and an NVIDIA GPU"
    )
}

#[cfg(feature = "cuda")]
pub fn run(args: GpuSelftestArgs) -> anyhow::Result<()> {
    cuda::run(args)
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::GpuSelftestArgs;
    use crate::gpu_nf4_check;
    use anyhow::{anyhow, Result};
    use candle_core::{DType, Device, Tensor};
    use pagesight_engine::gpu::batch::{BatchModel, LoaderBatch, PatchifyParams, StagePages};
    use pagesight_engine::gpu::pipelined::{PipelineConfig, PipelinedExecutor};
    use pagesight_engine::gpu::timings::{summarise, BatchGpuTimings, GpuRunSummary};
    use pagesight_engine::settings::TransferMode;
    use pagesight_engine::stage::{Stage, StageClock};
    use pagesight_loader::RenderedPage;
    use pagesight_model::PreprocessConfig;
    use serde_json::json;

    type Batch = LoaderBatch;

    /// SM clock cycles the copy-stream delay spins per intended millisecond, reckoned at a 2 GHz
    /// clock: the delay only has to outlast the copy it holds back, not be exact.
    const SPIN_CYCLES_PER_MS: u64 = 2_000_000;

    /// Deterministic pseudo-random numbers (xorshift64*), so runs can be compared.
    pub struct Rng(u64);
    impl Rng {
        pub fn new(seed: u64) -> Self {
            Rng(seed.max(1))
        }
        pub fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        pub fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    /// Random pages at model resolution (sides multiples of 28, at most max_pixels).
    fn make_batches(n: usize, per: usize, cfg: &PreprocessConfig, seed: u64) -> Vec<Batch> {
        let mut rng = Rng::new(seed);
        let f = cfg.factor();
        (0..n)
            .map(|b| Batch {
                pages: (0..per)
                    .map(|i| {
                        let gh = 8 + rng.below(25) as u32; // up to 32·28 = 896
                        let gw =
                            (8 + rng.below(17) as u32).min((cfg.max_pixels / (gh * f * f)).max(1));
                        let (h, w) = (gh * f, gw * f);
                        let rgb = (0..(h * w * 3) as usize)
                            .map(|_| rng.next() as u8)
                            .collect();
                        RenderedPage {
                            file_index: b,
                            page: i as u32 + 1,
                            page_count: per as u32,
                            width: w,
                            height: h,
                            rgb,
                            text: String::new(),
                            note: None,
                            render_secs: 0.0,
                            resize_secs: 0.0,
                        }
                    })
                    .collect(),
                cfg: cfg.clone(),
            })
            .collect()
    }

    /// Returns the pixels exactly as the compute stream saw them (a device copy, fetched).
    struct Probe;
    impl BatchModel for Probe {
        type Output = Vec<f32>;
        fn vision(&mut self, pixels: &Tensor, _g: &[[u32; 3]]) -> Result<Tensor> {
            Ok(pixels.copy()?)
        }
        fn lm(&mut self, vision: &Tensor, _g: &[[u32; 3]]) -> Result<Tensor> {
            Ok(vision.clone())
        }
        fn fetch(&mut self, out: &Tensor, _g: &[[u32; 3]]) -> Result<Vec<f32>> {
            Ok(out.flatten_all()?.to_vec1::<f32>()?)
        }
    }

    /// A stand-in forward pass: a chain of bf16 matmuls (1176 → 4096 → 1176), `steps` of them so
    /// that a batch's compute outlasts packing the next batch on the host, which then hides
    /// behind it as it does behind the real model's forward pass.
    struct MatmulChain {
        up: Tensor,
        down: Tensor,
        steps: usize,
    }
    impl BatchModel for MatmulChain {
        type Output = Vec<f32>;
        fn vision(&mut self, pixels: &Tensor, _g: &[[u32; 3]]) -> Result<Tensor> {
            let mut x = pixels.to_dtype(DType::BF16)?;
            for _ in 0..self.steps / 2 {
                x = x.matmul(&self.up)?.matmul(&self.down)?;
            }
            Ok(x)
        }
        fn lm(&mut self, vision: &Tensor, _g: &[[u32; 3]]) -> Result<Tensor> {
            let mut x = vision.clone();
            for _ in self.steps / 2..self.steps {
                x = x.matmul(&self.up)?.matmul(&self.down)?;
            }
            Ok(x.narrow(1, 0, 16)?.to_dtype(DType::F32)?)
        }
        fn fetch(&mut self, out: &Tensor, _g: &[[u32; 3]]) -> Result<Vec<f32>> {
            Ok(out.flatten_all()?.to_vec1::<f32>()?)
        }
    }

    struct RunOut {
        outputs: Vec<Vec<f32>>,
        timings: Vec<BatchGpuTimings>,
    }

    fn run_batches<M: BatchModel<Output = Vec<f32>>>(
        exec: &mut PipelinedExecutor<Batch>,
        mode: TransferMode,
        batches: &[Batch],
        model: &mut M,
    ) -> Result<RunOut> {
        let mut clock = StageClock::start(Stage::Render);
        let mut out = RunOut {
            outputs: Vec::new(),
            timings: Vec::new(),
        };
        let mut push = |f: pagesight_engine::gpu::pipelined::Finished<Batch, Vec<f32>>| {
            out.outputs.push(f.output);
            out.timings.push(f.timings);
        };
        for b in batches {
            for f in exec
                .submit(mode, b.clone(), model, &mut clock)
                .map_err(|e| anyhow!("{e:?}"))?
            {
                push(f);
            }
        }
        if let Some(f) = exec
            .flush(model, &mut clock)
            .map_err(|e| anyhow!("{e:?}"))?
        {
            push(f);
        }
        if out.outputs.len() != batches.len() {
            return Err(anyhow!(
                "{} batches in, {} results out",
                batches.len(),
                out.outputs.len()
            ));
        }
        Ok(out)
    }

    struct Report {
        lines: Vec<(bool, String, String)>,
        json: serde_json::Map<String, serde_json::Value>,
    }
    impl Report {
        fn check(&mut self, name: &str, ok: bool, detail: String) {
            println!("{} {name}: {detail}", if ok { "PASS" } else { "FAIL" });
            self.lines.push((ok, name.into(), detail));
        }
        fn error(&mut self, name: &str, e: anyhow::Error) {
            self.check(name, false, format!("error: {e:#}"));
        }
        /// Each check of one part, or the part's error under `part`.
        fn part(&mut self, part: &str, checks: Result<Vec<crate::gpu_nf4_check::Nf4Check>>) {
            match checks {
                Ok(checks) => {
                    for c in &checks {
                        self.check(&c.name, c.ok, c.detail.clone());
                    }
                }
                Err(e) => self.error(part, e),
            }
        }
    }

    fn first_mismatch(a: &[Vec<f32>], b: &[Vec<f32>]) -> Option<(usize, usize)> {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            if x.len() != y.len() {
                return Some((i, usize::MAX));
            }
            if let Some(j) = x
                .iter()
                .zip(y)
                .position(|(p, q)| p.to_bits() != q.to_bits())
            {
                return Some((i, j));
            }
        }
        None
    }

    fn summary_json(s: &GpuRunSummary) -> serde_json::Value {
        serde_json::to_value(s).unwrap_or_default()
    }

    pub fn run(args: GpuSelftestArgs) -> Result<()> {
        let device = Device::new_cuda(args.cuda)?;
        let cfg = PreprocessConfig::default();
        let p = PatchifyParams::from_config(&cfg);
        let mut exec = PipelinedExecutor::<Batch>::new(
            &device,
            p.clone(),
            PipelineConfig {
                slots: 3,
                max_batch: args.batch_size,
                max_pixels_per_page: cfg.max_pixels as usize,
            },
        )?;
        let mut rep = Report {
            lines: Vec::new(),
            json: serde_json::Map::new(),
        };
        let name = exec
            .transfer()
            .context()
            .name()
            .unwrap_or_else(|_| "unknown GPU".into());
        println!("device: {name}");
        rep.json.insert("device".into(), json!(name));

        let want = |part: &str| args.only.is_empty() || args.only.iter().any(|o| o == part);
        if want("pipeline") {
            let batches = make_batches(args.batches, args.batch_size, &cfg, 0x5eed);
            // CPU reference of every batch: the loader's patchify.
            let reference: Vec<Vec<f32>> = batches
                .iter()
                .map(|b| {
                    let rows: usize = b
                        .pages
                        .iter()
                        .map(|p| cfg.num_patches(p.height, p.width))
                        .sum();
                    let mut v = vec![0f32; rows * cfg.patch_dim()];
                    b.pack_f32(&mut v).map(|_| v)
                })
                .collect::<Result<_>>()?;

            // 1. Pixels arrive intact in every mode, with and without a delayed copy stream.
            let mut probe = Probe;
            for mode in TransferMode::ALL {
                for delay_ms in [0u64, 20] {
                    exec.transfer_mut()
                        .set_copy_delay_cycles(delay_ms * SPIN_CYCLES_PER_MS);
                    let label = format!("pixels_{}_delay{}ms", mode.name(), delay_ms);
                    match run_batches(&mut exec, mode, &batches, &mut probe) {
                        Ok(r) => {
                            let bad = first_mismatch(&r.outputs, &reference);
                            let detail = match bad {
                                None => format!(
                                    "{} batches bit-identical to the CPU patchify",
                                    batches.len()
                                ),
                                Some((i, j)) => format!("batch {i} differs at element {j}"),
                            };
                            rep.check(&label, bad.is_none(), detail);
                        }
                        Err(e) => rep.error(&label, e),
                    }
                }
            }
            exec.transfer_mut().set_copy_delay_cycles(0);

            // 2. Streams, overlap, identical results under delay, with a compute load.
            let dim = cfg.patch_dim();
            let randn = |rows: usize, cols: usize| -> Result<Tensor> {
                let t = Tensor::randn(0f32, 1.0 / (rows as f32).sqrt(), (rows, cols), &device)?;
                Ok(t.to_dtype(DType::BF16)?)
            };
            let mut chain = MatmulChain {
                up: randn(dim, 4096)?,
                down: randn(4096, dim)?,
                steps: 120,
            };
            let mut runs = serde_json::Map::new();
            let baseline = run_batches(&mut exec, TransferMode::Sync, &batches, &mut chain)?;
            runs.insert("sync".into(), summary_json(&summarise(&baseline.timings)));
            let sync_summary = summarise(&baseline.timings);
            for mode in [TransferMode::Async, TransferMode::AsyncU8] {
                match run_batches(&mut exec, mode, &batches, &mut chain) {
                    Ok(r) => {
                        let s = summarise(&r.timings);
                        let separate = r.timings.iter().all(|t| t.copy_on_separate_stream);
                        rep.check(
                            &format!("copy_stream_{}", mode.name()),
                            separate
                                && exec.transfer().copy_stream().cu_stream()
                                    != exec.transfer().compute_stream().cu_stream(),
                            format!(
                                "copy stream {:?} vs compute stream {:?}",
                                exec.transfer().copy_stream().cu_stream(),
                                exec.transfer().compute_stream().cu_stream()
                            ),
                        );
                        let ov = s.overlap_fraction.unwrap_or(0.0);
                        rep.check(
                            &format!("overlap_{}", mode.name()),
                            ov >= 0.95,
                            format!(
                                "copy N+1 overlapped compute N in {:.1} % of batches",
                                ov * 100.0
                            ),
                        );
                        let bad = first_mismatch(&r.outputs, &baseline.outputs);
                        rep.check(
                            &format!("same_results_{}", mode.name()),
                            bad.is_none(),
                            format!("{:?} (vs sync)", bad),
                        );
                        println!(
                        "  {}: copy {:.3} ms/batch, critical {:.3} ms/batch (sync {:.3}), H2D {:.1} GB/s, GPU idle between batches {:.2} %",
                        mode.name(),
                        s.copy_ms_total / s.batches as f64,
                        s.copy_wait_ms_total / s.batches as f64,
                        sync_summary.copy_wait_ms_total / sync_summary.batches as f64,
                        s.h2d_bytes_per_sec / 1e9,
                        s.gpu_idle_between_batches_fraction.unwrap_or(0.0) * 100.0
                    );
                        runs.insert(mode.name().into(), summary_json(&s));
                    }
                    Err(e) => rep.error(&format!("pipeline_{}", mode.name()), e),
                }
                exec.transfer_mut()
                    .set_copy_delay_cycles(20 * SPIN_CYCLES_PER_MS);
                match run_batches(&mut exec, mode, &batches, &mut chain) {
                    Ok(r) => {
                        let bad = first_mismatch(&r.outputs, &baseline.outputs);
                        rep.check(
                            &format!("delayed_copy_identical_{}", mode.name()),
                            bad.is_none(),
                            format!("{:?} (20 ms spin before each copy)", bad),
                        );
                    }
                    Err(e) => rep.error(&format!("delayed_copy_{}", mode.name()), e),
                }
                exec.transfer_mut().set_copy_delay_cycles(0);
            }
            rep.json
                .insert("pipeline_runs".into(), serde_json::Value::Object(runs));
        }

        // 3. NF4 kernel.
        if want("nf4") {
            match gpu_nf4_check::run(&device) {
                Ok(checks) => {
                    for c in &checks.checks {
                        rep.check(&c.name, c.ok, c.detail.clone());
                    }
                    rep.json.insert("nf4".into(), checks.json);
                }
                Err(e) => rep.error("nf4_kernel", e),
            }
        }

        // 4. The tiled attention kernel against a host softmax attention.
        if want("attention") {
            rep.part("attention_kernel", crate::gpu_attention_check::run(&device));
        }

        // 4b. The row kernels (RMSNorm with the residual add, SiLU·mul) against candle's ops.
        if want("elementwise") {
            rep.part("elementwise", crate::gpu_elementwise_check::run(&device));
        }

        // 5. The fused MaxSim kernel against the CPU's exact MaxSim.
        if want("maxsim") {
            rep.part("maxsim_fused", crate::gpu_maxsim_check::run(&device));
        }

        // 5b. FP8 compute against the CPU's emulation of it.
        if want("fp8") {
            rep.part("fp8_compute", crate::gpu_fp8_check::run(&device));
        }

        // 6. The model on the GPU: reference fixture parity, fused kernels against candle's ops.
        let fixture = std::path::Path::new("tests/fixtures/colqwen_tiny");
        let quants = if want("model") {
            &[
                pagesight_model::settings::Quant::None,
                pagesight_model::settings::Quant::Nf4,
            ][..]
        } else {
            &[][..]
        };
        for &quant in quants {
            match crate::gpu_model_check::run(fixture, quant) {
                Ok((checks, doc)) => {
                    for c in &checks {
                        rep.check(&c.name, c.ok, c.detail.clone());
                    }
                    rep.json.insert(format!("model_{}", quant.name()), doc);
                }
                Err(e) => rep.error(&format!("model_parity_{}", quant.name()), e),
            }
        }

        let failed = rep.lines.iter().filter(|l| !l.0).count();
        rep.json.insert(
            "checks".into(),
            json!(rep
                .lines
                .iter()
                .map(|(ok, n, d)| json!({"name": n, "pass": ok, "detail": d}))
                .collect::<Vec<_>>()),
        );
        rep.json
            .insert("schema".into(), json!(pagesight_engine::SCHEMA_VERSION));
        if let Some(path) = &args.json {
            std::fs::write(path, serde_json::to_string_pretty(&rep.json)?)
                .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
        }
        println!(
            "gpu-selftest: {} checks, {} failed",
            rep.lines.len(),
            failed
        );
        if failed > 0 {
            anyhow::bail!("{failed} GPU self-test checks failed");
        }
        Ok(())
    }
}
