"""Deterministic test images for the ColQwen2.5 fixture: page-like gradients, boxes, rules
and a disc, plus mild noise so every patch differs. Pure numpy + PIL, fixed seed."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw


def page_like_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    ys = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float64)[None, :]
    # Three different gradients per channel: a row/column swap in the patchifier or the
    # rotary tables shows up as a different image.
    r = 235 - 90 * ys + 10 * xs
    g = 220 - 60 * xs * ys - 40 * xs
    b = 200 + 40 * np.sin(3.0 * np.pi * ys) * np.cos(2.0 * np.pi * xs)
    rgb = np.stack([r, g, b], axis=-1) + rng.normal(0.0, 6.0, size=(height, width, 3))
    img = Image.fromarray(np.clip(np.rint(rgb), 0, 255).astype(np.uint8), mode="RGB")

    draw = ImageDraw.Draw(img)
    # A title bar, text-like rules, a filled box and a disc at seed-dependent places.
    draw.rectangle([width // 12, height // 14, width - width // 12, height // 14 + max(6, height // 16)], fill=(30, 40, 90))
    n_rules = max(3, height // 24)
    for k in range(n_rules):
        y = height // 5 + k * max(6, height // (n_rules + 4))
        if y >= height - 4:
            break
        x1 = width // 10 + int(rng.integers(0, max(1, width // 10)))
        x2 = width - width // 10 - int(rng.integers(0, max(1, width // 4)))
        draw.line([x1, y, x2, y], fill=(20, 20, 20), width=2)
    bx = int(rng.integers(width // 8, width // 2))
    by = int(rng.integers(height // 3, height // 2))
    draw.rectangle([bx, by, bx + width // 4, by + height // 5], fill=(200, 60, 40), outline=(0, 0, 0))
    cx = int(rng.integers(width // 2, width - width // 6))
    cy = int(rng.integers(height // 2, height - height // 6))
    rad = max(6, min(height, width) // 9)
    draw.ellipse([cx - rad, cy - rad, cx + rad, cy + rad], fill=(40, 160, 80))
    return img
