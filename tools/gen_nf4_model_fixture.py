"""The ColQwen2.5 parity fixture run through NF4 the way transformers' bitsandbytes loading
quantises it: every nn.Linear of the language model and the vision tower (merger included) is
replaced by bitsandbytes' own NF4 round trip (quantize_4bit → dequantize_4bit, blocksize 64,
double quantisation); the patch-embed Conv3d and custom_text_proj stay dense. The adapter meets
the quantised weights in the two ways Pagesight offers:

- unmerged (the seed's form and Pagesight's default): the *base* checkpoint is quantised and PEFT
  wraps it with the adapter, unmerged, in f32: y = NF4(W)·x + (α/r)·B·(A·x);
- merged (`--merge-lora`): the adapter is merged first and the sum quantised, y = NF4(W + (α/r)·B·A)·x.

Writes tests/fixtures/colqwen_tiny/expected_nf4.safetensors with the query and page embeddings
(non-pad tokens) of both (`nf4_unmerged.*`, `nf4_merged.*`), and prints each one's error against
the dense model with the adapter, and their distance from each other.

Run: /work/refenv/bin/python tools/gen_nf4_model_fixture.py  (bitsandbytes 0.50.2, CPU backend)
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bitsandbytes  # noqa: E402
import bitsandbytes.backends.default.ops as bnb_default  # noqa: E402
import bitsandbytes.functional as bnbf  # noqa: E402
import torch  # noqa: E402
from peft import PeftModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from gen_fixtures import OUT, QUERIES, load_processor  # noqa: E402

assert bitsandbytes.__version__ == "0.50.2", bitsandbytes.__version__


def nf4_round_trip_(model: torch.nn.Module) -> int:
    n = 0
    # transformers 4.x kept custom_text_proj dense; 5.x quantises it through a quirk of
    # get_keys_to_not_convert. The seed ran 4.x, so it stays dense here, as in Pagesight.
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Linear) and "custom_text_proj" not in name:
            w = m.weight.data
            q, state = bnbf.quantize_4bit(w, blocksize=64, compress_statistics=True, quant_type="nf4")
            # bitsandbytes' generic dequantisation (what its CUDA kernel computes: block i covers
            # flat elements [64i, 64i+64)). Its CPU kernel, which `dequantize_4bit` picks here,
            # gives other values when the row width is not a multiple of 64 (e.g. the vision
            # MLP's down_proj): seen 0.19 max difference, twice the NF4 error of the generic path.
            absmax = bnbf.dequantize_blockwise(state.absmax, state.state2) + state.offset
            code = bnb_default._get_4bit_code("nf4", q.device)
            deq = bnb_default._dequantize_4bit_compute(q.view(torch.uint8).reshape(-1), absmax, code, 64, w.shape, torch.float32)
            m.weight.data = deq.to(w.dtype)
            n += 1
    return n


def rows(out: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    return [out[i][mask[i].bool()].float().contiguous() for i in range(out.shape[0])]


def main() -> None:
    from colpali_engine.models import ColQwen2_5
    from PIL import Image

    model_dir, adapter_dir = OUT / "model", OUT / "adapter"
    processor = load_processor(model_dir)
    images = [Image.open(p).convert("RGB") for p in sorted((OUT / "images").glob("*.png"))]
    image_batch = processor.process_images(images)
    query_batch = processor.process_queries(QUERIES)

    def base() -> torch.nn.Module:
        return ColQwen2_5.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()

    def embed(model: torch.nn.Module) -> dict[str, list[torch.Tensor]]:
        with torch.no_grad():
            return {
                "query": rows(model(**query_batch), query_batch["attention_mask"]),
                "image": rows(model(**image_batch), image_batch["attention_mask"]),
            }

    dense = embed(PeftModel.from_pretrained(base(), str(adapter_dir)).eval())
    merged_model = PeftModel.from_pretrained(base(), str(adapter_dir)).merge_and_unload().eval()
    n = nf4_round_trip_(merged_model)
    merged = embed(merged_model)
    unmerged_base = base()
    assert nf4_round_trip_(unmerged_base) == n
    unmerged = embed(PeftModel.from_pretrained(unmerged_base, str(adapter_dir)).eval())

    def rel(a: torch.Tensor, b: torch.Tensor) -> float:
        return ((a - b).norm() / b.norm()).item()

    out = {}
    for kind in ("query", "image"):
        for i, (d, m, u) in enumerate(zip(dense[kind], merged[kind], unmerged[kind])):
            out[f"nf4_merged.{kind}.{i}"] = m
            out[f"nf4_unmerged.{kind}.{i}"] = u
            print(
                f"{kind}.{i}: rel err vs dense: unmerged {rel(u, d):.3e}, merged {rel(m, d):.3e}; "
                f"merged vs unmerged {rel(m, u):.3e}"
            )
    print(f"{n} linear layers quantised")
    save_file(out, str(OUT / "expected_nf4.safetensors"), metadata={"bitsandbytes": bitsandbytes.__version__, "nf4_layers": str(n)})


if __name__ == "__main__":
    main()
