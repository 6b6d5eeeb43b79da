"""Model building blocks shared by the methods.

Every model a method evaluates returns a :class:`ModelOutput`: the fused logits and, per modality, the
features and that modality's own logits, so per-modality accuracy is read the same way for every method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn

from benchmark.config import ModelConfig
from benchmark.data import Batch, DatasetInfo
from benchmark.fusion import FusionHead, build_fusion
from benchmark.registry import BACKBONES


@dataclass
class ModelOutput:
    logits: torch.Tensor
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    unimodal_logits: dict[str, torch.Tensor] = field(default_factory=dict)


def backbone_name(info: DatasetInfo, model_cfg: ModelConfig, modality: str) -> str:
    name = model_cfg.backbones.get(modality) or info.default_backbones.get(modality)
    if not name:
        raise ValueError(
            f"no backbone for modality {modality!r} of dataset {info.name!r}; "
            f"set one with --set model.backbones={modality}:NAME (choices: {', '.join(BACKBONES.names())})"
        )
    return name


def build_encoder(info: DatasetInfo, model_cfg: ModelConfig, modality: str) -> nn.Module:
    """The encoder of one modality, from the backbone zoo (``model.backbones`` or the dataset default)."""
    unknown = set(model_cfg.backbones) - set(info.modalities)
    if unknown:
        raise ValueError(
            f"model.backbones names {sorted(unknown)}, but dataset {info.name!r} has modalities {list(info.modalities)}"
        )
    factory = BACKBONES.get(backbone_name(info, model_cfg, modality))
    encoder = factory(model_cfg, **info.backbone_args.get(modality, {}))
    if not hasattr(encoder, "out_dim"):
        raise TypeError(f"backbone for {modality!r} has no out_dim attribute")
    return encoder


def build_encoders(
    info: DatasetInfo, model_cfg: ModelConfig, modalities: tuple[str, ...] | None = None
) -> nn.ModuleDict:
    return nn.ModuleDict({m: build_encoder(info, model_cfg, m) for m in (modalities or info.modalities)})


def official_weight_init(module: nn.Module, conv: Literal["normal", "uniform"] = "normal") -> None:
    """OGM-GE's ``utils/utils.py:weight_init``, applied with ``model.apply`` by the OGM-GE lineage (OGM-GE, AGM,
    PMR, MLA): Linear xavier-normal weight and zero bias; Conv2d Kaiming normal (fan-out, ReLU); BatchNorm2d 1/0.

    ``conv="uniform"`` is AGM's copy (``utils/function_tools.py:weight_init``), which draws the conv kernels with
    ``kaiming_uniform_`` (fan-out, ReLU) instead.
    """
    if isinstance(module, nn.Linear):
        nn.init.xavier_normal_(module.weight)
        if module.bias is not None:
            nn.init.constant_(module.bias, 0)
    elif isinstance(module, nn.Conv2d):
        if conv == "uniform":
            nn.init.kaiming_uniform_(module.weight, mode="fan_out", nonlinearity="relu")
        else:
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.constant_(module.weight, 1)
        nn.init.constant_(module.bias, 0)


def apply_official_init(model: nn.Module, conv: Literal["normal", "uniform"] = "normal") -> nn.Module:
    """The released ``model.apply(weight_init)`` (OGM-GE ``main.py``, AGM ``run/CREMAD_main.py``, PMR
    ``main_Prototype_grad.py``) on a :class:`FusionModel` or :class:`UnimodalModel`; returns ``model``.

    Everything the released code builds is trained from scratch, so it re-initialises the whole model. Here the
    heads (fusion layers, classifiers) always are; an encoder only if it is the released code's own kind and
    says so (``official_init = True``: the from-scratch ResNet18s). Pretrained encoders keep their weights.
    """
    encoders = list(model.encoders.values()) if isinstance(getattr(model, "encoders", None), nn.ModuleDict) else []
    if isinstance(getattr(model, "encoder", None), nn.Module):
        encoders.append(model.encoder)
    if not encoders:
        raise TypeError(f"apply_official_init needs a FusionModel or UnimodalModel, got {type(model).__name__}")
    kept = {id(m) for enc in encoders if not getattr(enc, "official_init", False) for m in enc.modules()}
    for module in model.modules():
        if id(module) not in kept:
            official_weight_init(module, conv=conv)
    return model


class FusionModel(nn.Module):
    """Encoders + one fusion head (the joint-training model of OGM-GE and the methods built on it)."""

    def __init__(self, encoders: nn.ModuleDict, fusion: FusionHead) -> None:
        super().__init__()
        self.encoders = encoders
        self.fusion = fusion
        self.modalities = tuple(encoders.keys())

    @classmethod
    def build(cls, info: DatasetInfo, model_cfg: ModelConfig) -> FusionModel:
        encoders = build_encoders(info, model_cfg)
        dims = {m: int(e.out_dim) for m, e in encoders.items()}
        return cls(encoders, build_fusion(model_cfg.fusion, dims, info.num_classes))

    def encode(self, batch: Batch) -> dict[str, torch.Tensor]:
        return {m: self.encoders[m](batch[m]) for m in self.modalities}

    def head(self, feats: dict[str, torch.Tensor]) -> ModelOutput:
        return ModelOutput(
            logits=self.fusion(feats), features=feats, unimodal_logits=self.fusion.unimodal_logits(feats)
        )

    def forward(self, batch: Batch) -> ModelOutput:
        return self.head(self.encode(batch))


class UnimodalModel(nn.Module):
    """One encoder and a linear classifier; the Unimodal rows of the paper's tables."""

    def __init__(self, modality: str, encoder: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.modality = modality
        self.encoder = encoder
        self.fc = nn.Linear(int(encoder.out_dim), num_classes)

    def forward(self, batch: Batch) -> ModelOutput:
        feat = self.encoder(batch[self.modality])
        logits = self.fc(feat)
        return ModelOutput(logits=logits, features={self.modality: feat}, unimodal_logits={self.modality: logits})


def mlp_head(in_dim: int, num_classes: int, hidden: tuple[int, ...] = (), relu_after: tuple[bool, ...] = ()):
    """``Linear(in, h1) [ReLU] Linear(h1, h2) [ReLU] ... Linear(hk, C)``; ``relu_after[i]`` after layer i."""
    layers: list[nn.Module] = []
    dims = (in_dim, *hidden)
    for i in range(len(hidden)):
        layers.append(nn.Linear(dims[i], dims[i + 1]))
        if i < len(relu_after) and relu_after[i]:
            layers.append(nn.ReLU())
    layers.append(nn.Linear(dims[-1], num_classes))
    return nn.Sequential(*layers)
