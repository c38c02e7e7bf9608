"""`img2img plugins new NAME`: writes a ready-to-install plugin package from the template beside
this module (a pyproject with the entry point, a working model, a test calling `check_model`).
A name is checked before anything is written, and an existing folder is never touched."""
from __future__ import annotations

import dataclasses
import re
import shutil
import string
import uuid
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Img2ImgError

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
PREFIX = "img2img-"
TEMPLATE = "template"
SUFFIX = ".tmpl"
PLACEHOLDER = "PACKAGE"  # in template paths: replaced by the package name


@dataclasses.dataclass(frozen=True)
class PluginNames:
    """Every name a new plugin needs, derived from the one the user gives (`my-model`)."""

    model: str  # `img2img train my-model`
    distribution: str  # `pip install img2img-my-model`, and the folder written
    package: str  # `import img2img_my_model`; also the entry point's name
    class_name: str  # `MyModel`
    img2img_requirement: str  # `img2img>=0.1`: this version's API onwards


def plugin_names(name: str) -> PluginNames:
    """The names for a plugin whose model is called `name`; Img2ImgError if `name` cannot be one."""
    if name == "img2img" or name.startswith(PREFIX):
        raise Img2ImgError(f"plugin name '{name}': leave out the '{PREFIX}' prefix, it is added "
                           f"for you (`img2img plugins new my-model` writes {PREFIX}my-model/)")
    if not NAME.fullmatch(name):
        raise Img2ImgError(f"plugin name '{name}' is not valid: use lower-case letters, digits "
                           "and single hyphens, starting with a letter (for example my-model); "
                           "it becomes the model's command name")
    package = "img2img_" + name.replace("-", "_")
    return PluginNames(model=name, distribution=PREFIX + name, package=package,
                       class_name="".join(part.capitalize() for part in name.split("-")),
                       img2img_requirement=_requirement())


def _requirement() -> str:
    try:
        major_minor = ".".join(version("img2img").split(".")[:2])
    except PackageNotFoundError:  # a source tree that was never installed
        return "img2img"
    return f"img2img>={major_minor}"


def _template_files(folder: Traversable, prefix: tuple[str, ...] = ()
                    ) -> list[tuple[tuple[str, ...], Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _template_files(entry, (*prefix, entry.name))
        elif entry.name.endswith(SUFFIX):
            found.append(((*prefix, entry.name[: -len(SUFFIX)]), entry))
    return found


def render(names: PluginNames) -> dict[Path, str]:
    """The generated package as {relative path: text}."""
    values = dataclasses.asdict(names)
    files = {}
    for parts, entry in _template_files(resources.files(__name__) / TEMPLATE):
        path = Path(*(p.replace(PLACEHOLDER, names.package) for p in parts))
        files[path] = string.Template(entry.read_text(encoding="utf-8")).substitute(values)
    return files


def create_plugin(name: str, parent: str | Path = ".") -> Path:
    """Write the package for plugin `name` into `parent/img2img-<name>/` and return that folder.

    Refuses (Img2ImgError) when the folder exists. Files are written into a temporary folder
    that is renamed into place at the end, so a failure never leaves half a package."""
    names = plugin_names(name)
    parent = Path(parent)
    target = parent / names.distribution
    if target.exists():
        raise Img2ImgError(f"{target} already exists; nothing was written (choose another name "
                           "or --dir)")
    files = render(names)
    parent.mkdir(parents=True, exist_ok=True)
    staging = parent / f".{names.distribution}.{uuid.uuid4().hex[:8]}.partial"
    try:
        staging.mkdir()
        for path, text in files.items():
            (staging / path).parent.mkdir(parents=True, exist_ok=True)
            (staging / path).write_text(text, encoding="utf-8")
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target
