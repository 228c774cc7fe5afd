"""Merge rows of eval JSONs run on the same clips (same split, seed and clip count) into one JSON for paired.py.

    python docs/eval/dev/merge_rows.py OUT.json NAME=FILE.json:ROW[:TASK,TASK] ...

Later specs add tasks to a row of the same NAME, so a row can be assembled from runs that scored different tasks;
the split, seed and clip count must agree (checked), and OUT's meta.commands lists every run's command.
"""
import json, sys

out = {"meta": {"commands": [], "clips": None, "seed": None, "split": None}, "results": {}}
for spec in sys.argv[2:]:
    name, rest = spec.split("=", 1)
    path, row = rest.split(".json:", 1)  # a row name may hold ':' (guidance_probe's rows are JSON settings)
    path += ".json"
    head, _, last = row.rpartition(":")
    tasks = last.split(",") if head and set(last.split(",")) <= {"portrait", "identity", "orbit"} else None
    row = head if tasks else row
    data = json.load(open(path))
    for key in ("clips", "seed", "split"):
        if out["meta"][key] not in (None, data["meta"][key]):
            sys.exit(f"{path}: {key} {data['meta'][key]!r} differs from {out['meta'][key]!r}: not the same clips")
        out["meta"][key] = data["meta"][key]
    commands = data["meta"].get("commands") or [data["meta"]["command"]]
    out["meta"]["commands"] += [c for c in commands if c not in out["meta"]["commands"]]
    for task, value in data["results"][row].items():
        if tasks is None or task in tasks:
            out["results"].setdefault(name, {})[task] = value
json.dump(out, open(sys.argv[1], "w"), indent=1)
print({name: list(rows) for name, rows in out["results"].items()})
