"""Registries and typed configuration: layering, overrides and the errors a user sees."""

import pytest

from benchmark.config import ConfigError, build_config, coerce, parse_set_args
from benchmark.registry import DATASETS, METHODS, Registry, UnknownNameError


def test_defaults_are_layered_dataset_then_method_then_overrides():
    cfg = build_config("joint", "av_digits", 1)
    assert DATASETS.get("av_digits").train_defaults["train.lr"] == 1e-2  # the dataset's layer ...
    assert cfg.train.lr == 3e-2  # ... under joint's dataset_defaults["av_digits"] (the mini_tune choice)
    assert cfg.model.resnet_width == 8
    cfg = build_config("unimodal", "av_digits", 1, {"train.lr": "0.05", "method.modality": "visual"})
    assert cfg.train.lr == 0.05 and cfg.method_cfg.modality == "visual"
    assert cfg.train.save_model is True  # unimodal's own train_defaults


def test_run_id_depends_on_config_but_not_on_execution_fields():
    a = build_config("joint", "av_digits", 0)
    b = build_config("joint", "av_digits", 0, {"train.device": "cpu", "train.num_workers": 2})
    c = build_config("joint", "av_digits", 0, {"train.lr": 0.5})
    d = build_config("joint", "av_digits", 1)
    assert a.run_id == b.run_id
    assert len({a.run_id, c.run_id, d.run_id}) == 3
    assert a.run_id.startswith("joint-av_digits-s0-")


def test_unknown_key_names_valid_keys_and_suggests():
    with pytest.raises(ConfigError) as err:
        build_config("joint", "av_digits", 0, {"train.learning_rate": 0.1})
    assert "train.lr" in str(err.value) and "Valid keys" in str(err.value)
    with pytest.raises(ConfigError, match="Did you mean train.lr"):
        build_config("joint", "av_digits", 0, {"lr": 0.1})
    with pytest.raises(ConfigError, match="sections are"):
        build_config("joint", "av_digits", 0, {"optim.lr": 0.1})
    with pytest.raises(ConfigError, match="method.modality"):
        build_config("unimodal", "av_digits", 0, {"method.modalty": "audio"})


def test_wrong_types_and_values_are_rejected():
    with pytest.raises(ConfigError, match="expected an integer"):
        build_config("joint", "av_digits", 0, {"train.epochs": "2.5"})
    with pytest.raises(ConfigError, match="one of 'sgd', 'adam', 'adamw'"):
        build_config("joint", "av_digits", 0, {"train.optimizer": "rmsprop"})
    with pytest.raises(ConfigError, match="boolean"):
        build_config("joint", "av_digits", 0, {"train.deterministic": "maybe"})
    with pytest.raises(ConfigError, match="train.epochs must be >= 1"):
        build_config("joint", "av_digits", 0, {"train.epochs": 0})
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_args(["train.lr"])


def test_coercion_of_compound_types():
    assert coerce("0.9,0.99", tuple[float, float]) == (0.9, 0.99)
    assert coerce("30,60", tuple[int, ...]) == (30, 60)
    assert coerce("", tuple[int, ...]) == ()
    assert coerce("audio:resnet18_audio,visual:clip_image", dict[str, str]) == {
        "audio": "resnet18_audio",
        "visual": "clip_image",
    }
    assert coerce("none", int | None) is None
    with pytest.raises(ValueError):
        coerce("1,2,3", tuple[float, float])


def test_unknown_method_and_dataset_list_the_choices():
    with pytest.raises(UnknownNameError) as err:
        build_config("jont", "av_digits")
    assert "Did you mean joint" in str(err.value) and "unimodal" in str(err.value)
    with pytest.raises(UnknownNameError, match="Registered datasets: .*av_digits"):
        build_config("joint", "mnist")


def test_registry_rejects_duplicates_and_resolves_aliases():
    reg: Registry = Registry("thing")

    @reg.register(aliases=("b",))
    def a():
        """First line is the description."""

    assert reg.get("b") is a and reg.entry("a").description == "First line is the description."
    with pytest.raises(ValueError, match="already registered"):
        reg.add("a", object())
    assert reg.names("a*") == ["a"] and "b" in reg


def test_builtin_registries_describe_every_entry():
    assert {"joint", "unimodal"} <= set(METHODS.names())
    assert "av_digits" in DATASETS.names()
    for reg in (METHODS, DATASETS):
        assert all(entry.description for entry in reg)
