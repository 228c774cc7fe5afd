"""What ``python app.py`` prints at start-up on a Space (``GRADIO_CACHE_EXAMPLES=true``): no Gradio warning about
example values, no config warning from loading the model, and no Gradio cache folder (the app caches its own example
videos), but where they are kept. And the torch threads it samples with on a CPU."""

import time

import pytest
from conftest import app_process


@pytest.fixture(scope="module")
def startup_output(tmp_path_factory):
    log = tmp_path_factory.mktemp("startup") / "app.log"
    # Lazy: Gradio's own cache then only announced itself and warned (eager, it would also generate every example at
    # start-up; test_app_examples checks that nothing is generated then).
    with app_process(log, ["app.py"], {"GRADIO_CACHE_EXAMPLES": "true", "GRADIO_CACHE_MODE": "lazy"}):
        time.sleep(3.0)  # Gradio warned about example values just after this line
    return log.read_text()


def test_start_up_prints_no_gradio_example_warning(startup_output):
    assert "not all input components have example values" not in startup_output, startup_output
    assert "Caching examples" not in startup_output and "Will cache examples" not in startup_output, startup_output


def test_start_up_names_the_apps_own_example_cache(startup_output):
    from ui.example_cache import CACHE_ROOT

    assert ".gradio" not in startup_output, startup_output  # Gradio's cache folder, which the app never uses
    assert f"Example videos are cached in {CACHE_ROOT}" in startup_output, startup_output


def test_start_up_loads_the_model_without_config_warnings(startup_output):
    assert "but are not expected" not in startup_output, startup_output  # diffusers on a config.json it does not take


def test_app_threads_follow_where_it_samples_unless_told(monkeypatch):
    """A worker thread samples on one torch thread; the claimed main thread (``python app.py``) on torch's default."""
    import torch

    import starcaster
    from ui import model, torch_thread

    threads = torch.get_num_threads()
    monkeypatch.setattr(model, "_pipeline_name", model._pipeline_name)  # restored afterwards, with _pipeline
    monkeypatch.setattr(starcaster, "load_pipeline", lambda *a, **k: object())  # the load itself is not the point
    monkeypatch.setattr(model, "on_gpu", lambda: False)
    torch.set_num_threads(2)  # torch's default on the 2-core box, whatever an earlier test left
    try:
        for env, main, expected in ((None, False, 1), (None, True, 2), ("2", False, 2), ("1", True, 1)):
            monkeypatch.setattr(model, "_pipeline", None)
            if env is None:
                monkeypatch.delenv(model.THREADS_ENV, raising=False)
            else:
                monkeypatch.setenv(model.THREADS_ENV, env)
            if main:
                torch_thread.claim()
            try:
                model.get_pipeline("tiny")
            finally:
                torch_thread.release()
            assert torch.get_num_threads() == expected, (env, main)
            torch.set_num_threads(2)
        monkeypatch.setattr(model, "_pipeline", None)
        monkeypatch.setenv(model.THREADS_ENV, "many")
        with pytest.raises(ValueError, match=model.THREADS_ENV):
            model.get_pipeline("tiny")
    finally:
        torch.set_num_threads(threads)
