"""The catalog (`img2img.registry.catalog.build_catalog`): models, presets and commands indexed
by name, each validated and owned by the plugin that registered it; lookups name what is
installed."""
from __future__ import annotations

import dataclasses
import types

import click
import pytest
import torch

import img2img
from img2img.registry.catalog import Catalog, build_catalog, model_problems
from img2img.registry.catalog import BUILTIN_COMMANDS, TRAIN_FIELDS
from img2img.registry.loading import PluginManager, add_plugin, load_plugins


@dataclasses.dataclass(frozen=True)
class TinyOptions:
    width: int = dataclasses.field(default=4, metadata={"help": "network width"})


class Tiny(img2img.Model):
    name = "tiny"
    data = "paired"
    summary = "a test model"
    Options = TinyOptions
    directions = ("a_to_b",)

    def build_generators(self):
        return {"a_to_b": torch.nn.Identity()}

    def build_discriminators(self):
        return {"b": torch.nn.Identity()}

    def generate(self, batch):
        return {"fake_b": batch["a"]}

    def generator_losses(self, batch, fakes):
        return {"l1": fakes["fake_b"].abs().mean()}

    def discriminator_losses(self, batch, fakes):
        return {"fake": fakes["fake_b"].mean()}


class Other(Tiny):
    name = "other"
    data = "unpaired"


@click.command("hello")
def hello():
    """Say hello."""
    click.echo("hello")


def plugin(models=(), presets=(), commands=()):
    """A plugin object whose hooks register the given things."""
    def hook(things):
        @img2img.hookimpl
        def impl(register):
            for thing in things:
                register(thing)
        return impl
    hooks = {"register_models": models, "register_presets": presets,
             "register_commands": commands}
    return types.SimpleNamespace(**{name: hook(things) for name, things in hooks.items()
                                    if things})


def catalog_with(*plugins, strict=False):
    pm = PluginManager(strict=strict)
    for i, obj in enumerate(plugins):
        add_plugin(pm, obj, f"plugin{i}", distribution=f"dist{i}", version="1.0")
    return pm, build_catalog(pm, TRAIN_FIELDS, BUILTIN_COMMANDS)


FAST = img2img.Preset("fast", "tiny", "small and quick", options={"width": 2},
                      training={"crop_size": 32, "load_size": 32})
SLOW = img2img.Preset("slow", "tiny", "wide", options={"width": 64})
OTHER = img2img.Preset("fast", "other", "same name, other model")


def test_models_presets_commands_are_indexed_with_owners():
    pm, cat = catalog_with(plugin(models=[Tiny, Other]),
                           plugin(presets=[FAST, SLOW, OTHER], commands=[hello]))
    assert pm.errors() == []
    assert cat.models == {"tiny": Tiny, "other": Other}
    assert cat.presets == {("tiny", "fast"): FAST, ("tiny", "slow"): SLOW,
                           ("other", "fast"): OTHER}
    assert cat.commands == {"hello": hello}
    assert cat.owners[("model", "tiny")].name == "plugin0"
    assert cat.owners[("preset", "tiny/fast")].distribution == "dist1"
    assert cat.owners[("command", "hello")].name == "plugin1"
    assert pm.infos["plugin0"].registered == ["model tiny", "model other"]
    assert pm.infos["plugin1"].registered == ["preset tiny/fast", "preset tiny/slow",
                                              "preset other/fast", "command hello"]


def test_model_lookup():
    _, cat = catalog_with(plugin(models=[Tiny, Other]))
    assert cat.model("tiny") is Tiny
    with pytest.raises(img2img.Img2ImgError, match="unknown model 'nope'") as info:
        cat.model("nope")
    assert "installed models: other, tiny" in str(info.value)


def test_model_lookup_with_nothing_installed_says_so():
    with pytest.raises(img2img.Img2ImgError, match="none \\(is a plugin installed\\?\\)"):
        Catalog().model("pix2pix")


def test_presets_for_returns_only_that_models_presets_by_name():
    _, cat = catalog_with(plugin(models=[Tiny, Other], presets=[SLOW, OTHER, FAST]))
    found = cat.presets_for("tiny")
    assert list(found) == ["fast", "slow"]
    assert found["fast"] is FAST
    assert cat.presets_for("other") == {"fast": OTHER}
    assert cat.presets_for("nope") == {}


def test_preset_lookup():
    _, cat = catalog_with(plugin(models=[Tiny], presets=[FAST, SLOW]))
    assert cat.preset("tiny", "slow") is SLOW
    with pytest.raises(img2img.Img2ImgError, match="no preset 'medium'; presets: fast, slow"):
        cat.preset("tiny", "medium")


def test_presets_may_come_from_another_plugin_than_the_model():
    pm, cat = catalog_with(plugin(models=[Tiny]), plugin(presets=[FAST]))
    assert pm.errors() == [] and ("tiny", "fast") in cat.presets


def test_same_preset_twice_keeps_the_first():
    copy = dataclasses.replace(FAST, summary="copy")
    pm, cat = catalog_with(plugin(models=[Tiny], presets=[FAST]), plugin(presets=[copy]))
    assert cat.presets[("tiny", "fast")] is FAST
    [error] = pm.errors()
    assert "plugin1" in error and "preset tiny/fast is already registered by dist0" in error


@pytest.mark.parametrize("name", sorted(BUILTIN_COMMANDS))
def test_plugin_command_with_builtin_name_is_rejected(name):
    pm, cat = catalog_with(plugin(commands=[click.Command(name, callback=lambda: None), hello]))
    assert cat.commands == {"hello": hello}
    [error] = pm.errors()
    assert f"command '{name}' is a built-in command" in error


def test_builtin_command_name_raises_in_strict_mode():
    with pytest.raises(img2img.PluginError, match="'train' is a built-in command"):
        catalog_with(plugin(commands=[click.Command("train")]), strict=True)


def test_not_a_click_command_is_rejected():
    pm, cat = catalog_with(plugin(commands=[print]))
    assert cat.commands == {}
    assert "is not a named click command" in pm.errors()[0]


class NotAModel:
    name = "fake"


class BadName(Tiny):
    name = "Has Spaces"


class BadData(Tiny):
    name = "baddata"
    data = "pictures"


@dataclasses.dataclass(frozen=True)
class ClashingOptions:
    lr: float = 0.1


class Clashing(Tiny):
    name = "clashing"
    Options = ClashingOptions


@pytest.mark.parametrize("cls, message", [
    (NotAModel, "is not a subclass of img2img.Model"),
    (BadName, "name must be a lower-case command name, got 'Has Spaces'"),
    (BadData, "data must be one of"),
    (Clashing, "Options reuses training setting names: lr"),
])
def test_invalid_model_is_rejected(cls, message):
    pm, cat = catalog_with(plugin(models=[cls, Other]))
    assert set(cat.models) == {"other"}
    [error] = pm.errors()
    assert message in error and "plugin0" in error


def test_not_a_preset_is_rejected():
    pm, cat = catalog_with(plugin(models=[Tiny], presets=[{"name": "fast"}]))
    assert cat.presets == {}
    assert "is not an img2img.Preset" in pm.errors()[0]


def test_preset_values_are_checked_against_training_fields():
    pm = PluginManager()
    add_plugin(pm, plugin(models=[Tiny], presets=[FAST]), "p")
    build_catalog(pm, {"crop_size"})  # load_size is not a training setting here
    assert "unknown training settings: load_size" in pm.errors()[0]


def test_builtin_models_honour_the_contract():
    cat = build_catalog(load_plugins(strict=True, env={}), TRAIN_FIELDS, BUILTIN_COMMANDS)
    for name in ("pix2pix", "cyclegan"):
        assert model_problems(cat.model(name)) == []
    assert cat.model("pix2pix").data == "paired"
    assert cat.model("cyclegan").data == "unpaired"


def test_prepare_commands_are_indexed_and_mounted_under_prepare():
    from img2img.cli import build_cli

    @click.command("widgets")
    def widgets():
        """Prepare widgets."""
        click.echo("prepared")

    obj = types.SimpleNamespace(register_prepare_commands=plugin(commands=[widgets])
                                .register_commands)
    pm, cat = catalog_with(obj)
    assert cat.prepare_commands == {"widgets": widgets}
    from click.testing import CliRunner

    result = CliRunner().invoke(build_cli(pm), ["prepare", "widgets"])
    assert result.exit_code == 0 and "prepared" in result.output
