"""The import graph the architecture promises, read from the source (every import, those inside
functions included), so a new module is checked as soon as it exists: the core's packages form
layers that import only downward (`LAYERS`, the one statement of the order), no two modules
import each other however indirectly, no module of the core imports the command line (the
`img2img.cli` package; only `img2img/__main__.py` does), and the core never imports a plugin."""
from __future__ import annotations

import ast
from pathlib import Path

import img2img

CORE = Path(img2img.__file__).parent
PLUGINS = Path(__file__).parents[1] / "plugins"
PLUGIN_PACKAGES = {p.name for p in PLUGINS.iterdir() if (p / "__init__.py").exists()} | {
    "img2img_colorize"}

# The core's layers, bottom first: a module imports modules of its own package or module and of
# the layers before it, never after. `__init__` is the `img2img` namespace (the public API).
LAYERS = (
    "errors",       # errors a user can act on
    "fields",       # declaring settings fields and checking their ranges
    "networks",     # building blocks and losses
    "data",         # the input pipeline, tensor ops, image files, atomic writes
    "health",       # training-health signals, the step guard, divergence, the verdict
    "model",        # the contract every model plugin implements
    "runs",         # run folders, checkpoints, the report
    "evaluation",   # metrics, FID, evaluating a model
    "training",     # settings, the trainer and its state, what it offers every model
    "registry",     # hook specifications, plugin loading, the catalog
    "inference",    # the translator and convert
    "interop",      # reference checkpoints, ONNX / TorchScript export, int8
    "distill",      # a smaller student that translates like a teacher run
    "api",          # train / evaluate_run / load
    "testing",      # check_model
    "scaffold",     # `img2img plugins new`
    "serve",        # the ASGI app
    "cli",          # the command line
    "__init__",     # the `img2img` namespace
    "__main__",     # `python -m img2img`
)


def module_name(path: Path) -> str:
    parts = path.relative_to(CORE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> list[Path]:
    return sorted(CORE.rglob("*.py"))


MODULES = {module_name(p): p for p in core_modules()}


def imported(path: Path, modules: set[str] | None = None) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved; `from package
    import name` names the submodule when `name` is one of `modules`)."""
    modules = set(MODULES) if modules is None else modules
    package = module_name(path)
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
            subs = {f"{module}.{alias.name}" for alias in node.names} & modules
            names.update(subs)
            if len(subs) < len(node.names):
                names.add(module)
    return names


def import_graph() -> dict[str, set[str]]:
    """Module -> the core modules it imports (itself left out)."""
    return {name: {m for m in imported(path) if m in MODULES and m != name}
            for name, path in MODULES.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward(graph: dict[str, set[str]], layers: tuple[str, ...] = LAYERS) -> list[str]:
    """Imports from a layer to one above it (or to a layer the order does not name)."""
    rank = {name: i for i, name in enumerate(layers)}
    wrong = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            own, theirs = layer(module), layer(target)
            if own != theirs and rank.get(theirs, len(layers)) >= rank.get(own, -1):
                wrong.append(f"{module} -> {target}")
    return wrong


def test_the_import_reader_sees_relative_absolute_and_inner_imports():
    assert "img2img.cli" in imported(CORE / "__main__.py")
    assert "img2img.data.augment" in imported(CORE / "data" / "datasets.py")
    assert "img2img.errors" in imported(CORE / "data" / "datasets.py")
    # `from . import x` of a submodule is an import of that submodule
    assert "img2img.serve.app" in imported(CORE / "serve" / "__init__.py")


def test_the_checks_find_a_circle_and_an_upward_import():
    graph = {"img2img.model": {"img2img.runs.checkpoints"},
             "img2img.runs.checkpoints": {"img2img.model", "img2img.errors"},
             "img2img.errors": set()}
    assert circles(graph) == [["img2img.model", "img2img.runs.checkpoints"]]
    assert upward(graph) == ["img2img.model -> img2img.runs.checkpoints"]
    assert upward({"img2img.newthing": {"img2img.errors"}}) == ["img2img.newthing -> "
                                                                 "img2img.errors"]


def test_every_core_package_has_its_place_in_the_layers():
    assert {layer(m) for m in MODULES} <= set(LAYERS)


def test_no_import_circle_between_core_modules():
    assert circles(import_graph()) == []


def test_core_packages_import_only_downward():
    assert upward(import_graph()) == []


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
