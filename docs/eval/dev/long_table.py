"""The README's long-test table (20 segments) from long-test JSONs, one column each, floors checked per clip.

    python docs/eval/dev/long_table.py "NAME=docs/eval/tiny_long.json" "NAME=OTHER.json" ...

Each JSON is an `eval --compare shipped=... --tasks portrait --segments 20` run (or parts joined with
join_clips.py); the ground truth column is the first JSON's.
"""
import json
import sys

columns = [(arg.split("=", 1)[0], json.load(open(arg.split("=", 1)[1]))["results"]) for arg in sys.argv[1:]]


def metric(results, row, name):
    return results[row]["portrait"][name]


def mean(results, row, name):
    return metric(results, row, name)["mean"]


def interval(results, name, digits):
    m = metric(results, "shipped", name)
    return f"**{m['mean']:.{digits}f}** [{m['low']:.{digits}f}, {m['high']:.{digits}f}]"


def count(results, name, ok):
    clips = [c for c in metric(results, "shipped", name)["clips"] if c is not None]
    return f"{sum(ok(c) for c in clips)} of {len(clips)}"


gt = columns[0][1]
lines = [
    ("identity, first segment -> last",
     [f"{mean(r, 'shipped', 'identity_first_segment'):.3f} -> {mean(r, 'shipped', 'identity_last_segment'):.3f}"
      for _, r in columns],
     f"{mean(gt, 'ground truth', 'identity_first_segment'):.3f} -> {mean(gt, 'ground truth', 'identity_last_segment'):.3f}", ""),
    ("identity drift (last - first, per clip)",
     [f"{interval(r, 'identity_drift', 3)}; within 0.05 in {count(r, 'identity_drift', lambda c: abs(c) <= 0.05)}"
      for _, r in columns], f"{mean(gt, 'ground truth', 'identity_drift'):.3f}", "within 0.05"),
    ("pose std, first 5 segments -> last 5",
     [f"{mean(r, 'shipped', 'pose_std_first5'):.2f} -> {mean(r, 'shipped', 'pose_std_last5'):.2f}" for _, r in columns],
     f"{mean(gt, 'ground truth', 'pose_std_first5'):.2f} -> {mean(gt, 'ground truth', 'pose_std_last5'):.2f}", ""),
    ("pose std ratio (last 5 / first 5, per clip)",
     [f"{interval(r, 'pose_std_ratio', 2)}; >= 0.5 in {count(r, 'pose_std_ratio', lambda c: c >= 0.5)}"
      for _, r in columns], f"{mean(gt, 'ground truth', 'pose_std_ratio'):.2f}", ">= 0.5"),
    ("lip r over the 12.8 s / best offset",
     [f"{mean(r, 'shipped', 'lip_r'):.3f} [{metric(r, 'shipped', 'lip_r')['low']:.3f}, "
      f"{metric(r, 'shipped', 'lip_r')['high']:.3f}] / {mean(r, 'shipped', 'lip_offset'):.2g} frames" for _, r in columns],
     f"{mean(gt, 'ground truth', 'lip_r'):.3f}", ""),
    ("pose std over the clip",
     [f"{mean(r, 'shipped', 'pose_std'):.2f} [{metric(r, 'shipped', 'pose_std')['low']:.2f}, "
      f"{metric(r, 'shipped', 'pose_std')['high']:.2f}]" for _, r in columns],
     f"{mean(gt, 'ground truth', 'pose_std'):.2f}", f"(portrait ceiling 1.5x = {1.5 * mean(gt, 'ground truth', 'pose_std'):.2f})"),
]
print("| long, 20 segments | " + " | ".join(name for name, _ in columns) + " | ground truth | floor |")
print("|---" * (len(columns) + 3) + "|")
for name, cells, truth, floor in lines:
    print(f"| {name} | " + " | ".join(cells) + f" | {truth} | {floor} |")
