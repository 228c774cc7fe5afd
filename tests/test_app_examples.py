"""Cached examples, capability notices and Stop's status line, on the real tiny pipeline (1 step, short clips).

Examples come from a tiny stand-in ``assets/`` folder (one portrait, 0.6 s of speech, a 15-frame camera path), and
the pipeline's ``stream`` is wrapped to count how often the model is asked to generate.
"""

import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client")
import gradio as gr  # noqa: E402

from ui import example_cache, examples, generation  # noqa: E402
from ui.model import get_pipeline  # noqa: E402

RATE = 16000
SECONDS = 0.6  # the stand-in assets' speech (conftest.assets): one 16-frame segment at 25 fps


@pytest.fixture
def pipe():
    return get_pipeline()


@pytest.fixture
def calls(pipe, monkeypatch):
    """Every ``pipe.stream`` call's task, in order."""
    log, stream = [], pipe.stream

    def counting(*args, **kwargs):
        log.append(kwargs.get("task"))
        return stream(*args, **kwargs)

    monkeypatch.setattr(pipe, "stream", counting)
    return log


@pytest.fixture
def small_examples(assets, tmp_path, monkeypatch):
    """Examples from the stand-in assets, one denoising step, a cache folder of this test's own."""
    monkeypatch.setattr(examples, "ASSETS", str(assets))
    monkeypatch.setattr(example_cache, "CACHE_ROOT", str(tmp_path / "cache"))
    monkeypatch.setitem(example_cache.EXAMPLE_SAMPLING, "steps", 1)
    return tmp_path / "cache"


def _by_id(demo, elem_id):
    return next((b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id), None)


def test_examples_are_generated_once_on_first_click_then_served_from_the_cache(small_examples, calls, pipe,
                                                                                 monkeypatch):
    import app
    from starcaster.video import probe

    # What a Space sets: without explicit lazy mode, every example would be generated at start-up.
    monkeypatch.setenv("GRADIO_CACHE_EXAMPLES", "true")
    monkeypatch.setenv("GRADIO_CACHE_MODE", "eager")
    demo = app.build_demo()
    demo.launch(prevent_thread_lock=True, quiet=True, allowed_paths=[example_cache.OUTPUT_ROOT])
    try:
        assert calls == [], "examples were generated at start-up"
        visitor = gradio_client.Client(demo.local_url, verbose=False, download_files=False)
        video, mp4, seed, status = visitor.predict(0, api_name="/portrait_example")
        assert calls == ["portrait"]
        info = probe(mp4["path"])
        assert info["num_frames"] == round(SECONDS * pipe.fps) and info["has_audio"]
        assert seed == example_cache.EXAMPLE_SAMPLING["seed"] and "cached" in status
        assert list(small_examples.glob("portrait-*/0.mp4")), "the cache is not in the model's own folder"

        another = gradio_client.Client(demo.local_url, verbose=False, download_files=False)
        again = another.predict(0, api_name="/portrait_example")
        assert calls == ["portrait"], "a cached example ran the model again"
        assert again[3] == status and probe(again[1]["path"])["num_frames"] == info["num_frames"]  # the stored mp4

        # A silent orbit example takes its length from the camera path (15 frames).
        _, orbit_mp4, _, _ = visitor.predict(0, api_name="/orbit_example")
        assert calls == ["portrait", "orbit"] and probe(orbit_mp4["path"])["num_frames"] == 15
    finally:
        demo.close()


def test_cache_folder_changes_with_model_settings_and_files(assets, pipe, monkeypatch):
    rows = [[str(assets / "portraits" / "face.png"), str(assets / "audio" / "speech.wav"), True]]
    first = example_cache.fingerprint(rows, pipe)
    assert example_cache.fingerprint(rows, pipe) == first
    monkeypatch.setitem(example_cache.EXAMPLE_SAMPLING, "steps", 2)
    assert example_cache.fingerprint(rows, pipe) != first
    monkeypatch.setitem(example_cache.EXAMPLE_SAMPLING, "steps", None)
    monkeypatch.setenv("STARCASTER_MODEL", "another-model")
    assert example_cache.fingerprint(rows, pipe) != first


def test_missing_capabilities_are_announced_and_their_buttons_explain(small_examples, pipe, calls, monkeypatch):
    import app
    from ui import portrait_tab

    why_portrait = "These weights have no trained audio adapters."
    why_orbit = "These weights have no trained camera adapters."
    monkeypatch.setattr(pipe, "capabilities", {"portrait": why_portrait, "identity": None, "orbit": why_orbit})
    demo = app.build_demo()

    page = _by_id(demo, "capabilities-notice").value
    assert why_portrait in page and why_orbit in page and "Portrait animation" in page and "ID-driven" not in page
    assert why_portrait in _by_id(demo, "portrait-unavailable").value
    assert why_orbit in _by_id(demo, "orbit-unavailable").value
    assert _by_id(demo, "identity-unavailable") is None
    assert "unavailable" in _by_id(demo, "portrait-run").value
    assert "unavailable" not in _by_id(demo, "identity-run").value

    # Pressing the button gives the reason, before complaining about the (missing) inputs.
    with pytest.raises(gr.Error) as info:
        next(portrait_tab.generate(None, None, False, 0, False, 1, 3.0, 1.0, 1.0, 1.0))
    assert why_portrait in str(info.value) and calls == []


def test_all_capabilities_means_no_notice(pipe, monkeypatch):
    import app

    monkeypatch.setattr(pipe, "capabilities", {"portrait": None, "identity": None, "orbit": None})
    demo = app.build_demo()
    assert all(_by_id(demo, i) is None for i in ("capabilities-notice", "portrait-unavailable", "orbit-unavailable"))


def test_stop_says_at_which_segment_the_generation_stopped(assets, pipe, monkeypatch):
    """The portrait tab's handler over a stand-in sampler of ten 16-frame segments (the real one is slow here)."""
    import time
    from types import SimpleNamespace

    from ui import portrait_tab

    sampled = []

    def sampler(cancel=None, **kwargs):
        for k in range(10):
            if cancel():  # as the real sampler checks after every denoising step
                return
            sampled.append(k)
            yield SimpleNamespace(index=k, num_segments=10, start_frame=16 * k, frames=np.zeros((16, 32, 32, 3), np.uint8),
                                  fps=pipe.fps, sample_rate=RATE, audio=np.zeros(int(16 * RATE / pipe.fps), np.float32))

    monkeypatch.setattr(pipe, "stream", sampler)
    run = portrait_tab.generate(str(assets / "portraits" / "face.png"), str(assets / "audio" / "speech.wav"), True,
                                0, False, 1, 3.0, 1.0, 1.0, 1.0)
    *_, status, state = next(run)
    assert status.startswith("Starting") and state.segment == 0
    assert "before the first segment" in generation.stopped_status(state)[0]
    *_, status, state = next(run)
    assert (state.segment, state.num_segments, state.frames) == (1, 10, 16) and "Segment 1 of 10" in status
    assert "s left" in status, status  # the queue shows no time: the run says what its own pace predicts
    run.close()  # what Gradio does on Stop: it returns once the sampler has stopped
    # The sampler runs ahead of the stream (ui/streaming.SamplerAhead): one segment waiting, one in the making.
    stopped_at = list(sampled)
    assert len(stopped_at) <= 3, f"the sampler ran {len(stopped_at)} segments ahead"
    time.sleep(0.2)
    assert sampled == stopped_at, "the sampler went on after Stop"

    status, after = generation.stopped_status(state)
    assert "Stopped during segment 2 of 10" in status and "16 frames" in status and after.finished
    assert isinstance(generation.stopped_status(after)[0], type(gr.skip()))  # a second Stop changes nothing


def test_the_time_left_comes_from_the_runs_own_pace():
    from ui.queue_eta import time_left

    assert time_left(100.0, 2, 5, now=110.0) == ", about 15 s left"
    assert time_left(0.0, 1, 16, now=20.0) == ", about 5 min left"
    assert time_left(0.0, 0, 3, now=5.0) == "" and time_left(0.0, 3, 3, now=5.0) == ""


def test_untrained_weights_are_announced(pipe, monkeypatch):
    import app

    monkeypatch.setattr(pipe, "trained", False)
    assert "random weights" in _by_id(app.build_demo(), "untrained-notice").value
    assert _by_id(app.build_demo(), "tiny-world-notice") is None
    monkeypatch.setattr(pipe, "trained", True)
    demo = app.build_demo()
    assert _by_id(demo, "untrained-notice") is None
    # trained tiny: the page says plainly that it knows only the synthetic world, before anyone uploads a real photo
    assert "synthetic world" in _by_id(demo, "tiny-world-notice").value
