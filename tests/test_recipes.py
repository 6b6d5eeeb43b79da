"""Shared training recipes (benchmark/recipes.py): referencing one by name resolves to exactly the configuration
each method and dataset had when the values were written out in full.

``fixtures/configs/resolved.json`` is ``build_config(method, dataset).flat()`` for every registered method and
dataset, recorded from the code before the recipes were shared (commit 190a0ee); it is data, not code under test.
The av_digits entries' learning rates and main knobs were updated to the mini_tune choice (issue #13,
``docs/results/mini_tune/``), and only those keys.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmark.config import build_config
from benchmark.recipes import RECIPES, recipe

FROZEN = json.loads((Path(__file__).resolve().parent / "fixtures" / "configs" / "resolved.json").read_text())


@pytest.mark.parametrize("pair", sorted(FROZEN))
def test_resolved_config_is_unchanged(pair: str) -> None:
    method, dataset = pair.split("/")
    got = json.loads(json.dumps(build_config(method, dataset).flat(), sort_keys=True, default=str))
    want = FROZEN[pair]
    assert {k: got.get(k) for k in want} == want and set(got) == set(want)


def test_the_recipes_are_the_released_values() -> None:
    sgd = recipe("ogm_ge_sgd")
    assert (sgd["train.lr"], sgd["train.momentum"], sgd["train.weight_decay"]) == (1e-3, 0.9, 1e-4)
    assert (sgd["train.step_size"], sgd["train.gamma"], sgd["train.batch_size"]) == (70, 0.1, 64)
    adam = recipe("igm_image_text_adam")
    assert (adam["train.lr"], adam["train.betas"], adam["train.batch_size"]) == (1e-5, (0.9, 0.99), 12)
    sgd["train.lr"] = 5.0  # a copy: editing it leaves the shared recipe alone
    assert RECIPES["ogm_ge_sgd"]["train.lr"] == 1e-3
    with pytest.raises(KeyError, match="benchmark/recipes.py defines"):
        recipe("ogm_sgd")
