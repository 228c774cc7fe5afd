"""The one pipeline every visitor shares: loaded once, lazily, behind a lock.

Handlers run in Gradio's thread pool, so two first requests can arrive together; the lock makes the second wait for
the first load instead of building a second model. The pipeline never goes into ``gr.State`` (that is per session and
deep-copied).
"""

from __future__ import annotations

import os
import threading

MODEL_ENV = "STARCASTER_MODEL"
LOW_MEMORY_ENV = "STARCASTER_LOW_MEMORY"  # "1": model CPU offload + VAE slicing (sd15 on a smaller GPU)
THREADS_ENV = "STARCASTER_TORCH_THREADS"  # torch's threads on a CPU; default 1, see cpu_threads()
DEFAULT_MODEL = "tiny"

# One queue slot for the model, shared by every tab: generations run one after another whatever tab they come from.
MODEL_CONCURRENCY_ID = "starcaster-model"

_lock = threading.Lock()
_pipeline = None
_pipeline_name: str | None = None


def model_name() -> str:
    """The preset or checkpoint folder the demo serves (``STARCASTER_MODEL``, default ``tiny``)."""
    return os.environ.get(MODEL_ENV, DEFAULT_MODEL)


def on_gpu() -> bool:
    """Whether the app samples on a GPU (ZeroGPU included), which decides the dtype and the default sampler."""
    import torch

    return torch.cuda.is_available()


def cpu_threads() -> int:
    """Torch threads for the app on a CPU: ``STARCASTER_TORCH_THREADS``, else torch's default (one per core) when the
    main thread samples (``python app.py``: `torch_thread`), else 1.

    Off the main thread a second OpenMP thread costs more than it gives: ``python -m starcaster bench --fast
    --app-threads 2 1`` ran the Fast sampler in a worker thread at 1.07 s per segment on 2 threads and 0.82 s on 1,
    where the main thread on 2 threads took 0.52 s (2-core box, docs/bench/tiny_cpu_fast_app_threads.json)."""
    value = os.environ.get(THREADS_ENV)
    if value is None:
        import torch

        from . import torch_thread

        return torch.get_num_threads() if torch_thread.on_main_thread() else 1
    try:
        threads = int(value)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"{THREADS_ENV} must be a whole number of threads, 1 or more (got {value!r}).")
    return threads


def get_pipeline(name: str | None = None):
    """The shared pipeline, loading it on first use (thread-safe)."""
    global _pipeline, _pipeline_name
    name = name or model_name()
    if _pipeline is not None and _pipeline_name == name:
        return _pipeline
    with _lock:
        if _pipeline is None or _pipeline_name != name:
            import torch

            from starcaster import load_pipeline  # imported here so building the UI does not pay for torch

            # On a GPU (ZeroGPU included: it wants the model placed on cuda at start-up) sample in bf16 there.
            gpu = on_gpu()
            dtype = torch.bfloat16 if gpu else None
            if not gpu:  # before any torch work, so that no thread starts with more (new threads copy this count)
                torch.set_num_threads(cpu_threads())
            if os.environ.get(LOW_MEMORY_ENV, "0") not in ("", "0"):
                _pipeline = load_pipeline(name, dtype=dtype).enable_low_memory()
            else:
                _pipeline = load_pipeline(name, device="cuda" if gpu else None, dtype=dtype)
            _pipeline_name = name
    return _pipeline


def _spaces_gpu():
    """``spaces.GPU`` on Hugging Face ZeroGPU; elsewhere a decorator that changes nothing.

    The shim accepts both ``@GPU`` and ``@GPU(duration=...)`` like the real one.
    """
    try:
        import spaces  # noqa: F401  (must be imported before CUDA initialises)

        return spaces.GPU
    except ImportError:

        def gpu(fn=None, **_kwargs):
            if fn is None:
                return lambda f: f
            return fn

        return gpu


GPU = _spaces_gpu()
