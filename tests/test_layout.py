"""The import graph the architecture promises: no module of the core imports the command line
(the `img2img.cli` package; only `img2img/__main__.py` does), and the core never imports a plugin. Read from the source,
so a new module is checked as soon as it exists."""
from __future__ import annotations

import ast
from pathlib import Path

import img2img

CORE = Path(img2img.__file__).parent
PLUGINS = Path(__file__).parents[1] / "plugins"
PLUGIN_PACKAGES = {p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists()} | {
    "img2img_colorize"}


def imported(path: Path) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved)."""
    package = ".".join(path.relative_to(CORE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            base = base[: len(base) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


def test_the_import_reader_sees_relative_and_absolute_imports():
    assert "img2img.cli" in imported(CORE / "__main__.py")
    assert "img2img.data.augment" in imported(CORE / "data" / "datasets.py")
    assert "img2img.errors" in imported(CORE / "data" / "datasets.py")


def test_no_core_module_imports_the_command_line():
    """The command line is the `img2img.cli` package; only `__main__` and the package itself
    may import it."""
    outside = [p for p in core_modules()
               if p.name != "__main__.py" and p.relative_to(CORE).parts[0] != "cli"]
    offenders = [str(p.relative_to(CORE)) for p in outside
                 if any(n == "img2img.cli" or n.startswith("img2img.cli.") for n in imported(p))]
    assert offenders == []
    assert (CORE / "cli" / "__init__.py").exists() and len(outside) > 20


def test_the_core_never_imports_a_plugin():
    offenders = [f"{p.relative_to(CORE)}: {n}" for p in core_modules() for n in imported(p)
                 if n.split(".")[0] in PLUGIN_PACKAGES]
    assert offenders == []
