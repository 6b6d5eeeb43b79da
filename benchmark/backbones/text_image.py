"""Pretrained towers of the image-text experiments: BERT-base-uncased (transformers) and ResNet50 (torchvision).

IGM / AMSS fine-tune ``bert-base-uncased`` (IGM: the [CLS] vector of ``last_hidden_state``, no pooler) and an
ImageNet ResNet50 (IGM: ``resnet50-0676ba61.pth``, i.e. torchvision IMAGENET1K_V1). Weights come only from the
local caches -- the Hugging Face hub cache (``local_files_only=True``) and torch hub's ``checkpoints/`` -- so an
offline machine without them fails at once with a message that says how to fetch them, never silently trains a
random network. ``bert_tiny`` (random init from ``mmb-tiny-bert.json``), ``bert_scratch`` (BERT-base, random init)
and ``resnet50_scratch`` are for tests and the step benchmark.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from benchmark.backbones.clip import PretrainedWeightsMissing
from benchmark.config import ModelConfig
from benchmark.registry import register_backbone

TINY_BERT = Path(__file__).with_name("mmb-tiny-bert.json")
RESNET50_FILE = "resnet50-0676ba61.pth"  # torchvision ResNet50_Weights.IMAGENET1K_V1, the file IGM loads


class BertCLS(nn.Module):
    """(B, L) token ids (0 = padding, masked) -> the [CLS] vector of the last hidden state (B, hidden)."""

    def __init__(self, bert: nn.Module) -> None:
        super().__init__()
        self.bert = bert
        self.out_dim = int(bert.config.hidden_size)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        ids = ids.long()
        mask = ids != 0
        length = max(int(mask.sum(1).max()), 1)  # drop the all-padding tail of the batch (no effect on [CLS])
        out = self.bert(input_ids=ids[:, :length], attention_mask=mask[:, :length].long())
        return out.last_hidden_state[:, 0]


def load_bert(name: str = "bert-base-uncased") -> nn.Module:
    from transformers import BertModel

    try:
        model = BertModel.from_pretrained(os.path.expanduser(name), local_files_only=True, add_pooling_layer=False)
    except (OSError, ValueError) as exc:
        raise PretrainedWeightsMissing(
            f"BERT weights {name!r} are not in the local Hugging Face cache and are not downloaded here ({exc}). "
            f'On a machine with network access run: python -c "from transformers import AutoModel, '
            f"AutoTokenizer; AutoModel.from_pretrained('{name}'); AutoTokenizer.from_pretrained('{name}')\" and "
            f"copy ~/.cache/huggingface to this machine (or set HF_HOME)."
        ) from exc
    return model


@register_backbone("bert")
def bert(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """BERT-base-uncased from the local HF cache, fine-tuned; [CLS] of last_hidden_state (768-d, IGM)."""
    return BertCLS(load_bert("bert-base-uncased"))


@register_backbone("bert_scratch")
def bert_scratch(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """BERT-base-uncased's architecture (12 layers, 768-d, 30,522 ids) with random weights; for timing and tests."""
    from transformers import BertConfig, BertModel

    return BertCLS(BertModel(BertConfig(), add_pooling_layer=False))


@register_backbone("bert_tiny")
def bert_tiny(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """A 2-layer 32-d BERT with random weights (mmb-tiny-bert.json), for tests and smoke runs."""
    from transformers import BertConfig, BertModel

    return BertCLS(BertModel(BertConfig.from_json_file(str(TINY_BERT)), add_pooling_layer=False))


class ResNet50(nn.Module):
    """(B, 3, H, W) images -> torchvision ResNet50 -> 2048-d pooled features (``keep_fc``: the 1000 logits)."""

    def __init__(self, pretrained: bool, keep_fc: bool = False) -> None:
        super().__init__()
        from torchvision.models import resnet50

        net = resnet50(weights=None)
        if pretrained:
            net.load_state_dict(torch.load(resnet50_weights(), map_location="cpu", weights_only=True))
        self.out_dim = 1000 if keep_fc else 2048
        if not keep_fc:
            net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # (B, C, T, H, W): average the frames' features
            b, c, t, h, w = x.shape
            return self.net(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)).reshape(b, t, -1).mean(1)
        return self.net(x)


def resnet50_weights() -> Path:
    path = Path(torch.hub.get_dir()) / "checkpoints" / RESNET50_FILE
    if not path.is_file():
        raise PretrainedWeightsMissing(
            f"ImageNet ResNet50 weights not found at {path} and not downloaded here. On a machine with network "
            f"access run: python -c \"import torchvision; torchvision.models.resnet50(weights='IMAGENET1K_V1')\" "
            f"and copy {path.name} to {path.parent} (or set TORCH_HOME)."
        )
    return path


@register_backbone("resnet50")
def resnet50(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """torchvision ResNet50 with ImageNet (IMAGENET1K_V1) weights from the torch hub cache; 2048-d features."""
    return ResNet50(pretrained=True)


@register_backbone("resnet50_logits")
def resnet50_logits(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """ImageNet ResNet50 keeping its fc: the 1000-d output IGM's image head is fed with (TextImage.py)."""
    return ResNet50(pretrained=True, keep_fc=True)


@register_backbone("resnet50_scratch")
def resnet50_scratch(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """torchvision ResNet50 with random weights; 2048-d features."""
    return ResNet50(pretrained=False)
