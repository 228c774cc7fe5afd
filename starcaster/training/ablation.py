"""The paper's ablations (Tab. 3) at tiny scale, each branched from the full recipe where it diverges.

A variant re-trains only what it changes: ``no_lip`` continues stage 1 from its last saved state before the
lip-reading loss switches on, without that loss, then runs stages 2 and 3; ``teacher_forcing`` starts from the
stage-1 export and runs stages 2 and 3 with ground-truth context instead of self-forcing rollouts. Everything else
(configs, seeds, data order, the frozen components) is the full recipe's, so the rows of one ``eval --compare``
differ only in the ablated piece. The branch folders are made by copying the base folder's components and state.

Two more branches share teacher forcing's start: ``full`` runs the full recipe's stages 2 and 3 at the paper's
lip-loss weight (the ablation table's own full row, from the same stage-1 state as teacher forcing), and
``lip_weight=W`` runs them with the lip-reading loss weighted W instead (chosen on the validation identities: the
floors' identity gap, issue #11; the tiny recipe's stages 2 and 3 take ``lip_weight=0.25``). The table's rows were
trained at the paper's weight and stay pinned to it (``PAPER_LIP_WEIGHT``), so their commands reproduce them.
``lip_weighted`` branches where ``no_lip`` does and runs stage 1's lip loss the way stages 2 and 3 run theirs.

Two stage-3 branches aim at the orbit floor (issue #11), each costing only stage 3: ``stage3_long`` continues a
finished stage 3 from its last saved state to twice the recipe's steps (its learning rate is constant after warm-up,
so the first half is the recipe's own run and the branch adds only the second), and ``camera_lr10`` re-runs stage 3
from the stage-2 export with the new camera stream learning 10x faster than the groups it joins; ``camera_first``
adds, to that, 3 in 4 orbit batches that begin as inference does, where only the camera can say the view;
``camera_alone`` trains the camera stream by itself on such batches (a probe of whether it can learn to steer);
``camera_noise`` is ``camera_first`` with orbit timesteps leaning to high noise, where the head's layout is decided;
``camera_after`` is the tiny recipe's ``stage3_camera`` step (``camera_alone`` for 10000 steps, kept in the recipe
since session 19, doubled in session 28) run from a stage-3 export, e.g. to rebuild it on another stage 3; run from an
export whose camera is already trained, it trains that camera on (how the shipped camera got its second 5000).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .config import TrainConfig, recipe_configs
from .recipe import run_config
from .trainer import DONE_FILE, STATE_DIR, latest_state

# Frozen, already-trained components every variant shares with its base folder.
SHARED = ("vae", "face_encoder", "lip_reader", "unet", "text_encoder", "tokenizer", "evaluators")


@dataclass(frozen=True)
class Variant:
    about: str
    steps: tuple  # the recipe steps the variant re-runs
    task_args: dict  # {step: task_args overrides}
    # "stage1-state": a stage-1 state before the lip loss; "stage1-export" / "stage2-export": that stage's finished
    # additions; "stage3-state": a finished stage 3's last state, to continue from
    branch: str
    config: dict = field(default_factory=dict)  # {step: config overrides outside task_args (steps)}


# The tiny recipe's stages 2-3 take the lip-reading loss at 0.25 (``lip_weight=0.25`` won on the validation
# identities, issue #11; its configs change with the shipped model trained that way); the paper and sd15 use 1.0.
# The Tab. 3 rows and the orbit probes were trained at the paper's 1.0 and stay there: pinned, their commands
# reproduce the committed rows, and the rows of one table still differ only in the ablated piece. ``lip_weight=W``
# sets the weight itself.
PAPER_LIP_WEIGHT = 1.0


def _paper_lip(task_args: dict) -> dict:
    """``task_args`` with stages 2 and 3 at the paper's lip-loss weight unless the variant sets its own."""
    return {**task_args, **{s: {"lip_loss_weight": PAPER_LIP_WEIGHT, **task_args.get(s, {})}
                            for s in ("stage2", "stage3")}}


VARIANTS = {
    # no_lip keeps the lip reader loaded (weight 0, not lip_loss_from=None) so that the branch state, which holds it,
    # loads unchanged and every batch draws the same random numbers as the full recipe's.
    "no_lip": Variant("full recipe without the lip-reading loss", ("stage1", "stage2", "stage3"),
                      {"stage1": {"lip_loss_weight": 0.0}, "stage2": {"lip_loss_weight": 0.0},
                       "stage3": {"lip_loss_weight": 0.0}}, "stage1-state"),
    "teacher_forcing": Variant("ground-truth context (teacher forcing) instead of self-forcing in stages 2 and 3",
                               ("stage2", "stage3"),
                               {"stage2": {"teacher_forcing": True}, "stage3": {"teacher_forcing": True}},
                               "stage1-export"),
    "full": Variant("the full recipe's stages 2 and 3 at the paper's lip-loss weight", ("stage2", "stage3"), {},
                    "stage1-export"),
    # A recipe candidate, not a paper ablation: stage 1's lip term computed as stages 2 and 3 compute it. Unweighted,
    # it is 10-15x the diffusion loss in stage 1 and the held-out diffusion loss rises from 0.017 to 0.027 when it
    # switches on (no_lip: 0.015 at the end), which the floors' identity gap may owe to (issue #11).
    "lip_weighted": Variant("stage 1's lip-reading loss weighted by alpha-bar and decoded on the mouth window, as in "
                            "stages 2 and 3", ("stage1", "stage2", "stage3"),
                            {"stage1": {"lip_alpha_weighting": True, "lip_window": 8}}, "stage1-state"),
    # Orbit candidates (issue #11: orbit PSNR 3.8 dB under its floor; stage 3's held-out loss still falling at its end).
    "stage3_long": Variant("stage 3 continued to twice its steps", ("stage3",), {}, "stage3-state",
                           config={"stage3": {"steps": 3000}}),
    "camera_lr10": Variant("stage 3 with the camera stream's learning rate 10x the other groups'", ("stage3",),
                           {"stage3": {"group_lr_scale": {"camera": 10}}}, "stage2-export"),
    # The recipe's model ignores the camera (an orbit sampled along its path reversed differs by 0.26 of 255 per
    # pixel): 3 in 4 of stage 3's orbit batches continue a segment, whose view the context frames already show, so
    # the camera is needed in about 1 batch in 8. This one starts 3 in 4 orbit batches as inference does.
    "camera_first": Variant("stage 3 with camera_lr10's learning rates and 3 in 4 orbit batches beginning as inference "
                            "does (the portrait as context, the view from the camera alone)", ("stage3",),
                            {"stage3": {"group_lr_scale": {"camera": 10}, "orbit_first_segment_probability": 0.75}},
                            "stage2-export"),
    # A probe, not a recipe: the camera stream alone (everything else frozen, so copying the portrait cannot get any
    # better and only the camera can lower the loss), on orbit first segments only, 500 steps. Its export is a
    # stage-2 export with a trained camera, from which camera_lr10 / camera_first can run the rest of stage 3.
    "camera_alone": Variant("the camera stream alone, trained on orbit first segments (the other groups frozen)",
                            ("stage3",), {"stage3": {"train_groups": ["camera"], "group_lr_scale": {"camera": 10},
                                                     "orbit_first_segment_probability": 1.0, "talk_fraction": 0.0}},
                            "stage2-export", config={"stage3": {"steps": 500, "validate_every": 250}}),
    # camera_first made the camera audible (loss gap 0.0005 of 0.026) but did not make it steer. With epsilon
    # prediction at uniform timesteps most orbit batches are at noise levels where x_t already shows the view, so
    # the loss hardly asks the camera for the layout: this one draws 3 in 4 orbit timesteps above T/2.
    "camera_noise": Variant("camera_first with orbit timesteps drawn as T u^(1/2) (high noise more often)",
                            ("stage3",), {"stage3": {"group_lr_scale": {"camera": 10},
                                                     "orbit_first_segment_probability": 0.75,
                                                     "orbit_timestep_power": 2.0}}, "stage2-export"),
    # camera_alone to 5000 steps steered the head (view error -4.8 deg on 10 validation orbits) and stage 3 run on from
    # it gave part of that back. This one is the recipe's ``stage3_camera`` step (camera_alone's settings for 10000
    # steps, the camera stream alone) after a finished stage 3, so the groups it joins (motion, LoRA, audio) keep the
    # talking they learnt there; a step of its own, so the stage-3 folder stays whole.
    "camera_after": Variant("the recipe's stage3_camera step (the camera stream alone, camera_alone's settings, 10000 "
                            "steps) after a finished stage 3 (its export frozen)", ("stage3_camera",), {},
                            "stage3-export"),
}
# Every variant but camera_after (a step the recipe itself runs after stage 3) at the paper's lip-loss weight.
VARIANTS = {name: variant if name == "camera_after" else dataclasses.replace(variant,
                                                                          task_args=_paper_lip(variant.task_args))
            for name, variant in VARIANTS.items()}
LIP_WEIGHT = "lip_weight="  # "lip_weight=0.25": stages 2 and 3 with that lip-loss weight (see lip_weight_variant)


def variant_configs(name: str, recipe: str = "tiny") -> list[TrainConfig]:
    variant = _variant(name)
    configs = {c.name: c for c in recipe_configs(recipe)}
    return [dataclasses.replace(configs[s], **variant.config.get(s, {}),
                                task_args={**configs[s].task_args, **variant.task_args.get(s, {})})
            for s in variant.steps]


def _step_config(recipe: str, name: str) -> TrainConfig:
    return {c.name: c for c in recipe_configs(recipe)}[name]


def branch_state_step(recipe: str = "tiny") -> int:
    """The last stage-1 state saved before the lip loss switches on: where ``no_lip`` diverges."""
    stage1 = _step_config(recipe, "stage1")
    start = stage1.task_args["lip_loss_from"]
    return (start - 1) // stage1.save_every * stage1.save_every


def make_branch(name: str, base: str | Path, out: str | Path, branch_from: str | Path | None = None,
                recipe: str = "tiny") -> Path:
    """Make ``out`` a copy of ``base`` at the point where variant ``name`` diverges.

    ``branch_from`` is the divergence point when ``base`` has moved on: a stage-1 state folder (``no_lip``, default
    ``base/train/stage1/states/step-<branch_state_step>``), a stage-K ``starcaster/`` export (``teacher_forcing``:
    K = 1, ``camera_lr10``: K = 2, ``camera_after``: K = 3; default ``base/starcaster`` with
    ``base/train/stageK/done.json``, i.e. a base that has not started the recipe's next step) or a stage-3 state folder
    (``stage3_long``, default the finished stage 3's last).
    """
    variant, base, out = _variant(name), Path(base), Path(out)
    if (out / "train").exists():
        raise ValueError(f"{out} already holds training state: run_variant continues it (the same train --ablation "
                         f"command), or pick a new --out.")
    missing = [c for c in SHARED if c != "evaluators" and not (base / c).is_dir()]
    if missing:
        raise FileNotFoundError(f"{base} lacks {missing}: train the recipe's first steps before branching.")
    out.mkdir(parents=True, exist_ok=True)
    for component in SHARED:
        if (base / component).is_dir():
            shutil.copytree(base / component, out / component, dirs_exist_ok=True)
    if (base / "cache").is_dir() and not (out / "cache").exists():
        os.symlink((base / "cache").resolve(), out / "cache")  # rendered pools: same world, same VAE, same seeds
    train = out / "train"
    if variant.branch == "stage1-state":
        step = branch_state_step(recipe)
        state = Path(branch_from) if branch_from else base / "train" / "stage1" / STATE_DIR / f"step-{step:08d}"
        saved = json.loads((state / "trainer_state.json").read_text())["step"] if (
            state / "trainer_state.json").is_file() else None
        if saved is None:
            raise FileNotFoundError(f"no stage-1 state at {state} (the no_lip branch point is step {step}).")
        if saved >= _step_config(recipe, "stage1").task_args["lip_loss_from"]:
            raise ValueError(f"{state} is at step {saved}, after the lip loss switched on: it cannot branch no_lip.")
        shutil.copytree(state, train / "stage1" / STATE_DIR / state.name)
        metrics = base / "train" / "stage1" / "metrics.jsonl"
        if metrics.is_file():  # the shared history; the trainer drops lines past the state on resume
            shutil.copy2(metrics, train / "stage1" / "metrics.jsonl")
    elif variant.branch == "stage3-state":
        _continue_stage3(base, train, out, branch_from, recipe)
    else:
        _from_export(int(variant.branch[len("stage")]), base, train, out, branch_from, recipe)
    (train / "ablation.json").write_text(json.dumps({"variant": name, "about": variant.about, "base": str(base),
                                                     "branch_from": str(branch_from or "")}, indent=2) + "\n")
    return out


def _from_export(stage: int, base: Path, train: Path, out: Path, branch_from, recipe: str) -> None:
    """Stage ``stage``'s finished additions as the branch's starting point, stages up to it marked done."""
    export = Path(branch_from) if branch_from else base / "starcaster"
    if not (export / "config.json").is_file() and not any(export.glob("*.safetensors")):
        raise FileNotFoundError(f"no stage-{stage} additions at {export}.")
    later = _next_step(recipe, f"stage{stage}")
    if branch_from is None and later and ((base / "train" / later / STATE_DIR).is_dir()
                                          or (base / "train" / later / DONE_FILE).is_file()):
        raise ValueError(f"{base} has started {_step_label(later)}, so its starcaster/ is no longer stage {stage}'s: "
                         f"give the saved stage-{stage} export as branch_from.")
    if branch_from is None and not (base / "train" / f"stage{stage}" / DONE_FILE).is_file() and stage > 1:
        raise FileNotFoundError(f"{base} has not finished stage {stage}: its starcaster/ is not stage {stage}'s.")
    shutil.copytree(export, out / "starcaster")
    _mark_done(range(1, stage + 1), base, train, recipe, str(export))


def _next_step(recipe: str, name: str) -> str | None:
    """The recipe step after ``name`` (None for the last): the one that changes ``starcaster/`` next."""
    names = [c.name for c in recipe_configs(recipe)]
    return names[names.index(name) + 1] if names.index(name) + 1 < len(names) else None


def _step_label(name: str) -> str:
    return f"stage {name[len('stage'):]}" if name[len("stage"):].isdigit() else name


def _continue_stage3(base: Path, train: Path, out: Path, branch_from, recipe: str) -> None:
    """A finished stage 3's last state (weights, optimizer, schedule) and export, to train on from."""
    state = Path(branch_from) if branch_from else latest_state(base / "train" / "stage3")
    if state is None or not (state / "trainer_state.json").is_file():
        raise FileNotFoundError(f"no stage-3 state at {state or base / 'train' / 'stage3' / STATE_DIR}: stage3_long "
                                f"continues a stage 3 whose states are kept (a training folder, not a shipped one).")
    if not (base / "starcaster" / "config.json").is_file():
        raise FileNotFoundError(f"no additions at {base / 'starcaster'}: stage3_long needs the base's export too "
                                f"(the groups stage 3 does not train, e.g. audio, load from it).")
    shutil.copytree(state, train / "stage3" / STATE_DIR / state.name)
    metrics = base / "train" / "stage3" / "metrics.jsonl"
    if metrics.is_file():
        shutil.copy2(metrics, train / "stage3" / "metrics.jsonl")
    shutil.copytree(base / "starcaster", out / "starcaster")
    _mark_done((1, 2), base, train, recipe, str(base / "starcaster"))


def _mark_done(stages, base: Path, train: Path, recipe: str, branched: str) -> None:
    for stage in stages:
        done = base / "train" / f"stage{stage}" / DONE_FILE
        (train / f"stage{stage}").mkdir(parents=True, exist_ok=True)
        (train / f"stage{stage}" / DONE_FILE).write_text(done.read_text() if done.is_file() else json.dumps(
            {"steps": _step_config(recipe, f"stage{stage}").steps, "branched": branched}))


def run_variant(name: str, out: str | Path, max_steps: int | None = None, progress: bool = True,
                recipe: str = "tiny") -> dict:
    """Train the variant's steps in ``out`` (made by `make_branch`), resuming wherever it stopped."""
    out = Path(out)
    if not (out / "train" / "ablation.json").is_file():
        raise FileNotFoundError(f"{out} is not an ablation branch: make it with make_branch first.")
    return {c.name: run_config(c, out, resume=True, max_steps=max_steps, progress=progress)
            for c in variant_configs(name, recipe)}


def lip_weight_variant(weight: float) -> Variant:
    """Stages 2 and 3 with the lip-reading loss weighted ``weight`` (the paper: 1.0). Stage 1 stays the recipe's, so
    the branch costs two stages, from the same stage-1 export as ``full`` and ``teacher_forcing``."""
    if not 0 <= weight < float("inf"):  # NaN fails too
        raise ValueError(f"the lip-loss weight must be a finite number >= 0, got {weight}.")
    return Variant(f"stages 2 and 3 with the lip-reading loss weighted {weight:g}", ("stage2", "stage3"),
                   {"stage2": {"lip_loss_weight": weight}, "stage3": {"lip_loss_weight": weight}}, "stage1-export")


def _variant(name: str) -> Variant:
    if name.startswith(LIP_WEIGHT):
        try:
            weight = float(name[len(LIP_WEIGHT):])
        except ValueError:
            raise ValueError(f"{name!r}: give the weight as a number, e.g. lip_weight=0.25.") from None
        return lip_weight_variant(weight)
    if name not in VARIANTS:
        raise ValueError(f"no ablation named {name!r}; known: {', '.join(VARIANTS)}, {LIP_WEIGHT}W.")
    return VARIANTS[name]
