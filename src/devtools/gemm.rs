//! `pagesight bench gemm`: the model's linear layers (Qwen2.5-VL-3B shapes, batch of 4 pages)
//! timed on the GPU with cuBLASLt + bias epilogue against candle's matmul + a bias pass, in one
//! process: TFLOP/s per shape and the largest difference between the two outputs. Then the same
//! shapes as NF4 layers, whole (dequantisation into the scratch, activations, GEMM): in bf16,
//! in FP8 with the scales in the GEMM and after it, and the FP8 product alone on a weight
//! dequantised once — where the time of a `--compute fp8` layer goes. Last, the attention
//! kernel in the model's shapes (`attention_bench`).

use clap::Args;

#[derive(Args, Debug)]
pub struct GemmBenchArgs {
    /// Timed repetitions per shape and variant.
    #[arg(long, default_value_t = 20)]
    pub reps: usize,
    /// Rows of the vision tower's GEMMs (patches in the batch: 4 pages of 64×46).
    #[arg(long, default_value_t = 4 * 64 * 46)]
    pub vision_rows: usize,
    /// Rows of the language model's GEMMs (tokens in the batch).
    #[arg(long, default_value_t = 4 * 756)]
    pub lm_rows: usize,
}

#[cfg(not(feature = "cuda"))]
pub fn run(_args: GemmBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "bench gemm times CUDA GEMMs: build with `--features cuda` (scripts/build-cuda.sh)"
    )
}

#[cfg(feature = "cuda")]
pub fn run(args: GemmBenchArgs) -> anyhow::Result<()> {
    use candle_core::{DType, Device, Tensor};
    use pagesight_model::gpu::fused;
    use std::time::Instant;

    let device = Device::new_cuda(0)?;
    let (v, l) = (args.vision_rows, args.lm_rows);
    // (name, rows, in, out, bias)
    let shapes = [
        ("vision qkv", v, 1280, 3840, true),
        ("vision proj", v, 1280, 1280, true),
        ("vision mlp gate/up", v, 1280, 3456, true),
        ("vision mlp down", v, 3456, 1280, true),
        ("lm q", l, 2048, 2048, true),
        ("lm k/v", l, 2048, 256, true),
        ("lm o", l, 2048, 2048, false),
        ("lm mlp gate/up", l, 2048, 11008, false),
        ("lm mlp down", l, 11008, 2048, false),
    ];
    println!(
        "| layer | rows × in → out | candle + bias pass ms | TFLOP/s | cuBLASLt ms | TFLOP/s | speedup | max rel diff |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let (mut total_candle, mut total_lt) = (0.0, 0.0);
    for (name, rows, inp, out, has_bias) in shapes {
        let x = Tensor::randn(0f32, 1.0, (rows, inp), &device)?.to_dtype(DType::BF16)?;
        let w = (Tensor::randn(0f32, 1.0, (out, inp), &device)? * (1.0 / (inp as f64).sqrt()))?
            .to_dtype(DType::BF16)?;
        let b = Tensor::randn(0f32, 1.0, out, &device)?.to_dtype(DType::BF16)?;
        let bias = has_bias.then_some(&b);
        let time = |lt: bool| -> anyhow::Result<(f64, Tensor)> {
            fused::set_cublaslt(lt);
            let mut y = fused::linear(&x, &w, bias)?;
            device.synchronize()?;
            let t = Instant::now();
            for _ in 0..args.reps {
                y = fused::linear(&x, &w, bias)?;
            }
            device.synchronize()?;
            Ok((t.elapsed().as_secs_f64() / args.reps as f64, y))
        };
        let (t_candle, y_candle) = time(false)?;
        let (t_lt, y_lt) = time(true)?;
        let diff = (y_lt.to_dtype(DType::F32)? - y_candle.to_dtype(DType::F32)?)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        let scale = y_candle
            .to_dtype(DType::F32)?
            .abs()?
            .max_all()?
            .to_scalar::<f32>()?;
        let flop = 2.0 * rows as f64 * inp as f64 * out as f64;
        total_candle += t_candle;
        total_lt += t_lt;
        println!(
            "| {name} | {rows} × {inp} → {out} | {:.3} | {:.0} | {:.3} | {:.0} | {:.2}× | {:.1e} |",
            t_candle * 1e3,
            flop / t_candle / 1e12,
            t_lt * 1e3,
            flop / t_lt / 1e12,
            t_candle / t_lt,
            diff / scale.max(1e-30)
        );
    }
    fused::set_cublaslt(true);
    println!(
        "one of each: candle {:.3} ms, cuBLASLt {:.3} ms ({:.2}×)",
        total_candle * 1e3,
        total_lt * 1e3,
        total_candle / total_lt
    );
    nf4_layers(&args, &device, &shapes)?;
    super::attention_bench::run(&device, args.reps, v, l)
}

/// The shapes as NF4 layers: bf16 compute, FP8 (scales in the GEMM, then after it), and the
/// FP8 product alone (quantising the activations included) on a weight dequantised once.
#[cfg(feature = "cuda")]
fn nf4_layers(
    args: &GemmBenchArgs,
    device: &candle_core::Device,
    shapes: &[(&str, usize, usize, usize, bool)],
) -> anyhow::Result<()> {
    use candle_core::{DType, Module, Tensor};
    use pagesight_model::gpu::fp8;
    use pagesight_model::quant::{QLinear, QuantContext};
    use pagesight_model::settings::{Compute, Quant};
    use std::time::Instant;
    let time = |f: &dyn Fn() -> candle_core::Result<Tensor>| -> anyhow::Result<f64> {
        f()?;
        device.synchronize()?;
        let t = Instant::now();
        for _ in 0..args.reps {
            f()?;
        }
        device.synchronize()?;
        Ok(t.elapsed().as_secs_f64() / args.reps as f64 * 1e3)
    };
    println!();
    println!("| NF4 layer | rows × in → out | bf16 ms | fp8, scales in GEMM ms | fp8, scales after ms | fp8 product alone ms | TFLOP/s (alone) |");
    println!("|---|---|---|---|---|---|---|");
    for &(name, rows, inp, out, has_bias) in shapes {
        if !pagesight_model::quant::fp8::shape_fits((out, inp)) {
            continue;
        }
        let x = Tensor::randn(0f32, 1.0, (rows, inp), device)?.to_dtype(DType::BF16)?;
        let w = (Tensor::randn(0f32, 1.0, (out, inp), device)? * (1.0 / (inp as f64).sqrt()))?;
        let b = has_bias
            .then(|| Tensor::randn(0f32, 1.0, out, device)?.to_dtype(DType::BF16))
            .transpose()?;
        let layer = |compute| -> anyhow::Result<QLinear> {
            let ctx = QuantContext::new(device).with_compute(compute);
            QLinear::dense(w.clone(), b.clone()).quantize(Quant::Nf4, &ctx)
        };
        let bf16 = layer(Compute::Dtype)?;
        let t_bf16 = time(&|| bf16.forward(&x))?;
        let fp8_layer = layer(Compute::Fp8)?;
        fp8::set_scaling_in_gemm(true);
        let t_in = time(&|| fp8_layer.forward(&x))?;
        let in_gemm = fp8::scaling_in_gemm();
        fp8::set_scaling_in_gemm(false);
        let t_after = time(&|| fp8_layer.forward(&x))?;
        fp8::set_scaling_in_gemm(true);
        let QLinear::Nf4(l) = &fp8_layer else {
            anyhow::bail!("{name}: not an NF4 layer")
        };
        let mut lease = l.scratch().lease();
        let sw = lease.dequantize(
            l.weight(),
            l.device_weight(),
            DType::BF16,
            device,
            (out, inp),
            true,
        )?;
        let t_alone = time(&|| sw.linear(&x, b.as_ref()))?;
        drop(lease);
        let flop = 2.0 * rows as f64 * inp as f64 * out as f64;
        println!(
            "| {name} | {rows} × {inp} → {out} | {t_bf16:.3} | {t_in:.3}{} | {t_after:.3} | {t_alone:.3} | {:.0} |",
            if in_gemm { "" } else { " (library refused: after)" },
            flop / (t_alone * 1e-3) / 1e12
        );
    }
    Ok(())
}
