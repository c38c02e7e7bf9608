"""The `img2img` command line (`img2img.cli.build_cli`) over the installed built-ins and test
plugins: help, listings, one-line errors with exit codes, `--debug`, and how flags, presets and a
model's training defaults combine. Nothing trains here: `Trainer` is replaced by a recorder."""
from __future__ import annotations

import importlib.metadata as md
import re
import types
from pathlib import Path
from typing import ClassVar

import click
import pytest
from click.testing import CliRunner

import img2img
import img2img.api
import img2img.cli
from img2img.cli import build_cli
from img2img.registry.loading import add_plugin, load_plugins

# The two models these tests describe, whatever else is installed (presets, examples).
BUILTIN_MODELS_ONLY = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan"}

PIX2PIX_PRESET = img2img.Preset("tiny", "pix2pix", "small crops for tests",
                                options={"lambda_l1": 5.0},
                                training={"crop_size": 32, "load_size": 32})
CYCLEGAN_PRESET = img2img.Preset("hinged", "cyclegan", "hinge loss, no pool",
                                 options={"pool_size": 0}, training={"gan_loss": "hinge"})


@img2img.hookimpl
def register_presets(register):
    register(PIX2PIX_PRESET)
    register(CYCLEGAN_PRESET)


@click.command("hello")
@click.option("--who", default="world")
def hello(who):
    """Greet someone (a plugin command)."""
    click.echo(f"hello {who}")


@img2img.hookimpl
def register_commands(register):
    register(hello)


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def cli():
    """The installed built-ins only, loaded strictly."""
    return build_cli(load_plugins(strict=True, env=BUILTIN_MODELS_ONLY))


@pytest.fixture
def cli_with_extras():
    """Built-ins plus a plugin with presets and a command."""
    pm = load_plugins(strict=True, env=BUILTIN_MODELS_ONLY)
    extras = types.SimpleNamespace(register_presets=register_presets,
                                   register_commands=register_commands)
    add_plugin(pm, extras, "test_extras", distribution="img2img-test-extras", version="9.9")
    return build_cli(pm)


class RecordingTrainer:
    """Stands in for `img2img.Trainer`: records what the CLI resolved instead of training."""

    calls: ClassVar[list] = []
    resume = classmethod(img2img.Trainer.resume.__func__)  # checks, then records the resumed run

    def __init__(self, model_cls, options, config, **kwargs):
        RecordingTrainer.calls.append(types.SimpleNamespace(
            model_cls=model_cls, options=options, config=config, kwargs=kwargs))
        self.run_dir = Path(config.runs_dir) / "recorded-run"

    def fit(self):
        return self.run_dir


@pytest.fixture
def trainer(monkeypatch):
    RecordingTrainer.calls = []
    monkeypatch.setattr(img2img.api, "Trainer", RecordingTrainer)
    return RecordingTrainer


def train(runner, cli, trainer, *args):
    """Run `train ...` and return what the trainer was given."""
    result = runner.invoke(cli, ["train", *args])
    assert result.exit_code == 0, result.output
    [call] = trainer.calls
    trainer.calls = []
    assert result.stdout.strip() == str(call.config.runs_dir / "recorded-run")
    return call


def help_entries(text: str) -> dict[str, str]:
    """`--flag` -> its whole help entry, whitespace normalised (click wraps long lines)."""
    entries: dict[str, str] = {}
    current = None
    for line in text.splitlines():
        if re.match(r"^  -", line):
            current = line.split()[0].split("/")[0]
            entries[current] = line.strip()
        elif current and line.startswith("    "):
            entries[current] += " " + line.strip()
        else:
            current = None
    return {k: " ".join(v.split()) for k, v in entries.items()}


# -- help ---------------------------------------------------------------------------------------
def test_root_help_lists_commands(runner, cli):
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    commands = result.output.split("Commands:")[1]
    for name in ("train", "plugins", "models", "presets"):
        assert re.search(rf"^  {name}\b", commands, re.MULTILINE), name


def test_version(runner, cli):
    result = runner.invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert md.version("img2img") in result.output


def test_train_help_lists_models(runner, cli):
    result = runner.invoke(cli, ["train", "--help"])
    assert result.exit_code == 0
    assert re.search(r"^  pix2pix\s+paired translation", result.output, re.MULTILINE)
    assert re.search(r"^  cyclegan\s+unpaired translation", result.output, re.MULTILINE)


def test_cyclegan_help_shows_its_options_and_shared_flags(runner, cli):
    result = runner.invoke(cli, ["train", "cyclegan", "--help"])
    assert result.exit_code == 0
    entries = help_entries(result.output)
    assert "cycle-consistency" in entries["--lambda-cycle"]
    assert entries["--lambda-cycle"].endswith("[default: 10.0; x>=0]")  # and its range
    assert entries["--lambda-identity"].endswith("[default: 0.5; x>=0]")
    assert entries["--pool-size"].endswith("[default: 50; x>=0]")
    for shared in ("--data", "--a", "--b", "--max-steps", "--crop-size", "--resume", "--seed"):
        assert shared in entries, shared
    assert entries["--crop-size"].endswith("[default: 256]")
    assert entries["--gan-loss"].endswith("[default: lsgan]")  # the model's training default
    assert "Data: unpaired." in result.output
    assert "--preset [fast]" in entries["--preset"]  # its own recipe; the faces plugin is not loaded
    assert "--lambda-l1" not in entries  # pix2pix's option


def test_pix2pix_help_shows_its_own_defaults(runner, cli):
    result = runner.invoke(cli, ["train", "pix2pix", "--help"])
    assert result.exit_code == 0
    entries = help_entries(result.output)
    assert entries["--lambda-l1"].endswith("[default: 100.0; x>=0]")
    assert entries["--gan-loss"].endswith("[default: vanilla]")
    assert "--lambda-cycle" not in entries


def test_help_lists_presets_with_their_summaries(runner, cli_with_extras):
    result = runner.invoke(cli_with_extras, ["train", "pix2pix", "--help"])
    entries = help_entries(result.output)
    assert "--preset [fast|tiny]" in entries["--preset"]
    assert "tiny: small crops for tests" in entries["--preset"]
    assert "fast: more quality per minute of training" in entries["--preset"]


# -- listings -----------------------------------------------------------------------------------
def test_plugins_lists_distribution_and_registrations(runner, cli_with_extras):
    result = runner.invoke(cli_with_extras, ["plugins"])
    assert result.exit_code == 0
    version = md.version("img2img")
    assert f"img2img_pix2pix  (img2img {version})  ok" in result.output
    assert f"img2img_cyclegan  (img2img {version})  ok" in result.output
    assert "test_extras  (img2img-test-extras 9.9)  ok" in result.output
    assert "registers: model pix2pix" in result.output
    assert "registers: model cyclegan" in result.output
    assert ("registers: preset pix2pix/tiny, preset cyclegan/hinged, command hello"
            in result.output)


def test_plugins_shows_a_broken_plugin_and_exits_zero(runner, make_plugin):
    broken = make_plugin("raise ImportError('needs libfoo')\n", name="broken_plugin",
                         dist="broken-dist")
    pm = load_plugins(entry_points=[*md.entry_points(group="img2img"), broken], env={})
    result = runner.invoke(build_cli(pm), ["plugins"])
    assert result.exit_code == 0
    assert "broken_plugin  (broken-dist 1.0)  FAILED" in result.stdout
    assert "error: failed to import: ImportError: needs libfoo" in result.stdout
    assert "img2img_pix2pix" in result.stdout and "registers: model pix2pix" in result.stdout
    # Every command warns about it on stderr.
    assert "warning: plugin 'broken_plugin' (broken-dist)" in result.stderr


def test_broken_plugin_does_not_break_training_commands(runner, make_plugin):
    broken = make_plugin("raise RuntimeError('boom')\n", name="broken_plugin")
    pm = load_plugins(entry_points=[*md.entry_points(group="img2img"), broken], env={})
    result = runner.invoke(build_cli(pm), ["train", "--help"])
    assert result.exit_code == 0
    assert "pix2pix" in result.stdout and "cyclegan" in result.stdout


def test_plugins_with_nothing_loaded(runner):
    pm = load_plugins(env={"IMG2IMG_LOAD_PLUGINS": ""})
    result = runner.invoke(build_cli(pm), ["plugins"])
    assert result.exit_code == 0
    assert "No plugins loaded (check IMG2IMG_LOAD_PLUGINS)" in result.output


def test_models_lists_each_model(runner, cli_with_extras):
    result = runner.invoke(cli_with_extras, ["models"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    [pix2pix] = [line for line in lines if line.startswith("pix2pix ")]
    [cyclegan] = [line for line in lines if line.startswith("cyclegan ")]
    # The built-in `fast` recipe of each, beside the test plugin's presets.
    assert "paired" in pix2pix and "[presets: fast, tiny; from img2img]" in pix2pix
    assert "unpaired" in cyclegan and "[presets: fast, hinged; from img2img]" in cyclegan


def test_models_with_none_installed(runner):
    result = runner.invoke(build_cli(load_plugins(env={"IMG2IMG_LOAD_PLUGINS": ""})), ["models"])
    assert result.exit_code == 0
    assert "No models registered" in result.output


def test_presets_lists_settings(runner, cli_with_extras):
    result = runner.invoke(cli_with_extras, ["presets"])
    assert result.exit_code == 0
    assert "tiny (pix2pix): small crops for tests" in result.stdout
    assert "sets --lambda-l1 5.0, --crop-size 32, --load-size 32" in result.stdout
    assert "hinged (cyclegan): hinge loss, no pool" in result.stdout
    assert "sets --pool-size 0, --gan-loss hinge" in result.stdout


def test_presets_with_none_registered(runner):
    result = runner.invoke(build_cli(load_plugins(env={"IMG2IMG_LOAD_PLUGINS": ""})), ["presets"])
    assert result.exit_code == 0 and "No presets registered." in result.output


def test_builtin_models_bring_their_fast_recipe(runner, cli):
    result = runner.invoke(cli, ["presets"])
    assert result.exit_code == 0
    assert "fast (pix2pix):" in result.output and "fast (cyclegan):" in result.output


def test_plugin_command_is_available(runner, cli_with_extras):
    assert "hello" in runner.invoke(cli_with_extras, ["--help"]).output
    result = runner.invoke(cli_with_extras, ["hello", "--who", "you"])
    assert result.exit_code == 0 and result.output == "hello you\n"


# -- errors -------------------------------------------------------------------------------------
def test_missing_data_folder_is_one_line_exit_2(runner, cli, tmp_path):
    missing = tmp_path / "no_such_folder"
    runs = tmp_path / "runs"
    result = runner.invoke(cli, ["train", "pix2pix", "--data", str(missing),
                                 "--runs-dir", str(runs), "--device", "cpu"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: ") and str(missing) in line
    assert not runs.exists()  # a run that never started leaves no run folder


def test_cyclegan_without_data_names_the_flags(runner, cli, tmp_path):
    result = runner.invoke(cli, ["train", "cyclegan", "--runs-dir", str(tmp_path / "runs"),
                                 "--device", "cpu"])
    assert result.exit_code != 0
    assert "--a" in result.stderr and "--b" in result.stderr
    assert "Traceback" not in result.output


def test_cyclegan_with_only_a_asks_for_b(runner, cli, tmp_path):
    result = runner.invoke(cli, ["train", "cyclegan", "--a", str(tmp_path),
                                 "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"])
    assert result.exit_code == 2
    assert "--a and --b" in result.stderr


def test_load_size_smaller_than_crop_size_is_a_clear_error(runner, cli, trainer):
    result = runner.invoke(cli, ["train", "pix2pix", "--load-size", "64", "--crop-size", "128"])
    assert result.exit_code == 2  # a usage error, as click's own parse errors
    assert "--load-size (64) must be at least --crop-size (128)" in result.stderr
    assert "Traceback" not in result.output
    assert trainer.calls == []


def test_bad_flag_value_is_a_usage_error(runner, cli):
    result = runner.invoke(cli, ["train", "cyclegan", "--pool-size", "many"])
    assert result.exit_code == 2
    assert "--pool-size" in result.stderr and "many" in result.stderr


def test_unknown_choice_is_a_usage_error(runner, cli):
    result = runner.invoke(cli, ["train", "pix2pix", "--gan-loss", "nope"])
    assert result.exit_code == 2 and "--gan-loss" in result.stderr


def test_unknown_model_is_a_usage_error(runner, cli):
    result = runner.invoke(cli, ["train", "stylegan"])
    assert result.exit_code == 2 and "stylegan" in result.stderr


def test_debug_reraises_the_error(runner, cli, tmp_path):
    missing = tmp_path / "no_such_folder"
    result = runner.invoke(cli, ["--debug", "train", "pix2pix", "--data", str(missing),
                                 "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"])
    assert isinstance(result.exception, img2img.DataError)
    assert str(missing) in str(result.exception)


def test_img2img_debug_env_reraises(runner, cli, tmp_path, monkeypatch):
    monkeypatch.setenv("IMG2IMG_DEBUG", "1")
    result = runner.invoke(cli, ["train", "pix2pix", "--data", str(tmp_path / "missing"),
                                 "--runs-dir", str(tmp_path / "runs"), "--device", "cpu"])
    assert isinstance(result.exception, img2img.DataError)


def test_unexpected_error_is_reported_as_internal(runner, cli, monkeypatch):
    class Exploding(RecordingTrainer):
        def fit(self):
            raise ZeroDivisionError("oops")

    monkeypatch.setattr(img2img.api, "Trainer", Exploding)
    result = runner.invoke(cli, ["train", "pix2pix"])
    assert result.exit_code == 1
    assert "internal error: ZeroDivisionError: oops" in result.stderr
    assert "--debug" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["--debug", "train", "pix2pix"])
    assert isinstance(result.exception, ZeroDivisionError)


def test_resume_refuses_new_model_options(runner, cli, trainer):
    result = runner.invoke(cli, ["train", "pix2pix", "--resume", "--lambda-l1", "3"])
    assert result.exit_code == 1
    assert "--lambda-l1: model options cannot change when resuming" in result.stderr
    assert trainer.calls == []


# -- how settings combine -----------------------------------------------------------------------
def test_field_defaults_without_preset(runner, cli, trainer):
    call = train(runner, cli, trainer, "pix2pix")
    assert call.model_cls.name == "pix2pix"
    assert call.options == call.model_cls.Options()
    assert call.options.lambda_l1 == 100.0
    assert (call.config.crop_size, call.config.load_size) == (256, 286)
    assert call.config.gan_loss == "vanilla"
    assert call.kwargs["plugin"] == {"name": "img2img_pix2pix", "distribution": "img2img",
                                     "version": md.version("img2img")}


def test_model_training_defaults_beat_field_defaults(runner, cli, trainer):
    call = train(runner, cli, trainer, "cyclegan")
    assert img2img.TrainConfig().gan_loss == "vanilla"
    assert call.config.gan_loss == "lsgan"


def test_typed_flags_are_converted_to_field_types(runner, cli, trainer):
    call = train(runner, cli, trainer, "cyclegan", "--lambda-cycle", "5", "--pool-size", "0",
                 "--channels", "1", "--max-steps", "3", "--data", "somewhere", "--no-flip")
    assert call.options.lambda_cycle == 5.0 and call.options.pool_size == 0
    assert call.config.channels == 1 and isinstance(call.config.channels, int)
    assert call.config.max_steps == 3 and call.config.flip is False
    assert call.config.data == Path("somewhere")


def test_preset_beats_defaults(runner, cli_with_extras, trainer):
    call = train(runner, cli_with_extras, trainer, "pix2pix", "--preset", "tiny")
    assert call.options.lambda_l1 == 5.0
    assert (call.config.crop_size, call.config.load_size) == (32, 32)
    assert call.options.ngf == 64  # what the preset leaves alone keeps its default


def test_preset_beats_model_training_defaults(runner, cli_with_extras, trainer):
    call = train(runner, cli_with_extras, trainer, "cyclegan", "--preset", "hinged")
    assert call.config.gan_loss == "hinge"
    assert call.options.pool_size == 0


def test_typed_flag_beats_preset(runner, cli_with_extras, trainer):
    call = train(runner, cli_with_extras, trainer, "pix2pix", "--preset", "tiny",
                 "--lambda-l1", "7", "--crop-size", "16")
    assert call.options.lambda_l1 == 7.0
    assert call.config.crop_size == 16
    assert call.config.load_size == 32  # not typed: the preset's


def test_typed_flag_equal_to_the_default_still_beats_preset(runner, cli_with_extras, trainer):
    call = train(runner, cli_with_extras, trainer, "pix2pix", "--preset", "tiny",
                 "--lambda-l1", "100")
    assert call.options.lambda_l1 == 100.0
    call = train(runner, cli_with_extras, trainer, "cyclegan", "--preset", "hinged",
                 "--gan-loss", "lsgan")
    assert call.config.gan_loss == "lsgan"


def test_flag_order_does_not_matter(runner, cli_with_extras, trainer):
    call = train(runner, cli_with_extras, trainer, "pix2pix", "--lambda-l1", "7",
                 "--preset", "tiny")
    assert call.options.lambda_l1 == 7.0


def test_preset_of_another_model_is_rejected(runner, cli_with_extras, trainer):
    result = runner.invoke(cli_with_extras, ["train", "pix2pix", "--preset", "hinged"])
    assert result.exit_code == 2 and "hinged" in result.stderr
    assert trainer.calls == []
