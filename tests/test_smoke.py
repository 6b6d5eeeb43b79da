"""The harness end to end: a short joint run learns, and the same seed gives the same metrics."""

import pytest
from conftest import CHANCE_AV_DIGITS, train_briefly


@pytest.mark.slow
def test_joint_one_epoch_learns_above_chance():
    row = train_briefly("joint", epochs=1)
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert 0.0 <= row["test_acc_visual[last]"] <= 1.0 and 0.0 <= row["test_acc_audio[last]"] <= 1.0


@pytest.mark.slow
def test_same_seed_same_metrics():
    a = train_briefly("joint", epochs=1, seed=3, **{"train.max_steps_per_epoch": 4})
    b = train_briefly("joint", epochs=1, seed=3, **{"train.max_steps_per_epoch": 4})
    keys = [k for k in a if k.startswith(("test_", "val_"))]
    assert keys and all(a[k] == b[k] for k in keys)
