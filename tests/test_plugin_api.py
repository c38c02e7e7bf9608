"""The plugin API is declared in one place: plugins/README.md's "What a plugin may import" table
names every module a plugin may import and every name it may use from each. Each module's
`__all__` is exactly its row, so the surface cannot change without the guide changing with it;
and the built-in plugins, the example plugin, the template `img2img plugins new` writes and the
guide's own code use nothing else of the core."""
from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "plugins" / "README.md"
ROW = re.compile(r"^\| `(img2img[\w.]*)` \| (.+) \|$", re.MULTILINE)


def declared() -> dict[str, set[str]]:
    """Module -> the names the guide's table lists for it."""
    text = GUIDE.read_text(encoding="utf-8")
    table = text[text.index("## What a plugin may import"):text.index("## Hooks")]
    return {module: set(re.findall(r"`(\w+)`", names)) for module, names in ROW.findall(table)}


API = declared()


def _chain(node: ast.expr) -> list[str] | None:
    """`img2img.a.b` as ["img2img", "a", "b"]; None for anything but names and attributes."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    return [node.id, *reversed(parts)] if isinstance(node, ast.Name) else None


def _outside(path: list[str], api: dict[str, set[str]]) -> str | None:
    """What `img2img.x.y` reaches that the API does not declare (None when it is declared)."""
    for cut in range(len(path), 0, -1):
        module = ".".join(path[:cut])
        if module in api:
            rest = path[cut:]
            return None if not rest or rest[0] in api[module] else ".".join(path[:cut + 1])
    return ".".join(path)


def undeclared(source: str, api: dict[str, set[str]] = API) -> list[str]:
    """The core modules and names `source` uses that the API does not declare."""
    tree = ast.parse(source)
    inner = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names
                      if a.name.split(".")[0] == "img2img" and a.name not in api]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and \
                node.module.split(".")[0] == "img2img":
            found += [problem for a in node.names
                      if (problem := _outside([*node.module.split("."), a.name], api))]
        elif isinstance(node, ast.Attribute) and id(node) not in inner:  # whole chains only
            path = _chain(node)
            if path and path[0] == "img2img":
                found += [problem for problem in [_outside(path[:3], api)] if problem]
    return sorted(set(found))


def plugin_sources() -> dict[str, str]:
    """Every Python file a plugin author sees as an example: the built-in plugins, the example
    plugin, the scaffold's template (its ${placeholders} filled in) and the guide's code."""
    sources = {}
    for folder in (ROOT / "plugins", ROOT / "examples" / "img2img-colorize"):
        for path in sorted(folder.rglob("*.py")):
            sources[str(path.relative_to(ROOT))] = path.read_text(encoding="utf-8")
    for path in sorted((ROOT / "img2img" / "scaffold" / "template").rglob("*.py.tmpl")):
        text = re.sub(r"\$\{(\w+)\}", r"\1_", path.read_text(encoding="utf-8"))
        sources[str(path.relative_to(ROOT))] = text
    guide = GUIDE.read_text(encoding="utf-8")
    for i, code in enumerate(re.findall(r"^```python\n(.*?)^```$", guide, re.DOTALL | re.M)):
        sources[f"plugins/README.md python block {i}"] = code
    return sources


def test_the_guide_declares_a_few_modules():
    assert "img2img" in API and len(API) <= 8
    assert {"Model", "option", "new_default", "hookimpl"} <= API["img2img"]


@pytest.mark.parametrize("module", sorted(API))
def test_each_declared_module_exports_exactly_what_the_guide_lists(module):
    imported = importlib.import_module(module)
    assert sorted(imported.__all__) == sorted(API[module]), \
        "change plugins/README.md's 'What a plugin may import' along with __all__"
    assert [name for name in imported.__all__ if not hasattr(imported, name)] == []


def test_plugins_the_example_the_template_and_the_guide_use_only_the_declared_api():
    sources = plugin_sources()
    assert len(sources) > 30 and any("scaffold" in name for name in sources)
    offenders = {name: found for name, source in sources.items()
                 if (found := undeclared(source))}
    assert offenders == {}


def test_the_check_sees_what_is_not_declared():
    assert undeclared("from img2img.runs.folders import write_text") == ["img2img.runs"]
    assert undeclared("from img2img.networks import UnetLevel") == ["img2img.networks.UnetLevel"]
    assert undeclared("import img2img.checkpoints") == ["img2img.checkpoints"]
    assert undeclared("import img2img\nimg2img.checkpoints.load_state(p)") == [
        "img2img.checkpoints"]
    assert undeclared("import img2img\nimg2img.networks.features.x") == [
        "img2img.networks.features"]
    assert undeclared("import img2img\nimg2img.Model\nimg2img.networks.init_weights") == []
    assert undeclared("from img2img import Model, option\nfrom img2img.data import grid") == []
