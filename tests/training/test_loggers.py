"""Experiment trackers: `--logger` (repeatable, in config files and config.json), TensorBoard
scalars + sample grids + hparams, Weights & Biases offline, a plugin's logger through the
`register_loggers` hook, and the clear errors (unknown name, missing package) before any run
folder exists."""
from __future__ import annotations

import re
import sys

import numpy as np
import pytest
from click.testing import CliRunner

import img2img
from img2img.cli import build_cli
from img2img.errors import PluginError
from img2img.registry.catalog import build_catalog
from img2img.registry.loading import PluginManager, add_plugin, load_plugins
from img2img.runs import checkpoints, folders as runs
from img2img.testing import check_model, write_sample_images
from img2img.training import loggers
from img2img.training.settings import TrainConfig
from img2img.training.trainer import Trainer
from img2img_pix2pix import Pix2Pix


class Memory(img2img.Logger):
    """A tracker that keeps what it is given (what a plugin's MLflow logger would send)."""

    name = "memory"
    opened: list["Memory"] = []

    def __init__(self, run_dir, resumed_at=None):
        super().__init__(run_dir, resumed_at)
        self.scalars, self.images, self.hparams, self.closed = [], [], None, False
        Memory.opened.append(self)

    def log_scalars(self, step, values):
        self.scalars.append((step, dict(values)))

    def log_images(self, step, images):
        self.images.append((step, dict(images)))

    def log_hparams(self, settings, metrics):
        self.hparams = (dict(settings), dict(metrics))

    def close(self):
        self.closed = True


class Plugin:
    @staticmethod
    @img2img.hookimpl
    def register_loggers(register):
        register(Memory)


def _catalog(*plugins, strict=True):
    pm = PluginManager(strict=strict)
    for i, plugin in enumerate(plugins):
        add_plugin(pm, plugin, f"plugin_{i}", distribution=f"dist-{i}")
    return pm, build_catalog(pm)


@pytest.fixture(scope="module")
def cli():
    return build_cli(load_plugins(strict=True))


def test_a_plugin_logger_gets_scalars_sample_grids_and_hparams(tmp_path, monkeypatch):
    _, cat = _catalog(Plugin)
    assert loggers.available(cat.loggers)["memory"] is Memory
    # as if the plugin were installed (check_model looks its logger up in the installed catalog)
    monkeypatch.setattr(sys.modules["img2img.registry.catalog"], "catalog", lambda pm=None: cat)
    Memory.opened = []
    run = check_model(Pix2Pix, workdir=tmp_path, steps=2, logger=("memory",), log_every=1)
    (memory,) = Memory.opened
    assert memory.run_dir == run and memory.resumed_at is None and memory.closed
    assert [step for step, _ in memory.scalars] == [1, 2]
    assert any(k.startswith("g/") for k in memory.scalars[0][1]) and "lr" in memory.scalars[0][1]
    step, images = memory.images[-1]
    grid = images["samples"]
    assert step == 2 and grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    settings, final = memory.hparams
    assert settings["model"] == "pix2pix" and settings["training.logger"] == ["memory"]
    assert final and all(k.startswith(("g/", "d/")) for k in final)
    assert runs.sample_columns(run) == ["a", "fake_b", "b"]  # Pix2Pix.visuals()


def test_a_run_finds_its_loggers_in_the_catalog_it_was_given(tmp_path):
    """`img2img.train(catalog=...)` resolves `--logger` in that catalog, not in the installed
    one (which does not have this logger), for a new run and for its resumption."""
    pm = load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix"})
    add_plugin(pm, Plugin, "memory_logger", distribution="img2img-memory")
    cat = build_catalog(pm)
    assert "memory" in cat.loggers and "memory" not in img2img.catalog().loggers
    folders = write_sample_images("paired", tmp_path / "data", n=2, size=40)
    small = dict(generator="unet-32", ngf=4, ndf=4, load_size=32, crop_size=32, batch_size=2,
                 workers=0, log_every=1, sample_every=0, checkpoint_every=0, device="cpu")
    Memory.opened = []
    run = img2img.train("pix2pix", catalog=cat, logger=("memory",), max_steps=1,
                        runs_dir=tmp_path / "runs", progress=False, **folders, **small)
    img2img.train("pix2pix", catalog=cat, resume=run, max_steps=2, progress=False)
    first, resumed = Memory.opened
    assert first.run_dir == resumed.run_dir == run and resumed.resumed_at == 1
    assert [step for step, _ in first.scalars] == [1] and [s for s, _ in resumed.scalars] == [2]


def test_a_plugin_may_not_take_a_built_in_logger_name():
    class Shadow(Memory):
        name = "tensorboard"

    class Partial(img2img.Logger):
        name = "partial"

        def log_scalars(self, step, values):
            pass

    class Bad:
        @staticmethod
        @img2img.hookimpl
        def register_loggers(register):
            register(Shadow)
            register(object)
            register(Partial)

    pm, cat = _catalog(Bad, strict=False)
    assert "tensorboard" not in cat.loggers
    assert any("built in" in e for e in pm.errors())
    assert any("not a subclass of img2img.Logger" in e for e in pm.errors())
    assert any("Partial does not implement: log_images, log_hparams" in e for e in pm.errors())
    assert not cat.loggers
    with pytest.raises(PluginError, match="built in"):
        _catalog(Bad)


def test_unknown_logger_is_a_usage_error_before_the_run_folder(cli, tmp_path, monkeypatch):
    # A typo is reported as a typo even where the other named logger's package is missing.
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    folders = write_sample_images("paired", tmp_path / "data", n=2, size=40)
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--data", str(folders["data"]),
                                      "--runs-dir", str(tmp_path / "runs"), "--logger",
                                      "tensorboard", "--logger", "mlflow"])
    assert result.exit_code == 2, result.output
    assert "--logger mlflow: no such logger; available: none, tensorboard, wandb" in \
        result.output
    assert not (tmp_path / "runs").exists()


def test_a_missing_package_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "wandb", None)
    for name in ("tensorboard", "wandb"):
        with pytest.raises(img2img.Img2ImgError,
                           match=re.escape(f"--logger {name} needs the {name} extra: "
                                           f"pip install 'img2img[{name}]'")):
            loggers.resolve([name])


def test_logger_round_trips_through_print_config_and_old_records(cli, tmp_path):
    out = tmp_path / "run.toml"
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--logger", "tensorboard", "--logger",
                                      "wandb", "--print-config", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert 'logger = ["tensorboard", "wandb"]' in out.read_text()
    again = CliRunner().invoke(cli, ["train", "pix2pix", "--config", str(out),
                                     "--print-config"])
    assert again.exit_code == 0 and again.stdout == out.read_text()
    single = tmp_path / "single.toml"
    single.write_text('logger = "tensorboard"\n')
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--config", str(single),
                                      "--print-config"])
    assert 'logger = ["tensorboard"]' in result.stdout
    single.write_text("logger = 3\n")
    result = CliRunner().invoke(cli, ["train", "pix2pix", "--config", str(single)])
    assert result.exit_code == 2 and "a string or a list of strings" in result.output
    # config.json of runs from before --logger repeated holds one string
    for old, new in (("tensorboard", ("tensorboard",)), ("none", ()), (["none"], ())):
        saved = checkpoints.from_record(TrainConfig, {"logger": old}, "training settings")
        assert saved.logger == new
    assert TrainConfig(logger="wandb").logger == ("wandb",)


def test_tensorboard_gets_scalars_images_and_hparams_and_resume_appends(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = check_model(Pix2Pix, workdir=tmp_path, steps=2, logger=("tensorboard",),
                      log_every=1)
    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    tags = events.Tags()
    assert "samples" in tags["images"]
    assert any(t.startswith("g/") for t in tags["scalars"]) and "lr" in tags["scalars"]
    assert [e.step for e in events.Scalars("lr")] == [1, 2]
    assert events.PluginTagToContent("hparams")  # the settings, in the HParams tab
    Trainer.resume(Pix2Pix, run, epochs=2, max_steps=4, progress=False).fit()
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.step for e in events.Scalars("lr")] == [1, 2, 3, 4]  # the resumed run appends
    log = loggers.RunLog(run, [loggers.TensorBoardLogger], resumed_at=1)
    log.write({"step": 2, "g/l1": 0.25})
    log.close(runs.read_config(run))
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    assert [e.value for e in events.Scalars("g/l1") if e.step == 2][-1] == 0.25


def test_wandb_runs_offline_in_the_run_folder_and_resumes_its_id(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")  # nothing is sent anywhere
    monkeypatch.setenv("WANDB_SILENT", "true")
    for variable in ("WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_PROJECT"):
        monkeypatch.delenv(variable, raising=False)
    run = runs.create_run(tmp_path, "w")
    runs.write_config(run, {"model": "pix2pix", "training": {"lr": 0.0002}})
    log = loggers.RunLog(run, [loggers.WandbLogger])
    log.write({"step": 1, "epoch": 1, "g/l1": 0.5})
    log.samples(1, np.zeros((8, 16, 3), np.uint8), ("real_a", "fake_b"))
    log.close(runs.read_config(run))
    run_id = (run / "wandb-id").read_text().strip()
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert offline and list(offline[0].glob("*.wandb"))
    again = loggers.RunLog(run, [loggers.WandbLogger], resumed_at=1)
    assert again.loggers[0].run.id == run_id
    again.close(runs.read_config(run))


def test_the_guide_s_tracker_example_registers_and_writes_its_csv(tmp_path, monkeypatch):
    import types
    from pathlib import Path

    guide = (Path(__file__).resolve().parents[2] / "plugins" / "README.md").read_text()
    (code,) = [block for block in re.findall(r"^```python\n(.*?)^```$", guide,
                                             re.MULTILINE | re.DOTALL)
               if "def register_loggers" in block]
    module = types.ModuleType("guide_tracker")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "plugins/README.md tracker block", "exec"), module.__dict__)
    _, cat = _catalog(types.SimpleNamespace(register_loggers=module.register_loggers))
    (tracker,) = loggers.resolve(["csv"], cat.loggers)
    run = runs.create_run(tmp_path, "csv")
    runs.write_config(run, {"model": "pix2pix"})
    log = loggers.RunLog(run, [tracker])
    log.write({"step": 3, "epoch": 1, "g/l1": 0.5})
    log.samples(3, np.zeros((4, 4, 3), np.uint8), ["a"])
    log.close(runs.read_config(run))
    assert (run / "scalars.csv").read_text().splitlines() == ["3,g/l1,0.5", "final,g/l1,0.5"]


def test_a_wandb_run_that_cannot_start_says_how_to_go_offline(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")

    def refuse(**_):
        raise wandb.errors.UsageError("api_key not configured (no-tty)")

    monkeypatch.setattr(wandb, "init", refuse)
    run = runs.create_run(tmp_path, "w")
    runs.write_config(run, {"model": "pix2pix"})
    with pytest.raises(img2img.Img2ImgError, match="api_key not configured.*WANDB_MODE=offline"):
        loggers.RunLog(run, [loggers.WandbLogger])
