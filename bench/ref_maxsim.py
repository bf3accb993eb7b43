"""Reference MaxSim timing for `pagesight bench search`: colpali-engine's `score_multi_vector`
(torch einsum, f32 — how colpali-engine scores) on exactly the vectors pagesight searched.

Reads pages as raw little-endian f16 [n, tokens, dim] and queries as f32 [q, nq, dim]; writes
JSON with per-query latencies, top-10 page indices and the first query's scores. Pages that do
not fit `--mem-gb` as f32 are scored in chunks converted on the fly (the timing then includes
the conversion, and says so).
"""

import json
import os
import sys
import time

os.environ.setdefault("COLPALI_SCORES_BACKEND", "torch")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from maxsim_inputs import load, parser  # noqa: E402
import torch  # noqa: E402
from importlib.metadata import version  # noqa: E402
from colpali_engine.utils.processing_utils import BaseVisualRetrieverProcessor  # noqa: E402
from colpali_engine.utils.maxsim import maxsim_inbatch  # noqa: E402


def main():
    ap = parser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--mem-gb", type=float, default=8.0)
    a = ap.parse_args()
    pages, queries = load(a)

    fits = a.n * a.tokens * a.dim * 4 <= a.mem_gb * 1e9
    out = {
        "torch": torch.__version__,
        "colpali_engine": version("colpali_engine"),
        "threads": torch.get_num_threads(),
        "backend": os.environ["COLPALI_SCORES_BACKEND"],
        "pages_in_memory_f32": fits,
        "score_multi_vector_ms": [],
        "top10": [],
    }
    chunk = a.n if fits else max(1, int(a.mem_gb * 1e9 / 2 / (a.tokens * a.dim * 4)))
    resident = torch.from_numpy(np.asarray(pages, dtype=np.float32)) if fits else None

    def page_chunks():
        for j in range(0, a.n, chunk):
            if resident is not None:
                yield resident[j : j + chunk]
            else:
                yield torch.from_numpy(np.asarray(pages[j : j + chunk], dtype=np.float32))

    with torch.inference_mode():
        for qi in range(a.num_queries + 1):  # run 0 warms up (on query 0) and is not timed
            q = torch.from_numpy(queries[max(qi - 1, 0)].copy())
            t0 = time.perf_counter()
            parts = [
                BaseVisualRetrieverProcessor.score_multi_vector([q], list(c.unbind(0)), batch_size=a.batch, device="cpu")
                for c in page_chunks()
            ]
            scores = torch.cat(parts, dim=1)[0]
            dt = (time.perf_counter() - t0) * 1e3
            if qi == 0:
                continue
            out["score_multi_vector_ms"].append(dt)
            out["top10"].append(torch.topk(scores, 10).indices.tolist())
            if qi == 1:
                out["scores_query0"] = scores.tolist()
        # The einsum alone on pre-stacked pages: torch's best case without list padding.
        out["einsum_ms"] = []
        for qi in range(min(a.num_queries, 5) + 1):
            q = torch.from_numpy(queries[max(qi - 1, 0)].copy())[None]
            t0 = time.perf_counter()
            for c in page_chunks():
                for j in range(0, c.shape[0], a.batch):
                    maxsim_inbatch(q, c[j : j + a.batch])
            dt = (time.perf_counter() - t0) * 1e3
            if qi > 0:
                out["einsum_ms"].append(dt)
    with open(a.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
