"""Runs the reference (colpali-engine ColQwen2_5 on transformers) on the fixture inputs and
collects the embeddings plus the intermediates the Rust side debugs with."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Run:
    batch: dict  # the processor's output, as fed to the model
    proj: torch.Tensor  # [B, L, 128] the model output (pads zeroed)
    last_hidden: torch.Tensor  # [B, L, hidden] language model output after the final norm
    vision_out: torch.Tensor | None  # [sum of image tokens, hidden] merger output, image order
    # [sum of patches, vision hidden] after patch_embed and after each block, in the
    # processor's row order (the reference runs blocks in window order; undone here).
    vision_stages: list[torch.Tensor] | None
    rope_position_ids: torch.Tensor | None  # [3, B, L] from get_rope_index

    def rows(self, i: int) -> torch.Tensor:
        """Boolean mask of batch row i's non-pad tokens."""
        return self.batch["attention_mask"][i].bool()


def colqwen_of(model):
    """The ColQwen2_5 module inside a PeftModel (LoRA layers injected), or the model itself."""
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def run(model, batch) -> Run:
    inner = colqwen_of(model)
    captured = {"blocks": []}
    visual = inner.visual
    hooks = [
        visual.register_forward_hook(lambda m, a, out: captured.__setitem__("vision", out.pooler_output)),
        visual.patch_embed.register_forward_hook(lambda m, a, out: captured.__setitem__("patch_embed", out)),
        inner.language_model.register_forward_hook(
            lambda m, a, out: captured.__setitem__("last_hidden", out.last_hidden_state)
        ),
    ]
    hooks += [
        block.register_forward_hook(lambda m, a, out: captured["blocks"].append(out[0] if isinstance(out, tuple) else out))
        for block in visual.blocks
    ]
    try:
        with torch.no_grad():
            proj = model(**batch)
            rope = None
            if "image_grid_thw" in batch:
                rope, _ = inner.get_rope_index(
                    batch["input_ids"],
                    mm_token_type_ids=batch["mm_token_type_ids"],
                    image_grid_thw=batch["image_grid_thw"],
                    attention_mask=batch["attention_mask"],
                )
    finally:
        for h in hooks:
            h.remove()
    stages = None
    if "patch_embed" in captured:
        order = window_order(batch["image_grid_thw"], visual.config)
        merge_unit = visual.config.spatial_merge_size**2
        stages = [captured["patch_embed"].detach().float()]
        stages += [undo_window_order(b.detach().float(), order, merge_unit) for b in captured["blocks"]]
    return Run(
        batch=batch,
        proj=proj.detach().float(),
        last_hidden=captured["last_hidden"].detach().float(),
        vision_out=captured["vision"].detach().float() if "vision" in captured else None,
        vision_stages=stages,
        rope_position_ids=rope,
    )


def window_order(grids: torch.Tensor, vision_config) -> torch.Tensor:
    from transformers.vision_utils import get_vision_window_index

    window_index, _ = get_vision_window_index(
        grids,
        spatial_merge_size=vision_config.spatial_merge_size,
        window_size=vision_config.window_size,
        patch_size=vision_config.patch_size,
    )
    return window_index


def undo_window_order(x: torch.Tensor, window_index: torch.Tensor, merge_unit: int) -> torch.Tensor:
    """Rows in window order (groups of merge_unit patches permuted by window_index) back
    to the processor's merge-block order."""
    groups = x.reshape(-1, merge_unit, x.shape[-1])
    restored = torch.empty_like(groups)
    restored[window_index] = groups
    return restored.reshape(x.shape)


def image_tensors(r: Run, prefix: str, merge_unit: int) -> dict[str, torch.Tensor]:
    """Per-image tensors of an image-batch run, named as `pagesight embed` writes them."""
    out = {}
    grids = r.batch["image_grid_thw"]
    token_counts = (grids.prod(-1) // merge_unit).tolist()
    vision_parts = torch.split(r.vision_out, token_counts) if r.vision_out is not None else None
    patch_counts = grids.prod(-1).tolist()
    stage_parts = [torch.split(stage, patch_counts) for stage in r.vision_stages]
    for i in range(grids.shape[0]):
        keep = r.rows(i)
        n_patches = int(grids[i].prod())
        out[f"{prefix}image.{i}"] = r.proj[i][keep]
        if prefix:
            continue
        out[f"image_input_ids.{i}"] = r.batch["input_ids"][i][keep]
        out[f"image_pixel_values.{i}"] = r.batch["pixel_values"][i][:n_patches].float()
        out[f"image_grid_thw.{i}"] = grids[i]
        out[f"image_vision_out.{i}"] = vision_parts[i]
        out[f"image_patch_embed.{i}"] = stage_parts[0][i]
        for b, parts in enumerate(stage_parts[1:]):
            out[f"image_vision_block.{b}.{i}"] = parts[i]
        out[f"image_last_hidden.{i}"] = r.last_hidden[i][keep]
    return out


def query_tensors(r: Run, prefix: str) -> dict[str, torch.Tensor]:
    out = {}
    for i in range(r.batch["input_ids"].shape[0]):
        keep = r.rows(i)
        out[f"{prefix}query.{i}"] = r.proj[i][keep]
        if prefix:
            continue
        out[f"query_input_ids.{i}"] = r.batch["input_ids"][i][keep]
        out[f"query_last_hidden.{i}"] = r.last_hidden[i][keep]
    return out


def window_tensors(grids: torch.Tensor, vision_config) -> dict[str, torch.Tensor]:
    """Per-image window_index / cu_window_seqlens exactly as the reference tower makes them."""
    from transformers.vision_utils import get_vision_window_index

    out = {}
    for i in range(grids.shape[0]):
        window_index, cu_window_seqlens = get_vision_window_index(
            grids[i : i + 1],
            spatial_merge_size=vision_config.spatial_merge_size,
            window_size=vision_config.window_size,
            patch_size=vision_config.patch_size,
        )
        out[f"image_window_index.{i}"] = window_index.to(torch.int64)
        out[f"image_cu_window_seqlens.{i}"] = cu_window_seqlens.to(torch.int64)
    return out


def max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys(), (sorted(a), sorted(b))
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def plain_patchify(image, mean, std, patch: int = 14, merge: int = 2, temporal: int = 2):
    """The documented preprocessing without any resize, in numpy: x/255, normalise, rows of
    (channel, frame, py, px) in merge-block order. Used to prove that the reference's
    pixel_values for the no-resize images are exactly this (so Rust can match them)."""
    import numpy as np

    x = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    x = (x - np.asarray(mean)) / np.asarray(std)
    h, w, c = x.shape
    gh, gw = h // patch, w // patch
    x = x.transpose(2, 0, 1).reshape(c, gh // merge, merge, patch, gw // merge, merge, patch)
    x = x.transpose(1, 4, 2, 5, 0, 3, 6)  # mh, mw, my, mx, c, py, px
    x = np.repeat(x[:, :, :, :, :, None], temporal, axis=5)  # c, t, py, px
    return torch.from_numpy(x.reshape(gh * gw, c * temporal * patch * patch).astype(np.float32))
