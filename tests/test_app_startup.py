"""What ``python app.py`` prints at start-up on a Space (``GRADIO_CACHE_EXAMPLES=true``): no Gradio warning about
example values and no Gradio cache folder (the app caches its own example videos), but where they are kept."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def startup_output(tmp_path_factory):
    log = tmp_path_factory.mktemp("startup") / "app.log"
    # Lazy: Gradio's own cache then only announced itself and warned (eager, it would also generate every example at
    # start-up; test_app_examples checks that nothing is generated then).
    env = {**os.environ, "GRADIO_CACHE_EXAMPLES": "true", "GRADIO_CACHE_MODE": "lazy", "PYTHONUNBUFFERED": "1"}
    with open(log, "w") as out:
        app = subprocess.Popen([sys.executable, "app.py", "--port", str(_free_port())], cwd=ROOT, env=env,
                               stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "Running on local URL" not in log.read_text():
            if app.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the app did not start:\n{log.read_text()}")
            time.sleep(0.5)
        time.sleep(3.0)  # Gradio warned about example values just after this line
    finally:
        app.terminate()
        app.wait(30)
    return log.read_text()


def test_start_up_prints_no_gradio_example_warning(startup_output):
    assert "not all input components have example values" not in startup_output, startup_output
    assert "Caching examples" not in startup_output and "Will cache examples" not in startup_output, startup_output


def test_start_up_names_the_apps_own_example_cache(startup_output):
    from ui.example_cache import CACHE_ROOT

    assert ".gradio" not in startup_output, startup_output  # Gradio's cache folder, which the app never uses
    assert f"Example videos are cached in {CACHE_ROOT}" in startup_output, startup_output
