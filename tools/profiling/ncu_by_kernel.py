# Sums an `ncu --csv --page raw --metrics gpu__time_duration.sum` report by kernel name (device machine).
import csv, sys, collections
rows = list(csv.reader(open(sys.argv[1])))
# find header
hi = next(i for i,r in enumerate(rows) if "Kernel Name" in r)
h = rows[hi]; data = rows[hi+1:]
ki = h.index("Kernel Name"); ti = h.index("gpu__time_duration.sum")
gi = h.index("Grid Size") if "Grid Size" in h else None
bi = h.index("Block Size") if "Block Size" in h else None
agg = collections.defaultdict(lambda: [0.0, 0, set()])
tot = 0.0
for r in data:
    if len(r) <= ti: continue
    try: t = float(r[ti].replace(",", ""))
    except: continue
    name = r[ki][:90]
    a = agg[name]; a[0] += t; a[1] += 1
    if gi is not None: a[2].add((r[gi], r[bi]))
    tot += t
print("unit row:", rows[hi+1][ti] if len(rows) > hi+1 else "?")
print(f"total kernel time {tot/1e6:.2f} (units as reported: ns→ms), kernels {sum(a[1] for a in agg.values())}")
for name, (t, n, g) in sorted(agg.items(), key=lambda kv: -kv[1][0])[:40]:
    print(f"{t/1e6:9.2f} ms {100*t/tot:5.1f}% n={n:5d} avg={t/n/1e3:8.1f}us  {name}  {list(g)[:2]}")
