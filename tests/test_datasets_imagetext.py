"""Twitter2015 and Sarcasm on generated raw releases: tokenization, prepare, batches, one epoch, offline errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from benchmark.backbones.clip import PretrainedWeightsMissing
from benchmark.config import build_config
from mmbalance_datasets._imagetext import TokenizerMissing, clean_text, pre_caption
from mmbalance_datasets.sarcasm import Sarcasm
from mmbalance_datasets.twitter2015 import Twitter2015
from tests.fake_releases import make_sarcasm, make_twitter2015, make_vocab, tree_digest


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    return make_vocab(tmp_path_factory.mktemp("tok"))


def test_clean_text_follows_igm():
    # Twitter (clean_str, then pre_caption): whole alphabetic words only -- abc123, snake_case, 2015 go
    tweet = "RT @Trump: it's GREAT!! #news 2015 abc123 snake_case well-known"
    assert clean_text(tweet, "twitter") == "rt trump it s great news well known"
    # Sarcasm (pre_caption only): digits, @, <user> and _ stay, apostrophes and # go, - and / become spaces
    sarcasm = "Can't believe it's 5 o'clock <user> @friend #blessed snake_case and/or well-known!!"
    assert (
        clean_text(sarcasm, "caption")
        == "cant believe its 5 oclock <user> @friend blessed snake_case and or well known"
    )
    assert pre_caption("a  <person>\tb   c") == "a person\tb c"  # runs of whitespace -> one space; a lone tab stays
    for cleaning in ("twitter", "caption"):
        assert clean_text(" ".join(["w"] * 80), cleaning).split() == ["w"] * 50
    with pytest.raises(ValueError, match="unknown text cleaning"):
        clean_text("x", "letters")


@pytest.mark.slow
@pytest.mark.parametrize(("cls", "make", "n_train"), [(Twitter2015, make_twitter2015, 9), (Sarcasm, make_sarcasm, 6)])
def test_prepare_and_one_epoch(tmp_path, vocab, cls, make, n_train):
    from benchmark.trainer import fit

    make(tmp_path / "raw")
    digest = tree_digest(tmp_path / "raw")
    summary = cls.prepare(str(tmp_path / "raw"), str(tmp_path / "cache"), progress=False, tokenizer=str(vocab))
    assert tree_digest(tmp_path / "raw") == digest
    splits = json.loads((tmp_path / "cache" / "splits.json").read_text())
    assert not splits["val_carved_from_train"]  # the official dev/valid split
    assert len(splits["train"]) == n_train and len(splits["val"]) == len(cls.classes)
    if cls is Twitter2015:
        assert list(summary["bad"]) == ["train/9"] and "missing.jpg" in summary["bad"]["train/9"]
    tokens = np.load(tmp_path / "cache" / "text.npy")
    width = int((tokens != 0).sum(1).max())
    assert tokens.dtype == np.int32 and tokens.shape[1] == width  # padded to the longest text, none cut
    # [CLS] <words> [SEP] then padding; the TomBERT target replaced $T$ ("rt trump is good news", class 0)
    vocab_list = (vocab / "vocab.txt").read_text().split()
    first = [vocab_list[i] for i in tokens[0] if i]
    assert first[0] == "[CLS]" and first[-1] == "[SEP]"
    if cls is Twitter2015:
        assert first[1:-1] == ["[UNK]", "trump", "is", "good", "news"]

    overrides = {
        "data.root": str(tmp_path / "raw"),
        "data.cache": str(tmp_path / "cache"),
        "data.image_size": 32,
        "model.backbones": {"text": "bert_tiny", "image": "resnet18_visual"},
        "model.resnet_width": 8,
        "train.epochs": 1,
        "train.batch_size": 3,
        "train.checkpoint": False,
        "train.device": "cpu",
    }
    cfg = build_config("joint", cls.name, 0, overrides)
    ds = cls(cfg.data_cfg)
    item = ds.split("train")[0]
    assert item["text"].shape == (width,) and item["text"].dtype == torch.int64
    assert item["image"].shape == (3, 32, 32)
    assert ds.info.paper_metric == "macro_f1" and ds.info.modalities == ("text", "image")
    row = fit(cfg, None, progress=False)
    assert np.isfinite(row["test_macro_f1[last]"])


def test_offline_without_cache_fails_clearly(tmp_path, monkeypatch):
    from benchmark.registry import BACKBONES

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    make_twitter2015(tmp_path / "raw", per_class=1)
    with pytest.raises(TokenizerMissing, match="from_pretrained"):
        Twitter2015.prepare(str(tmp_path / "raw"), str(tmp_path / "cache"), progress=False)
    cfg = build_config("joint", "twitter2015", 0, {})
    with pytest.raises(PretrainedWeightsMissing, match="resnet50-0676ba61.pth"):
        BACKBONES.get("resnet50")(cfg.model)
    with pytest.raises(PretrainedWeightsMissing, match="bert-base-uncased"):
        BACKBONES.get("bert")(cfg.model)
    # the random-init variants build offline
    assert BACKBONES.get("resnet50_scratch")(cfg.model).out_dim == 2048
