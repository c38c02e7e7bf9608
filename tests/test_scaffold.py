"""`img2img plugins new NAME` (img2img.scaffold): the package it writes, the names it accepts, the
folders it refuses to touch, and, end to end, that the package installs with pip and passes its
own test unchanged."""
from __future__ import annotations

import ast
import importlib.metadata as md
import os
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from click.testing import CliRunner

import img2img
from img2img.cli import build_cli
from img2img.registry.loading import load_plugins
from img2img.scaffold import create_plugin, plugin_names


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img"}))


def new(cli, *args: str):
    return CliRunner().invoke(cli, ["plugins", "new", *args])


# -- what it writes -------------------------------------------------------------------------------
def test_new_writes_a_package_and_prints_its_folder(cli, tmp_path):
    result = new(cli, "my-model", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    folder = tmp_path / "img2img-my-model"
    assert result.stdout.strip() == str(folder)
    assert f"pip install -e {folder}" in result.stderr
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files == ["README.md", "img2img_my_model/__init__.py", "img2img_my_model/model.py",
                     "pyproject.toml", "tests/test_img2img_my_model.py"]
    assert [p.name for p in tmp_path.iterdir()] == ["img2img-my-model"]  # no staging left


def test_generated_pyproject_declares_the_entry_point(tmp_path):
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    folder = create_plugin("my-model", tmp_path)
    project = tomllib.loads((folder / "pyproject.toml").read_text())
    assert project["project"]["name"] == "img2img-my-model"
    assert project["project"]["entry-points"]["img2img"] == {
        "img2img_my_model": "img2img_my_model"}
    assert project["project"]["dependencies"][0].startswith("img2img")


def test_generated_sources_are_filled_in_and_valid_python(tmp_path):
    folder = create_plugin("edge-to-photo", tmp_path)
    for path in folder.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "${" not in text and "PACKAGE" not in text, path
            if path.suffix == ".py":
                ast.parse(text, filename=str(path))
    model = (folder / "img2img_edge_to_photo" / "model.py").read_text()
    assert "class EdgeToPhoto(img2img.Model)" in model and 'name = "edge-to-photo"' in model


def test_generated_model_is_valid_when_registered(tmp_path, monkeypatch):
    """Registered strictly, the model and its preset pass the catalog's checks (no install)."""
    folder = create_plugin("scaffold-unit", tmp_path)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "img2img_scaffold_unit", raising=False)
    import img2img_scaffold_unit as plugin

    from img2img.registry.loading import PluginManager, add_plugin

    pm = PluginManager(strict=True)
    add_plugin(pm, plugin, "img2img_scaffold_unit", distribution="img2img-scaffold-unit")
    result = CliRunner().invoke(build_cli(pm), ["train", "scaffold-unit", "--help"])
    assert result.exit_code == 0, result.output
    assert "--lambda-l1" in result.output and "--preset [quick]" in result.output
    sys.modules.pop("img2img_scaffold_unit", None)


# -- names and folders ----------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["My-Model", "my_model", "my--model", "my.model", "model-",
                                  "2model", "my model", "über", "model\n", ""])
def test_invalid_names_are_a_clear_error(cli, tmp_path, name):
    result = new(cli, name, "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "is not valid: use lower-case letters, digits and single hyphens" in result.stderr
    assert "Traceback" not in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["img2img", "img2img-denoise"])
def test_the_img2img_prefix_is_added_not_typed(cli, tmp_path, name):
    result = new(cli, name, "--dir", str(tmp_path))
    assert result.exit_code == 1 and "leave out the 'img2img-' prefix" in result.stderr


def test_names_derived_from_the_model_name():
    names = plugin_names("pix2pix-hd")
    assert (names.model, names.distribution, names.package, names.class_name) == (
        "pix2pix-hd", "img2img-pix2pix-hd", "img2img_pix2pix_hd", "Pix2pixHd")


def test_existing_folder_is_never_overwritten(cli, tmp_path):
    existing = tmp_path / "img2img-my-model"
    existing.mkdir()
    (existing / "mine.txt").write_text("keep me")
    result = new(cli, "my-model", "--dir", str(tmp_path))
    assert result.exit_code == 1
    assert "already exists; nothing was written" in result.stderr
    assert [p.name for p in existing.iterdir()] == ["mine.txt"]
    assert (existing / "mine.txt").read_text() == "keep me"


def test_create_plugin_refuses_an_existing_folder(tmp_path):
    create_plugin("twice", tmp_path)
    with pytest.raises(img2img.Img2ImgError, match="already exists"):
        create_plugin("twice", tmp_path)


def test_dir_is_created_when_missing(cli, tmp_path):
    result = new(cli, "deep", "--dir", str(tmp_path / "a" / "b"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "b" / "img2img-deep" / "pyproject.toml").is_file()


def test_plugins_without_a_subcommand_still_lists(cli):
    result = CliRunner().invoke(cli, ["plugins"])
    assert result.exit_code == 0 and "img2img_pix2pix  (img2img " in result.stdout
    assert "new" in CliRunner().invoke(cli, ["plugins", "--help"]).output


# -- end to end: install with pip, run its own test -------------------------------------------------
def _throwaway_env(root: Path) -> Path:
    """A virtual environment that sees every package of the running one (img2img, torch, pip)
    but installs into itself, so the shared environment is never changed, even if this test is
    killed halfway. Returns its python."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    python = root / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    own = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                          "['purelib'])"], check=True, capture_output=True, text=True)
    running = dict.fromkeys([*site.getsitepackages(), sysconfig.get_paths()["purelib"],
                             site.getusersitepackages()])
    # An `import` line in a .pth file runs at start-up; addsitedir also runs the .pth files
    # there, which is how the running environment's editable installs (img2img) are found.
    lines = [f"import site; site.addsitedir({path!r})" for path in running if Path(path).is_dir()]
    (Path(own.stdout.strip()) / "_running_environment.pth").write_text("\n".join(lines) + "\n")
    return python


def test_generated_package_installs_and_passes_its_own_test(cli, tmp_path):
    """Slow (about 20-40 s on 2 cores): a pip install and two fresh Python processes that import
    torch, one of which trains the generated model for two steps via its own check_model test."""
    assert new(cli, "scaffold-check", "--dir", str(tmp_path)).exit_code == 0
    package = tmp_path / "img2img-scaffold-check"
    python = _throwaway_env(tmp_path / "env")

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), *args], capture_output=True, text=True,
                              cwd=tmp_path, timeout=300)

    installed = run("-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                    "-e", str(package))
    assert installed.returncode == 0, installed.stdout + installed.stderr

    own_test = run("-m", "pytest", str(package / "tests"), "-q", "-p", "no:cacheprovider")
    assert own_test.returncode == 0, own_test.stdout + own_test.stderr
    assert "2 passed" in own_test.stdout

    # `img2img plugins` then `img2img models`, in one process to spare a second torch import.
    listed = run("-c", "from img2img.cli import build_cli; cli = build_cli()\n"
                 "for command in ('plugins', 'models'):\n"
                 "    cli.main([command], prog_name='img2img', standalone_mode=False)")
    assert listed.returncode == 0, listed.stderr
    assert "img2img_scaffold_check  (img2img-scaffold-check 0.1.0)  ok" in listed.stdout
    assert "registers: model scaffold-check, preset scaffold-check/quick" in listed.stdout
    assert any(line.startswith("scaffold-check ") for line in listed.stdout.splitlines())

    with pytest.raises(md.PackageNotFoundError):  # the running environment did not change
        md.distribution("img2img-scaffold-check")
