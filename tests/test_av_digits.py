"""av_digits: the ambiguous audio recordings and their guessed training labels (issue #13's signature)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark.config import build_config
from mmbalance_datasets.av_digits import PAIR_OF, PAIRS, PARTNER_OF, AVDigits


def _splits(**data: object) -> tuple[dict[str, dict[str, torch.Tensor]], np.ndarray]:
    from sklearn.datasets import load_digits

    cfg = build_config("joint", "av_digits", 0, {f"data.{k}": v for k, v in data.items()})
    ds = AVDigits(cfg.data_cfg)
    splits = {name: ds.split(name).tensors for name in ("train", "val", "test")}
    return splits, load_digits().target


def _member_lines(audio: torch.Tensor, labels: np.ndarray, freq_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean level (over time) of the clean spectrogram at the bins of the line above and below the pair tone."""
    pitch = 3.0 + PAIR_OF[labels] * (freq_bins - 8) / 4.0
    profile = audio[:, 0].mean(dim=2).numpy()  # (N, F)
    rows = np.arange(len(labels))
    above = profile[rows, np.rint(pitch + 2.5).astype(int)]
    below = profile[rows, np.rint(pitch - 2.5).astype(int)]
    return above, below


def test_pairs_cover_every_digit_once() -> None:
    assert sorted(d for p in PAIRS for d in p) == list(range(10))
    assert all(PARTNER_OF[PARTNER_OF[d]] == d and PAIR_OF[PARTNER_OF[d]] == PAIR_OF[d] for d in range(10))


def test_only_ambiguous_training_labels_are_guessed_and_only_within_the_pair() -> None:
    splits, truth = _splits()
    cfg = build_config("joint", "av_digits", 0).data_cfg
    for name, t in splits.items():
        true = truth[t["index"].numpy()]
        got = t["label"].numpy()
        changed = got != true
        if name != "train":
            assert not changed.any(), f"{name} labels must be the true digits"
            continue
        assert (got[changed] == PARTNER_OF[true[changed]]).all()  # a guess is the other member of the pair
        # a changed label is an ambiguous recording: both member lines sound (the clean training tensors)
        above, below = _member_lines(t["audio"], true, cfg.freq_bins)
        level = cfg.audio_member_amplitude * 0.5  # well above the tone's tail, well below a line's peak
        assert ((above > level) & (below > level))[changed].all()
        # about audio_ambiguous x 1/2 of the training labels are wrong guesses (binomial, n ~ 1,168)
        share = changed.mean()
        assert abs(share - cfg.audio_ambiguous / 2) < 0.05, share
        # the other training recordings carry exactly one member line, on the true member's side
        clear = (above > level) ^ (below > level)
        member_above = np.array([PAIRS[PAIR_OF[d]].index(d) == 1 for d in true])
        assert (above > level)[clear & ~changed].tolist() == member_above[clear & ~changed].tolist()
        assert clear.mean() > 1 - cfg.audio_ambiguous - 0.05


def test_no_guessing_and_no_ambiguity_when_switched_off() -> None:
    splits, truth = _splits(audio_ambiguous=0.0)
    t = splits["train"]
    assert (t["label"].numpy() == truth[t["index"].numpy()]).all()
    splits, truth = _splits(guess_ambiguous_labels=False)
    t = splits["train"]
    assert (t["label"].numpy() == truth[t["index"].numpy()]).all()


def test_out_of_range_ambiguity_names_the_key() -> None:
    cfg = build_config("joint", "av_digits", 0, {"data.audio_ambiguous": 1.5})
    with pytest.raises(ValueError, match="data.audio_ambiguous must be in \\[0, 1\\]"):
        AVDigits(cfg.data_cfg).split("train")
