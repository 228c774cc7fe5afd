"""requirements.txt (what a Space installs) must pin exactly what pyproject.toml declares for the library + app."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_requirements_match_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = project["dependencies"] + project["optional-dependencies"]["app"]
    lines = [line.strip() for line in (ROOT / "requirements.txt").read_text().splitlines()]
    listed = [line for line in lines if line and not line.startswith("#")]
    assert sorted(listed) == sorted(declared)


def test_space_front_matter_pins_the_same_gradio():
    front = (ROOT / "README.md").read_text().split("---")[1]
    sdk = next(line.split(":", 1)[1].strip() for line in front.splitlines() if line.startswith("sdk_version"))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert f"gradio=={sdk}" in project["optional-dependencies"]["app"]
