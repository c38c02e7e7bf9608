"""Plugin loading (`img2img.registry.load_plugins`): each plugin is imported in isolation, so a
broken one is reported and skipped; strict mode raises; `IMG2IMG_LOAD_PLUGINS` chooses what
loads; invalid hooks and registrations are reported against the plugin that made them."""
from __future__ import annotations

import importlib.metadata as md

import pytest

import img2img
from img2img.registry.catalog import build_catalog
from img2img.registry.catalog import BUILTIN_COMMANDS, TRAIN_FIELDS
from img2img.registry.loading import load_plugins

BROKEN = "raise RuntimeError('plugin exploded on import')\n"


def catalog_of(pm):
    return build_catalog(pm, TRAIN_FIELDS, BUILTIN_COMMANDS)


# -- importing ----------------------------------------------------------------------------------
def test_good_plugin_loads_and_its_model_is_in_the_catalog(make_plugin):
    ep = make_plugin(model="tiny", name="tiny_plugin")
    pm = load_plugins(strict=True, entry_points=[ep], env={})
    assert pm.errors() == []
    assert pm.get_plugin("tiny_plugin") is not None
    catalog = catalog_of(pm)
    assert set(catalog.models) == {"tiny"}
    assert catalog.model("tiny").__module__ == ep.value
    assert pm.infos["tiny_plugin"].registered == ["model tiny"]


def test_entry_point_distribution_is_recorded(make_plugin):
    ep = make_plugin(model="tiny", name="tiny_plugin", dist="img2img-tiny")
    pm = load_plugins(strict=True, entry_points=[ep], env={})
    info = pm.infos["tiny_plugin"]
    assert (info.distribution, info.version) == ("img2img-tiny", "1.0")


def test_entry_point_without_distribution_shows_unknown(make_plugin):
    pm = load_plugins(entry_points=[make_plugin(name="p")], env={})
    assert pm.infos["p"].distribution == "unknown"


def test_plugin_failing_on_import_is_reported_and_skipped(make_plugin):
    eps = [make_plugin(BROKEN, name="broken"), make_plugin(model="tiny", name="good")]
    pm = load_plugins(entry_points=eps, env={})
    assert pm.get_plugin("broken") is None
    [error] = pm.infos["broken"].errors
    assert "failed to import" in error
    assert "RuntimeError: plugin exploded on import" in error
    assert eps[0].value in error  # the file where it failed
    assert len(pm.errors()) == 1 and "plugin 'broken'" in pm.errors()[0]
    assert pm.infos["good"].errors == []
    assert set(catalog_of(pm).models) == {"tiny"}


def test_plugin_with_missing_dependency_is_reported(make_plugin):
    ep = make_plugin("import img2img_no_such_dependency_xyz\n", name="needs_dep")
    pm = load_plugins(entry_points=[ep], env={})
    [error] = pm.infos["needs_dep"].errors
    assert "ModuleNotFoundError" in error and "img2img_no_such_dependency_xyz" in error


def test_strict_mode_raises_on_import_failure(make_plugin):
    eps = [make_plugin(BROKEN, name="broken", dist="broken-dist")]
    with pytest.raises(img2img.PluginError, match="plugin 'broken' \\(broken-dist\\).*exploded"):
        load_plugins(strict=True, entry_points=eps, env={})


def test_plugin_error_is_an_img2img_error():
    assert issubclass(img2img.PluginError, img2img.Img2ImgError)


def test_duplicate_entry_point_name_is_reported(make_plugin):
    eps = [make_plugin(model="one", name="same", dist="dist-one"),
           make_plugin(model="two", name="same", dist="dist-two")]
    pm = load_plugins(entry_points=eps, env={})
    assert pm.errors(), "the second plugin named 'same' was dropped without any error"
    assert any("already taken" in e and "dist-one" in e for e in pm.errors())
    assert len(catalog_of(pm).models) == 1


def test_duplicate_entry_point_name_raises_in_strict_mode(make_plugin):
    eps = [make_plugin(model="one", name="same", dist="dist-one"),
           make_plugin(model="two", name="same", dist="dist-two")]
    with pytest.raises(img2img.PluginError, match="already taken by dist-one"):
        load_plugins(strict=True, entry_points=eps, env={})


# -- IMG2IMG_LOAD_PLUGINS -----------------------------------------------------------------------
@pytest.fixture
def three(make_plugin):
    return [make_plugin(model="m1", name="plug_one"),
            make_plugin(model="m2", name="plug_two", dist="dist-two"),
            make_plugin(model="m3", name="plug_three")]


def test_load_env_unset_loads_all(three):
    pm = load_plugins(strict=True, entry_points=three, env={})
    assert set(pm.infos) == {"plug_one", "plug_two", "plug_three"}


@pytest.mark.parametrize("value, loaded", [
    ("plug_one", {"plug_one"}),
    ("plug-one", {"plug_one"}),  # names compare as normalised distribution names
    ("plug_one,plug_three", {"plug_one", "plug_three"}),
    ("plug_one, plug_three", {"plug_one", "plug_three"}),  # a space after the comma
    ("dist-two", {"plug_two"}),  # a distribution name selects its plugins
    ("", set()),
    ("nothing_like_this", set()),
])
def test_load_env_filters_plugins(three, value, loaded):
    pm = load_plugins(strict=True, entry_points=three, env={"IMG2IMG_LOAD_PLUGINS": value})
    assert set(pm.infos) == loaded
    assert {name for name, _ in pm.list_name_plugin()} == loaded


def test_load_env_filters_installed_builtins():
    pm = load_plugins(strict=True, env={"IMG2IMG_LOAD_PLUGINS": "img2img-pix2pix"})
    assert set(pm.infos) == {"img2img_pix2pix"}
    assert set(catalog_of(pm).models) == {"pix2pix"}


def test_presets_for_models_left_out_by_the_filter_are_skipped_quietly():
    env = {"IMG2IMG_LOAD_PLUGINS": "img2img-pix2pix,img2img-faces"}
    pm = load_plugins(strict=True, env=env)  # strict: any reported error would raise
    catalog = catalog_of(pm)
    assert set(catalog.models) == {"pix2pix"}
    # pix2pix's own `fast` and the faces plugin's pix2pix preset; its cyclegan one is skipped.
    assert set(catalog.presets) == {("pix2pix", "face"), ("pix2pix", "fast")} and pm.errors() == []


def test_load_env_filter_skips_a_broken_plugin_without_importing_it(make_plugin):
    eps = [make_plugin(BROKEN, name="broken"), make_plugin(name="good")]
    pm = load_plugins(strict=True, entry_points=eps, env={"IMG2IMG_LOAD_PLUGINS": "good"})
    assert set(pm.infos) == {"good"} and pm.errors() == []


# -- hooks --------------------------------------------------------------------------------------
MISSPELLED = """
import img2img

@img2img.hookimpl
def register_model(register):
    pass
"""


def test_misspelled_hook_is_rejected(make_plugin):
    eps = [make_plugin(MISSPELLED, name="typo"), make_plugin(model="tiny", name="good")]
    pm = load_plugins(entry_points=eps, env={})
    [error] = pm.infos["typo"].errors
    assert "register_model" in error
    assert pm.get_plugin("typo") is None
    assert pm.infos["good"].errors == []
    assert set(catalog_of(pm).models) == {"tiny"}


def test_misspelled_hook_raises_in_strict_mode(make_plugin):
    with pytest.raises(img2img.PluginError, match="register_model"):
        load_plugins(strict=True, entry_points=[make_plugin(MISSPELLED, name="typo")], env={})


def test_hook_with_wrong_argument_is_rejected_with_its_valid_hooks(make_plugin):
    extra = "\n@img2img.hookimpl\ndef register_presets(add):\n    pass\n"
    pm = load_plugins(entry_points=[make_plugin(name="bad_args", extra=extra)], env={})
    [error] = pm.infos["bad_args"].errors
    assert "register_presets" in error and "add" in error
    # The plugin is rejected as a whole: its valid register_models is not used either.
    assert pm.get_plugin("bad_args") is None
    assert catalog_of(pm).models == {}


REGISTER_RAISES = """
import img2img

@img2img.hookimpl
def register_models(register):
    raise ValueError("cannot register today")
"""


def test_register_hook_raising_is_reported_and_others_unaffected(make_plugin):
    eps = [make_plugin(REGISTER_RAISES, name="raiser"), make_plugin(model="tiny", name="ok")]
    pm = load_plugins(entry_points=eps, env={})
    catalog = catalog_of(pm)
    [error] = pm.infos["raiser"].errors
    assert "register_models raised ValueError: cannot register today" in error
    assert set(catalog.models) == {"tiny"}
    assert pm.infos["ok"].errors == []


def test_register_hook_raising_raises_in_strict_mode(make_plugin):
    pm = load_plugins(strict=True, entry_points=[make_plugin(REGISTER_RAISES)], env={})
    with pytest.raises(img2img.PluginError, match="cannot register today"):
        catalog_of(pm)


# -- what plugins register ----------------------------------------------------------------------
def test_same_model_name_first_plugin_keeps_it(make_plugin):
    eps = [make_plugin(model="tiny", name="aaa_first", dist="first-dist"),
           make_plugin(model="tiny", name="zzz_second", dist="second-dist")]
    pm = load_plugins(entry_points=eps, env={})
    catalog = catalog_of(pm)
    assert catalog.owners[("model", "tiny")].name == "aaa_first"
    assert catalog.model("tiny").__module__ == eps[0].value
    assert pm.infos["aaa_first"].errors == []
    [error] = [e for e in pm.errors() if "tiny" in e]
    assert "zzz_second" in error and "second-dist" in error and "first-dist" in error


def test_same_model_name_raises_in_strict_mode(make_plugin):
    eps = [make_plugin(model="tiny", name="aaa_first", dist="first-dist"),
           make_plugin(model="tiny", name="zzz_second", dist="second-dist")]
    pm = load_plugins(strict=True, entry_points=eps, env={})
    with pytest.raises(img2img.PluginError, match="first-dist"):
        catalog_of(pm)


def test_model_missing_a_method_is_reported(make_plugin):
    ep = make_plugin(model="tiny", omit=("discriminator_losses",), name="partial")
    pm = load_plugins(entry_points=[ep], env={})
    catalog = catalog_of(pm)
    [error] = pm.infos["partial"].errors
    assert "does not implement" in error and "discriminator_losses" in error
    assert "tiny" not in catalog.models


def test_options_must_be_a_frozen_dataclass(make_plugin):
    ep = make_plugin(model="tiny", frozen=False, name="thawed")
    pm = load_plugins(entry_points=[ep], env={})
    catalog = catalog_of(pm)
    [error] = pm.infos["thawed"].errors
    assert "Options must be a frozen dataclass" in error
    assert catalog.models == {}


PRESETS = """
import img2img

@img2img.hookimpl
def register_presets(register):
    register(img2img.Preset("ghost", "no_such_model", "for a model nobody has"))
    register(img2img.Preset("typo", "tiny", "misspelled option", options={"widht": 8}))
    register(img2img.Preset("badtrain", "tiny", "unknown setting", training={"crop": 3}))
    register(img2img.Preset("fine", "tiny", "valid", options={"width": 8},
                            training={"crop_size": 32, "load_size": 32}))
"""


def test_invalid_presets_are_reported_valid_ones_kept(make_plugin):
    eps = [make_plugin(model="tiny", name="model_plugin"),
           make_plugin(PRESETS, name="preset_plugin")]
    pm = load_plugins(entry_points=eps, env={})
    catalog = catalog_of(pm)
    errors = pm.infos["preset_plugin"].errors
    assert len(errors) == 3
    assert any("ghost" in e and "unknown model 'no_such_model'" in e for e in errors)
    assert any("typo" in e and "widht" in e for e in errors)
    assert any("badtrain" in e and "unknown training settings: crop" in e for e in errors)
    assert set(catalog.presets) == {("tiny", "fine")}
    assert pm.infos["preset_plugin"].registered == ["preset tiny/fine"]


def test_invalid_preset_raises_in_strict_mode(make_plugin):
    eps = [make_plugin(model="tiny", name="model_plugin"),
           make_plugin(PRESETS, name="preset_plugin")]
    pm = load_plugins(strict=True, entry_points=eps, env={})
    with pytest.raises(img2img.PluginError, match="preset_plugin"):
        catalog_of(pm)


# -- tracing ------------------------------------------------------------------------------------
def test_trace_env_writes_hook_calls_to_stderr(make_plugin, capsys):
    pm = load_plugins(entry_points=[make_plugin(model="tiny")],
                      env={"IMG2IMG_TRACE_PLUGINS": "1"})
    catalog_of(pm)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[img2img plugins]")]
    assert any("register_models" in line for line in lines), err


@pytest.mark.parametrize("env", [{}, {"IMG2IMG_TRACE_PLUGINS": "0"}, {"IMG2IMG_TRACE_PLUGINS": ""}])
def test_no_trace_output_unless_asked(make_plugin, capsys, env):
    pm = load_plugins(entry_points=[make_plugin(model="tiny")], env=env)
    catalog_of(pm)
    assert "[img2img plugins]" not in capsys.readouterr().err


def test_installed_builtins_load_strictly():
    pm = load_plugins(strict=True, env={})
    assert {"img2img_pix2pix", "img2img_cyclegan"} <= set(pm.infos)
    assert {"pix2pix", "cyclegan"} <= set(catalog_of(pm).models)
    assert pm.infos["img2img_pix2pix"].distribution == "img2img"
    assert pm.infos["img2img_pix2pix"].version == md.version("img2img")
