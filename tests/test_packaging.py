"""The package's public face and its packaging: names, light import, agreeing dependency lists."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

import airq_nb

ROOT = Path(__file__).resolve().parent.parent


def _normalise(requirement: str) -> tuple[str, str]:
    name, spec = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.strip()).groups()
    return re.sub(r"[-_.]+", "-", name).lower(), spec.replace(" ", "")


def test_environment_yml_matches_pyproject_dependencies():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = dict(_normalise(r) for r in pyproject["project"]["dependencies"])
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = dict(
        _normalise(d)
        for d in environment["dependencies"]
        if isinstance(d, str) and not d.startswith(("python", "pip"))
    )
    assert conda == wanted
    python = next(d for d in environment["dependencies"] if str(d).startswith("python"))
    assert python.replace(" ", "") == "python" + pyproject["project"]["requires-python"]


def test_import_does_not_pull_in_drawing_libraries():
    code = (
        "import json, sys, airq_nb; "
        "print(json.dumps(sorted(m for m in sys.modules "
        "if m.split('.')[0] in {'bokeh', 'ipywidgets', 'jupyter_bokeh', 'pandas', 'httpx', "
        "'apprise'})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert not [m for m in loaded if m.split(".")[0] in {"bokeh", "ipywidgets", "jupyter_bokeh"}]
    # Alerts send through Apprise, imported on the first send, not by ``import airq_nb``.
    assert not [m for m in loaded if m.split(".")[0] == "apprise"]


def test_public_names_are_exactly_all():
    public = {name for name in vars(airq_nb) if not name.startswith("_")}
    modules = {
        "alerts",
        "cli",
        "collector",
        "daqi",
        "indices",
        "means",
        "scheduling",
        "store",
        "ui",
    }  # modules, not names
    assert public - modules - set(airq_nb.__all__) == set()
    assert airq_nb.__all__ == sorted(airq_nb.__all__, key=lambda n: (not n.isupper(), n))
    for name in airq_nb.__all__:
        assert hasattr(airq_nb, name), name
