"""The *Quality / Fast* choice (issue #12) through the demo's API (gradio_client against the launched app, the real
tiny pipeline), and the controls that show it.

A spy on ``pipe.stream`` records what each call asked the library for, and one on the distilled model's ``forward``
shows which network actually ran.
"""

import pytest
from conftest import speech_wav

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402

from ui import example_cache, examples, samplers  # noqa: E402

SECONDS = 0.6  # one 16-frame segment


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    import numpy as np
    from PIL import Image

    d = tmp_path_factory.mktemp("samplers")
    Image.fromarray((np.random.default_rng(0).random((128, 128, 3)) * 255).astype(np.uint8)).save(d / "face.png")
    return dict(portrait=str(d / "face.png"), speech=speech_wav(d / "speech.wav", SECONDS))


@pytest.fixture
def pipe(server):
    from ui.model import get_pipeline

    return get_pipeline()


@pytest.fixture
def asked(pipe, monkeypatch):
    """The sampling arguments of every ``pipe.stream`` call, and how often the distilled model ran."""
    log = {"calls": [], "fast_forwards": 0}
    stream, forward = pipe.stream, pipe.fast_model.forward

    def spying_stream(*args, **kwargs):
        log["calls"].append({k: kwargs.get(k) for k in ("sampler", "steps", "guidance")})
        return stream(*args, **kwargs)

    def counting_forward(*args, **kwargs):
        log["fast_forwards"] += 1
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe, "stream", spying_stream)
    monkeypatch.setattr(pipe.fast_model, "forward", counting_forward)
    return log


def _portrait(client, files, **sampling):
    return client.predict(image=handle_file(files["portrait"]), audio=handle_file(files["speech"]),
                          already_aligned=True, api_name="/portrait", **sampling)


def _frames(mp4) -> int:
    from starcaster.video import probe

    return probe(mp4)["num_frames"]


def _by_id(demo, elem_id):
    return next((b for b in demo.blocks.values() if getattr(b, "elem_id", None) == elem_id), None)


def test_a_fast_call_returns_a_video_made_by_the_distilled_model(client, files, pipe, asked):
    _, mp4, _, status = _portrait(client, files, sampler="fast")
    assert _frames(mp4) == round(SECONDS * pipe.fps)
    fast_steps = pipe.settings.fast_steps
    assert asked["calls"] == [{"sampler": "fast", "steps": fast_steps, "guidance": None}]
    assert asked["fast_forwards"] == fast_steps  # one segment, one UNet row per step
    assert f"Fast sampler, {fast_steps} steps" in status, status


def test_a_quality_call_does_not_touch_the_fast_sampler(client, files, pipe, asked):
    _, mp4, _, status = _portrait(client, files, sampler="quality", steps=1, guidance=2.5)
    assert _frames(mp4) == round(SECONDS * pipe.fps)
    assert asked["calls"] == [{"sampler": "quality", "steps": 1, "guidance": 2.5}]
    assert asked["fast_forwards"] == 0
    assert "Quality sampler, 1 step." in status, status


def test_a_fast_call_with_a_guidance_value_ignores_it(client, files, asked):
    """The UI greys guidance out for Fast but still sends the slider's value: that must not be an error."""
    _, mp4, _, status = _portrait(client, files, sampler="fast", guidance=7.5, fast_steps=1)
    assert asked["calls"] == [{"sampler": "fast", "steps": 1, "guidance": None}] and "Done" in status


def test_a_call_that_leaves_the_sampler_out_gets_the_uis_default(client, files, pipe, asked):
    parameters = {p["parameter_name"]: p for p in
                  client.view_api(return_format="dict", print_info=False)["named_endpoints"]["/portrait"]["parameters"]}
    assert parameters["sampler"]["parameter_default"] == "fast"  # this machine has no GPU
    assert parameters["sampler"]["type"]["enum"] == ["quality", "fast"]
    assert parameters["fast_steps"]["parameter_default"] == pipe.settings.fast_steps
    assert parameters["steps"]["parameter_default"] == 25  # Quality's own default, whatever the UI starts on
    _portrait(client, files)
    assert asked["calls"] == [{"sampler": "fast", "steps": pipe.settings.fast_steps, "guidance": None}]


def test_fast_is_the_cpu_default_and_quality_the_gpu_one(pipe, monkeypatch):
    import app

    assert samplers.default_sampler(pipe) == "fast"
    demo = app.build_demo()
    assert _by_id(demo, "orbit-sampler").value == "fast" and _by_id(demo, "identity-guidance").interactive is False
    assert _by_id(demo, "portrait-steps").visible is False and _by_id(demo, "portrait-fast-steps").visible is True

    monkeypatch.setattr(samplers, "on_gpu", lambda: True)
    assert samplers.default_sampler(pipe) == "quality"
    demo = app.build_demo()
    assert _by_id(demo, "orbit-sampler").value == "quality" and _by_id(demo, "identity-guidance").interactive is True
    assert _by_id(demo, "portrait-steps").visible is True and _by_id(demo, "portrait-fast-steps").visible is False


def test_switching_shows_the_samplers_own_steps_and_greys_guidance_out():
    steps, fast_steps, guidance = samplers.switch("fast")
    assert steps.visible is False and fast_steps.visible is True
    assert guidance.interactive is False and "distilled in" in guidance.info
    steps, fast_steps, guidance = samplers.switch("quality")
    assert steps.visible is True and fast_steps.visible is False and guidance.interactive is True


def test_without_a_fast_sampler_the_option_is_not_offered_and_the_api_is_told_why(files, pipe, asked, monkeypatch):
    import app

    monkeypatch.setattr(pipe, "fast_model", None)  # a trained checkpoint without fast_model/
    assert not pipe.has_fast_sampler
    demo = app.build_demo()
    for tab in ("portrait", "identity", "orbit"):
        choice = _by_id(demo, f"{tab}-sampler")
        assert choice.value == "quality" and choice.interactive is False and "no fast sampler" in choice.info
        assert _by_id(demo, f"{tab}-fast-steps").visible is False and _by_id(demo, f"{tab}-steps").visible is True
    demo.launch(prevent_thread_lock=True, quiet=True, allowed_paths=[example_cache.OUTPUT_ROOT])
    try:
        visitor = Client(demo.local_url, verbose=False)
        with pytest.raises(Exception) as refused:
            _portrait(visitor, files, sampler="fast")
        message = str(refused.value)
        assert samplers.NO_FAST in message and "Traceback" not in message, message
        assert asked["calls"] == [], "the sampler ran although the request was refused"

        _, _, _, status = _portrait(visitor, files, steps=1)  # left out: Quality
        assert asked["calls"] == [{"sampler": "quality", "steps": 1, "guidance": 3.0}] and "Quality" in status
    finally:
        demo.close()


def test_examples_follow_the_choice_each_cached_apart(assets, pipe, asked, tmp_path, monkeypatch):
    import app

    monkeypatch.setattr(examples, "ASSETS", str(assets))
    monkeypatch.setattr(example_cache, "CACHE_ROOT", str(tmp_path / "cache"))
    monkeypatch.setitem(example_cache.EXAMPLE_SAMPLING, "steps", 1)
    demo = app.build_demo()
    demo.launch(prevent_thread_lock=True, quiet=True, allowed_paths=[example_cache.OUTPUT_ROOT])
    try:
        visitor = Client(demo.local_url, verbose=False, download_files=False)
        fast = visitor.predict(0, "fast", api_name="/portrait_example")
        quality = visitor.predict(0, "quality", api_name="/portrait_example")
        again = visitor.predict(0, "fast", api_name="/portrait_example")
        assert [c["sampler"] for c in asked["calls"]] == ["fast", "quality"], "a cached example ran the model"
        assert "Fast sampler" in fast[3] and "Quality sampler" in quality[3] and again[3] == fast[3]
        assert fast[1]["path"] != quality[1]["path"]
        assert {p.name.split("-")[1] for p in (tmp_path / "cache").iterdir()} == {"fast", "quality"}
    finally:
        demo.close()
