"""Reading Markdown documentation for the tests that hold it to the code: its fenced code blocks
(with the line each starts on, and the reason when one is marked as not run), the text under a
heading, and running a ```python block as a module. Used by tests/test_plugin_docs.py (the
plugin guide) and tests/test_docs.py (the documentation site)."""
from __future__ import annotations

import dataclasses
import re
import sys
import types

FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
# A block a test cannot run says why on the line right above it: <!-- not run: REASON -->
NOT_RUN = re.compile(r"<!--\s*not run:(.*?)-->\s*$")
MARKER = re.compile(r"<!--\s*not run\b")


@dataclasses.dataclass(frozen=True)
class Block:
    language: str
    code: str
    line: int              # the line of the opening fence, from 1
    not_run: str | None    # the stated reason, for a block marked as not run


def fenced_blocks(text: str) -> list[Block]:
    """Every ``` block of `text`, in order."""
    found = []
    for match in FENCE.finditer(text):
        before = text[:match.start()][:-1].rsplit("\n", 1)[-1]  # the line right above
        marked = NOT_RUN.search(before)
        found.append(Block(match.group(1), match.group(2), text.count("\n", 0, match.start()) + 1,
                           marked.group(1).strip() if marked else None))
    return found


def stray_markers(text: str) -> list[int]:
    """Lines holding a not-run marker that is not right above a code block."""
    fences = {block.line for block in fenced_blocks(text)}
    return [number for number, line in enumerate(text.splitlines(), 1)
            if MARKER.search(line) and number + 1 not in fences]


def section(text: str, heading: str, source: str = "the page") -> str:
    """The text under a heading line, up to the next heading of the same or a higher level."""
    match = re.search(rf"^(#+) {re.escape(heading)}$", text, re.MULTILINE)
    assert match, f"{source} has no heading '{heading}'"
    level = len(match.group(1))
    end = re.compile(rf"^#{{1,{level}}} ", re.MULTILINE).search(text, match.end())
    return text[match.end():end.start() if end else len(text)]


def run_python(code: str, name: str, filename: str, monkeypatch) -> types.ModuleType:
    """Run `code` as the body of a new module called `name` (a real module in sys.modules, as a
    plugin's is: dataclasses look their module up there) and return it."""
    module = types.ModuleType(name)
    monkeypatch.setitem(sys.modules, name, module)
    exec(compile(code, filename, "exec", dont_inherit=True), module.__dict__)
    return module
