"""The demo's API, through gradio_client against the launched app (the real tiny pipeline, a few steps).

Each tab's endpoint must return a playable mp4 whose audio track lasts as long as the speech (or the requested
silent length); bad inputs must come back as errors with a readable message, and the app must keep answering.
"""

import json
import wave

import numpy as np
import pytest

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import handle_file  # noqa: E402

from ui.inputs import max_seconds  # noqa: E402

SPEECH_SECONDS = 0.6  # one 16-frame segment: the tiny model samples slowly on 2 shared cores
SAMPLE_RATE = 16000
SAMPLING = dict(seed=3, randomize=False, steps=1, guidance=3.0, audio_s=1.0, identity_s=1.0, camera_s=1.0)


def _wav(path, samples, rate=SAMPLE_RATE):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return str(path)


def _speech_like(seconds, rate=SAMPLE_RATE):
    t = np.arange(int(seconds * rate)) / rate
    syllables = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)  # ~4 syllables per second
    return 0.4 * syllables * np.sin(2 * np.pi * (140 + 60 * syllables) * t)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from PIL import Image

    d = tmp_path_factory.mktemp("app_inputs")
    rng = np.random.default_rng(0)
    portrait = d / "portrait.png"
    Image.fromarray((rng.random((128, 128, 3)) * 255).astype(np.uint8)).save(portrait)
    flat = d / "flat.png"
    Image.fromarray(np.full((160, 160, 3), 128, np.uint8)).save(flat)
    not_image = d / "broken.png"
    not_image.write_bytes(b"this is not an image at all")
    corrupt = d / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" + bytes(rng.integers(0, 256, 2000, dtype=np.uint8)))
    return {
        "portrait": str(portrait),
        "flat": str(flat),
        "not_image": str(not_image),
        "speech": _wav(d / "speech.wav", _speech_like(SPEECH_SECONDS)),
        "silent": _wav(d / "silent.wav", np.zeros(SAMPLE_RATE)),
        "empty": _wav(d / "empty.wav", np.zeros(0)),
        "corrupt": str(corrupt),
    }


@pytest.fixture(scope="module")
def pipe(server):
    from ui.model import get_pipeline

    return get_pipeline()


def _portrait(client, files, image=None, audio=None, aligned=True):
    return client.predict(handle_file(image or files["portrait"]), handle_file(audio or files["speech"]), aligned,
                          *SAMPLING.values(), api_name="/portrait")


def _assert_video(result, seconds, pipe):
    from starcaster.video import probe

    stream, mp4, seed, status = result
    info = probe(mp4)
    assert info["video_codec"] == "h264"
    assert info["num_frames"] == round(seconds * pipe.fps)
    assert info["has_audio"], "the downloadable mp4 has no audio track"
    assert info["audio_duration"] == pytest.approx(seconds, abs=0.08)
    assert str(stream).endswith(("playlist.m3u8", ".mp4")), stream  # HLS when streaming, the mp4 otherwise
    assert "Done" in status
    return info, seed


@pytest.mark.parametrize(
    "case, expected",
    [
        ("broken_camera", "json"),
        ("nan_camera", "nan"),
        ("unreadable_image", "image"),
        ("no_face", "face"),
        ("silent_audio", "silent"),
        ("empty_audio", "audio"),
        ("corrupt_audio", "audio"),
        ("too_long_audio", "long"),
        ("bad_embedding", "npy"),
    ],
)
def test_bad_input_is_reported_and_app_keeps_answering(client, files, pipe, tmp_path, case, expected):
    image, audio, aligned = files["portrait"], files["speech"], True
    if case in ("broken_camera", "nan_camera"):
        camera = "{broken" if case == "broken_camera" else json.dumps(
            {"num_frames": 5, "keyframes": [{"frame": 0, "azimuth": float("nan"), "elevation": 0}]})
        call = lambda: client.predict(handle_file(image), None, camera, 1.0, True, *SAMPLING.values(),  # noqa: E731
                                      api_name="/orbit")
    elif case == "bad_embedding":
        bad = tmp_path / "embedding.txt"
        bad.write_text("not numpy")
        call = lambda: client.predict(None, handle_file(str(bad)), handle_file(audio), True,  # noqa: E731
                                      *SAMPLING.values(), api_name="/identity")
    else:
        if case == "unreadable_image":
            image = files["not_image"]
        elif case == "no_face":
            image, aligned = files["flat"], False
        elif case == "too_long_audio":
            audio = _wav(tmp_path / "long.wav", _speech_like(max_seconds(pipe) + 2))
        else:
            audio = files[case.split("_")[0]]
        call = lambda: _portrait(client, files, image=image, audio=audio, aligned=aligned)  # noqa: E731
    with pytest.raises(Exception) as info:
        call()
    assert expected in str(info.value).lower(), str(info.value)
    assert "Traceback" not in str(info.value)


def test_portrait_endpoint_returns_talking_mp4_after_bad_requests(client, files, pipe):
    """Runs after the bad-input tests above: the next request after all those errors still works."""
    _, seed = _assert_video(_portrait(client, files), SPEECH_SECONDS, pipe)
    assert seed == SAMPLING["seed"]


def test_identity_endpoint_from_photo(client, files, pipe):
    result = client.predict(handle_file(files["portrait"]), None, handle_file(files["speech"]), True,
                            *SAMPLING.values(), api_name="/identity")
    _assert_video(result, SPEECH_SECONDS, pipe)


def test_identity_endpoint_without_speech_is_a_silent_clip_of_the_chosen_length(client, files, pipe):
    # What an sd15 folder without trained adapters can still do: ID-driven generation from the motion prior.
    result = client.predict(handle_file(files["portrait"]), None, None, True, *SAMPLING.values(), 0.8,
                            api_name="/identity")
    _assert_video(result, 0.8, pipe)  # 20 frames, with a (silent) audio track of the same length
    assert "silent" in result[3].lower()


def test_orbit_endpoint_silent_with_keyframes_and_random_seed(client, files, pipe):
    camera = json.dumps({"num_frames": 10, "fps": 25, "keyframes": [
        {"frame": 0, "azimuth": -40, "elevation": 5}, {"frame": 9, "azimuth": 40, "elevation": -5}]})
    sampling = {**SAMPLING, "randomize": True}
    result = client.predict(handle_file(files["portrait"]), None, camera, SPEECH_SECONDS, True, *sampling.values(),
                            api_name="/orbit")
    info, seed = _assert_video(result, SPEECH_SECONDS, pipe)  # the 10-frame path is stretched over the video
    assert isinstance(seed, int) and 0 <= seed < 2**31 and f"seed {seed}" in result[3]




def _png_header_only(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` (one empty data chunk): what a decompression bomb looks like."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"")) +
                     chunk(b"IEND", b""))
    return str(path)


@pytest.mark.parametrize(
    "case, expected, absent",
    [
        # Uploads decoded by the library, not by Gradio's preprocessing (item 3).
        ("garbage_image", "could not read the photo", "preprocess"),
        ("huge_image", "400,000,000 pixels", "preprocess"),
        # Messages name the upload as the visitor knows it, quotes unescaped (item 5).
        ("tiny_image", "the photo is 1x1 pixels", "/tmp"),
        # Messages say what is really wrong (item 6).
        ("short_audio", "at least 40 ms", "second"),
        ("too_long_audio", "at most", "raise max_seconds"),
        ("nan_camera_without_length", "nan", "between 1 and"),
        ("no_face", "no face found in the photo", "tick 'already"),
        # Raw API values beyond the sliders (item 7).
        # (Gradio refuses slider values past their range itself; the ranges are the library's.)
        ("huge_guidance", "greater than maximum value 10", None),
        ("negative_strength", "less than minimum value 0", None),
    ],
)
def test_messages_name_the_upload_and_the_real_problem(client, files, pipe, tmp_path, case, expected, absent):
    from PIL import Image

    image, audio, aligned, sampling = files["portrait"], files["speech"], True, dict(SAMPLING)
    api = "/portrait"
    if case == "garbage_image":
        image = str(tmp_path / "garbage.png")
        (tmp_path / "garbage.png").write_bytes(bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8)))
    elif case == "huge_image":
        image = _png_header_only(tmp_path / "huge.png", 20000, 20000)
    elif case == "tiny_image":
        Image.new("RGB", (1, 1)).save(tmp_path / "tiny_1x1.png")
        image = str(tmp_path / "tiny_1x1.png")
    elif case == "short_audio":
        audio = _wav(tmp_path / "short.wav", _speech_like(0.006))
    elif case == "too_long_audio":
        audio = _wav(tmp_path / "long.wav", _speech_like(max_seconds(pipe) + 2))
    elif case == "no_face":
        image, aligned = files["flat"], False
    elif case == "huge_guidance":
        sampling["guidance"] = 50.0
    elif case == "negative_strength":
        sampling["audio_s"] = -1.0
    if case == "nan_camera_without_length":
        camera = '{"keyframes": [{"frame": 0, "azimuth": NaN, "elevation": 0}]}'
        call = lambda: client.predict(handle_file(image), None, camera, 1.0, True, *SAMPLING.values(),  # noqa: E731
                                      api_name="/orbit")
    else:
        call = lambda: client.predict(handle_file(image), handle_file(audio), aligned, *sampling.values(),  # noqa: E731
                                      api_name=api)
    with pytest.raises(Exception) as info:
        call()
    message = str(info.value)
    assert expected in message.lower(), message
    assert absent is None or absent not in message, message
    assert "&#x27;" not in message and "/tmp/" not in message and "Traceback" not in message, message
    if case == "no_face":
        assert message.count("aligned portrait") == 1, message


def test_nan_sampling_values_are_named_as_such(server):
    """gradio_client cannot send NaN (strict JSON); a raw request can, and Gradio's sliders let it through."""
    import httpx

    url = server.local_url + "gradio_api/call/portrait"
    body = '{"data": [null, null, true, 0, false, NaN, 3.0, 1.0, 1.0, 1.0, "quality", 2]}'  # sampler, fast_steps
    event = httpx.post(url, content=body, headers={"Content-Type": "application/json"}).json()["event_id"]
    answer = httpx.get(f"{url}/{event}", timeout=60).text
    assert "steps must be a number between 1 and 100, got NaN" in answer, answer
    assert "convert" not in answer


def test_view_api_names_the_status_output(client):
    info = client.view_api(return_format="dict", print_info=False)
    for name in ("/portrait", "/identity", "/orbit"):
        returns = [r.get("label") for r in info["named_endpoints"][name]["returns"]]
        assert "status" in returns, returns
        assert not any(str(label).startswith("value_") for label in returns), returns


def test_view_api_lists_only_the_inputs_a_call_needs(client, files, pipe):
    endpoints = client.view_api(return_format="dict", print_info=False)["named_endpoints"]

    def required(name):
        return [p["parameter_name"] for p in endpoints[name]["parameters"] if not p["parameter_has_default"]]

    assert required("/portrait") == ["image", "audio"]
    assert required("/identity") == []  # a photo or an embedding, speech optional: each call checks its own
    assert required("/orbit") == ["image"]  # speech optional: a silent orbit
    for name in ("/portrait_example", "/identity_example", "/orbit_example"):
        labels = [p["label"] for p in endpoints[name]["parameters"]]
        assert not any(label.startswith("parameter_") for label in labels), labels

    # What view_api promises, a call keeps: the optional speech left out.
    camera = json.dumps({"num_frames": 15, "fps": 25, "keyframes": [{"frame": 0, "azimuth": 0, "elevation": 0},
                                                                     {"frame": 14, "azimuth": 30, "elevation": 0}]})
    result = client.predict(image=handle_file(files["portrait"]), camera_json=camera, seconds=SPEECH_SECONDS,
                            already_aligned=True, steps=1, api_name="/orbit")
    _assert_video(result, SPEECH_SECONDS, pipe)
