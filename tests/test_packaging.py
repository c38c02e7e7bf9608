"""The package as a user gets it: every extra a missing-package message names is declared; a
wheel built from this checkout carries the licences and the demo's sample images, and
`img2img demo` and `img2img --version` run from it in a fresh virtual environment, away from the
source tree (the `packaging` tests, about 40 s; `-m "not packaging"` leaves them out). Building
needs no network while the installed setuptools meets the floor in pyproject.toml; below it the
build fetches one, or skips when it cannot."""
from __future__ import annotations

import json
import os
import re
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import cv2
import pytest
import setuptools

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
VERSION = re.search(r'^version = "([^"]+)"', PYPROJECT, re.MULTILINE).group(1)
SAMPLE = "img2img_pix2pix/faces_edges2photo"
# What a build leaves in a checkout, and folders no build reads.
NOT_SOURCES = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", ".ruff_cache", ".venv", "venv", "runs",
                                     "converted")


def declared_extras() -> dict[str, list[str]]:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads(PYPROJECT)["project"]["optional-dependencies"]


def named_extras() -> dict[str, list[str]]:
    """extra -> the source files whose messages say `pip install 'img2img[extra]'`."""
    found: dict[str, list[str]] = {}
    for path in sorted([*(ROOT / "img2img").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]):
        for extra in re.findall(r"pip install '?img2img\[([\w-]+)\]", path.read_text("utf-8")):
            found.setdefault(extra, []).append(str(path.relative_to(ROOT)))
    return found


def setuptools_floor() -> tuple[int, ...]:
    found = re.search(r'requires\s*=\s*\[[^\]]*"setuptools>=([\d.]+)"', PYPROJECT)
    assert found, "pyproject.toml's [build-system] names no setuptools floor"
    return tuple(int(n) for n in found.group(1).split("."))


def installed_setuptools() -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", setuptools.__version__)[:3])


def run(*command: object, cwd: Path, env: dict[str, str] | None = None,
        timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def user_environment() -> dict[str, str]:
    """This environment without anything that would put the checkout on sys.path or change
    which plugins load."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME") and not k.startswith("IMG2IMG_")}
    return {**env, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONNOUSERSITE": "1"}


def python_of(env_dir: Path, name: str = "python") -> Path:
    return env_dir / (f"Scripts/{name}.exe" if os.name == "nt" else f"bin/{name}")


def site_packages_of(env_dir: Path) -> Path:
    """The new environment's site-packages, asked of its own interpreter."""
    result = run(python_of(env_dir), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))",
                 cwd=env_dir, env=user_environment())
    assert result.returncode == 0, result.stderr
    return Path(result.stdout.strip())


def dependency_dirs() -> list[str]:
    """Where this interpreter finds torch and img2img's other dependencies."""
    paths = [*site.getsitepackages(), sysconfig.get_path("purelib"), sysconfig.get_path("platlib")]
    return list(dict.fromkeys(p for p in paths if Path(p).is_dir()))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built from a copy so no build/ lands in the working tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=NOT_SOURCES)
    offline = installed_setuptools() >= setuptools_floor()
    flags = ["--no-build-isolation", "--no-index"] if offline else []
    built = run(sys.executable, "-m", "pip", "wheel", "--no-deps", *flags, "-w", tmp / "dist",
                source, cwd=tmp, env=user_environment())
    if built.returncode and not offline and re.search(
            r"No matching distribution|Could not find a version|NewConnectionError|"
            r"Network is unreachable|name resolution", built.stdout + built.stderr):
        pytest.skip(f"setuptools {setuptools.__version__} is below the floor "
                    f"{setuptools_floor()} and a newer one cannot be fetched")
    assert built.returncode == 0, built.stdout + built.stderr
    (found,) = (tmp / "dist").glob("img2img-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment holding the wheel; torch and the rest come from this one's
    site-packages, so nothing is downloaded."""
    env_dir = tmp_path_factory.mktemp("venv") / "env"
    venv.EnvBuilder(system_site_packages=False, with_pip=False).create(env_dir)
    # torch and the rest live in this interpreter's site-packages: in a virtual environment
    # that is the environment, not the base interpreter `system_site_packages` would add. A .pth
    # file adds them after the new environment's own site-packages (as site.py orders them),
    # so the wheel installed there is what imports.
    (site_packages_of(env_dir) / "zz_test_dependencies.pth").write_text(
        "".join(f"import site; site.addsitedir({path!r})\n" for path in dependency_dirs()))
    # This environment's pip, run by the new interpreter, installs into the new environment.
    result = run(python_of(env_dir), "-m", "pip", "install", "--no-deps", "--no-index", wheel,
                 cwd=env_dir, env=user_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    return env_dir


def test_every_extra_a_message_names_is_declared_and_every_extra_is_named():
    declared, named = declared_extras(), named_extras()
    assert {e: files for e, files in named.items() if e not in declared} == {}
    # test and docs are for working on img2img (the tests, the site), not features it runs
    assert set(declared) - {"test", "docs"} <= set(named), "an extra no message names"
    assert {"onnx", "tensorboard"} <= set(named)


@pytest.mark.packaging
def test_the_wheel_carries_the_licences_metadata_and_demo_images(wheel):
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
        licence = archive.read(f"{info}/licenses/LICENSE").decode()
        metadata = archive.read(f"{info}/METADATA").decode()
        note = archive.read(f"{SAMPLE}/LICENCE.md").decode()
    assert licence.startswith("MIT License") and "Copyright (c) 2026 the img2img authors" in licence
    assert licence == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert "CC BY 4.0" in note and f"{info}/licenses/datasets/faces_edges2photo/LICENCE.md" in names
    assert "License-Expression: MIT AND CC-BY-4.0" in metadata
    assert {"onnx", "tensorboard", "test"} <= set(re.findall(r"^Provides-Extra: (.+)$",
                                                             metadata, re.MULTILINE))
    assert "Classifier: Programming Language :: Python :: 3 :: Only" in metadata
    for split, count in (("train", 128), ("test", 16)):
        assert len([n for n in names if n.startswith(f"{SAMPLE}/{split}/")
                    and n.endswith(".jpg")]) == count
    # `img2img serve`'s page is package data, served from the installed package
    assert {f"img2img/serve/static/{f}" for f in ("index.html", "app.js", "style.css")} <= names


@pytest.mark.packaging
def test_the_installed_wheel_is_what_runs_not_the_checkout(installed, tmp_path):
    probe = ("import importlib.metadata as md, json, img2img, img2img_pix2pix; "
             "print(json.dumps([img2img.__file__, img2img_pix2pix.__file__, "
             "str(md.distribution('img2img').locate_file(''))]))")
    result = run(python_of(installed), "-c", probe, cwd=tmp_path, env=user_environment())
    assert result.returncode == 0, result.stderr
    for path in json.loads(result.stdout):
        assert Path(path).resolve().is_relative_to(installed.resolve()), path


@pytest.mark.packaging
def test_version_works_from_the_wheel(installed, tmp_path):
    result = run(python_of(installed, "img2img"), "--version", cwd=tmp_path, env=user_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"img2img, version {VERSION}\n")
    assert f"img2img_pix2pix (img2img {VERSION})" in result.stdout
    assert "failed to load" not in result.stdout


@pytest.mark.packaging
def test_demo_runs_from_the_wheel_on_its_packaged_data(installed, tmp_path):
    """The README's first command, cut to 2 steps, with only the installed wheel to go on."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = run(python_of(installed), "-m", "img2img", "demo", "--steps", "2", "--out", "out",
                 "--runs-dir", "runs", cwd=elsewhere, env=user_environment())
    assert result.returncode == 0, result.stdout + result.stderr
    trained_on = re.search(r"Training pix2pix on (.+) for 2 steps", result.stderr)
    assert trained_on, result.stderr
    assert Path(trained_on.group(1)).resolve().is_relative_to(installed.resolve())
    comparison = cv2.imread(str(elsewhere / "out" / "comparison.png"))
    assert comparison is not None and comparison.shape[0] > 0
    assert len(list((elsewhere / "out").glob("*.png"))) == 17  # 16 test images + comparison
