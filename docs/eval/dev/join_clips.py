"""Join eval JSONs that scored consecutive clip ranges (`eval --first-clip`) into the JSON of one run over all of them.

    python docs/eval/dev/join_clips.py OUT.json OUT.md FIRST.json REST.json ...

The ranges must follow each other (first_clip of each = first_clip + clips of the one before) with the same split,
seed and rows; each metric's per-clip values are concatenated and its interval recomputed over all clips, as
`evaluate` does, so the result is what the single run would have written.
"""
import json
import sys

from starcaster.eval import metrics
from starcaster.eval.run import format_markdown

out_json, out_md, *paths = sys.argv[1:]
parts = [json.load(open(p)) for p in paths]
meta = {"commands": [], "clips": 0, "seed": parts[0]["meta"]["seed"], "split": parts[0]["meta"]["split"],
        "first_clip": parts[0]["meta"].get("first_clip", 0)}
results: dict = {}
for path, part in zip(paths, parts):
    m = part["meta"]
    if (m["seed"], m["split"]) != (meta["seed"], meta["split"]):
        sys.exit(f"{path}: seed/split {m['seed']}/{m['split']} differ from {meta['seed']}/{meta['split']}")
    if m.get("first_clip", 0) != meta["first_clip"] + meta["clips"]:
        sys.exit(f"{path}: starts at clip {m.get('first_clip', 0)}, expected {meta['first_clip'] + meta['clips']}")
    if results and set(part["results"]) != set(results):
        sys.exit(f"{path}: rows {sorted(part['results'])} differ from {sorted(results)}")
    meta["clips"] += m["clips"]
    meta["commands"].append(m["command"])
    for row, tasks in part["results"].items():
        for task, scores in tasks.items():
            for name, ci in scores.items():
                results.setdefault(row, {}).setdefault(task, {}).setdefault(name, []).extend(ci["clips"])
joined = {row: {task: {name: metrics.bootstrap(values, seed=meta["seed"]) | {"clips": values}
                       for name, values in scores.items()} for task, scores in tasks.items()}
          for row, tasks in results.items()}
json.dump({"meta": meta, "results": joined}, open(out_json, "w"), indent=2)
open(out_md, "w").write(format_markdown(joined) + "\n")
print(format_markdown(joined))
