"""Config files for `img2img train` (`img2img.training.configfile`): `--config FILE` (TOML, YAML
or a past run's config.json) between the preset and typed flags, `--print-config` writing a file
that `--config` reads back to the same run, the IMG2IMG_RUNS_DIR / IMG2IMG_DEVICE defaults, the
errors a broken file gives, and `img2img.train(config=...)`. Only one fixture trains for real
(a past run to repeat); everywhere else `Trainer` is replaced by test_cli's recorder."""
from __future__ import annotations

import json
import re
import sys
import types
from pathlib import Path

import pytest
from click.testing import CliRunner
from test_cli import help_entries, trainer  # noqa: F401 (trainer: a fixture)

import img2img
from img2img.cli import build_cli
from img2img.registry.loading import add_plugin, load_plugins
from img2img.runs.checkpoints import from_record
from img2img.testing import write_sample_images
from img2img.training import configfile
from img2img.training.settings import PRECEDENCE, TrainConfig

try:
    import tomllib
except ImportError:  # Python 3.10: the backport img2img depends on there
    import tomli as tomllib

BUILTINS = {"IMG2IMG_LOAD_PLUGINS": "img2img_pix2pix,img2img_cyclegan,img2img_handwriting"}
PRESETS = [
    img2img.Preset("small", "cyclegan", "small crops, no pool",
                   options={"pool_size": 0, "lambda_cycle": 5.0},
                   training={"crop_size": 32, "load_size": 32}),
    img2img.Preset("tiny", "pix2pix", "a small L1 weight", options={"lambda_l1": 5.0}),
    img2img.Preset("plain", "pix2pix", "sets nothing"),
]
SMALL_RUN = dict(generator="unet-32", ngf=8, ndf=8, load_size=32, crop_size=32, batch_size=2,
                 workers=0, max_steps=1, sample_every=0, checkpoint_every=0, device="cpu")


def _plugins():
    pm = load_plugins(strict=True, env=BUILTINS)
    hooks = types.SimpleNamespace(register_presets=img2img.hookimpl(
        lambda register: [register(p) for p in PRESETS]))
    add_plugin(pm, hooks, "test_presets", distribution="img2img-test-presets", version="1.0")
    return pm


@pytest.fixture
def cli():
    return build_cli(_plugins())


@pytest.fixture
def catalog():
    return img2img.catalog(_plugins())


@pytest.fixture(scope="module")
def past_run(tmp_path_factory):
    """A real (one-step) pix2pix run with the preset "tiny" and a few settings of its own."""
    root = tmp_path_factory.mktemp("past")
    data = write_sample_images("paired", root / "data", n=2, size=32)["data"]
    return img2img.train("pix2pix", preset="tiny", data=data, runs_dir=root / "runs",
                         name="old", seed=5, lr=1e-4, progress=False,
                         catalog=img2img.catalog(_plugins()), **SMALL_RUN)


def invoke(cli, *args):
    return CliRunner().invoke(cli, ["train", *map(str, args)])


def recorded(cli, trainer, *args):
    """Run `train ...` with the recorder and return what the trainer was given."""
    result = invoke(cli, *args)
    assert result.exit_code == 0, result.output
    [call] = trainer.calls
    trainer.calls = []
    return call


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- precedence ---------------------------------------------------------------------------------
def test_each_level_beats_the_one_below(cli, trainer, tmp_path):
    """field default < model default < preset < config file < typed flag, one field per level."""
    config = write(tmp_path / "exp.toml", 'model = "cyclegan"\npreset = "small"\nseed = 3\n'
                                          "load_size = 40\n[options]\nlambda_cycle = 7.0\n")
    call = recorded(cli, trainer, "cyclegan", "--config", config, "--seed", "9")
    assert call.config.beta1 == 0.5 == TrainConfig().beta1  # set nowhere: the field default
    assert call.config.gan_loss == "lsgan"  # cyclegan's training default (the field's: vanilla)
    assert call.options.pool_size == 0 and call.config.crop_size == 32  # the file's preset
    assert call.options.lambda_cycle == 7.0 and call.config.load_size == 40  # file over preset
    assert call.config.seed == 9  # the typed flag over the file
    assert call.kwargs["preset"] == "small"
    # A typed flag equal to its default still wins, and a typed --preset replaces the file's.
    call = recorded(cli, trainer, "cyclegan", "--config", config, "--seed", "0")
    assert call.config.seed == 0
    plain = write(tmp_path / "plain.toml", 'preset = "tiny"\n')
    call = recorded(cli, trainer, "pix2pix", "--config", plain, "--preset", "plain")
    assert call.kwargs["preset"] == "plain" and call.options.lambda_l1 == 100.0


def test_help_shows_the_precedence_under_configuration(cli):
    result = invoke(cli, "pix2pix", "--help")
    assert result.exit_code == 0
    configuration = result.output.split("Configuration:")[1].split("Other options:")[0]
    entries = help_entries(configuration)
    assert {"--config", "--print-config", "-o,", "--preset"} <= set(entries)
    assert f"Precedence: {PRECEDENCE}" in entries["--config"]
    assert PRECEDENCE.index("preset") < PRECEDENCE.index("config file") < \
        PRECEDENCE.index("typed flag")


# -- --print-config -----------------------------------------------------------------------------
def test_print_config_then_config_gives_the_same_run(cli, trainer, tmp_path):
    flags = ["--preset", "small", "--lambda-identity", "0.25", "--data", tmp_path / "d",
             "--max-steps", "7", "--no-flip", "--channels", "1", "--lr", "0.0003"]
    direct = recorded(cli, trainer, "cyclegan", *flags)
    out = tmp_path / "all.toml"
    result = invoke(cli, "cyclegan", *flags, "--print-config", "-o", out,
                    "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 0, result.output
    assert trainer.calls == [] and not (tmp_path / "runs").exists()  # nothing trained
    text = out.read_text(encoding="utf-8")
    stdout = invoke(cli, "cyclegan", *flags, "--print-config", "--runs-dir", tmp_path / "runs")
    assert stdout.stdout == text
    parsed = tomllib.loads(text)
    assert parsed["model"] == "cyclegan" and parsed["preset"] == "small"
    for name in [*TrainConfig.__dataclass_fields__, *direct.options.__dataclass_fields__]:
        assert re.search(rf"^(# )?{name} = ", text, re.MULTILINE), name  # every setting
    assert "max_bad_samples" not in parsed["training"]  # None: a comment (TOML has no null)

    again = recorded(cli, trainer, "cyclegan", "--config", out, "--runs-dir", "runs")
    assert again.options == direct.options
    assert again.config == direct.config
    assert again.kwargs["preset"] == direct.kwargs["preset"] == "small"


def test_print_config_refuses_resume_and_o_needs_it(cli, trainer, tmp_path):
    result = invoke(cli, "pix2pix", "--print-config", "--resume")
    assert result.exit_code == 2 and "--print-config" in result.stderr
    result = invoke(cli, "pix2pix", "-o", tmp_path / "x.toml")
    assert result.exit_code == 2 and "-o/--output goes with --print-config" in result.stderr
    blocked = write(tmp_path / "file", "")
    result = invoke(cli, "pix2pix", "--print-config", "-o", blocked / "x.toml")
    assert result.exit_code == 2 and f"-o {blocked / 'x.toml'}: cannot write" in result.stderr
    assert trainer.calls == []


# -- a past run's config.json -------------------------------------------------------------------
def test_a_past_runs_config_json_repeats_its_settings(cli, trainer, past_run):
    record = json.loads((past_run / "config.json").read_text())
    call = recorded(cli, trainer, "pix2pix", "--config", past_run / "config.json")
    assert call.options == from_record(call.model_cls.Options, record["options"], "options")
    assert call.config == from_record(TrainConfig, record["training"], "training")
    assert (call.config.seed, call.config.lr, call.options.ngf) == (5, 1e-4, 8)
    assert call.options.lambda_l1 == 5.0 and call.kwargs["preset"] == "tiny"  # its preset
    # Typed flags and a typed preset still win; the run folder itself names its config.json.
    call = recorded(cli, trainer, "pix2pix", "--config", past_run, "--max-steps", "3",
                    "--preset", "plain")
    assert call.config.max_steps == 3 and call.config.seed == 5
    assert call.kwargs["preset"] == "plain" and call.options.lambda_l1 == 5.0  # from the file


def test_a_past_run_of_another_model_is_refused(cli, trainer, past_run):
    result = invoke(cli, "cyclegan", "--config", past_run / "config.json")
    assert result.exit_code == 2
    assert "model = 'pix2pix'" in result.stderr and "img2img train pix2pix --config" in \
        result.stderr
    assert trainer.calls == []


# -- errors -------------------------------------------------------------------------------------
ERRORS = {
    "unknown key": ("exp.toml", "lambda_l11 = 3.0\n",
                    ["unknown key 'lambda_l11'", "did you mean lambda_l1"]),
    "unknown key in a table": ("exp.toml", "[training]\ncrop = 3\n",
                               ["unknown key 'training.crop'", "crop_size"]),
    "wrong table": ("exp.toml", "[options]\ncrop_size = 3\n",
                    ["'options.crop_size' is in the wrong table", "[training]"]),
    "wrong type": ("exp.toml", 'crop_size = "big"\n',
                   ['crop_size = "big": expected a whole number']),
    "wrong type in a table": ("exp.toml", "[training]\nlr = true\n",
                              ["training.lr = true: expected a number"]),
    "a path that is not a string": ("exp.toml", "data = 3\n",
                                    ["data = 3: expected a path (a string)"]),
    "not a choice": ("exp.toml", 'gan_loss = "nope"\n',
                     ['gan_loss = "nope": expected one of vanilla, lsgan']),
    "out of range": ("exp.toml", "lambda_l1 = -1.0\n",
                     ["lambda_l1 = -1.0 is out of range: expected a value >= 0"]),
    "wrong model": ("exp.toml", 'model = "cyclegan"\n',
                    ["model = 'cyclegan'", "img2img train cyclegan --config"]),
    "unknown preset": ("exp.toml", 'preset = "quick"\n', ["preset:", "no preset 'quick'"]),
    "broken TOML": ("exp.toml", "lr = \n", ["not valid TOML", "line 1"]),
    "unknown format": ("exp.ini", "lr = 1\n", ["unknown config format '.ini'"]),
    "unknown key in a run record": ("config.json", '{"options": {"ngff": 3}}',
                                    ["unknown key 'options.ngff'", "ngf"]),
    "null for a required setting": ("config.json", '{"training": {"epochs": null}}',
                                    ["training.epochs = null: expected a whole number"]),
}


@pytest.mark.parametrize("case", ERRORS)
def test_a_bad_file_is_one_line_naming_file_and_key_exit_2(cli, tmp_path, case):
    name, text, expected = ERRORS[case]
    path = write(tmp_path / name, text)
    runs = tmp_path / "runs"
    result = invoke(cli, "pix2pix", "--config", path, "--runs-dir", runs, "--device", "cpu")
    assert result.exit_code == 2, result.output
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: {path}: ") or line.startswith(f"Error: --config {path}: ")
    for part in expected:
        assert part in line
    assert "Traceback" not in result.output and not runs.exists()


def test_a_missing_file_is_named(cli, tmp_path):
    result = invoke(cli, "pix2pix", "--config", tmp_path / "nope.toml")
    assert result.exit_code == 2
    assert f"--config {tmp_path / 'nope.toml'}: no such file" in result.stderr


def test_resume_with_config_is_refused(cli, trainer, tmp_path):
    path = write(tmp_path / "exp.toml", "lr = 0.001\n")
    result = invoke(cli, "pix2pix", "--resume", "--config", path)
    assert result.exit_code == 2
    assert "--config: a resumed run keeps its own settings" in result.stderr
    assert trainer.calls == []


# -- YAML ---------------------------------------------------------------------------------------
def test_yaml_files_read_like_toml(cli, trainer, tmp_path):
    pytest.importorskip("yaml")
    path = write(tmp_path / "exp.yaml", "preset: tiny\ncrop_size: 64\ntraining:\n  lr: 0.001\n"
                                        "options:\n  generator: unet-64\n")
    call = recorded(cli, trainer, "pix2pix", "--config", path)
    assert (call.config.crop_size, call.config.lr) == (64, 0.001)
    assert call.options.generator == "unet-64" and call.options.lambda_l1 == 5.0


def test_yaml_without_pyyaml_says_how_to_install_it(cli, trainer, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "yaml", None)  # `import yaml` now raises ImportError
    result = invoke(cli, "pix2pix", "--config", write(tmp_path / "exp.yml", "lr: 0.1\n"))
    assert result.exit_code == 2
    [line] = result.stderr.strip().splitlines()
    assert "pip install 'img2img[yaml]'" in line and trainer.calls == []


# -- environment --------------------------------------------------------------------------------
def test_environment_defaults_sit_below_file_and_typed_flags(trainer, tmp_path, monkeypatch):
    monkeypatch.setenv("IMG2IMG_RUNS_DIR", str(tmp_path / "env-runs"))
    monkeypatch.setenv("IMG2IMG_DEVICE", "cpu")
    cli = build_cli(_plugins())
    call = recorded(cli, trainer, "pix2pix")
    assert (call.config.runs_dir, call.config.device) == (tmp_path / "env-runs", "cpu")
    path = write(tmp_path / "exp.toml", f'runs_dir = "{tmp_path / "file-runs"}"\n')
    call = recorded(cli, trainer, "pix2pix", "--config", path)
    assert (call.config.runs_dir, call.config.device) == (tmp_path / "file-runs", "cpu")
    call = recorded(cli, trainer, "pix2pix", "--config", path, "--device", "auto")
    assert call.config.device == "auto"
    shown = help_entries(invoke(cli, "pix2pix", "--help").output)["--runs-dir"]
    assert shown.replace(" ", "").endswith(f"[default:{tmp_path / 'env-runs'}]")  # (wrapped)


def test_environment_runs_dir_finds_the_run_to_resume(trainer, past_run, monkeypatch):
    monkeypatch.setenv("IMG2IMG_RUNS_DIR", str(past_run.parent))
    call = recorded(build_cli(_plugins()), trainer, "pix2pix", "--resume")
    assert call.kwargs["resume_from"].parent.parent == past_run


def test_a_bad_environment_device_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("IMG2IMG_DEVICE", "gpu")
    result = invoke(build_cli(_plugins()), "pix2pix", "--runs-dir", tmp_path / "runs")
    assert result.exit_code == 2
    assert "IMG2IMG_DEVICE=gpu is not a device" in result.stderr
    assert not (tmp_path / "runs").exists()


# -- Python -------------------------------------------------------------------------------------
def test_python_train_with_config_matches_the_command_line(cli, catalog, trainer, tmp_path):
    path = write(tmp_path / "exp.toml", 'preset = "tiny"\n[options]\nngf = 16\nlambda_l1 = 7.0\n'
                                        "[training]\nseed = 3\n")
    img2img.train("pix2pix", config=path, lambda_l1=3.0, catalog=catalog)
    [call] = trainer.calls
    trainer.calls = []
    assert (call.options.ngf, call.options.lambda_l1, call.config.seed) == (16, 3.0, 3)
    assert call.kwargs["preset"] == "tiny"
    same = recorded(cli, trainer, "pix2pix", "--config", path, "--lambda-l1", "3")
    assert (same.options, same.config) == (call.options, call.config)
    text = img2img.api.settings_toml("pix2pix", config=path, lambda_l1=3.0, catalog=catalog)
    assert tomllib.loads(text)["options"]["lambda_l1"] == 3.0
    with pytest.raises(configfile.ConfigFileError, match="resumed run keeps its own settings"):
        img2img.train("pix2pix", config=path, resume="latest", catalog=catalog)


def test_the_documented_example_file_reads(cli, trainer, tmp_path):
    guide = Path(__file__).parents[2] / "docs" / "guides" / "configuration.md"
    [example] = re.findall(r"^```toml\n(.*?)^```$", guide.read_text(encoding="utf-8"),
                           re.MULTILINE | re.DOTALL)
    call = recorded(cli, trainer, "pix2pix", "--config", write(tmp_path / "x.toml", example))
    assert (call.options.ngf, call.config.crop_size, call.config.flip) == (32, 64, False)
    assert call.kwargs["preset"] == "handwriting" and call.config.channels == 1  # its preset
