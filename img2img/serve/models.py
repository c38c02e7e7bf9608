"""The runs a server holds: named once, loaded once in a background thread (so the server
answers at once, with 503 until a model is ready) and kept warm, and described for
`GET /api/models`. Knows nothing of HTTP beyond the `ApiError` statuses it raises."""
from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api import load
from ..errors import CheckpointError, Img2ImgError
from ..inference.translator import DEFAULT_TILE, LoadedModel, Translator
from ..registry.catalog import Catalog
from ..registry.catalog import catalog as installed_catalog
from ..runs import folders as runs

log = logging.getLogger("img2img.serve")
LOADING, READY, FAILED = "loading", "ready", "failed"


class ApiError(Exception):
    """A request the server refuses: an HTTP status and a message for the JSON body."""

    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass
class Served:
    """One served run: its name in the API, what it was asked to load, and its state."""

    name: str
    source: str
    loaded: LoadedModel | None = None
    status: str = LOADING
    error: str | None = None
    ready: threading.Event = field(default_factory=threading.Event)

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"name": self.name, "status": self.status, "source": self.source}
        if self.error is not None:
            info["error"] = self.error
        model = self.loaded
        if model is None:
            return info
        spec = model.model.spec
        translates = isinstance(model, Translator)
        info.update({
            "family": model.name, "preset": model.preset,
            "kind": "translate" if translates else "sample",
            "directions": list(model.model.directions),
            # A translating run's classes are its styles; a sampling run's are what it draws.
            "styles": list(spec.classes) if translates else [],
            "classes": [] if translates else list(spec.classes),
            "channels": spec.channels, "training_size": spec.size,
            "checkpoint": str(model.checkpoint),
        })
        if translates:
            info["runtime"] = model.runtime.name
            info["noise_dim"] = model.noise_dim  # > 0: each seed gives another output
        return info


def newest_served_run(runs_dir: Path, catalog: Catalog) -> Path:
    """The newest run under `runs_dir` of any installed model, translating or sampling."""
    try:
        return runs.newest_run_for("any", runs_dir, catalog.models)
    except CheckpointError:
        raise CheckpointError(f"no trained run under {runs_dir}/ to serve; train one with "
                              "`img2img train <model>` or pass --model RUN|CHECKPOINT") from None


def _name_for(source: Any) -> str:
    if isinstance(source, LoadedModel):
        path = Path(source.checkpoint)
        run = path.parent.parent if path.parent.name == runs.CHECKPOINTS else None
        return run.name if run is not None else path.stem
    text = str(source)
    best = text.endswith(":best")
    path = Path(text[:-5] if best else text)
    name = path.stem if path.is_file() else path.name
    return f"{name}-best" if best else name


class ModelPool:
    """The served runs by name, in the order given. References load in one background thread,
    one after another; a failure is kept as that run's state, never raised into the server."""

    def __init__(self, sources: Iterable[Any] | None, *, runs_dir: Path = Path("runs"),
                 device: str = "auto", tile: int = DEFAULT_TILE,
                 catalog: Catalog | None = None):
        self.device, self.tile, self.runs_dir = device, tile, Path(runs_dir)
        self.catalog = catalog if catalog is not None else installed_catalog()
        sources = [s for s in (sources or ()) if s is not None]
        if not sources or any(str(s) == runs.LATEST for s in sources
                              if not isinstance(s, LoadedModel)):
            newest = str(newest_served_run(self.runs_dir, self.catalog))
            sources = [newest if not isinstance(s, LoadedModel) and str(s) == runs.LATEST
                       else s for s in sources] or [newest]
        for source in sources:
            if not isinstance(source, LoadedModel) and not Path(
                    str(source).removesuffix(":best")).exists():
                raise CheckpointError(f"--model {source}: no such run folder or checkpoint")
        self.entries: dict[str, Served] = {}
        for source in sources:
            name, n = _name_for(source), 2
            while f"{name}" in self.entries:
                name = f"{_name_for(source)}-{n}"
                n += 1
            entry = Served(name, source.checkpoint.as_posix() if isinstance(source, LoadedModel)
                           else str(source))
            if isinstance(source, LoadedModel):
                entry.loaded, entry.status = source, READY
                entry.ready.set()
            self.entries[name] = entry
        self._pending = [e for e in self.entries.values() if e.status == LOADING]
        self._started = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Begin loading what is not loaded yet (once; later calls do nothing)."""
        with self._lock:
            if self._started or not self._pending:
                self._started = True
                return
            self._started = True
        threading.Thread(target=self._load_all, name="img2img-serve-load", daemon=True).start()

    def _load_all(self) -> None:
        for entry in self._pending:
            try:
                entry.loaded = load(entry.source, device=self.device, runs_dir=self.runs_dir,
                                    catalog=self.catalog, tile=self.tile)
                entry.status = READY
                log.info("loaded %s (%s)", entry.name, entry.loaded.checkpoint)
            except Exception as exc:  # a broken run is reported by the API, not fatal
                entry.error = str(exc) if isinstance(exc, Img2ImgError) else \
                    f"{type(exc).__name__}: {exc}"
                entry.status = FAILED
                log.error("cannot load %s: %s", entry.source, entry.error)
            finally:
                entry.ready.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every run has loaded or failed; False if `timeout` passed first."""
        self.start()
        return all(entry.ready.wait(timeout) for entry in self.entries.values())

    @property
    def loading(self) -> bool:
        return any(e.status == LOADING for e in self.entries.values())

    def describe(self) -> list[dict[str, Any]]:
        return [entry.describe() for entry in self.entries.values()]

    def get(self, name: str | None, kind: type[LoadedModel]) -> tuple[str, Any]:
        """The ready model `name` (may be left out when one run is served) that is a `kind`
        (Translator or Sampler); 404, 422 or 503 otherwise."""
        self.start()
        if not name:
            if len(self.entries) != 1:
                raise ApiError(422, "several models are served; name one with the 'model' "
                                    f"field: {', '.join(self.entries)}")
            name = next(iter(self.entries))
        entry = self.entries.get(name)
        if entry is None:
            raise ApiError(404, f"unknown model '{name}'; served: {', '.join(self.entries)}")
        if entry.status == LOADING:
            raise ApiError(503, f"model '{name}' is still loading; try again shortly",
                           retry_after=2)
        if entry.status == FAILED:
            raise ApiError(500, f"model '{name}' could not be loaded: {entry.error}")
        if not isinstance(entry.loaded, kind):
            if kind is Translator:
                raise ApiError(422, f"model '{name}' ({entry.loaded.name}) generates images "
                                    "from noise, it does not translate them; use /api/sample")
            raise ApiError(422, f"model '{name}' ({entry.loaded.name}) translates images, it "
                                "does not sample them; use /api/translate")
        return name, entry.loaded


__all__ = ["ApiError", "ModelPool", "Served", "newest_served_run"]
