"""Per-clip paired comparison of two long-test JSONs (NEW minus OLD on the clips NEW scored, first clips of OLD),
bootstrap 95% intervals:  python docs/eval/dev/long_paired.py NEW.json OLD.json"""
import json, sys
import numpy as np
new = json.load(open(sys.argv[1]))["results"]; old = json.load(open(sys.argv[2]))["results"]
n = len(new["shipped"]["portrait"]["identity_drift"]["clips"])
gt_new = new["ground truth"]["portrait"]["lip_r"]["clips"]; gt_old = old["ground truth"]["portrait"]["lip_r"]["clips"][:n]
print("same clips:", np.allclose(gt_new, gt_old, atol=1e-6))
rng = np.random.default_rng(0)
def ci(x):
    x = np.asarray(x, float); b = rng.choice(x, (10000, len(x))).mean(1); return x.mean(), np.percentile(b, 2.5), np.percentile(b, 97.5)
for k in ("identity_first_segment", "identity_last_segment", "identity_drift", "pose_std_first5", "pose_std_last5", "pose_std_ratio", "lip_r", "pose_std", "identity"):
    a = np.asarray(old["shipped"]["portrait"][k]["clips"][:n], float); b = np.asarray(new["shipped"]["portrait"][k]["clips"], float)
    g = np.asarray(new["ground truth"]["portrait"][k]["clips"], float) if new["ground truth"]["portrait"].get(k, {}).get("clips") else None
    m, lo, hi = ci(b); d = ci(b - a)
    extra = ""
    if k == "identity_drift": extra = f" within 0.05 in {int((np.abs(b) <= 0.05).sum())}/{n}"
    if k == "pose_std_ratio": extra = f" >=0.5 in {int((b >= 0.5).sum())}/{n}"
    print(f"{k:24s} new {m:.3f} [{lo:.3f}, {hi:.3f}]{extra}  old(same clips) {a.mean():.3f}  diff {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]" + (f"  gt {g.mean():.3f}" if g is not None else ""))
