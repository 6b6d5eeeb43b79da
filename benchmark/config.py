"""Typed run configuration and ``--set key=value`` overrides.

A run is described by one :class:`RunConfig`: the method and dataset names, a seed, and four typed sections:

* ``train.*``  -- :class:`TrainConfig` (optimiser, schedule, epochs, device, ...)
* ``model.*``  -- :class:`ModelConfig` (backbone per modality, fusion head, pretrained tags)
* ``method.*`` -- the method's own dataclass (``Method.Config``)
* ``data.*``   -- the dataset's own dataclass (``Dataset.Config``)

Defaults are layered, later layers winning: the dataclass defaults, the dataset's ``train_defaults`` (from
the papers), the method's ``train_defaults``, the method's ``dataset_defaults[dataset]``, the suite's
overrides, then the command line. Every layer uses the same dotted keys as ``--set``.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any, Literal, Union, get_args, get_origin


class ConfigError(ValueError):
    """A malformed configuration: unknown key, wrong type or invalid value."""


# Fields that describe where a run executes, not what it computes: they are left out of the run id.
NOT_IDENTITY = {"identity": False}


@dataclass
class TrainConfig:
    """Optimisation and evaluation settings shared by every method."""

    epochs: int = 30
    batch_size: int = 64
    eval_batch_size: int = 256
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    scheduler: Literal["none", "step", "multistep", "cosine"] = "step"
    step_size: int = 70
    gamma: float = 0.1
    milestones: tuple[int, ...] = ()
    # Metric of the validation (and test) split used to pick the "best" epoch.
    select_metric: Literal["acc", "map", "macro_f1"] = "acc"
    # 0 = whole epoch; a positive number caps the training steps per epoch (smoke tests, benchmarks).
    max_steps_per_epoch: int = 0
    deterministic: bool = False
    # bf16 autocast on CUDA (the GPU fast path, on by default); ignored on CPU, where every run is float32.
    amp: bool = True
    device: str = field(default="auto", metadata=NOT_IDENTITY)
    num_workers: int = field(default=0, metadata=NOT_IDENTITY)
    # GPU fast path (docs/performance.md); none of these changes a float32 result beyond rounding.
    # channels_last memory format for the conv weights (CUDA only; a no-op elsewhere).
    channels_last: bool = field(default=True, metadata=NOT_IDENTITY)
    # torch.compile each encoder in place (nn.Module.compile: same module tree and state_dict keys).
    compile: bool = field(default=False, metadata=NOT_IDENTITY)
    # On CUDA the trainer reads the step losses (a host sync) every this many steps instead of every step; a
    # non-finite loss still stops the run naming its step, at most this many steps later. CPU: every step.
    log_every: int = field(default=50, metadata=NOT_IDENTITY)
    # Keep the final model weights in the run directory (ReconBoost reads the unimodal ones).
    save_model: bool = field(default=False, metadata=NOT_IDENTITY)
    # Save a resumable checkpoint after every epoch (removed when the run finishes).
    checkpoint: bool = field(default=True, metadata=NOT_IDENTITY)


@dataclass
class ModelConfig:
    """Which encoder each modality uses and how the features are fused."""

    # modality -> backbone name; modalities not named use the dataset's default backbone.
    backbones: dict[str, str] = field(default_factory=dict)
    fusion: Literal["concat", "sum", "film", "gated"] = "concat"
    # Base width of the ResNet18 backbones: 64 is the standard network (feature dim 512); the embedded
    # dataset uses a narrower one (same depth and topology) so that CPU runs take seconds.
    resnet_width: int = 64
    # open_clip architecture for the clip_* backbones, and a pretrained tag or path ("" = random init).
    clip_model: str = "ViT-B-32"
    pretrained: str = ""


@dataclass
class RunConfig:
    method: str
    dataset: str
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    method_cfg: Any = None
    data_cfg: Any = None
    # Runs this run reads (their saved models, ...), built by ``build_config`` from ``Method.requires``; their
    # run ids are part of this run's identity, and the runner finishes them before this run starts.
    requires: list[RunConfig] = field(default_factory=list)

    SECTIONS: typing.ClassVar[dict[str, str]] = {
        "train": "train",
        "model": "model",
        "method": "method_cfg",
        "data": "data_cfg",
    }

    # -- identity -------------------------------------------------------------------------------------
    def identity(self) -> dict[str, Any]:
        """Everything that determines the result (execution-only fields left out)."""
        out: dict[str, Any] = {"method": self.method, "dataset": self.dataset, "seed": self.seed}
        for prefix, attr in self.SECTIONS.items():
            section = getattr(self, attr)
            if section is None:
                continue
            for f in fields(section):
                if f.metadata.get("identity", True):
                    out[f"{prefix}.{f.name}"] = _jsonable(getattr(section, f.name))
        if self.requires:  # absent otherwise, so that the run ids of runs without dependencies stay as they were
            out["requires"] = sorted(dep.run_id for dep in self.requires)
        return out

    @property
    def run_id(self) -> str:
        blob = json.dumps(self.identity(), sort_keys=True, default=str)
        digest = hashlib.sha1(blob.encode()).hexdigest()[:10]
        return f"{self.method}-{self.dataset}-s{self.seed}-{digest}"

    @property
    def config_id(self) -> str:
        """The identity without the seed: runs with equal ``config_id`` differ only in their seed, so reports
        average them (and never runs whose ``config_id`` differ)."""
        ident = {k: v for k, v in self.identity().items() if k != "seed"}
        if self.requires:
            ident["requires"] = sorted(dep.config_id for dep in self.requires)
        return hashlib.sha1(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:10]

    def flat(self) -> dict[str, Any]:
        """Every field as ``section.key`` (execution-only fields included), for the result row."""
        out: dict[str, Any] = {"method": self.method, "dataset": self.dataset, "seed": self.seed}
        for prefix, attr in self.SECTIONS.items():
            section = getattr(self, attr)
            if section is not None:
                for f in fields(section):
                    out[f"{prefix}.{f.name}"] = _jsonable(getattr(section, f.name))
        if self.requires:
            out["requires"] = [dep.run_id for dep in self.requires]
        return out

    def section(self, prefix: str) -> Any:
        return getattr(self, self.SECTIONS[prefix])


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    return value


# -- value coercion ------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _parse_scalar(text: str, tp: Any) -> Any:
    if tp is bool:
        low = text.strip().lower()
        if low in {"1", "true", "yes", "on"}:
            return True
        if low in {"0", "false", "no", "off"}:
            return False
        raise ValueError(f"expected a boolean (true/false), got {text!r}")
    if tp is int:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value.is_integer():
            raise ValueError(f"expected an integer, got {text!r}")
        return int(value)
    if tp is float:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
    if tp is str:
        return text
    raise ValueError(f"cannot parse {text!r} as {_type_name(tp)}")


def coerce(value: Any, tp: Any) -> Any:
    """Convert ``value`` (a string from the command line, or a Python value) to the annotated type ``tp``."""
    origin = get_origin(tp)
    args = get_args(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        is_none = value is None or (isinstance(value, str) and value.strip().lower() in {"none", "null"})
        if is_none and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return coerce(value, arg)
            except (ValueError, TypeError) as exc:
                errors.append(str(exc))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        for choice in args:
            if value == choice or (isinstance(value, str) and str(choice) == value):
                return choice
        raise ValueError(f"expected one of {', '.join(repr(a) for a in args)}, got {value!r}")
    if origin in (tuple, list):
        if isinstance(value, str):
            text = value.strip().strip("[]()")
            items: list[Any] = [s.strip() for s in text.split(",") if s.strip()] if text else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise ValueError(f"expected a comma-separated list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(items) != len(args):
                raise ValueError(f"expected {len(args)} comma-separated values, got {value!r}")
            return tuple(coerce(v, a) for v, a in zip(items, args))
        elem = args[0] if args else Any
        converted = [coerce(v, elem) for v in items]
        return tuple(converted) if origin is tuple else converted
    if origin is dict:
        key_t, val_t = args if args else (str, Any)
        if isinstance(value, dict):
            return {coerce(k, key_t): coerce(v, val_t) for k, v in value.items()}
        if isinstance(value, str):
            out = {}
            for part in filter(None, (p.strip() for p in value.split(","))):
                if ":" not in part:
                    raise ValueError(f"expected key:value pairs separated by commas, got {value!r}")
                k, v = part.split(":", 1)
                out[coerce(k.strip(), key_t)] = coerce(v.strip(), val_t)
            return out
        raise ValueError(f"expected key:value pairs, got {value!r}")
    if isinstance(value, str):
        return _parse_scalar(value, tp)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ValueError(f"expected {_type_name(tp)}, got {value!r}")


def _field_types(section: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(section))
    return {f.name: hints[f.name] for f in fields(section)}


def set_value(cfg: RunConfig, key: str, value: Any) -> None:
    """Apply one dotted override to ``cfg`` in place, with a message naming the valid choices on error."""
    if key in {"seed"}:
        try:
            cfg.seed = coerce(value, int)
        except ValueError as exc:
            raise ConfigError(f"--set seed={value!r}: {exc}") from None
        return
    if "." not in key:
        hint = _suggest_key(cfg, key)
        raise ConfigError(f"config key {key!r} needs a section prefix (train., model., method., data.).{hint}")
    prefix, name = key.split(".", 1)
    if prefix not in RunConfig.SECTIONS:
        raise ConfigError(
            f"unknown config section {prefix!r} in {key!r}; sections are: " + ", ".join(sorted(RunConfig.SECTIONS))
        )
    section = cfg.section(prefix)
    if section is None:
        raise ConfigError(f"{key!r}: this run has no {prefix} section")
    types_ = _field_types(section)
    if name not in types_:
        close = difflib.get_close_matches(name, list(types_), n=3)
        hint = f" Did you mean {', '.join(prefix + '.' + c for c in close)}?" if close else ""
        valid = ", ".join(f"{prefix}.{n}" for n in types_)
        owner = {"method": f"method {cfg.method!r}", "data": f"dataset {cfg.dataset!r}"}.get(prefix, prefix)
        raise ConfigError(f"unknown config key {key!r} for {owner}.{hint} Valid keys: {valid}")
    try:
        converted = coerce(value, types_[name])
    except ValueError as exc:
        raise ConfigError(f"--set {key}={value!r}: {exc}") from None
    setattr(section, name, converted)


def _suggest_key(cfg: RunConfig, bare: str) -> str:
    hits = []
    for prefix in RunConfig.SECTIONS:
        section = cfg.section(prefix)
        if section is not None and bare in _field_types(section):
            hits.append(f"{prefix}.{bare}")
    return f" Did you mean {', '.join(hits)}?" if hits else ""


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    for key, value in overrides.items():
        set_value(cfg, key, value)
    validate(cfg)
    return cfg


def _non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, dict):
        return any(_non_finite(v) for v in value.values())
    return False


def validate(cfg: RunConfig) -> None:
    """Checks that no single field can express; every float of every section must be finite (no nan/inf)."""
    for prefix in RunConfig.SECTIONS:
        section = cfg.section(prefix)
        if section is None:
            continue
        for f in fields(section):
            value = getattr(section, f.name)
            if _non_finite(value):
                raise ConfigError(f"{prefix}.{f.name} must be a finite number, got {value!r}")
    t = cfg.train
    if t.epochs < 1:
        raise ConfigError(f"train.epochs must be >= 1, got {t.epochs}")
    if t.batch_size < 1 or t.eval_batch_size < 1:
        raise ConfigError("train.batch_size and train.eval_batch_size must be >= 1")
    if t.lr <= 0:
        raise ConfigError(f"train.lr must be > 0, got {t.lr}")
    if t.log_every < 1:
        raise ConfigError(f"train.log_every must be >= 1, got {t.log_every}")
    if t.max_steps_per_epoch < 0:
        raise ConfigError(f"train.max_steps_per_epoch must be >= 0 (0 = the whole epoch), got {t.max_steps_per_epoch}")
    if t.num_workers < 0:
        raise ConfigError(f"train.num_workers must be >= 0, got {t.num_workers}")
    validate_hook = getattr(cfg.method_cfg, "validate", None)
    if callable(validate_hook):
        try:
            validate_hook()
        except ValueError as exc:
            raise ConfigError(f"method {cfg.method!r}: {exc}") from None


def parse_set_args(items: list[str] | None) -> dict[str, str]:
    """``["train.lr=0.01", "method.alpha=0.8"]`` -> dict; a malformed item raises ConfigError."""
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key] = value
    return out


def build_config(
    method: str,
    dataset: str,
    seed: int = 0,
    overrides: dict[str, Any] | None = None,
) -> RunConfig:
    """Resolve names and layer every default source, then ``overrides`` (suite, then command line)."""
    from benchmark.registry import DATASETS, METHODS

    method_name = METHODS.resolve(method)
    dataset_name = DATASETS.resolve(dataset)
    method_cls = METHODS.get(method_name)
    dataset_cls = DATASETS.get(dataset_name)
    cfg = RunConfig(
        method=method_name,
        dataset=dataset_name,
        seed=seed,
        method_cfg=method_cls.Config(),
        data_cfg=dataset_cls.Config(),
    )
    layers: list[dict[str, Any]] = [
        dict(dataset_cls.train_defaults),
        dict(method_cls.train_defaults),
        dict(method_cls.dataset_defaults.get("*", {})),
        dict(method_cls.dataset_defaults.get(dataset_name, {})),
        dict(overrides or {}),
    ]
    for layer in layers:
        for key, value in layer.items():
            set_value(cfg, key, value)
    validate(cfg)
    cfg.requires = [
        build_config(spec.method, spec.dataset, spec.seed, spec.overrides)
        for spec in method_cls.requires(cfg, dict(overrides or {}))
    ]
    return cfg


def describe_keys(cfg: RunConfig) -> list[tuple[str, str, Any]]:
    """(key, type, value) for every configurable field, for ``--list``-style help."""
    rows = [("seed", "int", cfg.seed)]
    for prefix in RunConfig.SECTIONS:
        section = cfg.section(prefix)
        if section is None:
            continue
        for name, tp in _field_types(section).items():
            rows.append((f"{prefix}.{name}", _type_name(tp), getattr(section, name)))
    return rows
