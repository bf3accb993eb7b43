//! Quantised linear layers against dense ones.

use candle_core::{DType, Device, Module, Tensor};
use pagesight::devtools::model_parity::rel_err;
use pagesight::model::quant::gemm::for_queries;
use pagesight::model::quant::{
    LayerStorage, LoraLinear, Nf4Weight, QLinear, QuantContext, QuantScope, DIRECT_ROWS_MAX,
};
use pagesight::model::settings::Quant;
use rand::{rngs::StdRng, Rng, SeedableRng};

fn random(rng: &mut StdRng, n: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|_| (rng.random::<f32>() * 2.0 - 1.0) * scale)
        .collect()
}

fn dense(rng: &mut StdRng, out: usize, inp: usize, dtype: DType) -> (QLinear, Tensor, Tensor) {
    let w = Tensor::from_vec(random(rng, out * inp, 0.05), (out, inp), &Device::Cpu).unwrap();
    let b = Tensor::from_vec(random(rng, out, 0.1), out, &Device::Cpu).unwrap();
    let (w, b) = (w.to_dtype(dtype).unwrap(), b.to_dtype(dtype).unwrap());
    (QLinear::dense(w.clone(), Some(b.clone())), w, b)
}

/// A tensor's values as f32 on the host.
fn host(t: &Tensor) -> Vec<f32> {
    t.to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
}

/// max |a − b| / max |b|, in f32.
fn rel_max_err(a: &Tensor, b: &Tensor) -> f32 {
    let (a, b) = (host(a), host(b));
    assert_eq!(a.len(), b.len());
    let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
    a.iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// ‖a − b‖ / ‖b‖ (Frobenius), in f64.
fn rel_fro_err(a: &Tensor, b: &Tensor) -> f64 {
    let (a, b) = (host(a), host(b));
    assert_eq!(a.len(), b.len());
    rel_err(&a, &b)
}

/// What an NF4 layer must compute: bitsandbytes' dequantised weight, then an ordinary matmul.
fn reference(w: &Tensor, b: &Tensor, x: &Tensor, ctx: &QuantContext) -> Tensor {
    let (out, inp) = w.dims2().unwrap();
    let q = Nf4Weight::quantize_tensor(w, ctx.nf4_blocksize, ctx.double_quant).unwrap();
    let wd = Tensor::from_vec(q.dequantize::<f32>().unwrap(), (out, inp), &Device::Cpu)
        .unwrap()
        .to_dtype(x.dtype())
        .unwrap();
    let rows = x.elem_count() / inp;
    let mut dims = x.dims().to_vec();
    *dims.last_mut().unwrap() = out;
    x.reshape((rows, inp))
        .unwrap()
        .matmul(&wd.t().unwrap())
        .unwrap()
        .broadcast_add(b)
        .unwrap()
        .reshape(dims)
        .unwrap()
}

#[test]
fn nf4_forward_equals_dequantize_then_matmul() {
    let mut rng = StdRng::seed_from_u64(11);
    let ctx = QuantContext::new(&Device::Cpu);
    // 200 inputs: blocks of 64 straddle weight rows; 75: rows also start on odd nibbles.
    for (out, inp) in [(96, 200), (10, 75)] {
        let (layer, w, b) = dense(&mut rng, out, inp, DType::F32);
        let q = layer.quantize(Quant::Nf4, &ctx).unwrap();
        assert_eq!(q.storage(), LayerStorage::Nf4);
        for rows in [1, 3, DIRECT_ROWS_MAX, DIRECT_ROWS_MAX + 1, 40] {
            let x = Tensor::from_vec(random(&mut rng, rows * inp, 1.0), (rows, inp), &Device::Cpu)
                .unwrap();
            // The direct product serves a query's rows (`gemm::for_queries`), never a page batch's.
            let y = for_queries(|| q.forward(&x)).unwrap();
            let err = rel_max_err(&y, &reference(&w, &b, &x, &ctx));
            // Through the scratch it is the same matmul; from the codes the sums are reassociated.
            let tol = if rows <= DIRECT_ROWS_MAX { 1e-5 } else { 1e-6 };
            assert!(
                err <= tol,
                "{out}x{inp}, rows {rows}: relative error {err} > {tol}"
            );
        }
        // Leading batch dims are kept.
        let x = Tensor::from_vec(
            random(&mut rng, 2 * 7 * inp, 1.0),
            (2, 7, inp),
            &Device::Cpu,
        )
        .unwrap();
        let y = q.forward(&x).unwrap();
        assert_eq!(y.dims(), &[2, 7, out]);
        // 14 rows: from the codes (`quant::gemm`), sums reassociated.
        assert!(rel_max_err(&y, &reference(&w, &b, &x, &ctx)) <= 1e-5);
    }
}

#[test]
fn nf4_forward_in_bf16_is_bf16_dequantise_then_matmul() {
    let mut rng = StdRng::seed_from_u64(12);
    let ctx = QuantContext::new(&Device::Cpu).with_double_quant(false);
    let (layer, w, b) = dense(&mut rng, 64, 256, DType::BF16);
    let q = layer.quantize(Quant::Nf4, &ctx).unwrap();
    let x = Tensor::from_vec(random(&mut rng, 32 * 256, 1.0), (32, 256), &Device::Cpu)
        .unwrap()
        .to_dtype(DType::BF16)
        .unwrap();
    let y = q.forward(&x).unwrap();
    assert_eq!(y.dtype(), DType::BF16);
    assert_eq!(rel_max_err(&y, &reference(&w, &b, &x, &ctx)), 0.0);
}

#[test]
fn one_scratch_serves_every_layer() {
    let mut rng = StdRng::seed_from_u64(13);
    let ctx = QuantContext::new(&Device::Cpu);
    let (small, ws, bs) = dense(&mut rng, 32, 128, DType::F32);
    let (large, wl, bl) = dense(&mut rng, 80, 192, DType::F32);
    let small = small.quantize(Quant::Nf4, &ctx).unwrap();
    let large = large.quantize(Quant::Nf4, &ctx).unwrap();
    assert_eq!(
        ctx.scratch().capacity(),
        80 * 192,
        "sized for the largest layer"
    );
    // More rows than the direct product takes, so every forward goes through the scratch.
    let n = DIRECT_ROWS_MAX + 1;
    let xs = Tensor::from_vec(random(&mut rng, n * 128, 1.0), (n, 128), &Device::Cpu).unwrap();
    let xl = Tensor::from_vec(random(&mut rng, n * 192, 1.0), (n, 192), &Device::Cpu).unwrap();
    // Interleave: each forward must see its own weight, not the previous layer's leftovers.
    for _ in 0..2 {
        assert!(
            rel_max_err(
                &large.forward(&xl).unwrap(),
                &reference(&wl, &bl, &xl, &ctx)
            ) <= 1e-6
        );
        assert!(
            rel_max_err(
                &small.forward(&xs).unwrap(),
                &reference(&ws, &bs, &xs, &ctx)
            ) <= 1e-6
        );
    }
    assert_eq!(
        ctx.scratch().allocated_bytes(),
        80 * 192 * 4,
        "one f32 buffer, not one per layer"
    );
}

#[test]
fn forward_onto_adds_the_product_without_the_bias() {
    // `c + x·Wᵀ` (what a LoRA layer lands its base product on): dense, NF4, and NF4 computed as
    // a padded GEMM (the weight in the corner of a zero-padded scratch).
    let mut rng = StdRng::seed_from_u64(16);
    let ctx = QuantContext::new(&Device::Cpu);
    let (layer, _, b) = dense(&mut rng, 40, 72, DType::F32);
    let x = Tensor::from_vec(random(&mut rng, 9 * 72, 1.0), (9, 72), &Device::Cpu).unwrap();
    let c = Tensor::from_vec(random(&mut rng, 9 * 40, 1.0), (9, 40), &Device::Cpu).unwrap();
    let nf4 = layer.clone().quantize(Quant::Nf4, &ctx).unwrap();
    for q in [layer, nf4] {
        let want = (q.forward(&x).unwrap().broadcast_sub(&b).unwrap() + &c).unwrap();
        let got = q.forward_onto(&x, c.clone()).unwrap();
        assert!(rel_max_err(&got, &want) <= 1e-6, "{}", q.storage());
        let padded = q.clone().padded(48, 80).unwrap();
        let xp = x.pad_with_zeros(1, 0, 8).unwrap();
        let cp = c.pad_with_zeros(1, 0, 8).unwrap();
        let got = padded.forward_onto(&xp, cp).unwrap();
        assert_eq!(got.dims(), &[9, 48]);
        assert!(rel_max_err(&got.narrow(1, 0, 40).unwrap(), &want) <= 1e-6);
        let tail = got
            .narrow(1, 40, 8)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap();
        assert_eq!(
            tail.to_scalar::<f32>().unwrap(),
            0.0,
            "padding outputs stay zero"
        );
    }
}

#[test]
fn stacked_layers_compute_their_parts_side_by_side() {
    // q | k | v as one layer (`QLinear::stack`): dense parts merged into one weight, NF4 parts a
    // stack, NF4 parts with LoRA adapters one adapter with block-diagonal B. Each must give
    // exactly its parts' outputs, concatenated — with and without the product added onto a
    // given term (`forward_onto`), for a query's few rows and a page batch's many.
    let mut rng = StdRng::seed_from_u64(17);
    let ctx = QuantContext::new(&Device::Cpu);
    let shapes = [(64usize, 128usize), (32, 128), (32, 128)];
    let dense_parts: Vec<QLinear> = shapes
        .iter()
        .map(|&(o, i)| dense(&mut rng, o, i, DType::F32).0)
        .collect();
    let nf4_parts: Vec<QLinear> = dense_parts
        .iter()
        .map(|l| l.clone().quantize(Quant::Nf4, &ctx).unwrap())
        .collect();
    let lora_parts: Vec<QLinear> = nf4_parts
        .iter()
        .enumerate()
        .map(|(j, base)| {
            let (out, inp) = base.shape();
            let r = 4 + 2 * j;
            let a =
                Tensor::from_vec(random(&mut rng, r * inp, 0.2), (r, inp), &Device::Cpu).unwrap();
            let b =
                Tensor::from_vec(random(&mut rng, out * r, 0.2), (out, r), &Device::Cpu).unwrap();
            QLinear::Lora(LoraLinear::new(base.clone(), a, b).unwrap())
        })
        .collect();
    for (kind, parts) in [
        ("dense", dense_parts),
        ("nf4", nf4_parts),
        ("nf4+lora", lora_parts),
    ] {
        let stacked = QLinear::stack(parts.clone()).unwrap();
        assert_eq!(stacked.shape(), (128, 128), "{kind}");
        for rows in [3usize, 20] {
            let x = Tensor::from_vec(
                random(&mut rng, rows * 128, 1.0),
                (1, rows, 128),
                &Device::Cpu,
            )
            .unwrap();
            let want = Tensor::cat(
                &parts
                    .iter()
                    .map(|p| p.forward(&x).unwrap())
                    .collect::<Vec<_>>(),
                2,
            )
            .unwrap();
            let got = stacked.forward(&x).unwrap();
            assert!(rel_max_err(&got, &want) <= 1e-6, "{kind}, {rows} rows");
            if kind != "nf4+lora" {
                let c = Tensor::from_vec(
                    random(&mut rng, rows * 128, 1.0),
                    (1, rows, 128),
                    &Device::Cpu,
                )
                .unwrap();
                let bias = stacked.bias_tensor().unwrap().clone();
                let onto = stacked.forward_onto(&x, c.clone()).unwrap();
                let want_onto = (want.broadcast_sub(&bias).unwrap() + &c).unwrap();
                assert!(
                    rel_max_err(&onto, &want_onto) <= 1e-6,
                    "{kind} onto, {rows} rows"
                );
            }
        }
    }
}

#[test]
fn q4k_forward_is_close_to_dense() {
    let mut rng = StdRng::seed_from_u64(14);
    let ctx = QuantContext::new(&Device::Cpu);
    let x = Tensor::from_vec(random(&mut rng, 6 * 512, 1.0), (6, 512), &Device::Cpu).unwrap();
    let (layer, _, _) = dense(&mut rng, 64, 512, DType::F32);
    let want = layer.forward(&x).unwrap();
    let q = layer
        .clone()
        .quantize_named("model.layers.0.mlp.up_proj", Quant::Q4k, &ctx)
        .unwrap();
    assert_eq!(q.storage().to_string(), "Q4K");
    // Loose tolerance (10 % relative Frobenius error): 4-bit weights, and candle's CPU kernel also
    // quantises the activations to 8 bits (Q8K). NF4 has the least room on these uniform random
    // weights: its code book is made for normal ones.
    let err = rel_fro_err(&q.forward(&x).unwrap(), &want);
    let nf4 = layer.clone().quantize(Quant::Nf4, &ctx).unwrap();
    let nf4_err = rel_fro_err(&nf4.forward(&x).unwrap(), &want);
    eprintln!("relative Frobenius error vs dense: Q4K {err:.4}, NF4 {nf4_err:.4}");
    assert!(err < 0.10, "Q4K relative error {err}");
    assert!(err > 0.0, "Q4K cannot be lossless on random weights");

    // Rows that are not whole 256-blocks: Q4_0 for multiples of 32, else dense; both recorded.
    let (l96, _, _) = dense(&mut rng, 16, 96, DType::F32);
    let q96 = l96
        .quantize_named("visual.blocks.0.attn.proj", Quant::Q4k, &ctx)
        .unwrap();
    assert_eq!(q96.storage().to_string(), "Q4_0");
    let (l50, _, _) = dense(&mut rng, 16, 50, DType::F32);
    let q50 = l50.quantize_named("odd", Quant::Q4k, &ctx).unwrap();
    assert_eq!(q50.storage(), LayerStorage::Dense);
    let notes: Vec<_> = ctx.records().into_iter().filter_map(|r| r.note).collect();
    assert_eq!(notes.len(), 2, "{notes:?}");
}

#[test]
fn weight_bytes_are_about_half_a_byte_per_parameter() {
    let mut rng = StdRng::seed_from_u64(15);
    let params = 256 * 1024;
    let (layer, _, _) = dense(&mut rng, 256, 1024, DType::BF16);
    let bias_bytes = 256 * 2;
    assert_eq!(layer.weight_bytes(), params * 2 + bias_bytes);
    let double = layer
        .clone()
        .quantize(Quant::Nf4, &QuantContext::new(&Device::Cpu))
        .unwrap();
    // 0.5 B codes + 1/64 B absmax codes + 4 B per 256·64 params + offset.
    let want = params / 2 + params / 64 + 4 * params.div_ceil(64 * 256) + 4 + bias_bytes;
    assert_eq!(double.weight_bytes(), want);
    let per_param = (double.weight_bytes() - bias_bytes) as f64 / params as f64;
    assert!((0.5..0.52).contains(&per_param), "{per_param} B/param");
    let plain = layer
        .quantize(
            Quant::Nf4,
            &QuantContext::new(&Device::Cpu).with_double_quant(false),
        )
        .unwrap();
    assert_eq!(
        plain.weight_bytes(),
        params / 2 + params / 64 * 4 + bias_bytes
    );
}

#[test]
fn layer_policy_keeps_projection_and_optionally_vision_dense() {
    let mut rng = StdRng::seed_from_u64(16);
    let ctx = QuantContext::new(&Device::Cpu).with_scope(QuantScope::LanguageModelOnly);
    let names = [
        "model.layers.0.self_attn.q_proj",
        "visual.merger.mlp.0",
        "custom_text_proj",
    ];
    let stored: Vec<LayerStorage> = names
        .iter()
        .map(|n| {
            dense(&mut rng, 8, 64, DType::F32)
                .0
                .quantize_named(n, Quant::Nf4, &ctx)
                .unwrap()
                .storage()
        })
        .collect();
    assert_eq!(
        stored,
        [LayerStorage::Nf4, LayerStorage::Dense, LayerStorage::Dense]
    );
    let all = QuantContext::new(&Device::Cpu);
    assert_eq!(
        all.quant_for("visual.blocks.3.mlp.down_proj", Quant::Nf4),
        Quant::Nf4
    );
    assert_eq!(all.quant_for("custom_text_proj", Quant::Nf4), Quant::None);
    assert_eq!(
        all.quant_for("visual.patch_embed.proj", Quant::Nf4),
        Quant::None
    );
    let s = ctx.summary();
    assert_eq!((s.layers, s.nf4_layers, s.dense_layers), (3, 1, 2));
    // A quantised layer cannot be quantised again.
    let q = dense(&mut rng, 8, 64, DType::F32)
        .0
        .quantize(Quant::Nf4, &all)
        .unwrap();
    assert!(q.quantize(Quant::Q4k, &all).is_err());
}

/// `Compute::Fp8` on the CPU (the emulation the GPU is checked against): a page batch's product
/// is NF4's with each weight row and each input row rounded to E4M3 under its own scale, then
/// summed in f32; a query's few rows skip FP8 and equal NF4's.
#[test]
fn fp8_emulation_rounds_weight_rows_and_tokens_and_skips_a_querys_rows() {
    use pagesight::model::quant::fp8;
    use pagesight::model::settings::Compute;
    let mut rng = StdRng::seed_from_u64(23);
    let plain_ctx = QuantContext::new(&Device::Cpu);
    let fp8_ctx = QuantContext::new(&Device::Cpu).with_compute(Compute::Fp8);
    // 208 inputs: the 64-weight blocks straddle rows, so a row's bound spans two blocks' absmax.
    let (out, inp) = (96, 208);
    let (layer, _, b) = dense(&mut rng, out, inp, DType::F32);
    let plain = layer.clone().quantize(Quant::Nf4, &plain_ctx).unwrap();
    let q = layer.quantize(Quant::Nf4, &fp8_ctx).unwrap();
    let QLinear::Nf4(nf4) = &q else {
        panic!("not NF4")
    };
    let mut wd = nf4.weight().dequantize::<f32>().unwrap();
    for (row, &pair) in wd
        .chunks_mut(inp)
        .zip(&fp8::weight_row_scales(nf4.weight()).unwrap())
    {
        fp8::round_row(row, pair);
    }
    let wd = Tensor::from_vec(wd, (out, inp), &Device::Cpu).unwrap();
    let rows = 40;
    let xs = random(&mut rng, rows * inp, 1.0);
    let x = Tensor::from_vec(xs.clone(), (rows, inp), &Device::Cpu).unwrap();
    let mut xr = xs;
    fp8::round_rows(&mut xr, inp);
    let xr = Tensor::from_vec(xr, (rows, inp), &Device::Cpu).unwrap();
    let expected = xr
        .matmul(&wd.t().unwrap())
        .unwrap()
        .broadcast_add(&b)
        .unwrap();
    let y = q.forward(&x).unwrap();
    assert!(rel_max_err(&y, &expected) <= 1e-6);
    // FP8 moves the product from NF4's, by about E4M3's relative precision.
    let moved = rel_fro_err(&y, &plain.forward(&x).unwrap());
    assert!(
        (3e-3..6e-2).contains(&moved),
        "fp8 moved the product {moved:.2e}"
    );
    // A query's rows: NF4's own product from the codes.
    let few = x.narrow(0, 0, fp8::FEW_ROWS).unwrap();
    let (yq, yp) = for_queries(|| (q.forward(&few).unwrap(), plain.forward(&few).unwrap()));
    assert!(rel_max_err(&yq, &yp) <= 1e-6);
    // A width FP8 GEMMs do not take (not a multiple of 16) keeps NF4's product, as on the GPU.
    let (odd, _, _) = dense(&mut rng, 96, 200, DType::F32);
    let (odd_fp8, odd_plain) = (
        odd.clone().quantize(Quant::Nf4, &fp8_ctx).unwrap(),
        odd.quantize(Quant::Nf4, &plain_ctx).unwrap(),
    );
    let x = Tensor::from_vec(random(&mut rng, rows * 200, 1.0), (rows, 200), &Device::Cpu).unwrap();
    assert!(
        rel_max_err(
            &odd_fp8.forward(&x).unwrap(),
            &odd_plain.forward(&x).unwrap()
        ) <= 1e-6
    );
}

/// Under `Compute::Fp8` only the gated MLPs' projections compute in FP8; the attention's
/// projections keep NF4's product in the dtype.
#[test]
fn fp8_takes_the_mlp_projections_and_leaves_attention_in_the_dtype() {
    use pagesight::model::quant::fp8;
    use pagesight::model::settings::Compute;
    for (name, takes) in [
        ("model.layers.3.mlp.gate_proj", true),
        ("model.layers.3.mlp.up_proj", true),
        ("visual.blocks.0.mlp.down_proj", true),
        ("model.layers.3.self_attn.q_proj", false),
        ("model.layers.3.self_attn.o_proj", false),
        ("visual.blocks.0.attn.proj", false),
        ("model.layers.3.self_attn.k_proj", false),
        ("visual.blocks.0.attn.qkv", false),
        ("visual.patch_embed.proj", false),
        ("visual.merger.mlp.0", false),
    ] {
        assert_eq!(fp8::layer_takes_fp8(name), takes, "{name}");
    }
    let mut rng = StdRng::seed_from_u64(29);
    let plain_ctx = QuantContext::new(&Device::Cpu);
    let fp8_ctx = QuantContext::new(&Device::Cpu).with_compute(Compute::Fp8);
    assert!(!plain_ctx.fp8_for("model.layers.0.mlp.up_proj"));
    let (out, inp, rows) = (64, 128, 40);
    let (layer, _, _) = dense(&mut rng, out, inp, DType::F32);
    let x = Tensor::from_vec(random(&mut rng, rows * inp, 1.0), (rows, inp), &Device::Cpu).unwrap();
    let plain = layer.clone().quantize(Quant::Nf4, &plain_ctx).unwrap();
    let y_plain = plain.forward(&x).unwrap();
    let named = |name: &str| {
        layer
            .clone()
            .quantize_named(name, Quant::Nf4, &fp8_ctx)
            .unwrap()
            .forward(&x)
            .unwrap()
    };
    let attention = named("model.layers.0.self_attn.q_proj");
    assert!(rel_max_err(&attention, &y_plain) <= 1e-6);
    let mlp = named("model.layers.0.mlp.up_proj");
    assert!(
        rel_fro_err(&mlp, &y_plain) >= 3e-3,
        "the MLP's product is FP8's"
    );
}
