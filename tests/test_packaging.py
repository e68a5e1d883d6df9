"""The package a consumer installs: a wheel, not the editable install `make` makes.

`pip install "cqia-registry @ git+URL@v0.2"` builds a wheel from pyproject.toml; a subpackage
missing from it, or a runtime dependency pyproject does not declare, only shows there (an
editable install sees the whole source tree and the lock's packages). The wheel is installed
into a fresh virtual environment with its dependencies resolved by uv from its cache, offline.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
UV = Path(sys.executable).with_name("uv")


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A fresh venv holding only the wheel built from this checkout and what it declares."""
    if not UV.exists():
        pytest.skip(f"{UV} not found: make installs uv into the venv")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for name in ("cqia", "stages"):
        shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    run([str(UV), "build", "-q", "--offline", "--wheel", "--no-build-isolation", "--python", sys.executable,
         "-o", str(tmp / "dist"), "."], src)
    wheel = next((tmp / "dist").glob("cqia_registry-*.whl"))
    run([str(UV), "venv", "-q", "--offline", "--python", sys.executable, str(tmp / "venv")], tmp)
    run([str(UV), "pip", "install", "-q", "--offline", "--python", str(tmp / "venv/bin/python"), str(wheel)], tmp)
    return tmp


def test_cqia_command_runs_from_the_wheel(installed):
    out = run([str(installed / "venv/bin/cqia"), "--help"], installed).stdout
    for command in ("lineage", "release", "review", "export", "category"):
        assert f"  {command}" in out


def test_version_is_the_wheel_s(installed):
    out = run([str(installed / "venv/bin/cqia"), "--version"], installed).stdout
    assert "0.1.0" in out


def test_library_imports_from_the_wheel_not_the_checkout(installed):
    code = ("import importlib, pkgutil, cqia\n"
            "for m in pkgutil.walk_packages(cqia.__path__, 'cqia.'): importlib.import_module(m.name)\n"
            "print(cqia.__file__); print(cqia.load.__module__)")
    out = run([str(installed / "venv/bin/python"), "-c", code], installed).stdout.splitlines()
    assert out[0].startswith(str(installed / "venv")), out
    assert out[1] == "cqia.registry.api"


def third_party_imports() -> set[str]:
    """Top-level names of every module cqia imports, also inside functions (lazy imports)."""
    names = set()
    for path in (ROOT / "cqia").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"cqia", "__future__"}


def optional_imports() -> dict[str, str]:
    """Top-level names of the optional extras' packages (other than the tests'), and their extra."""
    import re
    import tomllib

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {re.split(r"[<>=!~\[; ]", dep)[0]: extra for extra, deps in extras.items() if extra != "test"
            for dep in deps}


def test_every_import_of_cqia_is_installed_by_the_wheel(installed):
    """opencc, rensa and numpy are imported lazily: importing every module does not reach them.
    An optional extra's package (ray) is imported only where it is used, and is not installed here."""
    optional = optional_imports()
    assert optional == {"ray": "ray"}
    names = sorted(third_party_imports() - set(optional))
    assert {"opencc", "rensa", "numpy", "pyarrow"} <= set(names)
    code = "import importlib.util, sys\nprint([n for n in sys.argv[1:] if importlib.util.find_spec(n) is None])"
    out = run([str(installed / "venv/bin/python"), "-c", code, *names], installed).stdout.strip()
    assert out == "[]", f"imported by cqia but not installed with the wheel: {out}"


def test_the_ray_extra_is_in_the_wheel_s_metadata(installed):
    """`pip install 'cqia-registry[ray]'` brings Ray; the plain install does not."""
    code = "from importlib import metadata; print(metadata.requires('cqia-registry'))"
    requires = run([str(installed / "venv/bin/python"), "-c", code], installed).stdout
    assert "ray>=2.10; extra == \"ray\"" in requires
    code = "import importlib.util; print(importlib.util.find_spec('ray'))"
    assert run([str(installed / "venv/bin/python"), "-c", code], installed).stdout.strip() == "None"
