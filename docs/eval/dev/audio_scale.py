"""Val split: lip r and mouth opening vs the audio stream's strength (portrait task, 25 steps, CFG 3)."""
import sys
import numpy as np, torch
from starcaster import STARCasterPipeline
from starcaster.eval.evaluators import load_evaluators
from starcaster.eval.run import eval_clips
from starcaster.eval import metrics
torch.set_num_threads(1)
pipe = STARCasterPipeline.from_pretrained(sys.argv[1]); pipe.set_progress_bar_config(disable=True)
ev = load_evaluators("checkpoints/tiny/evaluators")
clips = eval_clips("portrait", int(sys.argv[2]), 0, 32, split="val")
scales = [float(s) for s in sys.argv[3].split(",")]
task = sys.argv[4] if len(sys.argv) > 4 else "portrait"
res = {s: [] for s in scales}
for i, clip in enumerate(clips):
    for s in scales:
        fr = pipe.generate(task=task, image=clip.reference, already_aligned=True, seed=i, num_frames=32, steps=25,
                           guidance=3.0, audio=(clip.audio, clip.sample_rate), strengths={"audio": s}).frames
        o = metrics.mouth_opening(ev["mouth"], fr, clip.mouth_xy)
        r, off = metrics.lagged_correlation(o, clip.mouth[:, 0])
        ident = float(metrics.identity_similarity(ev["identity"], fr, clip.reference).mean())
        res[s].append((r, off, o.mean(), o.std(), ident))
        print(f"clip {i} audio x{s}: r={r:.2f} off={off} open={o.mean():.2f}±{o.std():.2f} id={ident:.2f}", flush=True)
for s, v in res.items():
    v = np.array(v); print(f"audio x{s}: mean r={v[:,0].mean():.3f} open={v[:,2].mean():.3f} std={v[:,3].mean():.3f} id={v[:,4].mean():.3f}")
