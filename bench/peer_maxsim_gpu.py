"""The published fused MaxSim kernels on the GPU, for `pagesight bench search --gpu-peers`: on
exactly the vectors pagesight searched (raw little-endian f16 pages [n, tokens, dim], f32 queries
[q, nq, dim]), resident on the same card, timed the same way as pagesight's scorer: the kernel alone
(CUDA events around the scoring call) and end to end (query upload, scoring, top-10, copy back).

Peers: flash-maxsim (`flash_maxsim`), late-interaction-kernels (`maxsim`, no normalisation: the
vectors are already what the index stores), colpali-engine's `score_multi_vector` on the GPU (its
list-of-pages API), and torch's einsum + max + sum as the plain baseline. A peer that is not
installed or fails is reported with the reason, never skipped silently.
"""

import json
import os.path
import sys
import time
from importlib.metadata import version

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from maxsim_inputs import load, parser  # noqa: E402


def timed(fn, runs):
    """Kernel-alone ms (CUDA events) and end-to-end ms (host clock) of `fn`, after one warm-up."""
    fn(0)
    torch.cuda.synchronize()
    kernel, e2e, tops = [], [], []
    for i in range(runs):
        t0 = time.perf_counter()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        scores = fn(i)
        end.record()
        top = torch.topk(scores.float(), 10).indices.cpu().tolist()
        e2e.append((time.perf_counter() - t0) * 1e3)
        kernel.append(start.elapsed_time(end))
        tops.append(top)
    return kernel, e2e, tops


def main():
    ap = parser()
    ap.add_argument("--colpali-max-pages", type=int, default=20000)
    a = ap.parse_args()
    pages, queries = load(a)

    dev = torch.device("cuda")
    D = torch.empty((a.n, a.tokens, a.dim), dtype=torch.float16, device=dev)
    step = 4096
    for j in range(0, a.n, step):
        D[j : j + step].copy_(torch.from_numpy(np.ascontiguousarray(pages[j : j + step])))
    Q = [torch.from_numpy(q.copy()) for q in queries]
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0), "peers": {}}

    def query(i):
        return Q[i % len(Q)].to(dev, dtype=torch.float16, non_blocking=True)

    def einsum(i):
        q = query(i)
        return torch.einsum("qd,ntd->nqt", q, D).amax(dim=2).float().sum(dim=1)

    peers = {"torch einsum (f16)": (lambda: torch.__version__, lambda: einsum)}

    def flash():
        from flash_maxsim import flash_maxsim

        return lambda i: flash_maxsim(query(i), D)

    peers["flash-maxsim"] = (lambda: version("flash-maxsim"), flash)

    def lik():
        from late_interaction_kernels import maxsim

        return lambda i: maxsim(query(i), D, normalize=False)

    peers["late-interaction-kernels"] = (lambda: version("late-interaction-kernels"), lik)

    def colpali():
        from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor

        if a.n > a.colpali_max_pages:
            raise RuntimeError(f"not run above {a.colpali_max_pages} pages (its list API pads every page)")
        ps = list(D.unbind(0))
        return lambda i: BaseVisualRetrieverProcessor.score_multi_vector(
            [query(i)], ps, batch_size=4096, device=dev
        )[0]

    peers["colpali-engine score_multi_vector"] = (lambda: version("colpali_engine"), colpali)

    for name, (ver, make) in peers.items():
        try:
            fn = make()
            with torch.inference_mode():
                kernel, e2e, tops = timed(fn, a.num_queries)
            out["peers"][name] = {
                "version": ver(),
                "kernel_ms": kernel,
                "end_to_end_ms": e2e,
                "kernel_p50_ms": float(np.median(kernel)),
                "end_to_end_p50_ms": float(np.median(e2e)),
                "top10": tops,
            }
            print(f"{name}: kernel p50 {np.median(kernel):.2f} ms, end to end p50 {np.median(e2e):.2f} ms", flush=True)
        except Exception as e:  # reported, never skipped silently
            out["peers"][name] = {"error": f"{type(e).__name__}: {e}"}
            print(f"{name}: not run ({type(e).__name__}: {e})", flush=True)
        torch.cuda.empty_cache()
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
