#!/usr/bin/env python3
"""The seed pipeline Pagesight replaces, for comparisons on the same card in the same session.

PyTorch + colpali-engine 0.3.18 (`ColQwen2_5`, `ColQwen2_5_Processor`, max 768 visual tokens) +
bitsandbytes 0.50.2 NF4 (double quant, bf16 compute, every linear layer of the language model
and the vision tower, merger included, as transformers' 4-bit loading does; `custom_text_proj`
stays bf16), SDPA attention, random weights at Qwen2.5-VL-3B shapes built on the GPU in bf16.
Pages are rendered at 200 dpi with pypdfium2 inside a torch DataLoader (batch 4, 2 workers,
pin_memory, collate = `process_images`). Modes: `sync` (`.to(device)`) and `non_blocking`.

A random LoRA adapter (r = 32, alpha = 32 by default, `--lora-rank 0` for none) on the published
colqwen2.5-v0.2 adapter's targets (every attention and MLP projection of the language model, and
custom_text_proj) is injected by PEFT after quantisation, unmerged, as PeftModel.from_pretrained
over the 4-bit model does: the seed pays for the adapter as the real model's users do.

Prints a table (lines starting with "| ") and writes JSON with "schema": 1.

  python3 bench/seed_pipeline.py PDF_DIR --pages 200 --json out.json
  python3 bench/seed_pipeline.py PDF_DIR --tiny --device cpu --pages 3      # smoke test, no GPU
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
DEFAULT_TOKENIZER = HERE.parent / "assets" / "tokenizer" / "tokenizer.json"
MAX_VISUAL_TOKENS = 768
ADDED_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

TEXT_3B = dict(hidden_size=2048, intermediate_size=11008, num_hidden_layers=36, num_attention_heads=16,
               num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, mrope_section=[16, 24, 24])
VISION_3B = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=2048,
                 patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                 fullatt_block_indexes=[7, 15, 23, 31])
TEXT_TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=151936, rope_theta=1e6, mrope_section=[2, 3, 3])
VISION_TINY = dict(depth=2, hidden_size=64, intermediate_size=128, num_heads=4, out_hidden_size=64,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                   fullatt_block_indexes=[1])


def build_tokenizer(path: Path):
    """The repository's reduced real Qwen tokenizer when present; otherwise a byte-level one with
    the Qwen2.5-VL special tokens (prompt text then takes a few more tokens; the image tokens,
    nearly all of the sequence, are the same)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if path.is_file():
        raw = Tokenizer.from_file(str(path))
        source = str(path)
    else:
        alphabet = pre_tokenizers.ByteLevel.alphabet()
        vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
        raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
        raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
        raw.decoder = decoders.ByteLevel()
        raw.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in ADDED_TOKENS])
        source = "byte-level fallback"
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<|endoftext|>", eos_token="<|im_end|>")
    tok.padding_side = "left"
    return tok, source


def build_processor(tokenizer):
    from colpali_engine.models import ColQwen2_5_Processor
    from transformers import Qwen2VLImageProcessor

    max_pixels = MAX_VISUAL_TOKENS * 28 * 28
    image_processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=max_pixels,
                                            size={"shortest_edge": 3136, "longest_edge": max_pixels})
    kwargs = dict(image_processor=image_processor, tokenizer=tokenizer)
    try:  # transformers 5 wants a video processor when the processor is built by hand
        from transformers import Qwen2VLVideoProcessor
        kwargs["video_processor"] = Qwen2VLVideoProcessor()
    except ImportError:
        pass
    return ColQwen2_5_Processor(**kwargs)


def build_model(tiny: bool, tokenizer, device: torch.device):
    from colpali_engine.models import ColQwen2_5
    from transformers import Qwen2_5_VLConfig

    text, vision = (TEXT_TINY, VISION_TINY) if tiny else (TEXT_3B, VISION_3B)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in ADDED_TOKENS}
    text_config = dict(
        hidden_size=text["hidden_size"], intermediate_size=text["intermediate_size"],
        num_hidden_layers=text["num_hidden_layers"], num_attention_heads=text["num_attention_heads"],
        num_key_value_heads=text["num_key_value_heads"], vocab_size=text["vocab_size"], hidden_act="silu",
        rms_norm_eps=1e-6, max_position_embeddings=128000, tie_word_embeddings=True,
        rope_parameters={"rope_type": "default", "mrope_section": text["mrope_section"], "rope_theta": text["rope_theta"]},
        rope_scaling={"rope_type": "default", "type": "default", "mrope_section": text["mrope_section"]},
        rope_theta=text["rope_theta"],
    )
    config = Qwen2_5_VLConfig(
        text_config=text_config, vision_config=dict(vision, hidden_act="silu", in_channels=3, tokens_per_second=2),
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=True,
    )
    config._attn_implementation = "sdpa"
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with device:  # random 3B weights are slow to initialise on the CPU
            model = ColQwen2_5(config)
    finally:
        torch.set_default_dtype(previous)
    return model.to(device=device, dtype=dtype).eval()


def quantise_nf4(model, device: torch.device) -> int:
    """Replaces every nn.Linear of the language model and the vision tower (merger included) by a
    bitsandbytes NF4 Linear4bit (double quant, bf16 compute), as `load_in_4bit` does."""
    import bitsandbytes as bnb

    compute = torch.bfloat16 if device.type == "cuda" else torch.float32
    count = 0
    for parent_name, parent in list(model.named_modules()):
        if parent_name.startswith("custom_text_proj"):
            continue
        for child_name, child in list(parent.named_children()):
            full = f"{parent_name}.{child_name}" if parent_name else child_name
            if not isinstance(child, torch.nn.Linear) or full.startswith("custom_text_proj"):
                continue
            q = bnb.nn.Linear4bit(child.in_features, child.out_features, bias=child.bias is not None,
                                  compute_dtype=compute, compress_statistics=True, quant_type="nf4", device="meta")
            q.weight = bnb.nn.Params4bit(child.weight.data.to(compute), requires_grad=False,
                                         compress_statistics=True, quant_type="nf4").to(device)
            if child.bias is not None:
                q.bias = torch.nn.Parameter(child.bias.data.to(compute), requires_grad=False)
            setattr(parent, child_name, q)
            count += 1
    return count


# colqwen2.5-v0.2's adapter_config.json target_modules.
V02_TARGETS = r"(.*(model)(?!.*visual).*(down_proj|gate_proj|up_proj|k_proj|q_proj|v_proj|o_proj).*$|.*(custom_text_proj).*$)"


def add_random_lora(model, rank: int):
    """PEFT's LoRA on the v0.2 targets with random A and B (PEFT's non-zero init), unmerged."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=rank, lora_alpha=rank, lora_dropout=0.0, target_modules=V02_TARGETS, init_lora_weights=False)
    return get_peft_model(model, config).eval()


class PageSet(torch.utils.data.Dataset):
    """(pdf, page index) pairs; each DataLoader worker renders with its own pypdfium2 handles."""

    def __init__(self, pages, dpi):
        self.pages, self.dpi, self.docs = pages, dpi, {}

    def __len__(self):
        return len(self.pages)

    def __getitem__(self, i):
        import pypdfium2 as pdfium

        path, index = self.pages[i]
        doc = self.docs.get(path)
        if doc is None:
            doc = self.docs[path] = pdfium.PdfDocument(path)
        return doc[index].render(scale=self.dpi / 72).to_pil().convert("RGB")


def list_pages(folder: Path, limit: int):
    import pypdfium2 as pdfium

    pages = []
    for pdf in sorted(folder.rglob("*.pdf")):
        try:
            n = len(pdfium.PdfDocument(str(pdf)))
        except Exception as e:  # a broken PDF is skipped, as the app does
            print(f"skipping {pdf}: {e}", file=sys.stderr)
            continue
        pages += [(str(pdf), i) for i in range(n)]
        if len(pages) >= limit:
            break
    return pages[:limit]


class Timer:
    """CUDA events on the GPU, perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            e = torch.cuda.Event(enable_timing=True)
            e.record()
            return e
        return time.perf_counter()

    def ms(self, a, b):
        if self.cuda:
            b.synchronize()
            return a.elapsed_time(b)
        return (b - a) * 1e3


def run_pass(model, loader, device, mode, timer):
    non_blocking = mode == "non_blocking"
    fwd, h2d_host, h2d_dev, h2d_bytes, tokens, wait = [], [], [], [], [], []
    pages = 0
    t_start = time.perf_counter()
    t_prev = t_start
    with torch.inference_mode():
        for batch in loader:
            wait.append((time.perf_counter() - t_prev) * 1e3)
            t0 = time.perf_counter()
            a = timer.mark()
            batch = {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in batch.items()}
            b = timer.mark()
            h2d_host.append((time.perf_counter() - t0) * 1e3)
            h2d_bytes.append(sum(v.numel() * v.element_size() for v in batch.values() if torch.is_tensor(v)))
            out = model(**batch)
            c = timer.mark()
            emb = out.to("cpu")
            h2d_dev.append(timer.ms(a, b))
            fwd.append(timer.ms(b, c))
            grid = batch["image_grid_thw"]
            tokens += (grid[:, 1] * grid[:, 2] // 4).tolist()
            pages += emb.shape[0]
            t_prev = time.perf_counter()
    wall = time.perf_counter() - t_start
    mean = lambda v: statistics.fmean(v) if v else 0.0
    return dict(
        mode=mode, pages=pages, wall_s=wall, pages_per_s=pages / wall if wall > 0 else 0.0,
        forward_ms_mean=mean(fwd), forward_ms_median=statistics.median(fwd) if fwd else 0.0,
        h2d_ms_host_mean=mean(h2d_host), h2d_ms_gpu_mean=mean(h2d_dev), h2d_mib_mean=mean(h2d_bytes) / 2**20,
        loader_wait_ms_mean=mean(wait), forward_share=sum(fwd) / 1e3 / wall if wall > 0 else 0.0,
        visual_tokens_mean=mean(tokens),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--pages", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--dpi", type=float, default=200.0)
    ap.add_argument("--modes", default="sync,non_blocking")
    ap.add_argument("--quant", default="nf4,bf16", help="comma list of nf4, bf16")
    ap.add_argument("--passes", type=int, default=1, help="timed passes per mode")
    ap.add_argument("--warmup-batches", type=int, default=4)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model shapes (smoke test)")
    ap.add_argument("--lora-rank", type=int, default=32, help="random LoRA adapter rank (0: none)")
    ap.add_argument("--tokenizer", type=Path, default=DEFAULT_TOKENIZER)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: use --device cpu (with --tiny)")
    pages = list_pages(args.folder, args.pages)
    if not pages:
        sys.exit(f"no PDF pages under {args.folder}")
    tokenizer, tok_source = build_tokenizer(args.tokenizer)
    processor = build_processor(tokenizer)
    pin = device.type == "cuda"
    loader = torch.utils.data.DataLoader(
        PageSet(pages, args.dpi), batch_size=args.batch_size, num_workers=args.workers, pin_memory=pin,
        collate_fn=processor.process_images, persistent_workers=args.workers > 0,
    )
    warm_loader = torch.utils.data.DataLoader(
        PageSet(pages[: args.warmup_batches * args.batch_size], args.dpi), batch_size=args.batch_size,
        num_workers=args.workers, pin_memory=pin, collate_fn=processor.process_images,
    )
    timer = Timer(device)
    import bitsandbytes, colpali_engine, transformers  # noqa: E401  (versions for the record)

    machine = dict(
        device=torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        torch=torch.__version__, transformers=transformers.__version__,
        colpali_engine=getattr(colpali_engine, "__version__", None) or _dist_version("colpali-engine"),
        bitsandbytes=bitsandbytes.__version__, cpus=os.cpu_count(), tokenizer=tok_source,
    )
    print(f"machine: {machine}", flush=True)
    runs = []
    for quant in [q.strip() for q in args.quant.split(",") if q.strip()]:
        if device.type == "cuda":
            torch.cuda.empty_cache()
            base = torch.cuda.memory_allocated(device)
        t0 = time.perf_counter()
        model = build_model(args.tiny, tokenizer, device)
        layers = 0
        if quant == "nf4":
            layers = quantise_nf4(model, device)
        elif quant != "bf16":
            sys.exit(f"unknown quant '{quant}' (nf4, bf16)")
        if args.lora_rank > 0:
            model = add_random_lora(model, args.lora_rank)
        load_s = time.perf_counter() - t0
        weights_gib = (torch.cuda.memory_allocated(device) - base) / 2**30 if device.type == "cuda" else \
            sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
        print(f"{quant}: built in {load_s:.1f} s, {layers} layers quantised, weights {weights_gib:.2f} GiB", flush=True)
        run_pass(model, warm_loader, device, "sync", timer)  # warm-up: kernels, allocator, cuBLAS
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            for rep in range(args.passes):
                if device.type == "cuda":
                    torch.cuda.synchronize()
                    torch.cuda.reset_peak_memory_stats(device)
                r = run_pass(model, loader, device, mode, timer)
                r.update(quant=quant, rep=rep, weights_gib=weights_gib, layers_quantised=layers, build_s=load_s,
                         peak_gib=(torch.cuda.max_memory_allocated(device) - base) / 2**30 if device.type == "cuda" else None)
                runs.append(r)
                print(f"  {quant} {mode} #{rep}: {r['pages_per_s']:.2f} pages/s, forward {r['forward_ms_mean']:.1f} ms/batch", flush=True)
        del model
    doc = dict(schema=1, kind="seed_pipeline", machine=machine, batch_size=args.batch_size, workers=args.workers,
               lora_rank=args.lora_rank,
               dpi=args.dpi, pages=len(pages), tiny=args.tiny, runs=runs)
    if args.json:
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    print("| run | pages/s | forward ms/batch | H2D ms host / GPU | MiB/batch | peak GiB | weights GiB | tokens/page |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        peak = f"{r['peak_gib']:.2f}" if r["peak_gib"] is not None else "-"
        print(f"| seed {r['quant']} {r['mode']} #{r['rep']} | {r['pages_per_s']:.2f} | {r['forward_ms_mean']:.1f} | "
              f"{r['h2d_ms_host_mean']:.2f} / {r['h2d_ms_gpu_mean']:.2f} | {r['h2d_mib_mean']:.1f} | {peak} | "
              f"{r['weights_gib']:.2f} | {r['visual_tokens_mean']:.0f} |")


def _dist_version(name):
    try:
        from importlib.metadata import version
        return version(name)
    except Exception:
        return None


if __name__ == "__main__":
    main()
