"""MkDocs hooks of the documentation site. Three jobs, all at build time:

* pages that live elsewhere in the repository (the plugin guide, the benchmarks, the example
  plugin's and the sample sets' READMEs) are served from where they are, unchanged, so each stays
  the one copy and is tested where it lives; their links to each other are pointed at the pages;
* the command-line reference documents the command tree `img2img` builds from its built-in
  plugins (`img2img_docs_cli:cli` for mkdocs-click), whatever else is installed;
* the hook specifications are listed by their own module, wherever it lives, so the API
  reference names them without a hard-coded module path (and a public name that a submodule
  shadows is documented from its own module).
"""
from __future__ import annotations

import inspect
import os
import posixpath
import re
import sys
import types
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
# site page -> repository file it is built from
INCLUDED = {
    "plugins/index.md": "plugins/README.md",
    "benchmarks/index.md": "benchmarks/README.md",
    "examples/img2img-colorize/index.md": "examples/img2img-colorize/README.md",
    "datasets/index.md": "datasets/README.md",
}
# pictures those pages show, copied beside them
INCLUDED_ASSETS = ["benchmarks/figures"]
CLI_MODULE = "img2img_docs_cli"
HOOKSPECS_MARKER = "<!-- hook specifications -->"
LINK = re.compile(r"\]\(([^)\s#]+)(#[^)\s]*)?\)")
PUBLIC_NAME = re.compile(r"^::: img2img\.(\w+)$", re.MULTILINE)


def built_in_cli():
    """The `img2img` command group with the built-in plugins only (the ones in this
    repository's pyproject), so the reference does not depend on what else is installed."""
    from img2img.cli import build_cli

    saved = os.environ.get("IMG2IMG_LOAD_PLUGINS")
    os.environ["IMG2IMG_LOAD_PLUGINS"] = "img2img"
    try:
        return build_cli()
    finally:
        if saved is None:
            del os.environ["IMG2IMG_LOAD_PLUGINS"]
        else:
            os.environ["IMG2IMG_LOAD_PLUGINS"] = saved


def _escaped(text: str) -> str:
    """Help text as Markdown that shows it as written: `<model>` is text, not an HTML tag
    (outside `code spans`, which Markdown already shows literally)."""
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(part if i % 2 else part.replace("<", "&lt;").replace(">", "&gt;")
                   for i, part in enumerate(parts))


def _for_the_page(command, parent=None) -> None:
    """Help as the reference page shows it, on this docs-only instance of the commands: a
    paragraph click prints unwrapped (after a `\\b` line) becomes a text block, `<` and `>` are
    text, and a default click leaves unset reads as what it means (False for a flag, None
    otherwise; mkdocs-click would print the sentinel), or as the text the option shows."""
    import click

    context = click.Context(command, info_name=command.name, parent=parent,
                            **command.context_settings)
    if command.help:
        command.help = "\n\n".join(
            "```text\n" + paragraph[2:].strip("\n") + "\n```" if paragraph.startswith("\b\n")
            else _escaped(paragraph)
            for paragraph in inspect.cleandoc(command.help).split("\n\n"))
    for option in command.get_params(context):  # the help option too (made and kept here)
        if not isinstance(option, click.Option):
            continue
        if option.help:
            option.help = _escaped(option.help)
        if isinstance(option.show_default, str):
            option.default = option.show_default
        elif type(option.default).__name__ == "Sentinel":
            option.default = False if option.is_flag else None
    if isinstance(command, click.Group):
        for name in command.list_commands(context):
            _for_the_page(command.get_command(context, name), context)


def hook_specifications() -> list[str]:
    """`module.function` of every img2img hook spec (functions pluggy marked with the
    `img2img_spec` attribute), found among the img2img modules `import img2img` loaded."""
    import img2img  # noqa: F401  (loads the module that defines the hook specs)

    found = []
    for name, module in sorted(sys.modules.items()):
        if module is None or not (name == "img2img" or name.startswith("img2img.")):
            continue
        for attribute, value in vars(module).items():
            if (callable(value) and hasattr(value, "img2img_spec")
                    and getattr(value, "__module__", None) == name):
                found.append(f"{name}.{attribute}")
    return sorted(set(found), key=lambda path: path.rsplit(".", 1)[1])


def _defining_module(match: re.Match) -> str:
    """`::: img2img.NAME` where a submodule has the same name as the public object (today
    `img2img.catalog`, the function, beside the module `img2img/catalog.py`): mkdocstrings
    would document the module, so point it at the object's own module instead."""
    import img2img

    name = match.group(1)
    value = getattr(img2img, name, None)
    shadowed = f"img2img.{name}" in sys.modules and not isinstance(value, types.ModuleType)
    if value is None or not shadowed:
        return match.group(0)
    return f"::: {value.__module__}.{name}"


def on_config(config):
    module = types.ModuleType(CLI_MODULE, "The command tree the reference documents.")
    module.cli = built_in_cli()
    _for_the_page(module.cli)
    sys.modules[CLI_MODULE] = module
    return config


def on_files(files, config):
    for page, source in INCLUDED.items():
        files.append(File.generated(config, page, abs_src_path=str(ROOT / source)))
    for folder in INCLUDED_ASSETS:
        for path in sorted((ROOT / folder).iterdir()):
            if path.is_file():
                files.append(File.generated(config, f"{folder}/{path.name}",
                                            abs_src_path=str(path)))
    return files


def _page_for(repository_path: str) -> str | None:
    """The site page a repository path (a file, or a folder with a README) is shown as."""
    pages = {source: page for page, source in INCLUDED.items()}
    return pages.get(repository_path) or pages.get(posixpath.join(repository_path, "README.md"))


def on_page_markdown(markdown, page, config, files):
    source = INCLUDED.get(page.file.src_uri)
    if source is not None:
        def relink(match: re.Match) -> str:
            target, anchor = match.group(1), match.group(2) or ""
            if "://" in target:
                return match.group(0)
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(source), target))
            page_path = _page_for(resolved)
            if page_path is None:
                return match.group(0)
            relative = posixpath.relpath(page_path, posixpath.dirname(page.file.src_uri))
            return f"]({relative}{anchor})"

        markdown = LINK.sub(relink, markdown)
    markdown = PUBLIC_NAME.sub(_defining_module, markdown)
    if HOOKSPECS_MARKER in markdown:
        specs = "\n\n".join(f"::: {path}" for path in hook_specifications())
        markdown = markdown.replace(HOOKSPECS_MARKER, specs)
    return markdown
