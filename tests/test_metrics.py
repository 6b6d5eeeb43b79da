"""Metrics against values computed by hand."""

import math

import numpy as np
import pytest
import torch

from benchmark.metrics import accuracy, classification_metrics, macro_f1, mean_average_precision


def test_accuracy_by_hand():
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = torch.tensor([0, 1, 1, 1])
    assert accuracy(scores, labels) == pytest.approx(3 / 4)


def test_mean_average_precision_by_hand():
    # class 0 scores ranked: s0=.9 (pos), s2=.6 (neg), s3=.3 (neg), s1=.2 (neg) -> AP_0 = 1
    # class 1 scores ranked: s1=.8 (pos), s3=.7 (pos), s2=.4 (pos), s0=.1 (neg) -> AP_1 = 1
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]])
    labels = np.array([0, 1, 1, 1])
    assert mean_average_precision(scores, labels) == pytest.approx(1.0)
    # Now a positive of class 0 ranked second behind a negative:
    # class 0: scores .5(neg) .4(pos) .1(neg) -> precision at the positive = 1/2 -> AP_0 = 0.5
    # class 1: scores .9(pos) .6(neg) .5(pos) -> AP_1 = (1/1 + 2/3) / 2 = 5/6
    scores = np.array([[0.5, 0.5], [0.4, 0.6], [0.1, 0.9]])
    labels = np.array([1, 0, 1])
    assert mean_average_precision(scores, labels) == pytest.approx((0.5 + 5 / 6) / 2)


def test_macro_f1_by_hand():
    # predictions: [0, 0, 1, 2], labels: [0, 1, 1, 2]
    # class 0: tp=1 fp=1 fn=0 -> F1 = 2/3; class 1: tp=1 fp=0 fn=1 -> 2/3; class 2: tp=1 -> 1
    scores = torch.tensor([[3.0, 0, 0], [2.0, 1, 0], [0, 5.0, 0], [0, 0, 1.0]])
    labels = torch.tensor([0, 1, 1, 2])
    assert macro_f1(scores, labels) == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)


def test_classification_metrics_per_modality():
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 1])
    uni = {"audio": torch.tensor([[1.0, 0.0], [1.0, 0.0]]), "visual": torch.tensor([[0.0, 1.0], [0.0, 1.0]])}
    out = classification_metrics(logits, labels, uni)
    assert out["acc"] == 1.0 and out["map"] == 1.0 and out["macro_f1"] == 1.0
    assert out["acc_audio"] == 0.5 and out["acc_visual"] == 0.5
    assert not any(math.isnan(v) for v in out.values())
