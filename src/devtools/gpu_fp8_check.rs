//! FP8 compute on the GPU (selftest part `fp8`), against the CPU's emulation of the same scheme
//! (`quant::fp8`: E4M3 codes with a scale per output channel and per token, f32 arithmetic).
//!
//! - Layers of the real model's shapes (plain with a bias, zero-padded in either dimension,
//!   stacked, and added onto an existing output as an unmerged adapter's base is): the GPU's
//!   bf16 output must lie within bf16 rounding of the emulation, and the emulation must differ
//!   from plain NF4 by several times that (so the check tells FP8 from no FP8).
//! - SiLU·mul written straight as FP8 codes (`fused::silu_mul_fp8`, separate and stacked
//!   halves) must give the padded down projection's output bit for bit as its bf16 rows do; so
//!   must the residual RMSNorm written as codes (`fused::residual_rms_norm_fp8`) for the padded
//!   up projection, with the same stream; and SiLU·mul written as both codes and bf16 rows
//!   (`fused::silu_mul_fp8_beside`) for a layer with an unmerged adapter.
//! - The committed fixture model, NF4 with its adapter: the GPU's fp8 embeddings (bf16
//!   activations) must be as close to the CPU's emulation as the GPU's bf16 embeddings are to
//!   the CPU's f32 ones, and much closer than to NF4 without FP8.

use super::gpu_nf4_check::Nf4Check as Check;
use super::model_parity::{rel_err, ParityFixture};
use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use pagesight_engine::{DeviceChoice, Quant};
use pagesight_model::colqwen::ColQwen;
use pagesight_model::gpu::fp8;
use pagesight_model::quant::nf4_linear::Nf4Linear;
use pagesight_model::quant::{QLinear, QuantContext};
use pagesight_model::settings::Compute;
use pagesight_model::ModelSettings;
use std::path::Path;

/// The GPU's bf16 output against the emulation's f32: bf16's rounding alone is ~1.1e-3 (rms).
const LAYER_TOLERANCE: f64 = 2.5e-3;
/// How many times that FP8's own effect must exceed it, for the check to mean something.
const DISTINGUISHES: f64 = 4.0;

/// Deterministic values in about [-scale, scale], rounded to bf16 (the GPU's activations hold
/// exactly these).
fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let u = (s >> 40) as f32 / (1u64 << 24) as f32;
            half::bf16::from_f32((u * 2.0 - 1.0) * scale).to_f32()
        })
        .collect()
}

struct LayerCase {
    name: &'static str,
    /// (out, in) of each part (several: stacked).
    parts: Vec<(usize, usize)>,
    /// The GEMM shape when zero-padded.
    padded: Option<(usize, usize)>,
    bias: bool,
    /// Added onto an existing output (`forward_onto`).
    onto: bool,
    rows: usize,
}

/// One layer on `device` through a scratch of `compute`, from the same weights every time.
fn layer(case: &LayerCase, device: &Device, compute: Compute) -> Result<QLinear> {
    let ctx = QuantContext::new(device).with_compute(compute);
    let mut parts = Vec::new();
    for (i, &(out, inp)) in case.parts.iter().enumerate() {
        let seed = 100 + i as u64;
        let w = Tensor::from_vec(values(out * inp, seed, 0.05), (out, inp), device)?;
        let b = case
            .bias
            .then(|| Tensor::from_vec(values(out, seed + 50, 0.5), out, device))
            .transpose()?;
        parts.push(QLinear::dense(w, b).quantize(Quant::Nf4, &ctx)?);
    }
    let mut l = match parts.len() {
        1 => parts.remove(0),
        _ => QLinear::stack(parts)?,
    };
    if let Some((out, inp)) = case.padded {
        l = l.padded(out, inp)?;
    }
    Ok(l)
}

/// `case`'s output on `device` for the bf16-exact input rows (activations in `dtype`).
fn layer_output(
    case: &LayerCase,
    device: &Device,
    dtype: DType,
    compute: Compute,
) -> Result<Vec<f32>> {
    let l = layer(case, device, compute)?;
    // The product's shape: the padded one where the layer is padded.
    let (out, inp) = case.padded.unwrap_or(l.shape());
    let mut x = values(case.rows * inp, 7, 2.0);
    if let Some((_, padded_in)) = case.padded {
        // The padded input columns hold zeros, as the model's padded MLP feeds them.
        let real_in = case.parts[0].1;
        for (i, v) in x.iter_mut().enumerate() {
            if i % padded_in >= real_in {
                *v = 0.0;
            }
        }
    }
    let x = Tensor::from_vec(x, (case.rows, inp), device)?.to_dtype(dtype)?;
    let y = if case.onto {
        let c = Tensor::from_vec(values(case.rows * out, 9, 1.0), (case.rows, out), device)?
            .to_dtype(dtype)?;
        l.forward_onto(&x, c)?
    } else {
        candle_core::Module::forward(&l, &x)?
    };
    flat(&y)
}

/// Layers of the real model's shapes.
fn layer_cases() -> [LayerCase; 5] {
    [
        LayerCase {
            name: "lm_o_proj_bias",
            parts: vec![(2048, 2048)],
            padded: None,
            bias: true,
            onto: false,
            rows: 300,
        },
        LayerCase {
            name: "vision_up_padded_out",
            parts: vec![(3420, 1280)],
            padded: Some((3456, 1280)),
            bias: true,
            onto: false,
            rows: 200,
        },
        LayerCase {
            name: "vision_down_padded_in",
            parts: vec![(1280, 3420)],
            padded: Some((1280, 3456)),
            bias: true,
            onto: false,
            rows: 200,
        },
        LayerCase {
            name: "stacked_gate_up",
            parts: vec![(1024, 2048), (1024, 2048)],
            padded: None,
            bias: false,
            onto: false,
            rows: 256,
        },
        LayerCase {
            name: "onto_adapter_output",
            parts: vec![(2048, 2048)],
            padded: None,
            bias: false,
            onto: true,
            rows: 128,
        },
    ]
}

/// The layer case called `name`.
fn layer_case(name: &str) -> Result<LayerCase> {
    layer_cases()
        .into_iter()
        .find(|c| c.name == name)
        .ok_or_else(|| anyhow::anyhow!("no layer case {name}"))
}

pub fn run(device: &Device) -> Result<Vec<Check>> {
    let mut checks = Vec::new();
    let cases = layer_cases();
    // The producers' codes are checked whatever the process's setting (off by default).
    let codes_were = pagesight_model::gpu::fused::fp8_codes_enabled();
    pagesight_model::gpu::fused::set_fp8_codes(true);
    // The scales in cuBLASLt's epilogue, then by our kernel after the GEMM (the way taken where
    // the library has no scaled kernel for the card).
    for in_gemm in [true, false] {
        fp8::set_scaling_in_gemm(in_gemm);
        for case in &cases {
            let name = format!(
                "fp8_layer_{}_scales_{}",
                case.name,
                if in_gemm { "in_gemm" } else { "after" }
            );
            checks.push(or_failed(name, layer_check(case, device)));
        }
        checks.push(or_failed(
            format!(
                "fp8_silu_mul_codes_into_down_scales_{}",
                if in_gemm { "in_gemm" } else { "after" }
            ),
            silu_codes_check(device),
        ));
        checks.push(or_failed(
            format!(
                "fp8_norm_codes_into_up_scales_{}",
                if in_gemm { "in_gemm" } else { "after" }
            ),
            norm_codes_check(device),
        ));
        checks.push(or_failed(
            format!(
                "fp8_silu_mul_codes_beside_adapter_scales_{}",
                if in_gemm { "in_gemm" } else { "after" }
            ),
            silu_beside_adapter_check(device),
        ));
    }
    fp8::set_scaling_in_gemm(true);
    pagesight_model::gpu::fused::set_fp8_codes(codes_were);
    checks.push(or_failed(
        "fp8_fixture_pages".into(),
        fixture(Path::new("tests/fixtures/colqwen_tiny")),
    ));
    checks.push(or_failed(
        "fp8_random3b_pages_fidelity_goal".into(),
        random3b_fidelity(),
    ));
    Ok(checks)
}

/// `check` under `name`, or a failed check that says what went wrong (one error does not hide
/// the other checks' results).
fn or_failed(name: String, check: Result<Check>) -> Check {
    match check {
        Ok(c) => Check { name, ..c },
        Err(e) => Check {
            name,
            ok: false,
            detail: format!("error: {e:#}"),
        },
    }
}

/// One layer on the GPU in FP8 against the CPU's emulation of it.
fn layer_check(case: &LayerCase, device: &Device) -> Result<Check> {
    let gpu = layer_output(case, device, DType::BF16, Compute::Fp8)?;
    let taken = if fp8::scaling_in_gemm() {
        "in the GEMM"
    } else {
        "after the GEMM"
    };
    let emulated = layer_output(case, &Device::Cpu, DType::F32, Compute::Fp8)?;
    let plain = layer_output(case, &Device::Cpu, DType::F32, Compute::Dtype)?;
    let (err, fp8_effect) = (rel_err(&gpu, &emulated), rel_err(&emulated, &plain));
    Ok(Check {
        name: String::new(),
        ok: err <= LAYER_TOLERANCE
            && fp8_effect >= DISTINGUISHES * err
            && gpu.iter().all(|v| v.is_finite()),
        detail: format!(
            "{} rows, scales {taken}: GPU fp8 vs CPU emulation {err:.2e} (bound {LAYER_TOLERANCE:.1e}); emulation vs plain NF4 {fp8_effect:.2e} (≥ {DISTINGUISHES}× the former)",
            case.rows
        ),
    })
}

/// `case`'s layer in FP8 on `device`, checked to be one NF4 layer that takes FP8 input rows.
fn fp8_rows_layer(case: &LayerCase, device: &Device) -> Result<Nf4Linear> {
    match layer(case, device, Compute::Fp8)? {
        QLinear::Nf4(l) if l.takes_fp8_rows(case.rows, device) => Ok(l),
        _ => anyhow::bail!("{}: not an NF4 layer that takes FP8 rows", case.name),
    }
}

/// A tensor's values as f32.
fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
}

/// The largest |a − b| over two outputs of one length.
fn max_abs_diff(a: &[f32], b: &[f32]) -> Result<f32> {
    anyhow::ensure!(a.len() == b.len(), "{} outputs for {}", a.len(), b.len());
    Ok(a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max))
}

/// SiLU·mul straight to FP8 codes, from two projections and from one stacked output, fed to
/// the vision MLP's padded down projection: its output must equal, bit for bit, what the layer
/// gives for the bf16 rows of `fused::silu_mul` (which it quantises itself).
fn silu_codes_check(device: &Device) -> Result<Check> {
    use anyhow::Context;
    use pagesight_model::gpu::fused;
    let case = layer_case("vision_down_padded_in")?;
    let down = fp8_rows_layer(&case, device)?;
    let (rows, (real, h)) = (case.rows, (3420, 3456));
    // Gate and up rows with zeros in the padded columns, as the padded projections give them.
    let projection = |seed| -> Result<Tensor> {
        let mut v = values(rows * h, seed, 4.0);
        for (i, x) in v.iter_mut().enumerate() {
            if i % h >= real {
                *x = 0.0;
            }
        }
        Ok(Tensor::from_vec(v, (rows, h), device)?.to_dtype(DType::BF16)?)
    };
    let (gate, up) = (projection(11)?, projection(12)?);
    let stacked = Tensor::cat(&[&gate, &up], 1)?;
    let want = flat(&candle_core::Module::forward(
        &down,
        &fused::silu_mul(&gate, &up)?,
    )?)?;
    let separate = fused::silu_mul_fp8(&gate, Some(&up))?.context("the kernel did not apply")?;
    let halves = fused::silu_mul_fp8(&stacked, None)?.context("the kernel did not apply")?;
    let same_codes = separate.bytes.to_vec1::<u8>()? == halves.bytes.to_vec1::<u8>()?;
    let mut worst = 0f32;
    for codes in [&separate, &halves] {
        worst = worst.max(max_abs_diff(&flat(&down.forward_fp8_rows(codes)?)?, &want)?);
    }
    Ok(Check {
        name: String::new(),
        ok: worst == 0.0 && same_codes && want.iter().all(|v| v.is_finite()),
        detail: format!(
            "{rows} rows of {h}: max |Δ| {worst:.1e} from the bf16 rows' output (must be 0); codes of the two layouts {}",
            if same_codes { "identical" } else { "DIFFER" }
        ),
    })
}

/// SiLU·mul written both as bf16 rows and as FP8 codes (`fused::silu_mul_fp8_beside`), fed to a
/// layer with an unmerged adapter (the language model's down projection: the adapter reads the
/// rows, the base GEMM the codes, added onto the adapter's term): the rows must equal
/// `fused::silu_mul`'s and the output the layer's for those rows, bit for bit, from two
/// projections and from one stacked output.
fn silu_beside_adapter_check(device: &Device) -> Result<Check> {
    use anyhow::Context;
    use pagesight_model::gpu::fused;
    use pagesight_model::quant::lora_linear::LoraLinear;
    let case = layer_case("lm_o_proj_bias")?;
    let base = fp8_rows_layer(&case, device)?;
    let (rows, (out, h), rank) = (case.rows, base.weight().shape, 32);
    let bf16 = |v: Vec<f32>, shape: (usize, usize)| -> Result<Tensor> {
        Ok(Tensor::from_vec(v, shape, device)?.to_dtype(DType::BF16)?)
    };
    let down = LoraLinear::new(
        QLinear::Nf4(base),
        bf16(values(rank * h, 31, 0.05), (rank, h))?,
        bf16(values(out * rank, 32, 0.05), (out, rank))?,
    )?;
    anyhow::ensure!(
        down.takes_fp8_rows(rows, device),
        "the adapter's base takes no FP8 rows"
    );
    let (gate, up) = (
        bf16(values(rows * h, 33, 4.0), (rows, h))?,
        bf16(values(rows * h, 34, 4.0), (rows, h))?,
    );
    let stacked = Tensor::cat(&[&gate, &up], 1)?;
    let plain = fused::silu_mul(&gate, &up)?;
    let want = flat(&candle_core::Module::forward(&down, &plain)?)?;
    let (mut worst, mut rows_equal) = (0f32, true);
    for (g, u) in [(&gate, Some(&up)), (&stacked, None)] {
        let (beside, codes) =
            fused::silu_mul_fp8_beside(g, u)?.context("the kernel did not apply")?;
        rows_equal &= flat(&beside)? == flat(&plain)?;
        worst = worst.max(max_abs_diff(
            &flat(&down.forward_fp8_beside(&beside, &codes)?)?,
            &want,
        )?);
    }
    Ok(Check {
        name: String::new(),
        ok: worst == 0.0 && rows_equal && want.iter().all(|v| v.is_finite()),
        detail: format!(
            "{rows} rows of {h}, rank {rank}: max |Δ| {worst:.1e} from the bf16 rows' output (must be 0); bf16 rows {}",
            if rows_equal { "identical" } else { "DIFFER" }
        ),
    })
}

/// The residual RMSNorm written as FP8 codes, fed to the vision MLP's padded up projection: the
/// output must equal, bit for bit, the layer's for the bf16 norm, and the stream the bf16 norm's.
fn norm_codes_check(device: &Device) -> Result<Check> {
    use anyhow::Context;
    use pagesight_model::gpu::fused;
    let case = layer_case("vision_up_padded_out")?;
    let up = fp8_rows_layer(&case, device)?;
    let (rows, dim) = (case.rows, 1280);
    let x = Tensor::from_vec(values(rows * dim, 21, 3.0), (rows, dim), device)?;
    let h = Tensor::from_vec(values(rows * dim, 22, 2.0), (rows, dim), device)?
        .to_dtype(DType::BF16)?;
    let w = Tensor::from_vec(values(dim, 23, 1.5), dim, device)?;
    let eps = 1e-6;
    let (stream_bf16, normed) = fused::residual_rms_norm(&x, &h, &w, eps, DType::BF16)?;
    let (stream_fp8, codes) =
        fused::residual_rms_norm_fp8(&x, &h, &w, eps)?.context("the kernel did not apply")?;
    let want = flat(&candle_core::Module::forward(&up, &normed)?)?;
    let worst = max_abs_diff(&flat(&up.forward_fp8_rows(&codes)?)?, &want)?;
    let same_stream = flat(&stream_bf16)? == flat(&stream_fp8)?;
    Ok(Check {
        name: String::new(),
        ok: worst == 0.0 && same_stream && want.iter().all(|v| v.is_finite()),
        detail: format!(
            "{rows} rows of {dim}: max |Δ| {worst:.1e} from the bf16 norm's output (must be 0); stream {}",
            if same_stream { "identical" } else { "DIFFERS" }
        ),
    })
}

/// The fidelity goal on full-size shapes (`random:3b` with its adapter, 4 pages and a
/// query): FP8 compute may move the vectors from bf16 compute by at most half of what NF4 moves
/// them from the dense model.
fn random3b_fidelity() -> Result<Check> {
    use pagesight_engine::DType as D;
    let embed = |quant, compute| -> Result<(Vec<f32>, Vec<f32>)> {
        let model = ColQwen::load(&ModelSettings {
            model: "random:3b".into(),
            device: DeviceChoice::Cuda(0),
            dtype: D::Bf16,
            quant,
            compute,
            quant_cache: pagesight_model::settings::QuantCacheSetting::Off,
            ..ModelSettings::default()
        })?;
        let (pixels, grids) = pagesight_model::synthetic::synthetic_pages(4, 64, 46)?;
        let pages = model.embed_images(&pixels, &grids)?;
        let query = model.embed_queries(&["where is the total revenue table".to_string()])?;
        Ok((
            pages.into_iter().flat_map(|p| p.vectors).collect(),
            query.concat(),
        ))
    };
    let dense = embed(Quant::None, Compute::Dtype)?;
    let nf4 = embed(Quant::Nf4, Compute::Dtype)?;
    let fp8 = embed(Quant::Nf4, Compute::Fp8)?;
    let (nf4_moves, fp8_moves) = (rel_err(&nf4.0, &dense.0), rel_err(&fp8.0, &nf4.0));
    let ratio = fp8_moves / nf4_moves;
    Ok(Check {
        name: "fp8_random3b_pages_fidelity_goal".into(),
        ok: ratio <= 0.5 && fp8.0.iter().all(|v| v.is_finite()),
        detail: format!(
            "4 pages: fp8 vs bf16 compute {fp8_moves:.3e}, NF4 vs dense {nf4_moves:.3e}: ratio {ratio:.3} (goal ≤ 0.5). Query: fp8 vs bf16 {:.2e} (a query's rows skip FP8), NF4 vs dense {:.3e}",
            rel_err(&fp8.1, &nf4.1),
            rel_err(&nf4.1, &dense.1),
        ),
    })
}

/// The fixture model, NF4 with its adapter unmerged: its pages (a query's few rows skip FP8 on
/// both devices, `quant::fp8::FEW_ROWS`; their distance is reported beside). The GPU's fp8
/// pages must sit as close to the CPU's emulation as its bf16 pages sit to the CPU's f32 ones:
/// the GPU's bf16 activations between layers are the difference left. The fixture's random
/// layers amplify that rounding past what FP8 itself adds (bf16 against f32 moves its pages
/// more than the emulation moves them from plain NF4), so only the layer checks above, with
/// f32 activations on both sides, can tell FP8's rounding apart; the effect is reported here.
fn fixture(dir: &Path) -> Result<Check> {
    let fixture = ParityFixture::load(dir)?;
    let embed = |device, dtype, compute| -> Result<(Vec<f32>, Vec<f32>)> {
        let model = ColQwen::load(&ModelSettings {
            compute,
            ..fixture.settings(device, dtype, Quant::Nf4)
        })?;
        let (queries, pages) = fixture.embeddings(&model)?;
        Ok((pages.concat(), queries.concat()))
    };
    use pagesight_engine::DType as D;
    let gpu_fp8 = embed(DeviceChoice::Cuda(0), D::Bf16, Compute::Fp8)?;
    let gpu_bf16 = embed(DeviceChoice::Cuda(0), D::Bf16, Compute::Dtype)?;
    let cpu_fp8 = embed(DeviceChoice::Cpu, D::F32, Compute::Fp8)?;
    let cpu_f32 = embed(DeviceChoice::Cpu, D::F32, Compute::Dtype)?;
    let err = rel_err(&gpu_fp8.0, &cpu_fp8.0);
    let bf16_err = rel_err(&gpu_bf16.0, &cpu_f32.0);
    let fp8_effect = rel_err(&cpu_fp8.0, &cpu_f32.0);
    Ok(Check {
        name: "fp8_fixture_pages".into(),
        ok: err <= 1.5 * bf16_err.max(1e-3) && gpu_fp8.0.iter().all(|v| v.is_finite()),
        detail: format!(
            "pages: GPU fp8 vs CPU emulation {err:.2e}, against GPU bf16 vs CPU f32 {bf16_err:.2e} (≤ 1.5×); emulation vs NF4 without fp8 {fp8_effect:.2e}. Queries: GPU fp8 vs CPU fp8 {:.2e}, GPU fp8 vs GPU bf16 {:.2e}",
            rel_err(&gpu_fp8.1, &cpu_fp8.1),
            rel_err(&gpu_fp8.1, &gpu_bf16.1),
        ),
    })
}
