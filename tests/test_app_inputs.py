"""The UI's input checks use the library's definitions (one place each): identity files and silence."""

from types import SimpleNamespace

import numpy as np
import pytest

from starcaster.audio_io import is_silent
from ui.inputs import read_audio, read_identity

RATE = 16000


def fake_pipe(dim=64):
    return SimpleNamespace(sample_rate=RATE, fps=25.0, max_audio_seconds=60.0,
                           settings=SimpleNamespace(face_encoder={"embedding_dim": dim}))


def tone(amplitude, seconds=1.0):
    t = np.arange(int(seconds * RATE)) / RATE
    return (amplitude * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_the_ui_calls_audio_silent_exactly_when_the_pipeline_does():
    pipe = fake_pipe()
    quiet = tone(0.0025)  # peak above the old 1e-3 threshold, but about -55 dBFS RMS: no speech to follow
    loud = tone(0.05)  # about -29 dBFS
    assert is_silent(quiet) and not is_silent(loud)
    with pytest.raises(ValueError, match="silent"):
        read_audio(pipe, (quiet, RATE), required=True)
    samples, rate = read_audio(pipe, (loud, RATE), required=True)
    assert rate == RATE and samples.shape == loud.shape
    # An orbit may be silent: the same quiet audio is then accepted.
    assert read_audio(pipe, (quiet, RATE), required=False, allow_silent=True)[0].shape == quiet.shape


def test_ui_identity_files_are_checked_against_the_models_width(tmp_path):
    pipe = fake_pipe(dim=64)
    good = tmp_path / "person.npy"
    np.save(good, np.arange(1, 65, dtype=np.float64)[None])  # (1, 64) float64: accepted, flattened, float32
    embedding = read_identity(pipe, str(good))
    assert embedding.shape == (64,) and embedding.dtype == np.float32 and embedding[-1] == 64.0
    assert read_identity(pipe, None) is None

    with pytest.raises(ValueError, match=r"must hold 512 numbers.*got shape \(1, 64\)"):
        read_identity(fake_pipe(dim=512), str(good))
    garbage = tmp_path / "embedding.txt"
    garbage.write_text("not numpy")
    with pytest.raises(ValueError, match=r"not a valid \.npy array") as info:
        read_identity(pipe, str(garbage))
    assert "pickle" not in str(info.value)


def test_capability_notice_lives_in_the_ui_and_names_what_still_works():
    import starcaster.loading

    from ui.capabilities import capability_notice

    assert not hasattr(starcaster.loading, "capability_notice")  # the library writes no UI text
    everything = SimpleNamespace(capabilities={"portrait": None, "identity": None, "orbit": None})
    assert capability_notice(everything) is None
    no_adapters = SimpleNamespace(capabilities={"portrait": "Portrait animation needs adapters.", "identity": None,
                                                "orbit": "Free-viewpoint orbit needs adapters."})
    notice = capability_notice(no_adapters)
    assert notice.splitlines() == [
        "Some tasks are unavailable with this model:",
        "- Portrait animation needs adapters.",
        "- Free-viewpoint orbit needs adapters.",
        "- ID-driven generation runs; audio given to it goes into the file but does not move the lips until the "
        "adapters are trained.",
    ]
    only_orbit = SimpleNamespace(capabilities={"portrait": None, "identity": None, "orbit": "No camera stream."})
    assert capability_notice(only_orbit).splitlines()[1:] == ["- No camera stream."]


@pytest.mark.parametrize("case, expected, absent", [
    ("no_face", "pass --aligned", "tick"),
    ("short_audio", "at least 40 ms", "silent"),
])
def test_cli_messages_name_its_flag_and_the_real_problem(tmp_path, capsys, case, expected, absent):
    """The library's messages as the CLI prints them (the same files the demo words for visitors)."""
    import warnings

    from PIL import Image
    from scipy.io import wavfile

    from starcaster.cli import main

    image = tmp_path / "flat.png"
    Image.fromarray(np.full((160, 160, 3), 128, np.uint8)).save(image)
    audio = tmp_path / "speech.wav"
    seconds = 0.006 if case == "short_audio" else 1.0
    t = np.arange(int(seconds * RATE)) / RATE
    wavfile.write(audio, RATE, (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16))
    args = ["generate", "--steps", "1", "--device", "cpu", "--task", "portrait", "--image", str(image),
            "--audio", str(audio), "--out", str(tmp_path / "out.mp4")]
    if case == "short_audio":
        args.append("--aligned")
    with warnings.catch_warnings(), pytest.raises(SystemExit):
        warnings.simplefilter("ignore")
        main(args)
    err = capsys.readouterr().err
    assert expected in err and absent not in err, err


@pytest.mark.parametrize("value", ["abc", "-5", "nan", "0"])
def test_a_bad_max_seconds_stops_the_app_at_start_up_with_its_name(value, monkeypatch, capsys):
    import app

    monkeypatch.setenv("STARCASTER_MAX_SECONDS", value)
    with pytest.raises(SystemExit) as info:
        app.main(["--port", "0"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "STARCASTER_MAX_SECONDS" in err and repr(value) in err, err


def test_a_good_max_seconds_caps_the_audio(monkeypatch):
    from ui.inputs import max_seconds

    monkeypatch.setenv("STARCASTER_MAX_SECONDS", "12.5")
    assert max_seconds(fake_pipe()) == 12.5
    monkeypatch.delenv("STARCASTER_MAX_SECONDS")
    assert max_seconds(fake_pipe()) == 30.0
