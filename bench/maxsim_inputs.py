"""The vectors `pagesight bench search` hands its Python scorers: raw little-endian f16 pages
[n, tokens, dim] and f32 queries [q, nq, dim], with the arguments that describe them. Shared by
ref_maxsim.py (colpali-engine on the CPU) and peer_maxsim_gpu.py (the GPU kernels)."""

import argparse

import numpy as np


def parser():
    """An argument parser that already knows the vector files and their shapes."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", required=True)
    ap.add_argument("--queries", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--tokens", type=int, required=True)
    ap.add_argument("--dim", type=int, required=True)
    ap.add_argument("--nq", type=int, required=True)
    ap.add_argument("--num-queries", type=int, required=True)
    ap.add_argument("--out", required=True)
    return ap


def load(a):
    """(pages as a read-only memory map, queries as an array)."""
    pages = np.memmap(a.pages, dtype="<f2", mode="r", shape=(a.n, a.tokens, a.dim))
    queries = np.fromfile(a.queries, dtype="<f4").reshape(a.num_queries, a.nq, a.dim)
    return pages, queries
