"""The ColQwen2.5 parity fixture run through NF4 the way transformers' bitsandbytes loading
quantises it: every nn.Linear of the language model and the vision tower (merger included) is
replaced by bitsandbytes' own NF4 round trip (quantize_4bit → dequantize_4bit, blocksize 64,
double quantisation); the patch-embed Conv3d and custom_text_proj stay dense. LoRA is merged
first, as Pagesight merges it at load. Writes tests/fixtures/colqwen_tiny/expected_nf4.safetensors
with the NF4 query and page embeddings (non-pad tokens), and prints NF4-vs-dense errors.

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
    base = ColQwen2_5.from_pretrained(str(model_dir), torch_dtype=torch.float32).eval()
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload().eval()
    images = [Image.open(p).convert("RGB") for p in sorted((OUT / "images").glob("*.png"))]
    image_batch = processor.process_images(images)
    query_batch = processor.process_queries(QUERIES)
    with torch.no_grad():
        dense_q, dense_p = merged(**query_batch), merged(**image_batch)
        n = nf4_round_trip_(merged)
        nf4_q, nf4_p = merged(**query_batch), merged(**image_batch)
    out = {}
    for kind, d, q, b in (("query", dense_q, nf4_q, query_batch), ("image", dense_p, nf4_p, image_batch)):
        for i, (dd, qq) in enumerate(zip(rows(d, b["attention_mask"]), rows(q, b["attention_mask"]))):
            out[f"nf4.{kind}.{i}"] = qq
            err = ((qq - dd).norm() / dd.norm()).item()
            cos = torch.nn.functional.cosine_similarity(qq.flatten(), dd.flatten(), dim=0).item()
            print(f"{kind}.{i}: NF4 vs dense rel err {err:.3e}, cosine {cos:.4f}")
    print(f"{n} linear layers quantised")
    save_file(out, str(OUT / "expected_nf4.safetensors"), metadata={"bitsandbytes": bitsandbytes.__version__, "nf4_layers": str(n)})


if __name__ == "__main__":
    main()
