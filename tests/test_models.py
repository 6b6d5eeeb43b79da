"""Fusion heads, encoders and the tiny CLIP towers."""

import pytest
import torch

from benchmark.backbones.clip import PretrainedWeightsMissing, create_clip, tokenizer_for
from benchmark.config import ModelConfig
from benchmark.data import DatasetInfo
from benchmark.fusion import ConcatFusion, SumFusion, build_fusion
from benchmark.models import FusionModel
from benchmark.registry import BACKBONES

DIMS = {"audio": 8, "visual": 8}


@pytest.mark.parametrize("name", ["concat", "sum", "film", "gated"])
def test_every_fusion_head_runs(name):
    head = build_fusion(name, DIMS, num_classes=5)
    feats = {m: torch.randn(4, d) for m, d in DIMS.items()}
    out = head(feats)
    uni = head.unimodal_logits(feats)
    assert out.shape == (4, 5)
    assert set(uni) == {"audio", "visual"} and all(v.shape == (4, 5) for v in uni.values())
    out.sum().backward()  # differentiable end to end


def test_concat_unimodal_logits_split_weight_and_half_bias():
    head = ConcatFusion({"a": 2, "v": 3}, num_classes=2)
    with torch.no_grad():
        head.fc_out.weight.copy_(torch.arange(10.0).reshape(2, 5))
        head.fc_out.bias.copy_(torch.tensor([2.0, 4.0]))
    a, v = torch.tensor([[1.0, 1.0]]), torch.tensor([[1.0, 0.0, 2.0]])
    uni = head.unimodal_logits({"a": a, "v": v})
    # W = [[0 1 2 3 4], [5 6 7 8 9]]: a-block [[0,1],[5,6]], v-block [[2,3,4],[7,8,9]], bias/2 = [1, 2]
    assert torch.allclose(uni["a"], torch.tensor([[0 + 1 + 1.0, 5 + 6 + 2.0]]))
    assert torch.allclose(uni["v"], torch.tensor([[2 + 8 + 1.0, 7 + 18 + 2.0]]))
    # the two halves add up to the fused logits
    assert torch.allclose(uni["a"] + uni["v"], head({"a": a, "v": v}))


def test_sum_fusion_is_sum_of_modality_heads():
    head = SumFusion(DIMS, num_classes=3)
    feats = {m: torch.randn(2, d) for m, d in DIMS.items()}
    uni = head.unimodal_logits(feats)
    assert torch.allclose(head(feats), uni["audio"] + uni["visual"])


def test_film_and_gated_need_two_modalities():
    with pytest.raises(ValueError, match="exactly two modalities"):
        build_fusion("film", {"a": 4, "b": 4, "c": 4}, 2)
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("attention", DIMS, 2)


def test_resnet_encoders_shapes():
    cfg = ModelConfig(resnet_width=8)
    audio = BACKBONES.get("resnet18_audio")(cfg, in_chans=1)
    visual = BACKBONES.get("resnet18_visual")(cfg, in_chans=3)
    assert audio.out_dim == visual.out_dim == 64
    assert audio(torch.randn(2, 1, 32, 24)).shape == (2, 64)
    assert audio(torch.randn(2, 32, 24)).shape == (2, 64)  # channel dim added
    assert visual(torch.randn(2, 3, 4, 16, 16)).shape == (2, 64)  # 4 frames pooled
    assert visual(torch.randn(2, 3, 16, 16)).shape == (2, 64)  # a single frame


def test_standard_resnet18_width_is_512():
    enc = BACKBONES.get("resnet18_audio")(ModelConfig(), in_chans=1)
    assert enc.out_dim == 512
    assert sum(p.numel() for p in enc.parameters()) > 11_000_000  # a real ResNet18 trunk


def test_fusion_model_returns_logits_features_and_unimodal_logits():
    info = DatasetInfo(
        name="toy",
        modalities=("audio", "visual"),
        num_classes=4,
        class_names=tuple("abcd"),
        default_backbones={"audio": "resnet18_audio", "visual": "resnet18_visual"},
        backbone_args={"audio": {"in_chans": 1}, "visual": {"in_chans": 3}},
    )
    model = FusionModel.build(info, ModelConfig(resnet_width=8, fusion="gated"))
    out = model({"audio": torch.randn(3, 1, 16, 16), "visual": torch.randn(3, 3, 2, 16, 16)})
    assert out.logits.shape == (3, 4)
    assert out.features["audio"].shape == (3, 64)
    assert set(out.unimodal_logits) == {"audio", "visual"}


def test_tiny_clip_towers_run_forward():
    cfg = ModelConfig(clip_model="mmb-tiny-clip")
    image = BACKBONES.get("clip_image")(cfg)
    text = BACKBONES.get("clip_text")(cfg)
    assert image(torch.randn(2, 3, 32, 32)).shape == (2, image.out_dim)
    assert image(torch.randn(2, 3, 2, 32, 32)).shape == (2, image.out_dim)  # frames averaged
    tokens = tokenizer_for("mmb-tiny-clip")(["a photo of a cat", "sarcasm"])
    assert tokens.shape == (2, text.context_length)
    assert text(tokens).shape == (2, text.out_dim)


def test_missing_pretrained_clip_weights_name_the_file(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HOME", str(tmp_path))  # open_clip's URL cache ~/.cache/clip
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(PretrainedWeightsMissing) as err:
        create_clip(ModelConfig(clip_model="ViT-B-32", pretrained="openai"))
    msg = str(err.value)
    assert "ViT-B-32/openai" in msg and "Looked for" in msg and "ViT-B-32.pt" in msg
    with pytest.raises(PretrainedWeightsMissing, match="known tags"):
        create_clip(ModelConfig(clip_model="ViT-B-32", pretrained="no-such-tag"))


def test_narrow_resnet_is_the_standard_topology_scaled_down():
    # issue #12.7: a narrow trunk had timm's 64-channel stem and a projection shortcut in layer1.0
    def shapes(width: int) -> dict[str, tuple[int, ...]]:
        enc = BACKBONES.get("resnet18_audio")(ModelConfig(resnet_width=width), in_chans=1)
        return {n: tuple(p.shape) for n, p in enc.named_parameters()}

    wide, narrow = shapes(64), shapes(8)
    assert set(narrow) == set(wide) and not any("layer1.0.downsample" in n for n in narrow)
    for name, shape in wide.items():
        scaled = tuple(s // 8 if i < 2 and s > 1 else s for i, s in enumerate(shape))
        assert narrow[name] == scaled, name


def test_official_weight_init_matches_ogm_ge_utils():
    from benchmark.models import official_weight_init

    torch.manual_seed(0)
    head = torch.nn.Sequential(torch.nn.Linear(512, 256), torch.nn.BatchNorm2d(4), torch.nn.Conv2d(4, 8, 3))
    head[1].weight.data.fill_(3.0)
    head.apply(official_weight_init)
    lin, bn, conv = head
    assert (
        torch.count_nonzero(lin.bias) == 0
        and torch.equal(bn.weight, torch.ones(4))
        and torch.count_nonzero(bn.bias) == 0
    )
    # xavier normal: std sqrt(2 / (fan_in + fan_out)); Kaiming normal fan-out: std sqrt(2 / (8 * 3 * 3))
    assert lin.weight.std().item() == pytest.approx((2 / (512 + 256)) ** 0.5, rel=0.02)
    assert conv.weight.std().item() == pytest.approx((2 / 72) ** 0.5, rel=0.15)
