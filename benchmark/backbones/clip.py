"""CLIP image and text towers through open_clip, for any open_clip model name.

Pretrained weights (``--set model.pretrained=TAG`` or a path to a checkpoint file) are only ever read from the
local cache -- the Hugging Face hub cache, or open_clip's ``~/.cache/clip`` for URL weights -- so a machine
without network access fails at once with a message that names the missing file and where it was looked for,
instead of hanging on a download. ``mmb-tiny-clip`` is a tiny architecture shipped with the suite for tests.
"""

from __future__ import annotations

import os
from pathlib import Path

import open_clip
import torch
from torch import nn

from benchmark.config import ModelConfig
from benchmark.registry import register_backbone

TINY_CONFIG = Path(__file__).with_name("mmb-tiny-clip.json")
open_clip.add_model_config(TINY_CONFIG)


class PretrainedWeightsMissing(FileNotFoundError):
    """Pretrained weights are not in the local cache and cannot be downloaded here."""


def _hf_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def resolve_clip_weights(model_name: str, pretrained: str, cache_dir: str | None = None) -> str:
    """Return a local checkpoint path for ``(model_name, pretrained)`` or raise PretrainedWeightsMissing."""
    if os.path.isfile(os.path.expanduser(pretrained)):
        return os.path.expanduser(pretrained)
    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(model_name)
        raise PretrainedWeightsMissing(
            f"open_clip has no pretrained tag {pretrained!r} for {model_name!r} and no such file exists; "
            f"known tags: {', '.join(tags) or 'none'}"
        )
    looked: list[str] = []
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        for name in names:
            found = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
            if isinstance(found, str):
                return found
            looked.append(f"{repo_id}/{name} in {cache_dir or _hf_cache_dir()}")
    url = cfg.get("url", "")
    if url:
        path = Path(cache_dir or os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if path.is_file():
            return str(path)
        looked.append(str(path))
    raise PretrainedWeightsMissing(
        f"pretrained CLIP weights {model_name}/{pretrained} are not cached on this machine and are not "
        f"downloaded at run time. Looked for: {'; '.join(looked)}. Download them once on a machine with "
        f"network access (open_clip.create_model({model_name!r}, pretrained={pretrained!r})) and copy the "
        f"cache, or pass --set model.pretrained=/path/to/checkpoint."
    )


def create_clip(model_cfg: ModelConfig) -> nn.Module:
    if model_cfg.pretrained:
        weights = resolve_clip_weights(model_cfg.clip_model, model_cfg.pretrained)
        return open_clip.create_model(model_cfg.clip_model, pretrained=weights)
    return open_clip.create_model(model_cfg.clip_model, pretrained=None)


class ClipImageTower(nn.Module):
    """CLIP visual tower: (B, 3, H, W) images -> (B, embed_dim) projected features."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        clip = create_clip(model_cfg)
        self.visual = clip.visual
        self.out_dim = int(self.visual.output_dim)
        self.image_size = self.visual.image_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 5:  # (B, C, T, H, W): average the frames' features
            b, c, t, h, w = x.shape
            feats = self.visual(x.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w))
            return feats.reshape(b, t, -1).mean(1)
        return self.visual(x)


class ClipTextTower(nn.Module):
    """CLIP text tower: (B, L) token ids from open_clip's tokenizer -> (B, embed_dim) projected features."""

    def __init__(self, model_cfg: ModelConfig) -> None:
        super().__init__()
        clip = create_clip(model_cfg)
        clip.visual = None  # keep only the text transformer, embeddings and projection
        self.clip = clip
        proj = getattr(clip, "text_projection", None)
        self.out_dim = int(proj.shape[1]) if isinstance(proj, torch.Tensor) else int(proj.out_features)
        self.context_length = int(clip.context_length)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.clip.encode_text(tokens.long())


@register_backbone("clip_image")
def clip_image(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """open_clip image tower (model.clip_model, optional model.pretrained from the local cache)."""
    return ClipImageTower(model_cfg)


@register_backbone("clip_text")
def clip_text(model_cfg: ModelConfig, **_: object) -> nn.Module:
    """open_clip text tower (model.clip_model, optional model.pretrained from the local cache)."""
    return ClipTextTower(model_cfg)


def tokenizer_for(model_name: str):
    """open_clip's tokenizer for ``model_name`` (used by image-text datasets with the CLIP towers)."""
    return open_clip.get_tokenizer(model_name)
