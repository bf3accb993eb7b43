#!/usr/bin/env python3
"""Compares two `pagesight search --json` answers (e.g. GPU and CPU scoring of one query): same
pages in the same order, scores within f16 rounding. Exit status 1 when they disagree."""
import json
import sys


def hits(path):
    ev = json.loads(open(path).read())
    if ev.get("event") != "search_results":
        sys.exit(f"{path}: not a search answer: {ev}")
    body = ev
    return body, [(h["file"], h["page"], h["score"]) for h in body["hits"]]


(a_ev, a), (b_ev, b) = hits(sys.argv[1]), hits(sys.argv[2])
same_order = [x[:2] for x in a] == [x[:2] for x in b]
diff = max((abs(x[2] - y[2]) for x, y in zip(a, b)), default=0.0)
ok = same_order and len(a) == len(b) and len(a) > 0 and diff < 2e-2
print(
    f"{'PASS' if ok else 'FAIL'} engine search '{a_ev.get('query')}': {len(a)} hits, "
    f"order {'identical' if same_order else 'DIFFERENT'}, max score diff {diff:.2e}; "
    f"A {a_ev.get('elapsed_ms', 0):.1f} ms [{a_ev.get('scorer')}], "
    f"B {b_ev.get('elapsed_ms', 0):.1f} ms [{b_ev.get('scorer')}]"
)
sys.exit(0 if ok else 1)
