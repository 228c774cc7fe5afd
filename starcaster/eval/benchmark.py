"""``python -m starcaster bench``: speed and memory of the streaming sampler, against a naive one, in one run.

The naive sampler is the same code with the two savings switched off (SamplerOptions): the reference UNet re-run at
every denoising step instead of once per segment, and classifier-free guidance as two UNet calls instead of one
batch. Reporting their ratio from one process on one machine keeps the comparison honest; absolute times are only
meaningful together with the machine line printed alongside.
"""

from __future__ import annotations

import os
import platform
import threading
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..conditioning.camera import CameraPath
from ..pipeline import SamplerOptions


@dataclass
class BenchResult:
    sampler: str
    segments: int
    frames: int
    seconds: float
    first_segment_seconds: float
    seconds_per_segment: float
    frames_per_second: float
    realtime_factor: float  # generated seconds of video per wall-clock second
    peak_memory_mb: float


class _PeakRSS:
    """Peak resident memory of this process while the block runs (CPU), sampled every 20 ms."""

    def __init__(self):
        import psutil

        self._proc, self._peak, self._stop = psutil.Process(), 0, threading.Event()

    def __enter__(self):
        self._peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self):
        while not self._stop.wait(0.02):
            self._peak = max(self._peak, self._proc.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    @property
    def peak_mb(self) -> float:
        return self._peak / 2**20


def machine_line(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}"
    cpu = platform.processor() or platform.machine()
    return f"{cpu}, {torch.get_num_threads()} threads, {os.cpu_count()} cores, torch {torch.__version__}"


def bench_inputs(pipe, task: str, seconds: float, seed: int = 0):
    """Deterministic stand-in inputs: a smooth synthetic 'portrait' and a voiced tone with a syllable rhythm."""
    rng = np.random.default_rng(seed)
    size = pipe.resolution
    yy, xx = np.mgrid[0:size, 0:size] / size
    image = np.stack([0.6 + 0.3 * xx, 0.5 + 0.2 * yy, 0.4 + 0.1 * xx * yy], -1)
    image = (np.clip(image + 0.02 * rng.standard_normal(image.shape), 0, 1) * 255).astype(np.uint8)
    t = np.arange(int(seconds * pipe.sample_rate)) / pipe.sample_rate
    audio = (0.3 * np.sin(2 * np.pi * 150 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    kwargs = dict(task=task, image=image, audio=(audio, pipe.sample_rate), already_aligned=True)
    if task == "orbit":
        kwargs["camera"] = CameraPath.orbit(int(round(seconds * pipe.fps)), fps=pipe.fps)
    return kwargs


def run_once(pipe, kwargs, steps, guidance, sampler, name: str, worker_threads: int | None = None) -> BenchResult:
    """One timed stream. ``worker_threads``: run it as the demo does, in a thread of its own (Gradio's handlers and
    ``ui.streaming.SamplerAhead`` never sample on the main thread), with this many torch threads."""
    if worker_threads is not None:
        out = {}

        def work():
            try:
                out["result"] = run_once(pipe, kwargs, steps, guidance, sampler, name)
            except BaseException as exc:  # noqa: BLE001  (raised again in the caller's thread)
                out["error"] = exc

        before = torch.get_num_threads()
        torch.set_num_threads(worker_threads)  # new threads start with this count (and the main thread takes it)
        try:
            worker = threading.Thread(target=work)
            worker.start()
            worker.join()
        finally:
            torch.set_num_threads(before)
        if "error" in out:
            raise out["error"]
        return out["result"]
    device = pipe.device
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    frames = segments = 0
    first = None
    with _PeakRSS() as rss:
        sync()
        start = time.perf_counter()
        for seg in pipe.stream(steps=steps, guidance=guidance, seed=0, sampler=sampler, **kwargs):
            sync()
            if first is None:
                first = time.perf_counter() - start
            frames += len(seg.frames)
            segments += 1
        sync()
        total = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss.peak_mb
    return BenchResult(
        sampler=name, segments=segments, frames=frames, seconds=total, first_segment_seconds=first,
        seconds_per_segment=total / segments, frames_per_second=frames / total,
        realtime_factor=(frames / pipe.fps) / total, peak_memory_mb=peak,
    )


def run_benchmark(pipe, task="portrait", seconds=1.28, steps=25, guidance=3.0, naive=True, warmup=True,
                  fast=False, fast_steps=None, app_threads=None) -> dict:
    """Time the streaming sampler, (optionally) the naive one and the fast sampler (distilled, no CFG, tiny decoder)
    at each of ``fast_steps`` (default: the model's ``settings.fast_steps``) on the same inputs; return results and
    their ratios (``fast_speedup``: the first fast row's). ``app_threads``: the fast sampler again as the demo runs
    it, in a worker thread, once per torch thread count given (rows ``fast-app-Nt``)."""
    kwargs = bench_inputs(pipe, task, seconds)
    fast_steps = list(fast_steps or [pipe.settings.fast_steps]) if fast else []
    if warmup:  # first calls pay for lazy initialisation (allocator, kernels); keep them out of the numbers
        next(iter(pipe.stream(steps=1, guidance=guidance, seed=0, **kwargs)))
        if fast:
            next(iter(pipe.stream(sampler="fast", steps=1, seed=0, **kwargs)))
    results = [run_once(pipe, kwargs, steps, guidance, "quality", "streaming")]
    if naive:
        results.append(run_once(pipe, kwargs, steps, guidance,
                                SamplerOptions(batch_cfg=False, cache_reference=False), "naive"))
    for n in fast_steps:
        results.append(run_once(pipe, kwargs, n, None, "fast", "fast" if len(fast_steps) == 1 else f"fast-{n}"))
    app_rows = [run_once(pipe, kwargs, None, None, "fast", f"fast-app-{n}t", worker_threads=n)
                for n in (app_threads or []) if fast]
    report = {
        "machine": machine_line(pipe.device),
        "preset": pipe.settings.preset,
        "resolution": pipe.resolution,
        "dtype": str(pipe.dtype).replace("torch.", ""),
        "weights": "trained" if pipe.trained else "random (speed only)",
        "task": task,
        "steps": steps,
        "guidance": guidance,
        "results": [asdict(r) for r in results],
    }
    if naive:
        report["speedup_vs_naive"] = results[1].seconds / results[0].seconds
    if fast:
        report["fast_steps"] = fast_steps if len(fast_steps) > 1 else fast_steps[0]
        report["fast_speedup"] = results[0].seconds / results[-len(fast_steps)].seconds
        if len(fast_steps) > 1:
            report["fast_speedups"] = {r.sampler: results[0].seconds / r.seconds for r in results[-len(fast_steps):]}
    if app_rows:
        report["results"] += [asdict(r) for r in app_rows]
        report["app_threads"] = list(app_threads)
    return report


def format_report(report: dict) -> str:
    lines = [
        f"machine: {report['machine']}",
        f"preset {report['preset']} {report['resolution']}px {report['dtype']}, "
        f"weights {report.get('weights', 'trained')}, task {report['task']}, {report['steps']} steps, "
        f"CFG {report['guidance']}",
        f"{'sampler':<10} {'segments':>8} {'s/segment':>10} {'frames/s':>9} {'first seg s':>11} "
        f"{'x realtime':>10} {'peak MB':>9}",
    ]
    for r in report["results"]:
        lines.append(
            f"{r['sampler']:<10} {r['segments']:>8} {r['seconds_per_segment']:>10.2f} {r['frames_per_second']:>9.2f} "
            f"{r['first_segment_seconds']:>11.2f} {r['realtime_factor']:>10.3f} {r['peak_memory_mb']:>9.0f}"
        )
    if "speedup_vs_naive" in report:
        lines.append(f"streaming sampler is {report['speedup_vs_naive']:.2f}x faster than the naive sampler")
    for name, speedup in report.get("fast_speedups", {"fast": report.get("fast_speedup")}).items():
        if speedup is not None:
            steps = int(name.split("-")[1]) if "-" in name else report["fast_steps"]
            lines.append(f"fast sampler ({steps} step{'s' * (steps > 1)}, no CFG, tiny decoder) is {speedup:.2f}x "
                         "faster than the streaming sampler")
    return "\n".join(lines)
