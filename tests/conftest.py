"""Shared helpers for the plugin, catalog and CLI tests: small plugin modules written into tmp_path
with fake `img2img` entry points pointing at them, so a test sees exactly the plugins it made."""
from __future__ import annotations

import importlib
import importlib.metadata as md
import textwrap
import uuid
from typing import Any

import pytest


def model_source(model: str = "tiny", omit: tuple[str, ...] = (), frozen: bool = True) -> str:
    """Source of a minimal model plugin module registering one model called `model`."""
    methods = {
        "build_generators": ("self", 'return {"a_to_b": torch.nn.Identity()}'),
        "build_discriminators": ("self", 'return {"b": torch.nn.Identity()}'),
        "generate": ("self, batch", 'return {"fake_b": batch["a"]}'),
        "generator_losses": ("self, batch, fakes", 'return {"l1": fakes["fake_b"].abs().mean()}'),
        "discriminator_losses": ("self, batch, fakes", 'return {"fake": fakes["fake_b"].mean()}'),
    }
    body = "".join(f"    def {m}({args}):\n        {code}\n"
                   for m, (args, code) in methods.items() if m not in omit)
    return (
        "import dataclasses\nimport torch\nimport img2img\n\n"
        f"@dataclasses.dataclass(frozen={frozen})\n"
        "class Options:\n"
        '    width: int = dataclasses.field(default=4, metadata={"help": "network width"})\n\n'
        "class TinyModel(img2img.Model):\n"
        f'    name = "{model}"\n'
        '    data = "paired"\n'
        f'    summary = "{model} test model"\n'
        "    Options = Options\n"
        '    directions = ("a_to_b",)\n'
        f"{body}\n"
        "@img2img.hookimpl\n"
        "def register_models(register):\n"
        "    register(TinyModel)\n"
    )


@pytest.fixture
def make_plugin(tmp_path, monkeypatch):
    """`make_plugin(source=None, name=None, dist=None, extra="", **model)` -> an entry point.

    Writes a plugin module from `source` (default: `model_source(**model)`) plus `extra`, under a
    fresh module name so nothing is cached between tests. With `dist` the entry point belongs to
    a distribution of that name, version 1.0; without, its distribution is unknown."""
    modules = tmp_path / "modules"
    modules.mkdir()
    monkeypatch.syspath_prepend(str(modules))

    def make(source: str | None = None, name: str | None = None, dist: str | None = None,
             extra: str = "", **model: Any) -> md.EntryPoint:
        module = f"img2img_test_{uuid.uuid4().hex[:12]}"
        source = model_source(**model) if source is None else textwrap.dedent(source)
        (modules / f"{module}.py").write_text(source + textwrap.dedent(extra))
        importlib.invalidate_caches()
        name = name or module
        if dist is None:
            return md.EntryPoint(name, module, group="img2img")
        # Kept off sys.path so a plain load_plugins() never discovers it.
        info = tmp_path / "dists" / f"{module}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[img2img]\n{name} = {module}\n")
        (ep,) = md.PathDistribution(info).entry_points
        return ep

    return make


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """Tests use tiny images, where a second OpenMP thread costs more than it gains, and on a
    busy 2-core machine two threads fighting each other made single ops 100x slower."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def save():
    """`save(run_dir, step, value=0.0, keep=0)`: a tiny checkpoint (one 2x2 weight filled with
    `value`) written the way the trainer writes one."""
    import torch

    from img2img.runs import checkpoints

    def write(run_dir, step, value=0.0, keep=0):
        tensors = {"generators.a_to_b.weight": torch.full((2, 2), float(value))}
        state = {"step": step, "rng": torch.get_rng_state()}
        return checkpoints.save_checkpoint(run_dir, step, tensors,
                                           {"model": "demo", "step": step}, state, keep=keep)

    return write


def _find(*names: str) -> str | None:
    import shutil
    return next((path for path in map(shutil.which, names) if path), None)


@pytest.fixture
def chromium(tmp_path):
    """A headless Chromium driven by Selenium: Debian's `chromium` and `chromedriver` (installed by
    `tests/install-browser.sh`), never a browser downloaded at run time. Skips, saying why, where
    either is missing."""
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.service import Service
    browser = _find("chromium", "chromium-browser")
    driver_path = _find("chromedriver")
    if browser is None or driver_path is None:
        pytest.skip("no system Chromium with chromedriver (run tests/install-browser.sh)")
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1280,1000", f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
