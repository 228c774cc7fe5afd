"""The README's main results table (short tasks) from an eval JSON, with issue #11's floors checked.

    python docs/eval/dev/main_table.py docs/eval/tiny_25step.json [MODEL_ROW]

MODEL_ROW defaults to "tiny"; the fast column is "MODEL_ROW (fast)" where the JSON has it. The long rows come from
the long test's own JSON (docs/eval/tiny_long.json; its table: long_table.py) and are kept by hand.
"""
import json
import sys

results = json.load(open(sys.argv[1]))["results"]
model = sys.argv[2] if len(sys.argv) > 2 else "tiny"
fast = results.get(f"{model} (fast)", {})


def get(row, task, metric, key="mean"):
    return results.get(row, {}).get(task, {}).get(metric, {}).get(key)


def cell(task, metric, digits=3, bold=False):
    mean, low, high = (get(model, task, metric, k) for k in ("mean", "low", "high"))
    text = f"{mean:.{digits}f}"
    text = f"**{text}**" if bold else text
    return f"{text} [{low:.{digits}f}, {high:.{digits}f}]" if low is not None else text


def plain(row, task, metric, digits=3):
    value = get(row, task, metric) if row != "fast" else fast.get(task, {}).get(metric, {}).get("mean")
    return "–" if value is None else f"{value:.{digits}f}"


def status(met, short):
    return "met" if met else short


gt = lambda task, m: get("ground truth", task, m)  # noqa: E731
copy = lambda task, m: get("copy reference", task, m)  # noqa: E731
warp = lambda m: get("warp (ellipsoid proxy)", "orbit", m)  # noqa: E731
m = lambda task, metric: get(model, task, metric)  # noqa: E731

portrait_pose, id_floor = m("portrait", "pose_std"), 0.9 * gt("portrait", "identity")
band = 0.5 * gt("portrait", "pose_std"), 1.5 * gt("portrait", "pose_std")
psnr_floor = max(copy("orbit", "psnr") + 3, warp("psnr"))
offset = m("portrait", "lip_offset")
rows = [
    ("portrait", "lip r", cell("portrait", "lip_r", bold=m("portrait", "lip_r") >= 0.6), plain("fast", "portrait", "lip_r"),
     plain("ground truth", "portrait", "lip_r"), plain("copy reference", "portrait", "lip_r"), "–",
     ">= 0.6: " + status(m("portrait", "lip_r") >= 0.6, "not met")),
    ("portrait", "best offset (frames)", cell("portrait", "lip_offset", 2), plain("fast", "portrait", "lip_offset", 2),
     "0", plain("copy reference", "portrait", "lip_offset", 2), "–",
     "within +-1: " + status(abs(offset) <= 1, f"{abs(offset) - 1:.2f} frame out")),
    ("portrait", "LSE-C / LSE-D", f"{m('portrait', 'lse_c'):.3f} / {m('portrait', 'lse_d'):.3f}",
     f"{plain('fast', 'portrait', 'lse_c')} / {plain('fast', 'portrait', 'lse_d')}",
     f"{gt('portrait', 'lse_c'):.3f} / {gt('portrait', 'lse_d'):.3f}",
     f"{copy('portrait', 'lse_c'):.3f} / {copy('portrait', 'lse_d'):.3f}", "–",
     "better than copy: " + status(m("portrait", "lse_c") > copy("portrait", "lse_c")
                                   and m("portrait", "lse_d") < copy("portrait", "lse_d"), "not met")),
    ("portrait", "identity", cell("portrait", "identity", bold=m("portrait", "identity") >= id_floor),
     plain("fast", "portrait", "identity"), plain("ground truth", "portrait", "identity"), "1.000", "–",
     f">= {id_floor:.3f}: " + status(m("portrait", "identity") >= id_floor,
                                     f"{id_floor - m('portrait', 'identity'):.3f} short")),
    ("portrait", "pose std", cell("portrait", "pose_std", 2, bold=band[0] <= portrait_pose <= band[1]),
     plain("fast", "portrait", "pose_std", 2), plain("ground truth", "portrait", "pose_std", 2), "0", "–",
     f"{band[0]:.2f}-{band[1]:.2f}: " + status(band[0] <= portrait_pose <= band[1], "out of the band")),
    ("identity", "lip r", cell("identity", "lip_r", bold=m("identity", "lip_r") >= 0.5),
     plain("fast", "identity", "lip_r"), plain("ground truth", "identity", "lip_r"), "–", "–",
     ">= 0.5: " + status(m("identity", "lip_r") >= 0.5, "not met")),
    ("identity", "identity", cell("identity", "identity", bold=m("identity", "identity") >= 0.8 * gt("identity", "identity")),
     plain("fast", "identity", "identity"), plain("ground truth", "identity", "identity"), "–", "–",
     f">= {0.8 * gt('identity', 'identity'):.3f}: " + status(m("identity", "identity") >= 0.8 * gt("identity", "identity"),
                                                           "not met")),
    ("identity", "pose std", cell("identity", "pose_std", 2, bold=m("identity", "pose_std") >= portrait_pose),
     plain("fast", "identity", "pose_std", 2), plain("ground truth", "identity", "pose_std", 2), "–", "–",
     f">= portrait's ({portrait_pose:.2f}): " + status(m("identity", "pose_std") >= portrait_pose, "not met")),
    ("orbit", "PSNR (dB)", cell("orbit", "psnr", 2), plain("fast", "orbit", "psnr", 2), "–",
     plain("copy reference", "orbit", "psnr", 2), f"{warp('psnr'):.2f}",
     f">= {copy('orbit', 'psnr') + 3:.1f} and >= warp: " + status(m("orbit", "psnr") >= psnr_floor,
                                                               f"{psnr_floor - m('orbit', 'psnr'):.1f} dB short")),
    ("orbit", "SSIM", cell("orbit", "ssim"), plain("fast", "orbit", "ssim"), "1", plain("copy reference", "orbit", "ssim"),
     f"{warp('ssim'):.3f}", "above both: " + status(m("orbit", "ssim") > max(copy("orbit", "ssim"), warp("ssim")),
                                                    f"not met ({max(copy('orbit', 'ssim'), warp('ssim')) - m('orbit', 'ssim'):.3f} under)")),
    ("orbit", "view error (deg, from the pose evaluator; not a floor)", cell("orbit", "view_error", 1),
     plain("fast", "orbit", "view_error", 1), "0", plain("copy reference", "orbit", "view_error", 1),
     f"{warp('view_error'):.1f}", "–"),
]
for row in rows:
    print("| " + " | ".join(row) + " |")
