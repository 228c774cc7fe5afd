"""Shared fixtures."""

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def app_process(log: Path, argv: list[str], env: dict | None = None, timeout: float = 240):
    """``python ARGV --port P`` from the repository root (the real ``python app.py``, not an in-process launch),
    output in ``log``; yields the port once Gradio says it is serving, and stops the app afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, *argv, "--port", str(port)], cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})
    try:
        deadline = time.monotonic() + timeout
        while "Running on local URL" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log.read_text()}")
            time.sleep(0.5)
        yield port
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.fixture(scope="module")
def one_thread():
    """These nets are tiny: on a shared 2-core machine a second OpenMP thread only spin-waits (measured 20x more
    CPU). Restored afterwards, so nothing outside the module sees it. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


STAND_IN_RATE = 16000


def speech_wav(path, seconds, rate=STAND_IN_RATE) -> str:
    """A mono 16-bit WAV of speech-like sound (a 160 Hz tone, four 'syllables' a second)."""
    import wave

    import numpy as np

    t = np.arange(int(seconds * rate)) / rate
    samples = 0.4 * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) * np.sin(2 * np.pi * 160 * t)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((samples * 32767).astype("<i2").tobytes())
    return str(path)


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    """A stand-in for the app's ``assets/`` folder, small enough that an example samples in seconds: one 128x128
    noise portrait, 0.6 s of speech (one 16-frame segment at 25 fps) and a 15-frame camera sweep."""
    import json

    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("assets")
    for sub in ("portraits", "audio", "cameras"):
        (root / sub).mkdir()
    Image.fromarray((np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)).save(
        root / "portraits" / "face.png")
    speech_wav(root / "audio" / "speech.wav", 0.6)
    (root / "cameras" / "sweep.json").write_text(json.dumps({"num_frames": 15, "fps": 25, "keyframes": [
        {"frame": 0, "azimuth": -30, "elevation": 0}, {"frame": 14, "azimuth": 30, "elevation": 0}]}))
    return root


@pytest.fixture(scope="module")
def server():
    """The demo as ``python app.py`` launches it, one per test module (a module may define its own, e.g. with
    stand-in assets)."""
    import app

    demo = app.launch(port=None, block=False)
    yield demo
    demo.close()


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.local_url, verbose=False)
