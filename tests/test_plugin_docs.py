"""plugins/README.md cannot drift from the API: every hook in img2img/registry/hookspecs.py,
every method of the model contract and `check_model` must appear with its exact signature, and
every ```python block runs. Blocks starting with `# file: PATH` are the tutorial plugin's files: they
are written out, registered strictly next to the built-ins, and the tutorial's own tests run.
Other blocks run alone; hooks they define are registered strictly too, so a preset naming an
unknown option or an invalid command fails here."""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from docblocks import fenced_blocks, run_python, section as section_of

import img2img
from img2img.cli import build_cli
from img2img.model import DATA_KINDS, Model
from img2img.registry import hookspecs
from img2img.registry.catalog import BUILTIN_COMMANDS
from img2img.registry.loading import LOAD_ENV, TRACE_ENV, add_plugin, load_plugins
from img2img.testing import check_model

GUIDE = Path(__file__).resolve().parents[1] / "plugins" / "README.md"
TEXT = GUIDE.read_text(encoding="utf-8")
FILE = re.compile(r"^# file: (\S+)\n")
PROVIDED = {"resolve_direction", "resolve_label"}  # Model's helpers, not for overriding


def plain_signature(function, name: str | None = None) -> str:
    """`name(a, b=None, *, c=1)`: the call signature without annotations or `self`."""
    parts, star = [], False
    for param in inspect.signature(function).parameters.values():
        if param.name == "self":
            continue
        if param.kind is param.KEYWORD_ONLY and not star:
            parts.append("*")
            star = True
        if param.kind is param.VAR_POSITIONAL:
            star = True
        prefix = {param.VAR_POSITIONAL: "*", param.VAR_KEYWORD: "**"}.get(param.kind, "")
        default = "" if param.default is param.empty else f"={param.default!r}"
        parts.append(f"{prefix}{param.name}{default}")
    return f"{name or function.__name__}({', '.join(parts)})"


def blocks(language: str) -> list[str]:
    return [block.code for block in fenced_blocks(TEXT) if block.language == language]


def section(heading: str) -> str:
    return section_of(TEXT, heading, "plugins/README.md")


# -- the reference names the API exactly --------------------------------------------------------
HOOKS = [f for _, f in inspect.getmembers(hookspecs, inspect.isfunction)
         if hasattr(f, f"{hookspecs.PROJECT}_spec")]


def test_there_are_hooks_to_document():
    assert {f.__name__ for f in HOOKS} >= {"register_models", "register_presets",
                                           "register_commands"}


@pytest.mark.parametrize("hook", HOOKS, ids=lambda f: f.__name__)
def test_every_hook_has_a_section_with_its_exact_signature(hook):
    body = section(f"`{plain_signature(hook)}`")
    assert "register(" in body, f"the section on {hook.__name__} does not show what to register"


CONTRACT = sorted(n for n, f in vars(Model).items()
                  if inspect.isfunction(f) and not n.startswith("_") and n not in PROVIDED)


@pytest.mark.parametrize("method", CONTRACT)
def test_every_model_method_is_documented_with_its_signature(method):
    signature = plain_signature(getattr(Model, method))
    assert f"`{signature}`" in section("The model contract"), signature


@pytest.mark.parametrize("attribute", sorted(Model.__annotations__))
def test_every_model_attribute_is_documented(attribute):
    assert f"| `{attribute}` |" in section("Class attributes")


@pytest.mark.parametrize("kind", DATA_KINDS)
def test_every_data_kind_is_documented(kind):
    assert f'| `"{kind}"` |' in section("Class attributes")


def test_check_model_signature_is_exact():
    assert f"`{plain_signature(check_model)}`" in section("Testing a plugin")


def test_environment_variables_are_documented():
    for name in (LOAD_ENV, TRACE_ENV):
        assert f"`{name}=" in section("Environment variables"), name


def test_reserved_command_names_are_listed():
    body = section("`register_commands(register)`")
    for name in sorted(BUILTIN_COMMANDS):
        assert f"`{name}`" in body, name


# -- the code runs ------------------------------------------------------------------------------
def _tutorial_files() -> dict[str, str]:
    files = {}
    for language in ("python", "toml"):
        for code in blocks(language):
            match = FILE.match(code)
            if match:
                files[match.group(1)] = code
    return files


def _import_fresh(name: str):
    for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[loaded]
    importlib.invalidate_caches()
    return importlib.import_module(name)


@pytest.fixture
def tutorial(tmp_path, monkeypatch):
    """The tutorial plugin's files written out and importable; returns (root, package name)."""
    root = tmp_path / "tutorial"
    for path, code in _tutorial_files().items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(code, encoding="utf-8")
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((root / "pyproject.toml").read_text())
    [(entry_point, package)] = project["project"]["entry-points"]["img2img"].items()
    assert entry_point == package and (root / package / "__init__.py").is_file()
    monkeypatch.syspath_prepend(str(root))
    yield root, package
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[loaded]


def test_the_tutorial_has_its_files():
    assert {"pyproject.toml", "img2img_denoise/__init__.py", "img2img_denoise/model.py",
            "tests/test_denoise.py"} <= set(_tutorial_files())


def _standalone_blocks() -> list[str]:
    return [code for code in blocks("python") if not FILE.match(code)]


@pytest.fixture
def cli(tutorial, monkeypatch, tmp_path):
    """Built-ins + the tutorial plugin + every standalone block's hooks, loaded strictly."""
    root, package = tutorial
    monkeypatch.chdir(tmp_path)
    pm = load_plugins(strict=True, env={LOAD_ENV: "img2img"})
    add_plugin(pm, _import_fresh(package), package, distribution="img2img-denoise")
    for i, code in enumerate(_standalone_blocks()):
        namespace = run_python(code, f"readme_block_{i}", f"plugins/README.md python block {i}",
                               monkeypatch).__dict__
        hooks = {k: v for k, v in namespace.items() if k.startswith("register_")}
        if hooks:
            add_plugin(pm, types.SimpleNamespace(**hooks), f"readme_block_{i}")
    return build_cli(pm)


def test_standalone_blocks_exist():
    assert len(_standalone_blocks()) >= 3


def test_tutorial_and_blocks_register_strictly(cli):
    runner = CliRunner()
    models = runner.invoke(cli, ["models"])
    assert models.exit_code == 0 and "denoise " in models.stdout
    assert "[presets: film-grain; from img2img-denoise]" in models.stdout
    train_help = runner.invoke(cli, ["train", "denoise", "--help"])
    assert train_help.exit_code == 0
    for flag in ("--noise", "--ngf", "--ndf", "--lambda-l1", "--preset"):
        assert flag in train_help.output, flag
    assert runner.invoke(cli, ["add-noise", "--help"]).exit_code == 0


def test_the_command_block_works(cli, tmp_path):
    import cv2
    import numpy as np

    cv2.imwrite(str(tmp_path / "photo.png"), np.full((8, 8, 3), 128, np.uint8))
    result = CliRunner().invoke(cli, ["add-noise", str(tmp_path / "photo.png"), "-o",
                                      str(tmp_path / "noisy.png")])
    assert result.exit_code == 0, result.output
    assert cv2.imread(str(tmp_path / "noisy.png")).shape == (8, 8, 3)


def test_the_shared_run_options_block_chooses_the_run_as_convert_does(cli):
    result = CliRunner().invoke(cli, ["describe", "--help"])
    assert result.exit_code == 0, result.output
    for flag in ("--model RUN|CHECKPOINT", "--runs-dir", "--device", "-o, --out"):
        assert flag in result.output, flag
    result = CliRunner().invoke(cli, ["describe", "--runs-dir", "nowhere"])
    assert result.exit_code == 1 and "no trained run of a model that translates" in result.output


def test_the_tutorial_tests_pass(tutorial, tmp_path):
    """Runs each test function of the tutorial's tests/ (check_model: about 5 s)."""
    root, _ = tutorial
    ran = 0
    for path in sorted((root / "tests").glob("test_*.py")):
        spec = importlib.util.spec_from_file_location(f"readme_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        for name, test in inspect.getmembers(module, inspect.isfunction):
            if name.startswith("test_"):
                wanted = inspect.signature(test).parameters
                test(**{"tmp_path": tmp_path / name} if "tmp_path" in wanted else {})
                ran += 1
    assert ran >= 1


def test_preset_precedence_is_stated_as_the_cli_applies_it():
    assert ("field default < model `training_defaults` < preset < flag the user typed"
            in section("Presets"))
    assert img2img.Preset.__doc__ and "field default < model's training defaults < preset < " \
        "typed flag" in " ".join(img2img.Preset.__doc__.split())


# -- "When it breaks" is what happens ----------------------------------------------------------
def test_broken_plugins_are_reported_as_the_guide_says(make_plugin):
    """One plugin that raises on import, one whose model lacks required methods, one reusing a
    taken model name: each is reported with its distribution, and every command keeps working."""
    import importlib.metadata as md

    broken = [
        make_plugin("raise ImportError('needs libfoo')\n", name="zz_raises", dist="img2img-raises"),
        make_plugin(model="partial", omit=("generate", "discriminator_losses"), name="zz_partial",
                    dist="img2img-partial"),
        make_plugin(model="pix2pix", name="zz_copycat", dist="img2img-copycat"),
    ]
    pm = load_plugins(entry_points=[*md.entry_points(group="img2img"), *broken],
                      env={LOAD_ENV: "img2img,img2img-raises,img2img-partial,img2img-copycat"})
    cli, runner = build_cli(pm), CliRunner()
    listing = runner.invoke(cli, ["plugins"])
    assert listing.exit_code == 0
    expected = {
        "zz_raises  (img2img-raises 1.0)  FAILED": "error: failed to import: ImportError: needs "
                                                   "libfoo",
        "zz_partial  (img2img-partial 1.0)  FAILED": "does not implement: discriminator_losses, "
                                                     "generate",
        "zz_copycat  (img2img-copycat 1.0)  FAILED": "model pix2pix is already registered by "
                                                     "img2img (plugin 'img2img_pix2pix'); skipped",
    }
    guide = section("When it breaks")
    for line, error in expected.items():
        assert line in listing.stdout and error in listing.stdout, listing.stdout
    assert "`failed to import: <Error>" in guide and "does not implement: <methods>" in guide
    assert "is already registered by <distribution> (plugin '<plugin>'); skipped" in guide
    for dist in ("img2img-raises", "img2img-partial", "img2img-copycat"):
        assert re.search(rf"^warning: plugin '\w+' \({dist}\): ", listing.stderr, re.MULTILINE)
    for command in (["models"], ["presets"], ["train", "pix2pix", "--help"],
                    ["convert", "--help"]):
        result = runner.invoke(cli, command)
        assert result.exit_code == 0, (command, result.output)
    models = runner.invoke(cli, ["models"]).stdout
    assert "pix2pix " in models and "from img2img]" in models and "partial" not in models


def test_ci_runs_the_readme_install_and_test_commands():
    """.ci/run installs the way the README tells a user to, example plugin included."""
    root = GUIDE.parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    tests = re.search(r"^## Tests\n+```bash\n(.+?)\n```", readme, re.MULTILINE | re.DOTALL)
    assert tests, "README.md's Tests section has no command"
    steps = tests.group(1).split(" && ")
    assert "-e examples/img2img-colorize" in steps[0] and steps[-1] == "pytest"
    assert "sh tests/install-browser.sh" in steps  # the browser tests' Chromium
    lines = [line for line in (root / ".ci" / "run").read_text().splitlines()
             if line and not line.startswith(("#", "set ", "cd "))]
    # A new virtual environment first, as a new user makes one: without system site-packages,
    # so CI cannot pass on packages the machine happened to have.
    assert lines[:3] == ["rm -rf venv", "python3 -m venv venv", ". venv/bin/activate"]
    assert lines[3:] == steps
