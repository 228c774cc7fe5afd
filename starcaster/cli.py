"""Command line: ``python -m starcaster {generate,bench,train}``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

CAMERA_PRESETS = ("orbit", "sweep", "zoom", "oscillation", "static")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m starcaster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="make a talking-portrait video (mp4 with the audio muxed in)")
    gen.add_argument("--task", choices=("portrait", "identity", "orbit"), default="portrait")
    gen.add_argument("--image", help="portrait photo (portrait/orbit; identity unless --identity is given)")
    gen.add_argument("--audio", help="speech audio (any format ffmpeg reads)")
    gen.add_argument("--identity", help="identity embedding .npy (identity task)")
    gen.add_argument("--camera", help=f"camera path JSON, or a preset: {', '.join(CAMERA_PRESETS)} (orbit task)")
    gen.add_argument("--num-frames", type=int, help="length when there is no audio")
    gen.add_argument("--aligned", action="store_true", help="the image is already an aligned portrait crop")
    _common(gen)
    gen.add_argument("--out", required=True, help="output .mp4")

    bench = sub.add_parser("bench", help="speed and memory of the sampler vs a naive sampler")
    bench.add_argument("--task", choices=("portrait", "identity", "orbit"), default="portrait")
    bench.add_argument("--seconds", type=float, default=1.28, help="video length (1.28 s = 2 segments at 25 fps)")
    bench.add_argument("--no-naive", action="store_true", help="skip the naive baseline")
    bench.add_argument("--json", help="also write the report here")
    bench.add_argument("--random-weights", action="store_true",
                       help="build the preset's architecture with random weights, no files needed (speed only)")
    _common(bench)
    _fast_steps(bench)
    bench.add_argument("--app-threads", type=int, nargs="+", metavar="N",
                       help="also time the fast sampler as the demo runs it, in a worker thread, with N torch threads")

    tr = sub.add_parser("train", help="train one config, or a whole recipe (--recipe tiny) into a pipeline folder")
    tr.add_argument("config", nargs="?", help="a training config JSON (starcaster/training/configs/...)")
    tr.add_argument("--recipe", help="run every step of a shipped recipe in order (tiny)")
    tr.add_argument("--only", nargs="+", help="with --recipe: only these steps")
    tr.add_argument("--out", required=True, help="the pipeline folder being built (state under OUT/train)")
    tr.add_argument("--resume", action="store_true", help="continue from the latest saved state")
    tr.add_argument("--max-steps", type=int, help="cap every step at N optimizer steps (smoke run)")
    tr.add_argument("--report", action="store_true",
                    help="print the hours each step of OUT trained (from its logs) instead of training")
    tr.add_argument("--ablation", metavar="NAME",
                    help="a branch of the recipe, made from --base where it diverges and trained into --out: the "
                         "paper's ablations no_lip and teacher_forcing; full (stages 2-3 again from the same stage-1 "
                         "export); lip_weight=W (stages 2-3 with the lip loss weighted W); lip_weighted (from "
                         "no_lip's branch point, stage 1's lip loss weighted and windowed as in stages 2-3); "
                         "stage3_long (a finished stage 3 continued to twice its steps); camera_lr10 (stage 3 again "
                         "from the stage-2 export, the camera stream at 10x the learning rate); camera_first "
                         "(camera_lr10 with 3 in 4 orbit batches beginning as inference does); camera_alone (a "
                         "probe: the camera stream alone on orbit first segments, 500 steps); camera_noise "
                         "(camera_first with orbit timesteps leaning to high noise); camera_after (the recipe's "
                         "stage3_camera step, camera_alone for 10000 steps, from a stage-3 export)")
    tr.add_argument("--base", help="with --ablation: the full recipe's folder (default checkpoints/tiny)")
    tr.add_argument("--branch-from", help="with --ablation: the saved divergence point when --base has moved on "
                                          "(no_lip, lip_weighted: a stage-1 state folder; stage3_long: a stage-3 state "
                                          "folder; camera_lr10, camera_first, camera_alone, camera_noise: a stage-2 "
                                          "starcaster/; camera_after: a stage-3 starcaster/; the others: a stage-1 "
                                          "starcaster/)")

    ev = sub.add_parser("eval", help="the synthetic benchmark: models and baselines on held-out identities")
    ev.add_argument("--tasks", default="portrait,identity,orbit")
    ev.add_argument("--clips", type=int, default=20, help="held-out clips per task")
    ev.add_argument("--first-clip", type=int, default=0,
                    help="start at this held-out clip: a long run split over sessions (the per-clip values match)")
    ev.add_argument("--segments", type=int, default=2, help="segments of 16 frames per clip (20: the drift test)")
    ev.add_argument("--split", choices=("eval", "val"), default="eval",
                    help="eval: the held-out benchmark (report); val: development identities (for choosing)")
    ev.add_argument("--compare", nargs="+", metavar="[ROW=]FOLDER",
                    help="several checkpoints in one run (one table); ROW=FOLDER names the row")
    ev.add_argument("--random-row", action="store_true", help="add the preset with random weights (chance)")
    ev.add_argument("--evaluators", help="folder of the evaluators (default: checkpoints/tiny/evaluators)")
    ev.add_argument("--json", help="write the results here")
    ev.add_argument("--markdown", help="write the table here")
    ev.add_argument("--strips", help="folder for image strips (ground truth above, generated below)")
    _common(ev)
    _fast_steps(ev)

    pre = sub.add_parser("preprocess", help="talking-face videos -> training clips for stages 1-2 (real data)")
    pre.add_argument("videos", help="a folder of videos (mp4, mov, mkv, avi, webm)")
    pre.add_argument("out", help="output folder (clips-*.pt shards + preprocess.json)")
    pre.add_argument("--preset", default="sd15", help="the pipeline whose VAE, face embedder and audio encoder to use")
    pre.add_argument("--clip-frames", type=int, help="frames per clip (default: n + 2N, a stage-2 window)")
    pre.add_argument("--device", default="cuda" if _cuda() else "cpu")
    pre.add_argument("--seed", type=int, default=0)

    args = parser.parse_args(argv)
    try:
        if args.command == "generate":
            _generate(args)
        elif args.command == "train":
            _train(args)
        elif args.command == "preprocess":
            _preprocess(args)
        elif args.command == "eval":
            _eval(args)
        else:
            _bench(args)
    except (ValueError, FileNotFoundError) as e:
        print(f"error: {_for_the_command_line(str(e))}", file=sys.stderr)
        sys.exit(2)


def _for_the_command_line(message: str) -> str:
    """The library's hints name the demo's checkbox; here the switch is a flag."""
    return message.replace("tick 'already an aligned portrait'", "pass --aligned")


def _common(p):
    p.add_argument("--preset", default="tiny", help="tiny, sd15 or a checkpoint folder")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu")
    p.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="default: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--guidance", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--fast", action="store_true",
                   help="the fast sampler: the distilled model in 1-4 steps (fast_steps), no CFG, the tiny decoder "
                        "(generate: sample with it; eval: add its rows)")
    p.add_argument("--low-memory", action="store_true",
                   help="sd15 on a smaller GPU: model CPU offload + VAE slicing (slower, a fraction of the memory)")


def _compare_row(entry: str) -> tuple[str, str]:
    """``"full=checkpoints/tiny"`` -> ("full", "checkpoints/tiny"); a bare folder or preset names its own row."""
    row, sep, folder = entry.partition("=")
    return (row, folder) if sep and row and folder else (entry, entry)


def _fast_steps(p):
    p.add_argument("--fast-steps", type=int, nargs="+", choices=range(1, 5), metavar="N",
                   help="the fast sampler's rows at each of these step counts, 1-4 (default: the model's fast_steps)")


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _load(args, random_weights: bool = False):
    import torch

    from .loading import load_pipeline

    dtype = getattr(torch, args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32"))
    if getattr(args, "low_memory", False):  # weights stay on the CPU; offload brings each component over in turn
        pipe = load_pipeline(args.preset, dtype=dtype, random_weights=random_weights)
        return pipe.enable_low_memory(args.device)
    return load_pipeline(args.preset, device=args.device, dtype=dtype, random_weights=random_weights)


def _camera(arg, pipe):
    from .conditioning.camera import CameraPath

    if arg is None:
        return None
    if arg in CAMERA_PRESETS:
        return CameraPath.preset(arg, int(4 * pipe.fps), fps=pipe.fps)  # every preset starts at the input view
    return CameraPath.from_json(Path(arg).read_text())


def _generate(args):
    from .video import VideoWriter

    pipe = _load(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    stream = pipe.stream(task=args.task, image=args.image, audio=args.audio, camera=_camera(args.camera, pipe),
                         identity=args.identity, num_frames=args.num_frames, steps=args.steps,
                         guidance=args.guidance, seed=args.seed, already_aligned=args.aligned,
                         sampler="fast" if args.fast else "quality")
    writer = None
    for seg in stream:  # each segment goes to the encoder as soon as it exists: memory stays flat for long audio
        if writer is None:
            writer = VideoWriter(out, fps=seg.fps, sample_rate=seg.sample_rate)
        writer.append(seg.frames, audio=seg.audio)
        print(f"segment {seg.index + 1}/{seg.num_segments}: frames {seg.start_frame}-{seg.start_frame + len(seg.frames) - 1}",
              flush=True)
    writer.close()
    print(f"wrote {out}")


def _bench(args):
    from .eval.benchmark import format_report, run_benchmark

    if args.random_weights:
        print(f"random weights: speed only (the {args.preset} architecture, no checkpoint files read)", flush=True)
    try:
        pipe = _load(args, random_weights=args.random_weights)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"{e}\nTo time the architecture without its weights, add --random-weights.") from None
    report = run_benchmark(pipe, task=args.task, seconds=args.seconds, steps=args.steps or pipe.settings.steps,
                           guidance=args.guidance if args.guidance is not None else pipe.settings.guidance,
                           naive=not args.no_naive, fast=pipe.has_fast_sampler, fast_steps=args.fast_steps,
                           app_threads=args.app_threads)
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


def _train(args):
    from .training import TrainConfig, run_config, run_recipe

    if args.report:
        from .training.recipe import training_hours

        hours = training_hours(args.out)
        for name, h in hours.items():
            print(f"{name:16s} {h:6.2f} h")
        print(f"{'total':16s} {sum(hours.values()):6.2f} h wall clock")
        return
    if args.ablation is not None:
        from .presets import REPO_CHECKPOINTS
        from .training.ablation import make_branch, run_variant

        if not (Path(args.out) / "train" / "ablation.json").is_file():
            make_branch(args.ablation, args.base or REPO_CHECKPOINTS / "tiny", args.out, args.branch_from)
        print(json.dumps(run_variant(args.ablation, args.out, max_steps=args.max_steps), indent=2, default=str))
        return
    if (args.config is None) == (args.recipe is None):
        raise ValueError("give either a config file or --recipe NAME (or --ablation NAME).")
    if args.config is not None:
        report = run_config(TrainConfig.from_file(args.config), args.out, resume=args.resume,
                            max_steps=args.max_steps)
    else:
        report = run_recipe(args.recipe, args.out, resume=args.resume, max_steps=args.max_steps, only=args.only)
    print(json.dumps(report, indent=2, default=str))


def _preprocess(args):
    from .loading import load_pipeline
    from .training.preprocess import preprocess

    pipe = load_pipeline(args.preset, device=args.device)
    print(json.dumps(preprocess(args.videos, args.out, pipe, clip_frames=args.clip_frames, seed=args.seed), indent=2))


def _eval(args):
    import torch
    from tqdm.auto import tqdm

    from .eval.evaluators import load_evaluators
    from .eval.run import TASKS, evaluate, format_markdown, save
    from .presets import REPO_CHECKPOINTS

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    unknown = set(tasks) - set(TASKS)
    if unknown:
        raise ValueError(f"unknown tasks {sorted(unknown)}; choose from {', '.join(TASKS)}.")
    if args.first_clip < 0 or args.clips < 1:
        raise ValueError("--first-clip must be >= 0 and --clips >= 1.")
    rows = dict(_compare_row(entry) for entry in args.compare or [args.preset])
    models = {row: _load(argparse.Namespace(**{**vars(args), "preset": folder})) for row, folder in rows.items()}
    if args.random_row:
        models[f"{args.preset} (random weights)"] = _load(args, random_weights=True)
    samplers = {name: "quality" for name in models}
    if args.fast:  # the fast sampler of every model that has one, on the same clips, at each --fast-steps
        for name, pipe in list(models.items()):
            if not pipe.has_fast_sampler:
                continue
            for steps in args.fast_steps or [None]:
                row = f"{name} (fast)" if steps is None else f"{name} (fast, {steps} step{'s' * (steps > 1)})"
                models[row], samplers[row] = pipe, ("fast", steps)
    for pipe in models.values():
        pipe.set_progress_bar_config(disable=True)
    evaluators = load_evaluators(Path(args.evaluators) if args.evaluators else REPO_CHECKPOINTS / "tiny" / "evaluators")
    bar = tqdm(total=len(tasks) * args.clips, desc="eval")
    with torch.no_grad():
        results = evaluate(models, evaluators, tasks, args.clips, args.seed, args.steps or 25,
                           args.guidance if args.guidance is not None else 3.0, args.segments,
                           Path(args.strips) if args.strips else None, progress=lambda *_: bar.update(1),
                           samplers=samplers, split=args.split, first_clip=args.first_clip)
    bar.close()
    meta = {"command": "python -m starcaster " + " ".join(sys.argv[1:]), "clips": args.clips, "seed": args.seed,
            "split": args.split, "first_clip": args.first_clip}
    save(results, args.json, args.markdown, meta)
    print(format_markdown(results))
