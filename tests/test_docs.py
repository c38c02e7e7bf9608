"""The documentation site (mkdocs.yml, docs/) holds to the code: it builds with
`mkdocs build --strict` (no broken link or anchor, no missing page, no warning); its command
reference shows every command and flag, each with help text; its API reference shows every
public name; and every ```bash and ```python example on its pages runs here, on tiny data
(tests/docexamples.py says how), unless the line right above it says why a test cannot run it:
`<!-- not run: REASON -->` (a GPU, a second machine, a weights file, a server that runs until
stopped). One build serves every test here and the browser test."""
from __future__ import annotations

import html
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from docblocks import fenced_blocks, run_python, stray_markers
from docexamples import (PROGRAMS, SANDBOX_RUNS, Shell, build_sandbox, programs, tiny_train,
                         unsupported)

import img2img
from img2img import networks
from img2img.cli import build_cli

pytestmark = pytest.mark.xdist_group("docs")  # one worker builds the site once for all of them
ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
RUN = {"bash", "python"}
DATA = {"toml", "text", "json", "yaml"}  # files and listings shown, not commands


def blocks(page: str):
    return fenced_blocks((DOCS / page).read_text(encoding="utf-8"))


# -- the build ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """`mkdocs build --strict` of this checkout into a temporary folder."""
    pytest.importorskip("mkdocs", reason="the docs extra (in the test extra) builds the site")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-5000:]
    assert "WARNING" not in result.stderr, result.stderr[-5000:]
    return out


def test_the_site_builds_strictly_with_every_page(site):
    import yaml

    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())

    def pages(nav):
        for entry in nav:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            yield from pages(value) if isinstance(value, list) else [value]

    listed = list(pages(config["nav"]))
    assert set(PAGES) <= set(listed), "pages missing from the navigation"
    for page in listed:
        assert (site / page.replace(".md", ".html")).is_file(), page
    # the pages kept where they are tested: the plugin guide, the benchmarks with their figures
    guide = (site / "plugins" / "index.html").read_text()
    assert "register_models(register)" in guide and "examples/img2img-colorize/index.html" in guide
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    for figure in re.findall(r'src="(figures/[^"]+)"', benchmarks):
        assert (site / "benchmarks" / figure).is_file(), figure
    assert "figures/quality-pix2pix-5min.jpg" in benchmarks
    assert (site / "search" / "search_index.js").is_file()  # offline search, from file://


def commands(group: click.Command, path: tuple[str, ...] = ("img2img",)):
    """(command path, command) of every command under `group`, sub-commands included."""
    yield path, group
    if isinstance(group, click.Group):
        context = click.Context(group)
        for name in group.list_commands(context):
            yield from commands(group.get_command(context, name), (*path, name))


def test_every_command_and_flag_has_help():
    """Of every installed plugin, so a flag without help cannot reach the reference or --help."""
    missing = []
    for path, command in commands(build_cli()):
        if not (command.help or command.short_help):
            missing.append(" ".join(path))
        missing += [f"{' '.join(path)} {param.opts[0]}" for param in command.params
                    if isinstance(param, click.Option) and not (param.help or "").strip()]
    assert missing == []


def test_the_command_reference_shows_every_command_and_flag(site):
    """The reference documents the built-in plugins' commands (what this repository ships)."""
    spec = importlib.util.spec_from_file_location("img2img_docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    text = html.unescape((site / "reference" / "cli.html").read_text())
    shown = 0
    for path, command in commands(hooks.built_in_cli()):
        assert f'id="{"-".join(path)}"' in text, " ".join(path)
        for param in command.params:
            if isinstance(param, click.Option):
                for flag in param.opts:
                    assert f"<code>{flag}</code>" in text, f"{' '.join(path)} {flag}"
                shown += 1
    assert shown > 300  # every model's train flags are there


def test_the_api_reference_shows_every_public_name(site):
    text = (site / "reference" / "api.html").read_text()
    for name in img2img.__all__:  # or from its own module, where a submodule has its name
        defined = f"{getattr(img2img, name).__module__}.{name}"
        assert f'id="img2img.{name}"' in text or f'id="{defined}"' in text, name
    for name in ("register_models", "register_presets", "register_commands",
                 "register_prepare_commands", "register_loggers"):
        assert re.search(rf'id="img2img\.[\w.]*\.{name}"', text), name
    assert 'id="img2img.testing.check_model"' in text
    for name in networks.__all__:
        assert f'id="img2img.networks.{name}"' in text, name


# -- the examples ------------------------------------------------------------------------------
@pytest.mark.parametrize("page", PAGES)
def test_every_example_is_run_or_says_why_not(page):
    text = (DOCS / page).read_text(encoding="utf-8")
    assert stray_markers(text) == [], "a <!-- not run: ... --> marker must sit right above a block"
    for block in blocks(page):
        where = f"docs/{page}:{block.line}"
        assert block.language in RUN | DATA, f"{where}: say the block's language ({RUN | DATA})"
        if block.not_run is not None:
            assert len(block.not_run) > 10, f"{where}: say why the block is not run"
            assert block.language in RUN, f"{where}: only commands and code are run"
        elif block.language == "bash":
            for program in programs(block.code):
                assert program in PROGRAMS - {"python"}, unsupported(program, where)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    """The folders, files and runs the pages name (built once; each page gets a copy)."""
    root = build_sandbox(tmp_path_factory.mktemp("sandbox"))
    patch = pytest.MonkeyPatch()
    patch.chdir(root)
    patch.setenv("WANDB_MODE", "offline")
    shell = Shell(root, patch)
    try:
        for args in SANDBOX_RUNS:
            shell.img2img(args, {}, "the sandbox")
    finally:
        patch.undo()
    return root


RUNNABLE = [page for page in PAGES
            if any(b.language in RUN and b.not_run is None for b in blocks(page))]


@pytest.mark.parametrize("page", RUNNABLE)
def test_examples_run(page, sandbox, tmp_path, monkeypatch, capsys):
    root = tmp_path / "sandbox"
    shutil.copytree(sandbox, root, symlinks=True)
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(root / "home"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(img2img, "train", tiny_train(img2img.train))
    shell = Shell(root, monkeypatch)
    try:
        for i, block in enumerate(blocks(page)):
            if block.language not in RUN or block.not_run is not None:
                continue
            if block.language == "bash":
                shell.run_block(block.code, f"docs/{page}", block.line + 1)
            else:
                # padded so that a traceback's line numbers are the page's
                run_python("\n" * block.line + block.code, f"docs_example_{i}", f"docs/{page}",
                           monkeypatch)
    finally:
        shell.close()
