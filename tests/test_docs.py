"""The documentation site (mkdocs.yml, docs/) holds to the code: it builds with
`mkdocs build --strict` (no broken link or anchor, no missing page, no warning); its command
reference shows every command and flag, each with help text; its API reference shows every
public name; and every ```bash and ```python example on its pages runs here, on tiny data
(tests/docexamples.py says how), unless the line right above it says why a test cannot run it:
`<!-- not run: REASON -->` (a GPU, a second machine, a weights file, a server that runs until
stopped). One build of the site and one sandbox serve every test here, the browser test
included, whichever pytest-xdist worker runs it."""
from __future__ import annotations

import functools
import html
import http.server
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import click
import pytest
from docblocks import fenced_blocks, run_python, stray_markers
from docexamples import (PROGRAMS, SANDBOX_RUNS, Shell, build_sandbox, logical_lines, programs,
                         tiny_train, unsupported)

import img2img
from img2img import networks
from img2img.cli import build_cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))
RUN = {"bash", "python"}
DATA = {"toml", "text", "json", "yaml"}  # files and listings shown, not commands


def blocks(page: str):
    return fenced_blocks((DOCS / page).read_text(encoding="utf-8"))


# -- the build ---------------------------------------------------------------------------------
def shared(tmp_path_factory, name: str, make) -> Path:
    """`make(folder)` once per test session: the first pytest-xdist worker to get here makes it
    under a lock in the session's common temporary folder and the others reuse it (xdist_group
    alone cannot promise one worker: under pytest 9, xdist 3.8 no longer groups)."""
    from filelock import FileLock  # a dependency of torch

    # Under xdist each worker's temporary folder sits in the session's; alone, the session's
    # own folder is the common one (its parent holds every past session's).
    base = tmp_path_factory.getbasetemp()
    common = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    folder, done = common / name, common / f"{name}.done"
    with FileLock(str(common / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            make(folder)
            done.touch()
    return folder


def build_site(out: Path) -> None:
    """`mkdocs build --strict` of this checkout into `out`: no warning at all."""
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                            capture_output=True, text=True, timeout=300, cwd=ROOT,
                            env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stderr[-5000:]
    assert "WARNING" not in result.stderr, result.stderr[-5000:]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    pytest.importorskip("mkdocs", reason="the docs extra (in the test extra) builds the site")
    return shared(tmp_path_factory, "docs-site", build_site)


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


def make_sandbox(root: Path) -> None:
    build_sandbox(root)
    patch = pytest.MonkeyPatch()
    patch.chdir(root)
    shell = Shell(root, patch)
    try:
        for args in SANDBOX_RUNS:
            shell.img2img(args, {}, "the sandbox")
    finally:
        patch.undo()


def test_the_readme_commands_are_documented_ones():
    """Each README command is on a documentation page too, where it is run (or marked)."""
    documented = {line for page in PAGES for block in blocks(page) if block.language == "bash"
                  for _, line in logical_lines(block.code)}
    documented = {" ".join(shlex.split(line, comments=True)) for line in documented}
    readme = fenced_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    commands = [" ".join(shlex.split(line, comments=True)) for block in readme
                if block.language == "bash" for _, line in logical_lines(block.code)]
    assert len(commands) >= 5
    assert [c for c in commands if c and c not in documented] == []


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """The folders, files and runs the pages name (made once; each page gets a copy)."""
    return shared(tmp_path_factory, "docs-sandbox", make_sandbox)


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


# -- the site in a browser ---------------------------------------------------------------------
def test_the_site_reads_offline_in_a_browser(site, chromium, tmp_path):
    """From the file system, as `mkdocs build` leaves it: the navigation leads to a getting-started
    page, a guide, the plugin guide and the command reference, and the search finds a page. The
    screenshot is kept in tmp_path, and in $IMG2IMG_SCREENSHOTS when set (how docs/site.png is
    made: `IMG2IMG_SCREENSHOTS=docs pytest tests/test_docs.py -k browser`)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    def click(css: str, text: str) -> None:
        """Click the link showing `text` and wait for the page it leads to."""
        links = [a for a in chromium.find_elements(By.CSS_SELECTOR, css) if a.text.strip() == text]
        assert links, f"no link '{text}' in {css} of {chromium.current_url}"
        target = links[0].get_attribute("href").split("#")[0]
        if target != chromium.current_url.split("#")[0]:
            links[0].click()
        WebDriverWait(chromium, 30).until(lambda d: d.current_url.split("#")[0] == target and
                                          d.execute_script("return document.readyState")
                                          == "complete")

    def follow(tab: str, page: str, title: str) -> None:
        click(".md-tabs__link", tab)
        click(".md-sidebar--primary a", page)
        heading = chromium.find_element(By.CSS_SELECTOR, "article h1").text
        assert heading.startswith(title), (page, heading)

    chromium.get((site / "index.html").as_uri())
    assert chromium.find_element(By.CSS_SELECTOR, "article h1").text.startswith("img2img")
    follow("Getting started", "Your first runs", "Your first runs")
    follow("Guides", "Serve", "Serve")
    images = chromium.execute_script(
        "return Array.from(document.querySelectorAll('article img')).map(i => i.naturalWidth)")
    assert images and all(width > 0 for width in images)  # the screenshot of the serve page
    follow("Writing plugins", "Plugin guide", "Writing img2img plugins")
    follow("Reference", "Command line", "Command line")
    assert chromium.find_elements(By.ID, "img2img-train-pix2pix")
    article = chromium.find_element(By.TAG_NAME, "article").text
    assert "--lambda-l1" in article and "(default: <model>-<date>-<time>)" in article

    # Search, served as `mkdocs serve` serves it (a file:// page's search worker needs a shim
    # the theme loads from unpkg.com, and a test has no internet).
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        chromium.get(f"http://127.0.0.1:{server.server_port}/reference/cli.html")
        search = chromium.find_element(By.CSS_SELECTOR, "input.md-search__input")
        search.click()
        search.send_keys("resume")
        WebDriverWait(chromium, 30).until(lambda d: d.find_elements(
            By.CSS_SELECTOR, ".md-search-result__item a[href*='reliability']"))
        shot = tmp_path / "site.png"  # the command reference, with the search's answers
        assert chromium.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
        search.send_keys(Keys.ESCAPE)
    finally:
        server.shutdown()
    if os.environ.get("IMG2IMG_SCREENSHOTS"):
        target = Path(os.environ["IMG2IMG_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, target / "site.png")
