//! ColQwen2.5 parity against the Python reference fixture (tests/fixtures/colqwen_tiny, made by
//! tools/gen_fixtures.py with colpali-engine + transformers), plus config and random-model checks.

use candle_core::{Device, Tensor};
use pagesight::devtools::model_parity::{rel_err, ParityFixture};
use pagesight::engine::{Compute, DType, DeviceChoice, ModelSettings, Quant};
use pagesight::model::colqwen::config::ColQwenConfig;
use pagesight::model::colqwen::ColQwen;
use pagesight::model::LoraMode;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

pub(crate) fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/colqwen_tiny")
}

/// The committed reference fixture, read once (the same reader the GPU selftest uses).
fn parity() -> &'static ParityFixture {
    static P: OnceLock<ParityFixture> = OnceLock::new();
    P.get_or_init(|| ParityFixture::load(&fixture()).unwrap())
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture().join("meta.json")).unwrap()).unwrap()
}

pub(crate) fn settings(dtype: DType, adapter: bool) -> ModelSettings {
    let mut s = parity().settings(DeviceChoice::Cpu, dtype, Quant::None);
    if !adapter {
        s.adapter = None;
    }
    s
}

fn f32s(name: &str) -> Vec<f32> {
    parity().f32s(name).unwrap()
}

fn ids(name: &str) -> Vec<u32> {
    parity()
        .tensor(name)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<i64>()
        .unwrap()
        .into_iter()
        .map(|x| x as u32)
        .collect()
}

pub(crate) fn queries() -> Vec<String> {
    parity().queries().to_vec()
}

pub(crate) fn fixture_pixels() -> (Tensor, Vec<[u32; 3]>) {
    parity().pixels().unwrap()
}

fn check_queries(model: &ColQwen, prefix: &str, tol: f64) {
    let q = queries();
    let got = model.embed_queries(&q).unwrap();
    let mut errs = Vec::new();
    for (i, (text, v)) in q.iter().zip(&got).enumerate() {
        assert_eq!(
            model.query_input_ids(text).unwrap(),
            ids(&format!("query_input_ids.{i}")),
            "query {i} ids"
        );
        errs.push((
            format!("{prefix}query.{i}"),
            rel_err(v, &f32s(&format!("{prefix}query.{i}"))),
        ));
    }
    assert_all_below(&errs, tol);
}

/// Prints every error first, so a failure shows the whole picture.
fn assert_all_below(errs: &[(String, f64)], tol: f64) {
    for (name, e) in errs {
        eprintln!("{name}: rel err {e:.3e}");
    }
    for (name, e) in errs {
        assert!(*e < tol, "{name}: rel err {e:.3e} ≥ {tol}");
    }
}

fn check_images(model: &ColQwen, prefix: &str, tol: f64) {
    let (pixels, grids) = fixture_pixels();
    let pages = model.embed_images(&pixels, &grids).unwrap();
    let mut errs = Vec::new();
    for (i, (p, g)) in pages.iter().zip(&grids).enumerate() {
        assert_eq!(
            model.image_input_ids(*g),
            ids(&format!("image_input_ids.{i}")),
            "image {i} ids"
        );
        errs.push((
            format!("{prefix}image.{i}"),
            rel_err(&p.vectors, &f32s(&format!("{prefix}image.{i}"))),
        ));
        assert_eq!(p.image_rows.len() as u32, g[1] * g[2] / 4);
        assert_eq!(p.merged_grid, (g[1] / 2, g[2] / 2));
    }
    assert_all_below(&errs, tol);
}

#[test]
fn fixture_f32_queries_and_images_match_reference() {
    let model = ColQwen::load(&settings(DType::F32, true)).unwrap();
    assert!(!model.is_random());
    check_queries(&model, "", 1e-4);
    check_images(&model, "", 1e-4);
}

#[test]
fn fixture_f32_intermediates_match_reference() {
    let model = ColQwen::load(&settings(DType::F32, true)).unwrap();
    let (pixels, grids) = fixture_pixels();
    let vision = model.vision_forward(&pixels, &grids).unwrap();
    let mut start = 0;
    for (i, g) in grids.iter().enumerate() {
        let n = (g[1] * g[2] / 4) as usize;
        let got: Vec<f32> = vision
            .narrow(0, start, n)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let e = rel_err(&got, &f32s(&format!("image_vision_out.{i}")));
        eprintln!("image_vision_out.{i}: rel err {e:.3e}");
        assert!(e < 1e-4, "image_vision_out.{i}: {e:.3e}");
        start += n;
    }
    let (hidden, batch) = model.image_last_hidden(&vision, &grids).unwrap();
    // Positions of the real tokens as the reference's get_rope_index gives them.
    let ref_pos = parity()
        .tensor("image_rope_position_ids")
        .unwrap()
        .to_vec3::<i64>()
        .unwrap();
    for row in 0..batch.len() {
        let pad = batch.pad_len(row);
        let ref_pad = ref_pos[0][row].len() - (batch.seq_len() - pad);
        for (axis, ref_axis) in ref_pos[..3].iter().enumerate() {
            assert_eq!(
                &batch.positions[row][axis][pad..],
                &ref_axis[row][ref_pad..],
                "row {row} axis {axis}"
            );
        }
        let got: Vec<f32> = hidden
            .get(row)
            .unwrap()
            .narrow(0, pad, batch.seq_len() - pad)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let e = rel_err(&got, &f32s(&format!("image_last_hidden.{row}")));
        eprintln!("image_last_hidden.{row}: rel err {e:.3e}");
        assert!(e < 1e-4, "image_last_hidden.{row}: {e:.3e}");
    }
}

/// bf16 against the f32 reference, within the issue's 1e-2. On the CPU bf16 only stores the
/// weights: activations stay f32 (`Weights::activation_dtype`), so the error is the weights'
/// bf16 rounding (~6–8e-3 on this fixture; the reference itself, run in bf16, is 1.28e-2 …
/// 1.41e-2 from its f32 output). Rounding every layer's activations to bf16 too had put the
/// queries at 1.0–1.25e-2.
#[test]
fn fixture_bf16_within_1e_2_of_the_f32_reference() {
    let model = ColQwen::load(&settings(DType::Bf16, true)).unwrap();
    check_queries(&model, "", 1e-2);
    check_images(&model, "", 1e-2);
}

#[test]
fn fixture_without_adapter_matches_base_and_adapter_changes_output() {
    let base = ColQwen::load(&settings(DType::F32, false)).unwrap();
    check_queries(&base, "noadapter.", 1e-4);
    check_images(&base, "noadapter.", 1e-4);
    assert!(base.identity().adapter_hash.is_none());
    // The merged adapter must move the vectors by far more than the tolerance.
    let e = rel_err(&f32s("query.0"), &f32s("noadapter.query.0"));
    assert!(e > 1e-2, "fixture adapter has no effect ({e})");
}

#[test]
fn preprocessing_matches_reference_pixels() {
    use pagesight::model::colqwen::image_input::load_preprocess_config;
    let cfg = load_preprocess_config(
        Some(&fixture().join("model/preprocessor_config.json")),
        None,
    )
    .unwrap();
    for (i, img) in meta()["images"].as_array().unwrap().iter().enumerate() {
        let rgb = image::open(fixture().join(img["file"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        let (px, grid) =
            pagesight::model::preprocess_rgb(rgb.as_raw(), rgb.height(), rgb.width(), &cfg)
                .unwrap();
        assert_eq!(
            grid.to_vec(),
            ids(&format!("image_grid_thw.{i}")),
            "image {i} grid"
        );
        let want = f32s(&format!("image_pixel_values.{i}"));
        if img["needs_resize"].as_bool().unwrap() {
            // Resampling may differ by a step of 1/255 (in normalised units, ≤ 1/(255·0.26)).
            let max = px
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                max <= 2.0 / (255.0 * 0.26),
                "image {i} (resized): max pixel diff {max}"
            );
        } else {
            let e = rel_err(&px, &want);
            assert!(e < 1e-6, "image {i} pixels rel err {e:.3e}");
        }
    }
}

#[test]
fn embed_cli_writes_expected_tensors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.safetensors");
    let images: Vec<PathBuf> = meta()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| fixture().join(i["file"].as_str().unwrap()))
        .collect();
    let args = embed_args(
        &[
            "--model",
            &settings(DType::F32, true).model,
            "--adapter",
            &fixture().join("adapter").to_string_lossy(),
            "--device",
            "cpu",
            "--dtype",
            "f32",
            "--quant",
            "none",
            "--out",
            &out.to_string_lossy(),
            "--dump-inputs",
            "--query",
            &queries()[0],
            "--query",
            &queries()[1],
            "--image",
        ],
        &images,
    );
    pagesight::cli::embed::run(args).unwrap();
    let got = candle_core::safetensors::load(&out, &Device::Cpu).unwrap();
    for (i, img) in meta()["images"].as_array().unwrap().iter().enumerate() {
        let ids_got: Vec<i64> = got[&format!("image_input_ids.{i}")].to_vec1().unwrap();
        assert_eq!(
            ids_got.iter().map(|&x| x as u32).collect::<Vec<_>>(),
            ids(&format!("image_input_ids.{i}"))
        );
        assert!(got.contains_key(&format!("image_pixel_values.{i}")));
        if !img["needs_resize"].as_bool().unwrap() {
            let v: Vec<f32> = got[&format!("image.{i}")]
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            let e = rel_err(&v, &f32s(&format!("image.{i}")));
            assert!(e < 1e-4, "cli image.{i}: {e:.3e}");
        }
    }
    for i in 0..2 {
        let v: Vec<f32> = got[&format!("query.{i}")]
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        assert!(rel_err(&v, &f32s(&format!("query.{i}"))) < 1e-4);
    }
}

#[test]
fn config_both_layouts_and_named_errors() {
    let nested = ColQwenConfig::from_file(&fixture().join("model/config.json")).unwrap();
    assert_eq!(nested.text.num_key_value_heads, 2);
    assert_eq!(nested.vision.fullatt_block_indexes, vec![1]);
    let flat = ColQwenConfig::from_file(&fixture().join("config_real_3b.json")).unwrap();
    assert_eq!(
        (
            flat.vision.depth,
            flat.vision.intermediate_size,
            flat.vision.window_size
        ),
        (32, 3420, 112)
    );
    assert_eq!(flat.text.mrope_section, vec![16, 24, 24]);
    let text = std::fs::read_to_string(fixture().join("config_real_3b.json")).unwrap();
    let broken = text.replace("\"num_attention_heads\"", "\"renamed_heads\"");
    let e = format!("{:#}", ColQwenConfig::from_json_str(&broken).unwrap_err());
    assert!(e.contains("num_attention_heads"), "{e}");
}

#[test]
fn random_tiny_is_deterministic() {
    let s = ModelSettings {
        model: "random:tiny".into(),
        device: DeviceChoice::Cpu,
        ..ModelSettings::default()
    };
    let a = ColQwen::load(&s).unwrap();
    let b = ColQwen::load(&s).unwrap();
    assert!(a.is_random() && a.identity().random);
    // Two pages of different sizes (several windows, padding) and two queries.
    let grids = [[1u32, 20, 12], [1, 8, 16]];
    let n: usize = grids.iter().map(|g| (g[1] * g[2]) as usize).sum();
    let px: Vec<f32> = (0..n * 1176)
        .map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0)
        .collect();
    let px = Tensor::from_vec(px, (n, 1176), &Device::Cpu).unwrap();
    let pa = a.embed_images(&px, &grids).unwrap();
    let pb = b.embed_images(&px, &grids).unwrap();
    assert_eq!(pa, pb);
    assert_eq!(pa[0].merged_grid, (10, 6));
    assert!(pa.iter().all(|p| p.vectors.iter().all(|x| x.is_finite())));
    let q = vec!["hello".to_string(), "a longer query text".to_string()];
    assert_eq!(a.embed_queries(&q).unwrap(), b.embed_queries(&q).unwrap());
}

/// The fixture checkpoint re-saved as two shards + index.json with transformers-5 key names
/// (`model.language_model.*`, `model.visual.*`) and bf16 storage loads to the same vectors.
#[test]
fn sharded_renamed_bf16_checkpoint_loads() {
    let src = fixture().join("model");
    let dir = tempfile::tempdir().unwrap();
    for f in ["config.json", "tokenizer.json", "preprocessor_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let tensors =
        candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let rename = |k: &str| -> String {
        if let Some(r) = k.strip_prefix("model.") {
            format!("model.language_model.{r}")
        } else if let Some(r) = k.strip_prefix("visual.") {
            format!("model.visual.{r}")
        } else {
            k.to_string()
        }
    };
    let mut weight_map = serde_json::Map::new();
    let half = names.len() / 2;
    for (shard, chunk) in [&names[..half], &names[half..]].iter().enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let mut m = HashMap::new();
        for k in chunk.iter() {
            let t = tensors[*k].to_dtype(candle_core::DType::BF16).unwrap();
            m.insert(rename(k), t);
            weight_map.insert(rename(k), serde_json::Value::String(file.clone()));
        }
        candle_core::safetensors::save(&m, dir.path().join(&file)).unwrap();
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(
        dir.path().join("model.safetensors.index.json"),
        index.to_string(),
    )
    .unwrap();

    let mut s = settings(DType::F32, true);
    s.model = dir.path().to_string_lossy().into_owned();
    let model = ColQwen::load(&s).unwrap();
    // bf16-stored weights computed in f32: the weight-rounding error only.
    check_queries(&model, "", 1e-2);
}

#[test]
fn f16_is_close_to_reference() {
    let model = ColQwen::load(&settings(DType::F16, true)).unwrap();
    check_queries(&model, "", 5e-3);
    check_images(&model, "", 5e-3);
}

#[test]
fn bad_inputs_give_clear_errors() {
    let mut s = settings(DType::F32, true);
    s.model = "/nonexistent/colqwen".into();
    let e = format!("{:#}", ColQwen::load(&s).err().unwrap());
    assert!(e.contains("/nonexistent/colqwen"), "{e}");
    let mut s = settings(DType::F32, false);
    s.adapter = Some(fixture().join("images"));
    let e = format!("{:#}", ColQwen::load(&s).err().unwrap());
    assert!(e.contains("adapter_config.json"), "{e}");
    let s = ModelSettings {
        model: "random:huge".into(),
        device: DeviceChoice::Cpu,
        ..ModelSettings::default()
    };
    let e = format!("{:#}", ColQwen::load(&s).err().unwrap());
    assert!(e.contains("random:tiny"), "{e}");
    // Pixel rows that do not match the grid.
    let model = ColQwen::load(&settings(DType::F32, false)).unwrap();
    let px = Tensor::zeros((10, 1176), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = format!("{:#}", model.embed_images(&px, &[[1, 4, 4]]).unwrap_err());
    assert!(e.contains("pixel_values"), "{e}");
}

/// The fixture model with NF4 weights and its adapter in `lora` form, and its errors against
/// the reference's NF4 model of the same form (`nf4_unmerged.*` or `nf4_merged.*`).
fn nf4_errors_against_reference(lora: LoraMode) -> Vec<(String, f64)> {
    let mut s = settings(DType::F32, true);
    s.quant = Quant::Nf4;
    s.lora = lora;
    let nf4 = ColQwen::load(&s).unwrap();
    let sum = nf4.quant_summary().expect("quantised");
    assert!(
        sum.nf4_layers > 0 && sum.bytes_after * 3 < sum.bytes_before,
        "{sum:?}"
    );
    assert_eq!(nf4.identity().lora, Some(lora));
    parity()
        .errors(&nf4, &format!("nf4_{}.", lora.name()))
        .unwrap()
}

/// NF4 with the adapter as the seed computes it (tools/gen_nf4_model_fixture.py: bitsandbytes'
/// quantize_4bit → dequantize_4bit on every linear layer of the *base* model but
/// custom_text_proj and the patch-embed conv, then PEFT's adapter unmerged, f32): the default.
/// On this tiny random model NF4 itself moves the vectors a lot (the generator prints 0.25–0.36
/// against dense), so the check is parity with the reference's NF4 model.
#[test]
fn nf4_model_with_unmerged_adapter_matches_reference() {
    assert_eq!(ModelSettings::default().lora, LoraMode::Unmerged);
    assert_all_below(&nf4_errors_against_reference(LoraMode::Unmerged), 1e-4);
}

/// `--merge-lora`: the adapter merged first, the sum quantised — a different model from the
/// default, which the same check against the other reference must tell apart.
#[test]
fn nf4_model_with_merged_adapter_matches_merged_reference() {
    assert_all_below(&nf4_errors_against_reference(LoraMode::Merged), 1e-4);
    let mut s = settings(DType::F32, true);
    s.quant = Quant::Nf4;
    let unmerged = ColQwen::load(&s).unwrap();
    let got = unmerged.embed_queries(&queries()[..1]).unwrap();
    assert!(
        rel_err(&got[0], &f32s("nf4_merged.query.0")) > 1e-2,
        "the two forms should differ"
    );
}

/// `--compute fp8` on the CPU is the f32 emulation of W4A8 (`quant::fp8`) that the GPU's FP8
/// GEMMs are checked against. On the fixture it must move the page vectors (it computes), by at
/// most half of what NF4 moves them from the dense model (the issue's fidelity goal); a single
/// query's few rows skip FP8 on both devices, so it equals NF4's.
#[test]
fn fp8_compute_moves_pages_by_at_most_half_of_what_nf4_moves_them() {
    let mut s = settings(DType::F32, true);
    let dense = parity().embeddings(&ColQwen::load(&s).unwrap()).unwrap();
    s.quant = Quant::Nf4;
    let nf4 = parity().embeddings(&ColQwen::load(&s).unwrap()).unwrap();
    s.compute = Compute::Fp8;
    let model = ColQwen::load(&s).unwrap();
    assert_eq!(model.identity().compute, Compute::Fp8);
    let fp8 = parity().embeddings(&model).unwrap();
    let (nf4_moves, fp8_moves) = (
        rel_err(&nf4.1.concat(), &dense.1.concat()),
        rel_err(&fp8.1.concat(), &nf4.1.concat()),
    );
    eprintln!("pages: fp8 moves {fp8_moves:.3e} from NF4, NF4 {nf4_moves:.3e} from dense");
    assert!(
        fp8_moves > 1e-3,
        "fp8 left the pages as NF4's: {fp8_moves:.2e}"
    );
    assert!(
        fp8_moves <= 0.5 * nf4_moves,
        "fp8 moves pages {fp8_moves:.3e}, more than half of NF4's {nf4_moves:.3e}"
    );
    // One query alone (26 tokens) is a few rows: NF4's own product. (The fixture's four queries
    // embed as one left-padded batch of 4 × 46 rows, which FP8 does compute.)
    let one = &queries()[..1];
    s.compute = Compute::Dtype;
    let nf4_model = ColQwen::load(&s).unwrap();
    assert!(
        rel_err(
            &model.embed_queries(one).unwrap()[0],
            &nf4_model.embed_queries(one).unwrap()[0]
        ) < 1e-6
    );
    // Without NF4 there is nothing for fp8 to apply to.
    s.quant = Quant::None;
    assert_eq!(s.compute_in_effect(), Compute::Dtype);
}

/// `pagesight embed` as the command line parses it: `flags`, then `images` (the last flag takes
/// them).
fn embed_args(flags: &[&str], images: &[PathBuf]) -> pagesight::cli::embed::EmbedArgs {
    use clap::Parser;
    let mut argv: Vec<String> = ["pagesight", "embed"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    argv.extend(flags.iter().map(|s| s.to_string()));
    argv.extend(images.iter().map(|p| p.to_string_lossy().into_owned()));
    match pagesight::cli::Cli::try_parse_from(argv).unwrap().command {
        Some(pagesight::cli::Commands::Embed(a)) => a,
        other => panic!("not an embed command: {other:?}"),
    }
}

/// The page budget is the checkpoint's own unless asked: the fixture's processor says 64
/// visual tokens (max_pixels 50176), an adapter's own processor config wins over the base's (as
/// colpali-engine loads the processor from the adapter's id), and the flag overrides both.
#[test]
fn visual_token_budget_comes_from_the_checkpoint() {
    let budget = |s: &ModelSettings| ColQwen::load(s).unwrap().identity().max_visual_tokens;
    let mut s = settings(DType::F32, false);
    assert_eq!(s.max_visual_tokens, None);
    assert_eq!(budget(&s), 64);
    s.max_visual_tokens = Some(128);
    assert_eq!(budget(&s), 128);

    let adapter = tempfile::tempdir().unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(fixture().join("adapter").join(f), adapter.path().join(f)).unwrap();
    }
    let mut s = settings(DType::F32, true);
    s.adapter = Some(adapter.path().to_path_buf());
    assert_eq!(
        budget(&s),
        64,
        "without its own config the adapter takes the base's"
    );
    std::fs::write(
        adapter.path().join("preprocessor_config.json"),
        r#"{"min_pixels": 3136, "max_pixels": 25088}"#,
    )
    .unwrap();
    assert_eq!(budget(&s), 32);

    let random = ModelSettings {
        device: DeviceChoice::Cpu,
        ..ModelSettings::default()
    };
    assert_eq!(budget(&random), 768);
}
