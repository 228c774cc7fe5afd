"""Render (and cache) one training step's clip pools in FOLDER/cache before its runs start, so two branches
trained side by side on one machine read one finished pool instead of both rendering it.

`python docs/gpu/render_pools.py FOLDER stage2 [stage3]` (set STARCASTER_RENDER_WORKERS to the machine's cores).
"""

import sys
import time
from pathlib import Path

from starcaster.training.config import recipe_configs
from starcaster.training.tasks import build_task

if __name__ == "__main__":
    folder, names = Path(sys.argv[1]), sys.argv[2:]
    configs = {c.name: c for c in recipe_configs("tiny")}
    for name in names:
        start = time.time()
        build_task(configs[name], folder, folder / "cache")
        print(f"{name}: pools ready in {time.time() - start:.0f} s", flush=True)
