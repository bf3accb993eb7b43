//! Checks that the ColQwen2.5 parity fixture (tests/fixtures/colqwen_tiny, made by
//! tools/gen_fixtures.py from the Python reference) really exercises what the parity tests
//! rely on. Properties are recomputed from the tensors, PNGs and configs themselves; meta.json
//! is only trusted where it is cross-checked against them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/colqwen_tiny")
}

fn read_json(rel: &str) -> Value {
    let path = fixture_dir().join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with tools/gen_fixtures.py)",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn read_bytes(rel: &str) -> Vec<u8> {
    let path = fixture_dir().join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A tensor as (shape, values), from f32 or i64 safetensors data.
struct Tensor {
    shape: Vec<usize>,
    values: Vec<f64>,
}

fn tensor(st: &SafeTensors, name: &str) -> Tensor {
    let view = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("tensor {name}: {e}"));
    let values = match view.dtype() {
        Dtype::F32 => view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f64)
            .collect(),
        Dtype::I64 => view
            .data()
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().expect("8 bytes")) as f64)
            .collect(),
        other => panic!("tensor {name}: unexpected dtype {other:?}"),
    };
    Tensor {
        shape: view.shape().to_vec(),
        values,
    }
}

fn uint(v: &Value, what: &str) -> usize {
    v.as_u64()
        .unwrap_or_else(|| panic!("{what}: expected an unsigned integer, got {v}")) as usize
}

fn added_token_ids() -> BTreeMap<String, usize> {
    let tokenizer = read_json("model/tokenizer.json");
    tokenizer["added_tokens"]
        .as_array()
        .expect("tokenizer.json: added_tokens")
        .iter()
        .map(|t| {
            (
                t["content"].as_str().expect("content").to_string(),
                uint(&t["id"], "added token id"),
            )
        })
        .collect()
}

/// Row `i` of a [rows, cols] tensor.
fn row(t: &Tensor, i: usize) -> &[f64] {
    let cols = t.shape[1];
    &t.values[i * cols..(i + 1) * cols]
}

/// Asserts a [B, L] attention mask is left-padded and returns each row's token count.
fn left_padded_lengths(mask: &Tensor, what: &str) -> Vec<usize> {
    assert_eq!(mask.shape.len(), 2, "{what}: mask must be [B, L]");
    (0..mask.shape[0])
        .map(|i| {
            let r = row(mask, i);
            let first_real = r.iter().position(|&m| m == 1.0).unwrap_or(r.len());
            assert!(r[..first_real].iter().all(|&m| m == 0.0), "{what} row {i}");
            assert!(
                r[first_real..].iter().all(|&m| m == 1.0),
                "{what} row {i} is not left-padded: {r:?}"
            );
            r.len() - first_real
        })
        .collect()
}

#[test]
fn fixture_images_cover_windows_divisibility_and_resize() {
    let config = read_json("model/config.json");
    let vision = &config["vision_config"];
    let patch = uint(&vision["patch_size"], "patch_size");
    let merge = uint(&vision["spatial_merge_size"], "spatial_merge_size");
    let window = uint(&vision["window_size"], "window_size") / merge / patch;
    let image_pad = uint(&config["image_token_id"], "image_token_id") as f64;
    let meta = read_json("meta.json");
    let bytes = read_bytes("expected.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("expected.safetensors");

    let images = meta["images"].as_array().expect("meta.images");
    assert!(images.len() >= 3, "need ≥ 3 images");
    let (mut divisible, mut not_divisible, mut resized, mut kept) = (0, 0, 0, 0);
    let (mut non_square_kept, mut non_square_resized) = (0, 0);
    for (i, entry) in images.iter().enumerate() {
        let file = entry["file"].as_str().expect("file");
        let (width, height) =
            image::image_dimensions(fixture_dir().join(file)).expect("fixture PNG");
        let grid = tensor(&st, &format!("image_grid_thw.{i}")).values;
        let (t, gh, gw) = (grid[0] as usize, grid[1] as usize, grid[2] as usize);
        let (mh, mw) = (gh / merge, gw / merge);
        assert_eq!(
            (gh % merge, gw % merge),
            (0, 0),
            "{file}: grid not mergeable"
        );
        assert!(
            mh.div_ceil(window) >= 2 && mw.div_ceil(window) >= 2,
            "{file}: merged grid {mh}×{mw} gives < 2 windows per axis"
        );
        let is_divisible = mh % window == 0 && mw % window == 0;
        let needs_resize = (gh * patch, gw * patch) != (height as usize, width as usize);
        divisible += usize::from(is_divisible);
        not_divisible += usize::from(mh % window != 0 && mw % window != 0);
        resized += usize::from(needs_resize);
        kept += usize::from(!needs_resize);
        non_square_kept += usize::from(!needs_resize && width != height);
        non_square_resized += usize::from(needs_resize && width != height);
        assert_eq!(
            entry["needs_resize"].as_bool(),
            Some(needs_resize),
            "{file}: meta"
        );
        assert_eq!(
            entry["merged_grid_divisible_by_4"].as_bool(),
            Some(is_divisible)
        );

        // The per-image tensors agree with the grid.
        let n_patches = t * gh * gw;
        let pixels = tensor(&st, &format!("image_pixel_values.{i}"));
        assert_eq!(
            pixels.shape,
            vec![n_patches, 3 * 2 * patch * patch],
            "{file}"
        );
        let vision_out = tensor(&st, &format!("image_vision_out.{i}"));
        assert_eq!(vision_out.shape[0], n_patches / (merge * merge), "{file}");
        let ids = tensor(&st, &format!("image_input_ids.{i}")).values;
        let n_pad_tokens = ids.iter().filter(|&&id| id == image_pad).count();
        assert_eq!(
            n_pad_tokens,
            n_patches / (merge * merge),
            "{file}: <|image_pad|> count"
        );
        let embedding = tensor(&st, &format!("image.{i}"));
        assert_eq!(embedding.shape, vec![ids.len(), 128], "{file}");
    }
    assert!(divisible >= 1, "no image with a merged grid divisible by 4");
    assert!(
        not_divisible >= 1,
        "no image with a merged grid not divisible by 4"
    );
    assert!(
        kept >= 2 && resized >= 1,
        "need images with and without resize"
    );
    assert!(
        non_square_kept >= 1 && non_square_resized >= 1,
        "need non-square images"
    );
}

#[test]
fn fixture_batches_are_left_padded_with_distinct_lengths() {
    let pad = added_token_ids()["<|endoftext|>"] as f64;
    let bytes = read_bytes("expected.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("expected.safetensors");
    for kind in ["query", "image"] {
        let mask = tensor(&st, &format!("batch.{kind}.attention_mask"));
        let ids = tensor(&st, &format!("batch.{kind}.input_ids"));
        let lengths = left_padded_lengths(&mask, kind);
        let distinct: BTreeSet<usize> = lengths.iter().copied().collect();
        assert!(distinct.len() >= 3, "{kind} batch lengths {lengths:?}");
        assert!(
            lengths.iter().any(|&n| n < mask.shape[1]),
            "{kind}: no padding"
        );
        for (i, &n) in lengths.iter().enumerate() {
            let r = row(&ids, i);
            let n_pad = r.len() - n;
            assert!(
                r[..n_pad].iter().all(|&id| id == pad),
                "{kind} row {i}: pad id"
            );
            let own = tensor(&st, &format!("{kind}_input_ids.{i}")).values;
            assert_eq!(
                own,
                r[n_pad..].to_vec(),
                "{kind}_input_ids.{i} vs batch row"
            );
            let embedding = tensor(&st, &format!("{kind}.{i}"));
            assert_eq!(embedding.shape, vec![n, 128], "{kind}.{i}");
            for token in 0..n {
                let norm = row(&embedding, token)
                    .iter()
                    .map(|x| x * x)
                    .sum::<f64>()
                    .sqrt();
                assert!(
                    (norm - 1.0).abs() < 1e-4,
                    "{kind}.{i} row {token}: norm {norm}"
                );
            }
        }
    }
    let meta = read_json("meta.json");
    assert_eq!(meta["processor"]["query_prefix"].as_str(), Some("Query: "));
}

#[test]
fn fixture_model_has_gqa_mrope_and_both_vision_block_kinds() {
    let config = read_json("model/config.json");
    let text = &config["text_config"];
    let heads = uint(&text["num_attention_heads"], "num_attention_heads");
    let kv_heads = uint(&text["num_key_value_heads"], "num_key_value_heads");
    let hidden = uint(&text["hidden_size"], "hidden_size");
    assert!(
        kv_heads < heads && heads.is_multiple_of(kv_heads),
        "GQA: {heads} heads, {kv_heads} KV"
    );
    let head_dim = hidden / heads;
    let section: Vec<usize> = text["rope_parameters"]["mrope_section"]
        .as_array()
        .expect("mrope_section")
        .iter()
        .map(|v| uint(v, "mrope_section"))
        .collect();
    assert_eq!(section.iter().sum::<usize>() * 2, head_dim, "mrope_section");

    let vision = &config["vision_config"];
    let depth = uint(&vision["depth"], "depth");
    let full: BTreeSet<usize> = vision["fullatt_block_indexes"]
        .as_array()
        .expect("fullatt_block_indexes")
        .iter()
        .map(|v| uint(v, "fullatt_block_indexes"))
        .collect();
    assert!(
        full.iter().all(|&b| b < depth) && !full.is_empty(),
        "full-attention block"
    );
    assert!((0..depth).any(|b| !full.contains(&b)), "no windowed block");

    // Token ids in config.json are the tokenizer's added tokens.
    let added = added_token_ids();
    for (field, token) in [
        ("image_token_id", "<|image_pad|>"),
        ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"),
        ("vision_end_token_id", "<|vision_end|>"),
    ] {
        assert_eq!(uint(&config[field], field), added[token], "{field}");
    }
    let vocab = uint(&text["vocab_size"], "vocab_size");
    assert!(
        added.values().all(|&id| id < vocab),
        "token ids past vocab_size"
    );

    // The weights use the published names and carry the GQA shapes.
    let bytes = read_bytes("model/model.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("model.safetensors");
    let names = st.names();
    assert!(
        names.iter().all(|n| !n.starts_with("language_model.")),
        "transformers-5 names"
    );
    let k_proj = st
        .tensor("model.layers.0.self_attn.k_proj.weight")
        .expect("k_proj");
    assert_eq!(k_proj.shape(), [kv_heads * head_dim, hidden]);
    let embed = st
        .tensor("model.embed_tokens.weight")
        .expect("embed_tokens");
    assert_eq!(embed.shape(), [vocab, hidden]);
    assert_eq!(
        st.tensor("custom_text_proj.weight").expect("proj").shape(),
        [128, hidden]
    );
    assert!(st.tensor("model.norm.weight").is_ok());
    let last = depth - 1;
    assert!(st
        .tensor(&format!("visual.blocks.{last}.attn.qkv.weight"))
        .is_ok());
    let known = ["model.", "visual.", "custom_text_proj."];
    for name in &names {
        assert!(
            known.iter().any(|p| name.starts_with(p)),
            "unexpected weight {name}"
        );
    }
}

#[test]
fn fixture_adapter_scale_is_not_one_and_skips_vision() {
    let config = read_json("adapter/adapter_config.json");
    let r = uint(&config["r"], "r");
    let alpha = config["lora_alpha"].as_f64().expect("lora_alpha");
    assert!(
        (alpha / r as f64 - 1.0).abs() > 0.5,
        "alpha/r = {}",
        alpha / r as f64
    );

    let bytes = read_bytes("adapter/adapter_model.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("adapter_model.safetensors");
    assert!(
        st.names().iter().all(|n| !n.contains("visual")),
        "adapter touches vision"
    );
    for module in [
        "base_model.model.model.layers.0.self_attn.q_proj",
        "base_model.model.model.layers.0.mlp.down_proj",
        "base_model.model.custom_text_proj",
    ] {
        let a = tensor(&st, &format!("{module}.lora_A.weight"));
        let b = tensor(&st, &format!("{module}.lora_B.weight"));
        assert_eq!(
            (a.shape[0], b.shape[1]),
            (r, r),
            "{module}: A [r, in], B [out, r]"
        );
        assert!(
            b.values.iter().any(|&x| x != 0.0),
            "{module}: lora_B is zero"
        );
    }

    // The adapter changes the embeddings: expected (with adapter) ≠ noadapter.
    let bytes = read_bytes("expected.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("expected.safetensors");
    let with = tensor(&st, "query.0").values;
    let without = tensor(&st, "noadapter.query.0").values;
    let diff = with
        .iter()
        .zip(&without)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(diff > 1e-3, "adapter has no effect on query.0 ({diff})");
}

#[test]
fn fixture_real_3b_config_is_the_flat_layout() {
    let config = read_json("config_real_3b.json");
    assert_eq!(uint(&config["hidden_size"], "hidden_size"), 2048);
    assert_eq!(
        uint(&config["num_key_value_heads"], "num_key_value_heads"),
        2
    );
    assert!(
        config.get("text_config").is_none(),
        "flat layout has no text_config"
    );
    // The published file leaves the vision depth etc. to class defaults.
    assert!(config["vision_config"].get("depth").is_none());
    assert_eq!(uint(&config["image_token_id"], "image_token_id"), 151655);
}

/// The fixture's tokenizer.json, read by the project's `tokenizers` build (fancy-regex
/// backend), gives the reference processor's ids: image prompts with `<|image_pad|>`
/// expanded to grid_h·grid_w/4, and the queries' prefixed, augmented prompts.
#[test]
fn fixture_tokenizer_json_reproduces_reference_ids() {
    let path = fixture_dir().join("model/tokenizer.json");
    let tokenizer = tokenizers::Tokenizer::from_file(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let meta = read_json("meta.json");
    let bytes = read_bytes("expected.safetensors");
    let st = SafeTensors::deserialize(&bytes).expect("expected.safetensors");
    let encode = |text: &str| -> Vec<f64> {
        let encoding = tokenizer.encode(text, false).expect("encode");
        encoding.get_ids().iter().map(|&id| id as f64).collect()
    };

    let image_prompt = meta["processor"]["image_prompt"]
        .as_str()
        .expect("image_prompt");
    for (i, _) in meta["images"]
        .as_array()
        .expect("images")
        .iter()
        .enumerate()
    {
        let grid = tensor(&st, &format!("image_grid_thw.{i}")).values;
        let n_image_tokens = (grid[0] * grid[1] * grid[2]) as usize / 4;
        let prompt = image_prompt.replace("<|image_pad|>", &"<|image_pad|>".repeat(n_image_tokens));
        let want = tensor(&st, &format!("image_input_ids.{i}")).values;
        assert_eq!(encode(&prompt), want, "image prompt {i}");
    }
    for (i, query) in meta["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .enumerate()
    {
        let prompt = query["prompt"].as_str().expect("prompt");
        let want = tensor(&st, &format!("query_input_ids.{i}")).values;
        assert_eq!(encode(prompt), want, "query prompt {i}: {prompt}");
    }
}
