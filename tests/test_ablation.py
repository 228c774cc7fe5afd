"""The paper's ablations branch from the full recipe where they diverge: the right configs, the right branch point,
and a branch folder the trainer resumes from (issue #11)."""

import dataclasses
import json

import pytest

from starcaster.training.ablation import (
    PAPER_LIP_WEIGHT,
    SHARED,
    VARIANTS,
    branch_state_step,
    make_branch,
    run_variant,
    variant_configs,
)
from starcaster.training.config import recipe_configs
from starcaster.training.trainer import finished


def test_variants_change_only_the_ablated_setting():
    full = {c.name: c for c in recipe_configs("tiny")}
    no_lip = {c.name: c for c in variant_configs("no_lip")}
    assert list(no_lip) == ["stage1", "stage2", "stage3"]
    assert no_lip["stage1"].task_args == {**full["stage1"].task_args, "lip_loss_weight": 0.0}
    # stages 2 and 3 keep it (3 on its talking clips): the ablation drops it there too
    for name in ("stage2", "stage3"):
        assert no_lip[name].task_args == {**full[name].task_args, "lip_loss_weight": 0.0}
    teacher = {c.name: c for c in variant_configs("teacher_forcing")}
    assert list(teacher) == ["stage2", "stage3"]
    for name in teacher:  # the Tab. 3 rows were trained at the paper's lip weight (the tiny recipe's is 0.25)
        assert teacher[name].task_args == {**full[name].task_args, "lip_loss_weight": PAPER_LIP_WEIGHT,
                                           "teacher_forcing": True}
        # same budget, seed and data order: everything outside task_args is the full recipe's
        assert dataclasses.replace(teacher[name], task_args={}) == dataclasses.replace(full[name], task_args={})
    with pytest.raises(ValueError, match="no ablation named 'nope'"):
        variant_configs("nope")


def test_lip_weighted_runs_stage_1_lip_loss_as_stages_2_and_3_do_and_branches_like_no_lip(tmp_path):
    full = {c.name: c for c in recipe_configs("tiny")}
    weighted = {c.name: c for c in variant_configs("lip_weighted")}
    assert list(weighted) == ["stage1", "stage2", "stage3"]
    lip_args = {k: full["stage2"].task_args[k] for k in ("lip_alpha_weighting", "lip_window")}
    assert full["stage1"].task_args.get("lip_alpha_weighting") is None  # what the variant changes
    assert weighted["stage1"].task_args == {**full["stage1"].task_args, **lip_args}
    for name in ("stage2", "stage3"):
        assert weighted[name] == at_paper_lip_weight(full[name])
    base = fake_base(tmp_path / "base", stage1_step=branch_state_step())
    out = make_branch("lip_weighted", base, tmp_path / "lip_weighted")
    assert (out / "train" / "stage1" / "states" / f"step-{branch_state_step():08d}" / "trainer_state.json").is_file()


def test_full_and_lip_weight_branches_rerun_stages_2_and_3_with_only_their_change():
    full = {c.name: c for c in recipe_configs("tiny")}
    rerun = {c.name: c for c in variant_configs("full")}
    assert rerun == {name: at_paper_lip_weight(full[name]) for name in ("stage2", "stage3")}
    # the tiny recipe's stages 2 and 3 are the lip_weight=0.25 branch's, which the shipped model came from
    assert {c.name: c for c in variant_configs("lip_weight=0.25")} == {name: full[name] for name in rerun}
    weighted = {c.name: c for c in variant_configs("lip_weight=0.5")}
    assert list(weighted) == ["stage2", "stage3"]
    for name, config in weighted.items():
        assert config.task_args == {**full[name].task_args, "lip_loss_weight": 0.5}
        assert dataclasses.replace(config, task_args={}) == dataclasses.replace(full[name], task_args={})
    for bad in ("lip_weight=-1", "lip_weight=nan", "lip_weight=inf", "lip_weight=a lot"):
        with pytest.raises(ValueError, match="lip-loss weight|as a number"):
            variant_configs(bad)


@pytest.mark.parametrize("name", ["full", "lip_weight=0.5"])
def test_stage_2_branches_start_from_the_stage_1_export(tmp_path, name):
    base = fake_base(tmp_path / "base", stage1_done=True)
    out = make_branch(name, base, tmp_path / "branch")
    assert json.loads((out / "starcaster" / "config.json").read_text()) == {"stage": 1}
    assert json.loads((out / "train" / "ablation.json").read_text())["variant"] == name


def test_the_no_lip_branch_point_is_the_last_state_before_the_lip_loss():
    stage1 = {c.name: c for c in recipe_configs("tiny")}["stage1"]
    step = branch_state_step()
    assert step % stage1.save_every == 0
    assert step < stage1.task_args["lip_loss_from"] <= step + stage1.save_every


def fake_base(root, stage1_step=None, stage1_done=False):
    for component in SHARED:
        (root / component).mkdir(parents=True)
        (root / component / "config.json").write_text(json.dumps({"component": component}))
    if stage1_step is not None:
        state = root / "train" / "stage1" / "states" / f"step-{stage1_step:08d}"
        state.mkdir(parents=True)
        (state / "trainer_state.json").write_text(json.dumps({"step": stage1_step}))
        (root / "train" / "stage1" / "metrics.jsonl").write_text('{"step": 10}\n')
    if stage1_done:
        (root / "starcaster").mkdir()
        (root / "starcaster" / "config.json").write_text('{"stage": 1}')
        (root / "train" / "stage1").mkdir(parents=True, exist_ok=True)
        (root / "train" / "stage1" / "done.json").write_text(json.dumps({"steps": 3000}))
    (root / "cache").mkdir()
    return root


def test_no_lip_branch_copies_the_shared_parts_and_the_state(tmp_path):
    base = fake_base(tmp_path / "base", stage1_step=branch_state_step())
    out = make_branch("no_lip", base, tmp_path / "no_lip")
    for component in SHARED:
        assert json.loads((out / component / "config.json").read_text()) == {"component": component}
    state = out / "train" / "stage1" / "states" / f"step-{branch_state_step():08d}"
    assert json.loads((state / "trainer_state.json").read_text())["step"] == branch_state_step()
    assert (out / "cache").resolve() == (base / "cache").resolve()  # rendered pools shared, not re-rendered
    assert json.loads((out / "train" / "ablation.json").read_text())["variant"] == "no_lip"
    with pytest.raises(ValueError, match="already holds training state"):
        make_branch("no_lip", base, out)


def test_no_lip_refuses_a_state_after_the_lip_loss_started(tmp_path):
    late = {c.name: c for c in recipe_configs("tiny")}["stage1"].task_args["lip_loss_from"]
    base = fake_base(tmp_path / "base", stage1_step=late)
    state = base / "train" / "stage1" / "states" / f"step-{late:08d}"
    with pytest.raises(ValueError, match="after the lip loss switched on"):
        make_branch("no_lip", base, tmp_path / "a", branch_from=state)
    with pytest.raises(FileNotFoundError, match=f"branch point is step {branch_state_step()}"):
        make_branch("no_lip", base, tmp_path / "b")  # the default branch state is not there


def test_teacher_forcing_branch_starts_at_stage_2(tmp_path):
    base = fake_base(tmp_path / "base", stage1_done=True)
    out = make_branch("teacher_forcing", base, tmp_path / "tf")
    assert json.loads((out / "starcaster" / "config.json").read_text()) == {"stage": 1}
    stage1 = {c.name: c for c in recipe_configs("tiny")}["stage1"]
    assert finished(out / "train" / "stage1", stage1)  # the trainer will not redo stage 1
    # Once the base has moved into stage 2, its starcaster/ is stage 2's: the saved stage-1 export is needed.
    (base / "train" / "stage2" / "states").mkdir(parents=True)
    with pytest.raises(ValueError, match="started stage 2"):
        make_branch("teacher_forcing", base, tmp_path / "tf2")


def at_paper_lip_weight(config):
    return dataclasses.replace(config, task_args={**config.task_args, "lip_loss_weight": PAPER_LIP_WEIGHT})


def test_a_variant_runs_only_in_a_branch_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an ablation branch"):
        run_variant("no_lip", tmp_path)


@pytest.mark.parametrize("name", ["full", "teacher_forcing", "no_lip"])
def test_shipped_ablation_exports_are_finished_and_match_the_shipped_model(name):
    """Each committed ablation row is a finished export: the same tensors as the shipped model's (names and shapes,
    so it loads into the same classes), its last stage done, and trained as the variant it says it is. A half-shipped
    branch (stage 2's export, a missing camera stream) fails here, not in the eval an hour later."""
    from safetensors import safe_open

    from starcaster.presets import REPO_CHECKPOINTS

    folder, shipped = REPO_CHECKPOINTS / "ablations" / name, REPO_CHECKPOINTS / "tiny" / "starcaster"
    files = sorted(p.name for p in shipped.glob("*.safetensors"))
    assert sorted(p.name for p in (folder / "starcaster").glob("*.safetensors")) == files
    for file in files:
        with safe_open(str(shipped / file), "pt") as ref, safe_open(str(folder / "starcaster" / file), "pt") as got:
            assert set(got.keys()) == set(ref.keys()), file
            for key in ref.keys():
                assert got.get_slice(key).get_shape() == ref.get_slice(key).get_shape(), key
    assert json.loads((folder / "starcaster" / "config.json").read_text()) == json.loads(
        (shipped / "config.json").read_text())
    assert json.loads((folder / "train" / "ablation.json").read_text())["variant"] == name
    stage3 = {c.name: c for c in variant_configs(name)}["stage3"]
    assert finished(folder / "train" / "stage3", stage3)


def test_committed_lip_weight_branch_has_finished_its_camera_step():
    """checkpoints/ablations/lip_0.1 is the lip_weight=0.1 branch through the camera step: stages 2 and 3 finished
    there with the variant's own configs, then the recipe's `stage3_camera` (from which the candidate's shipped folder
    is assembled and distilled), and its export holds the groups in the shipped model's names and shapes."""
    from safetensors import safe_open

    from starcaster.presets import REPO_CHECKPOINTS

    folder, shipped = REPO_CHECKPOINTS / "ablations" / "lip_0.1", REPO_CHECKPOINTS / "tiny" / "starcaster"
    configs = {c.name: c for c in variant_configs("lip_weight=0.1")}
    for stage in ("stage2", "stage3"):
        assert configs[stage].task_args["lip_loss_weight"] == 0.1
        assert finished(folder / "train" / stage, configs[stage]), stage
        assert json.loads((folder / "train" / stage / "done.json").read_text())["config"] == json.loads(
            json.dumps(configs[stage].to_dict())), stage  # JSON makes tuples lists
    camera = {c.name: c for c in recipe_configs("tiny")}["stage3_camera"]
    assert finished(folder / "train" / "stage3_camera", camera)
    assert json.loads((folder / "train" / "stage3_camera" / "done.json").read_text())["config"] == json.loads(
        json.dumps(camera.to_dict()))
    assert json.loads((folder / "train" / "ablation.json").read_text())["variant"] == "lip_weight=0.1"
    files = sorted(p.name for p in (folder / "starcaster").glob("*.safetensors"))
    assert files == ["audio.safetensors", "camera.safetensors", "lora.safetensors", "motion.safetensors"]
    for file in files:
        with safe_open(str(shipped / file), "pt") as ref, safe_open(str(folder / "starcaster" / file), "pt") as got:
            assert {k: got.get_slice(k).get_shape() for k in got.keys()} == {
                k: ref.get_slice(k).get_shape() for k in ref.keys()}, file


def test_orbit_branches_change_only_stage_3(tmp_path):
    full = at_paper_lip_weight({c.name: c for c in recipe_configs("tiny")}["stage3"])  # as the probes were trained
    (longer,) = variant_configs("stage3_long")
    assert longer.steps == 2 * full.steps and dataclasses.replace(longer, steps=full.steps) == full
    # constant after warm-up: the continued run's first half is the recipe's own stage 3
    assert full.lr_schedule == "constant_with_warmup" and full.warmup_steps < full.steps
    (camera,) = variant_configs("camera_lr10")
    assert camera.task_args == {**full.task_args, "group_lr_scale": {"camera": 10}}
    assert dataclasses.replace(camera, task_args={}) == dataclasses.replace(full, task_args={})
    (first,) = variant_configs("camera_first")
    assert first.task_args == {**camera.task_args, "orbit_first_segment_probability": 0.75}
    assert dataclasses.replace(first, task_args={}) == dataclasses.replace(full, task_args={})
    assert VARIANTS["camera_first"].branch == VARIANTS["camera_lr10"].branch == "stage2-export"
    (alone,) = variant_configs("camera_alone")
    assert alone.task_args["train_groups"] == ["camera"] and alone.task_args["talk_fraction"] == 0.0
    assert alone.task_args["orbit_first_segment_probability"] == 1.0 and alone.steps < full.steps
    assert VARIANTS["camera_alone"].branch == "stage2-export"
    (noise,) = variant_configs("camera_noise")  # camera_first and nothing else but the orbit timesteps
    assert noise.task_args == {**first.task_args, "orbit_timestep_power": 2.0}
    assert dataclasses.replace(noise, task_args={}) == dataclasses.replace(full, task_args={})
    assert VARIANTS["camera_noise"].branch == "stage2-export"
    (after,) = variant_configs("camera_after")  # camera_alone's task, longer: the recipe's step after stage 3
    # (no talking batches there, so no lip loss to weight: the recipe's step does not set it)
    assert {**after.task_args, "lip_loss_weight": PAPER_LIP_WEIGHT} == alone.task_args
    assert after.name == "stage3_camera" and after.steps == 10000
    steps = [c.name for c in recipe_configs("tiny")]
    assert steps.index("stage3_camera") == steps.index("stage3") + 1 == steps.index("distill") - 1
    assert VARIANTS["camera_after"].branch == "stage3-export"


def test_stage3_long_continues_the_last_stage_3_state_of_a_finished_run(tmp_path):
    base = fake_base(tmp_path / "base", stage1_done=True)
    (base / "starcaster" / "config.json").write_text('{"stage": 3}')
    with pytest.raises(FileNotFoundError, match="no stage-3 state"):
        make_branch("stage3_long", base, tmp_path / "none")
    for step in (1400, 1500):
        state = base / "train" / "stage3" / "states" / f"step-{step:08d}"
        state.mkdir(parents=True)
        (state / "trainer_state.json").write_text(json.dumps({"step": step}))
    (base / "train" / "stage3" / "states" / "step-00001600").mkdir()  # a save cut short: not continued from
    out = make_branch("stage3_long", base, tmp_path / "long")
    states = sorted(p.name for p in (out / "train" / "stage3" / "states").iterdir())
    assert states == ["step-00001500"]
    assert json.loads((out / "starcaster" / "config.json").read_text()) == {"stage": 3}
    configs = {c.name: c for c in recipe_configs("tiny")}
    assert finished(out / "train" / "stage1", configs["stage1"]) and finished(out / "train" / "stage2", configs["stage2"])
    (longer,) = variant_configs("stage3_long")
    assert not finished(out / "train" / "stage3", longer)  # so the trainer resumes at 1500 and runs to 3000


def test_camera_lr10_starts_from_a_finished_stage_2_export(tmp_path):
    base = fake_base(tmp_path / "base", stage1_done=True)
    with pytest.raises(FileNotFoundError, match="has not finished stage 2"):
        make_branch("camera_lr10", base, tmp_path / "early")
    (base / "starcaster" / "config.json").write_text('{"stage": 2}')
    (base / "train" / "stage2").mkdir(parents=True)
    (base / "train" / "stage2" / "done.json").write_text(json.dumps({"steps": 1500}))
    out = make_branch("camera_lr10", base, tmp_path / "camera")
    assert json.loads((out / "starcaster" / "config.json").read_text()) == {"stage": 2}
    configs = {c.name: c for c in recipe_configs("tiny")}
    assert finished(out / "train" / "stage2", configs["stage2"]) and not (out / "train" / "stage3").exists()
    (base / "train" / "stage3" / "states").mkdir(parents=True)
    with pytest.raises(ValueError, match="started stage 3"):
        make_branch("camera_lr10", base, tmp_path / "late")


def test_a_shipped_folder_past_the_branch_point_needs_the_saved_export(tmp_path):
    # A shipped folder keeps done.json but no states: its starcaster/ is the last step's, not the branch point's.
    base = fake_base(tmp_path / "base", stage1_done=True)
    for step in ("stage2", "stage3", "stage3_camera"):
        (base / "train" / step).mkdir(parents=True, exist_ok=True)
        (base / "train" / step / "done.json").write_text(json.dumps({"steps": 1}))
    for name, later in (("teacher_forcing", "stage 2"), ("camera_lr10", "stage 3"), ("camera_after", "stage3_camera")):
        with pytest.raises(ValueError, match=f"has started {later},"):
            make_branch(name, base, tmp_path / name)
    saved = tmp_path / "saved_stage3"
    saved.mkdir()
    (saved / "config.json").write_text('{"stage": 3}')
    out = make_branch("camera_after", base, tmp_path / "after", branch_from=saved)
    assert json.loads((out / "starcaster" / "config.json").read_text()) == {"stage": 3}


def test_camera_after_starts_from_a_finished_stage_3_and_keeps_it_whole(tmp_path):
    base = fake_base(tmp_path / "base", stage1_done=True)
    (base / "starcaster" / "config.json").write_text('{"stage": 3}')
    with pytest.raises(FileNotFoundError, match="has not finished stage 3"):
        make_branch("camera_after", base, tmp_path / "early")
    for stage in (2, 3):
        (base / "train" / f"stage{stage}").mkdir(parents=True, exist_ok=True)
        (base / "train" / f"stage{stage}" / "done.json").write_text(json.dumps({"steps": 1500}))
    out = make_branch("camera_after", base, tmp_path / "after")
    assert json.loads((out / "starcaster" / "config.json").read_text()) == {"stage": 3}
    configs = {c.name: c for c in recipe_configs("tiny")}
    assert all(finished(out / "train" / f"stage{k}", configs[f"stage{k}"]) for k in (1, 2, 3))
    (after,) = variant_configs("camera_after")
    assert not (out / "train" / after.name).exists()  # its own step, trained next; stage 3's folder untouched
