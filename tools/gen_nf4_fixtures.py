#!/usr/bin/env python3
"""Makes the NF4 fixtures in tests/fixtures/nf4/ by calling bitsandbytes itself on the CPU.

Run with the reference environment:  /work/refenv/bin/python tools/gen_nf4_fixtures.py
Pinned versions (checked at start): bitsandbytes 0.50.2, torch 2.13.0 (CPU backend).

Every array in the output comes from bitsandbytes' public functions
(`quantize_4bit`, `dequantize_4bit`, `quantize_blockwise`, `create_dynamic_map`): nothing here
re-implements the quantisation, so the Rust tests compare against bitsandbytes, not against us.

Per case `<name>` (tensor names in nf4.safetensors):
  <name>.input            the weight, in its dtype (bf16 / f16 / f32), 2-D [out, in]
  <name>.packed           quantize_4bit(..., compress_statistics=False) packed codes, u8
  <name>.absmax           its absmax, f32
  <name>.dequant          dequantize_4bit of that state, in the input dtype
  <name>.dq.packed        quantize_4bit(..., compress_statistics=True) packed codes, u8
  <name>.dq.absmax_codes  the 8-bit codes of (absmax - offset), u8
  <name>.dq.absmax2       state2.absmax, f32 (one per 256 absmax values)
  <name>.dq.offset        the offset (mean of absmax), f32 [1]
  <name>.dq.dequant       dequantize_4bit of the nested state, in the input dtype
Plus:
  dynamic_map             create_dynamic_map(signed=True), f32 [256] (also state2.code)
  nf4_code                the NF4 code table bitsandbytes uses, f32 [16]
  blockwise8.input / .codes / .absmax   quantize_blockwise(x, blocksize=256) of a long f32
                          vector (exercises the 8-bit path that double quantisation uses)
"""

import json
import sys
from pathlib import Path

import torch
import bitsandbytes
import bitsandbytes.functional as F
from safetensors.torch import save_file

PINNED = {"bitsandbytes": "0.50.2", "torch": "2.13.0"}
BLOCKSIZE = 64
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "nf4" / "nf4.safetensors"


def check_versions():
    found = {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__.split("+")[0]}
    if found != PINNED:
        sys.exit(f"gen_nf4_fixtures: expected {PINNED}, found {found}; use /work/refenv/bin/python")


def threshold_matrix():
    """Every NF4 midpoint exactly, its neighbours one ulp away, and each code value, scaled so
    the block's absmax is exactly 1.0 (the first element of every block): x/absmax is then the
    value itself and ties are real ties."""
    code = F.get_4bit_type("nf4", device="cpu").float()
    mids = (code[:-1] + code[1:]) / 2
    up = torch.nextafter(mids, torch.full_like(mids, 2.0))
    down = torch.nextafter(mids, torch.full_like(mids, -2.0))
    vals = torch.cat([mids, up, down, code, -mids])  # 15*3 + 16 + 15 = 76 values
    rows = []
    for start in range(0, vals.numel(), 63):
        chunk = vals[start:start + 63]
        row = torch.cat([torch.ones(1), chunk, torch.zeros(63 - chunk.numel())])
        rows.append(row)
    # One row of all zeros: a zero block (absmax 0) must not divide by zero.
    rows.append(torch.zeros(64))
    return torch.stack(rows).to(torch.float32)


def cases():
    g = torch.Generator().manual_seed(20261126)

    def randn(*shape):
        return torch.randn(*shape, generator=g)

    # Real weights have rows of very different scale; mimic that.
    def real_like(rows, cols):
        scale = torch.exp(randn(rows, 1) * 0.7) * 0.02
        w = randn(rows, cols) * scale
        w[0, 5] = 0.3  # an outlier
        return w

    yield "rand_f32", randn(24, 192).float()
    # 7*75 = 525 values: a short last block (13) and an odd count (padded nibble).
    yield "tail_f32", randn(7, 75).float()
    # A 3420-wide slice: blocks straddle rows, and 8*3420/64 = 428 blocks leaves a short last
    # 256-block for the double quantisation.
    yield "slice_bf16", real_like(8, 3420).to(torch.bfloat16)
    yield "mlp_bf16", real_like(32, 1280).to(torch.bfloat16)
    yield "attn_f16", real_like(8, 2048).to(torch.float16)
    yield "ties_f32", threshold_matrix()
    # Tail block made only of zeros (its absmax is clamped, not zero).
    z = randn(3, 70).float()
    z[2, 6:] = 0.0
    yield "zerotail_f32", z


def main():
    check_versions()
    torch.set_num_threads(1)
    out, meta = {}, {"bitsandbytes": bitsandbytes.__version__, "torch": torch.__version__,
                     "blocksize": str(BLOCKSIZE)}
    shapes = {}
    for name, w in cases():
        w = w.contiguous()
        shapes[name] = {"shape": list(w.shape), "dtype": str(w.dtype).removeprefix("torch.")}
        out[f"{name}.input"] = w
        packed, st = F.quantize_4bit(w, blocksize=BLOCKSIZE, compress_statistics=False, quant_type="nf4")
        out[f"{name}.packed"] = packed.reshape(-1).contiguous()
        out[f"{name}.absmax"] = st.absmax.contiguous()
        out[f"{name}.dequant"] = F.dequantize_4bit(packed, st, quant_type="nf4").contiguous()
        packed2, st2 = F.quantize_4bit(w, blocksize=BLOCKSIZE, compress_statistics=True, quant_type="nf4")
        assert torch.equal(packed, packed2)
        out[f"{name}.dq.packed"] = packed2.reshape(-1).contiguous()
        out[f"{name}.dq.absmax_codes"] = st2.absmax.contiguous()
        out[f"{name}.dq.absmax2"] = st2.state2.absmax.contiguous()
        out[f"{name}.dq.offset"] = st2.offset.reshape(1).float().contiguous()
        assert st2.state2.blocksize == 256
        out[f"{name}.dq.dequant"] = F.dequantize_4bit(packed2, st2, quant_type="nf4").contiguous()
    out["dynamic_map"] = F.create_dynamic_map(signed=True).contiguous()
    out["nf4_code"] = F.get_4bit_type("nf4", device="cpu").float().contiguous()

    g = torch.Generator().manual_seed(7)
    x = torch.randn(8192, generator=g) * torch.exp(torch.randn(8192, generator=g))
    codes, st8 = F.quantize_blockwise(x, blocksize=256)
    out["blockwise8.input"] = x.contiguous()
    out["blockwise8.codes"] = codes.contiguous()
    out["blockwise8.absmax"] = st8.absmax.contiguous()

    meta["cases"] = json.dumps(shapes)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(OUT), metadata=meta)
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes, {len(shapes)} cases)")


if __name__ == "__main__":
    main()
