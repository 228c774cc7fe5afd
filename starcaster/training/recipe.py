"""A recipe: the steps that make a pipeline folder from nothing, run in order, each resumable.

``python -m starcaster train --recipe tiny --out DIR`` trains every prerequisite of the tiny world and then the
paper's stages, exporting each component into DIR as it finishes (DIR/vae, ...). Training state lives in
DIR/train/<step>/; rendered data caches in DIR/cache/. ``--resume`` continues at whichever step was interrupted.
"""

from __future__ import annotations

import json
from pathlib import Path

from .config import TrainConfig, recipe_configs
from .tasks import build_task
from .trainer import DONE_FILE, finished, latest_state, train


def run_config(config: TrainConfig, out: str | Path, resume: bool = False, max_steps: int | None = None,
               progress: bool = True) -> dict:
    """Train one config into ``out`` (the pipeline folder being built)."""
    out = Path(out)
    config = config.capped(max_steps)
    state = out / "train" / config.name
    if not resume and (latest_state(state) is not None or (state / DONE_FILE).is_file()):
        raise ValueError(f"{state} already holds training state: pass --resume to continue it, or pick a new --out.")
    if resume and finished(state, config):  # before building the task: its data pools cost minutes
        return json.loads((state / DONE_FILE).read_text())
    task = build_task(config, out, out / "cache")
    return train(task, config, state, resume=resume, export_to=out, progress=progress)


def run_recipe(recipe: str, out: str | Path, resume: bool = False, max_steps: int | None = None,
               only: list[str] | None = None, progress: bool = True) -> dict:
    """Every step of ``recipe`` in order (or the ``only`` ones); returns {step name: report}."""
    out = Path(out)
    configs = recipe_configs(recipe)
    if only:
        unknown = set(only) - {c.name for c in configs}
        if unknown:
            raise ValueError(f"recipe {recipe!r} has no steps {sorted(unknown)}; it has {[c.name for c in configs]}.")
        configs = [c for c in configs if c.name in only]
    reports = {}
    for config in configs:
        reports[config.name] = run_config(config, out, resume=resume, max_steps=max_steps, progress=progress)
    (out / "train").mkdir(parents=True, exist_ok=True)
    report = out / "train" / "recipe_report.json"
    # Merged into what is there: `--only` re-runs and the evaluators' recipe share the folder with the other steps.
    earlier = json.loads(report.read_text()) if report.is_file() else {}
    report.write_text(json.dumps({**earlier, **reports}, indent=2, default=str) + "\n")
    return reports


def training_hours(out: str | Path) -> dict:
    """{step name: wall-clock hours of its optimizer steps} from each ``train/<step>/metrics.jsonl`` of ``out``.

    The logged ``it_per_s`` is the mean rate since the run (re)started, which includes its validations, so each line
    accounts for the steps since the line before at that rate. Rendering the data caches is not counted.
    """
    hours = {}
    for metrics in sorted(Path(out).glob("train/*/metrics.jsonl")):
        seconds, last = 0.0, 0
        for line in metrics.read_text().splitlines():
            row = json.loads(line)
            if "it_per_s" in row and row["it_per_s"] > 0 and row["step"] > last:
                seconds += (row["step"] - last) / row["it_per_s"]
                last = row["step"]
        hours[metrics.parent.name] = seconds / 3600
    return hours
