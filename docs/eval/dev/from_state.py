"""A loadable pipeline folder from a saved stage state: python from_state.py BASE_FOLDER STATE_DIR OUT_FOLDER GROUPS."""
import sys
from pathlib import Path
from safetensors.torch import load_file
from starcaster import STARCasterPipeline
base, state, out, groups = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4].split(",")
pipe = STARCasterPipeline.from_pretrained(base)
sd = {k[len("model."):]: v for k, v in load_file(state / "model.safetensors").items() if k.startswith("model.")}
missing, unexpected = pipe.model.load_state_dict(sd, strict=False)
print("loaded", len(sd), "missing", len(missing), "unexpected", len(unexpected), unexpected[:3])
out.mkdir(parents=True, exist_ok=True)
for p in base.iterdir():
    if p.name not in ("starcaster", "train", "cache") and not (out / p.name).exists():
        (out / p.name).symlink_to(p.resolve())
pipe.model.save_adapters(out / "starcaster", groups=groups)
print("wrote", out / "starcaster")
