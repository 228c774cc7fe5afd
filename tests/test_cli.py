"""python -m starcaster generate: an mp4 with the audio muxed in; bad input exits with a readable error."""

import json
import warnings

import numpy as np
import pytest
from scipy.io import wavfile

from starcaster.cli import main
from starcaster.conditioning.camera import CameraPath
from starcaster.video import probe

PORTRAIT = "assets/portraits/synthetic_1000000.png"


@pytest.fixture
def speech(tmp_path):
    t = np.arange(int(1.2 * 16000)) / 16000
    path = tmp_path / "speech.wav"
    wavfile.write(path, 16000, (0.3 * np.sin(2 * np.pi * 220 * t) * 32767).astype(np.int16))
    return path


def generate(*args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["generate", "--steps", "1", "--device", "cpu", *map(str, args)])


def test_generate_writes_mp4_with_audio(tmp_path, speech, capsys):
    out = tmp_path / "out.mp4"
    generate("--task", "portrait", "--image", PORTRAIT, "--aligned", "--audio", speech, "--out", out)
    info = probe(out)
    assert info["num_frames"] == 30  # 1.2 s at 25 fps
    assert info["has_audio"] and abs(info["audio_duration"] - 1.2) < 0.05
    assert (info["width"], info["height"]) == (128, 128)
    assert "segment 2/2" in capsys.readouterr().out


def test_generate_orbit_from_a_camera_json(tmp_path):
    camera = tmp_path / "path.json"
    camera.write_text(CameraPath.sweep(10).to_json())
    out = tmp_path / "orbit.mp4"
    generate("--task", "orbit", "--image", PORTRAIT, "--aligned", "--camera", camera, "--out", out)
    info = probe(out)
    assert info["num_frames"] == 10 and info["has_audio"]  # silent orbit: a silent track, still playable everywhere


def test_bad_input_exits_with_a_message(tmp_path, capsys):
    camera = tmp_path / "bad.json"
    camera.write_text(json.dumps({"num_frames": 5, "keyframes": [{"frame": 0, "azimuth": "left", "elevation": 0}]}))
    with pytest.raises(SystemExit) as exit_info:
        generate("--task", "orbit", "--image", PORTRAIT, "--aligned", "--camera", camera, "--out", tmp_path / "x.mp4")
    assert exit_info.value.code == 2
    assert "error: Camera path" in capsys.readouterr().err
    assert not (tmp_path / "x.mp4").exists()


def test_low_memory_switch_slices_the_vae(tmp_path, speech, monkeypatch):
    from starcaster.pipeline import STARCasterPipeline

    seen = []
    original = STARCasterPipeline.enable_low_memory

    def record(self, device="cuda"):
        pipe = original(self, device)
        seen.append((device, pipe.vae.use_slicing))
        return pipe

    monkeypatch.setattr(STARCasterPipeline, "enable_low_memory", record)
    out = tmp_path / "low.mp4"
    generate("--low-memory", "--task", "portrait", "--image", PORTRAIT, "--aligned", "--audio", speech, "--out", out)
    assert seen == [("cpu", True)] and probe(out)["num_frames"] == 30


def test_eval_compare_names_its_rows(tmp_path):
    """``--compare ROW=FOLDER``: each checkpoint's row under the given name, the baselines beside them."""
    out = tmp_path / "eval.json"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        main(["eval", "--compare", "full=tiny", "tiny", "--tasks", "orbit", "--clips", "1", "--segments", "1",
              "--steps", "1", "--device", "cpu", "--json", str(out)])
    rows = json.loads(out.read_text())["results"]
    assert {"full", "tiny", "copy reference"} <= set(rows) and "full=tiny" not in rows
    assert rows["full"]["orbit"] == rows["tiny"]["orbit"]  # same checkpoint, same clips, same seeds
