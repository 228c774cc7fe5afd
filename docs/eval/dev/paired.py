"""Paired per-clip differences between two rows of an eval JSON (B - A), with a bootstrap 95% interval.

    python docs/eval/dev/paired.py RESULTS.json ROW_A ROW_B

Rows of one JSON share their clips (same split, seed and clip count), so the per-clip differences cancel what the
clips themselves vary by; rows from two runs with the same split, seed and clips share them too.
"""
import json, sys
import numpy as np
d = json.load(open(sys.argv[1]))["results"]
a, b = sys.argv[2], sys.argv[3]
rng = np.random.default_rng(0)
for task in (t for t in d[b] if t in d[a]):  # tasks both rows were run on
    for metric, v in d[b][task].items():
        ca, cb = d[a][task].get(metric, {}).get("clips"), v.get("clips")
        if not ca or not cb:
            print(f"{task:9s} {metric:24s} {d[a][task].get(metric,{}).get('mean')} -> {v.get('mean')}")
            continue
        pairs = np.array([(x, y) for x, y in zip(ca, cb) if x is not None and y is not None], float)
        diff = pairs[:, 1] - pairs[:, 0]
        boots = [rng.choice(diff, len(diff)).mean() for _ in range(2000)]
        print(f"{task:9s} {metric:24s} {pairs[:,0].mean():8.3f} -> {pairs[:,1].mean():8.3f}  diff {diff.mean():+.3f} "
              f"[{np.percentile(boots, 2.5):+.3f}, {np.percentile(boots, 97.5):+.3f}]  B>A in {(diff > 0).sum()}/{len(diff)}")
