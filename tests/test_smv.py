"""SMV: per-sample Shapley values, copy counts, re-sampled training sets, feature dropping and a short run."""

import pytest
import torch
from conftest import CHANCE_AV_DIGITS, short_config, train_briefly

from benchmark.trainer import build_run
from methods.smv import ResampledSplit, copies_for, shapley_values

AV = ("audio", "visual")


def _correct(**by_subset):
    return {frozenset(k.split("_")): torch.tensor(v) for k, v in by_subset.items()}


def test_two_modality_shapley_matches_the_official_formula():
    # samples: (all, a, v) correct = (1,1,0), (0,0,1), (1,1,1), (0,0,0), (1,0,0)
    correct = _correct(audio_visual=[1, 0, 1, 0, 1], audio=[1, 0, 1, 0, 0], visual=[0, 1, 1, 0, 0])
    phi = shapley_values(correct, AV)
    # phi_a = (v_a + 2 * c_all - v_v) / 2
    torch.testing.assert_close(phi["audio"], torch.tensor([1.5, -0.5, 1.0, 0.0, 1.0]))
    torch.testing.assert_close(phi["visual"], torch.tensor([0.5, 0.5, 1.0, 0.0, 1.0]))


def test_three_modality_shapley():
    # only {a} and the full set classify correctly: phi_a = 1/3 * 1 + 1/3 * 2 = 1, phi_b = phi_c = -1/6 + 2/3
    correct = _correct(a=[1], b=[0], c=[0], a_b=[0], a_c=[0], b_c=[0], a_b_c=[1])
    phi = shapley_values(correct, ("a", "b", "c"))
    assert [float(phi[m]) for m in "abc"] == pytest.approx([1.0, 0.5, 0.5])
    assert sum(float(phi[m]) for m in "abc") == pytest.approx(2.0)  # efficiency: v(all) = 2


def test_copies_per_value():
    phi = torch.tensor([-0.5, 0.0, 0.5, 1.0, 1.5, 0.4, -0.1, 0.9])
    assert copies_for(phi).tolist() == [3, 2, 1, 0, 0, 2, 3, 1]


def test_resampled_split_keeps_rows_and_solo_flags():
    base = build_run(short_config("smv")).method.ctx.splits["val"]
    ds = ResampledSplit(base, torch.tensor([4, 4, 7]), torch.tensor([-1, 0, 1]))
    batch = ds.__getitems__([0, 1, 2])
    assert batch["index"].tolist() == base.tensors["index"][[4, 4, 7]].tolist()
    assert batch["solo"].tolist() == [-1, 0, 1]
    assert ds[2]["label"] == base[7]["label"]


def test_sample_level_resampling_counts(monkeypatch):
    method = build_run(short_config("smv")).method
    n = len(method.ctx.splits["train"])
    phi_a = torch.full((n,), 1.5)
    phi_a[:3] = torch.tensor([-0.5, 0.0, 0.5])
    phi_v = torch.full((n,), 1.0)
    phi_v[0] = 0.5
    monkeypatch.setattr(method, "valuate", lambda dataset: {"audio": phi_a, "visual": phi_v})
    ds = method.resample(epoch=4)
    assert len(ds) == n + 6 + 1
    assert ds.indices[:n].tolist() == list(range(n)) and (ds.solo[:n] == -1).all()
    # sample by sample, each sample's copies in modality order (the released dataset's order)
    assert ds.indices[n:].tolist() == [0, 0, 0, 0, 1, 1, 2]
    assert ds.solo[n:].tolist() == [0, 0, 0, 1, 0, 0, 0]  # audio kept 6 times, visual once
    assert method.history[-1] == {
        "epoch": 5,
        "phi_audio": pytest.approx(float(phi_a.mean())),
        "copies_audio": 6,
        "phi_visual": pytest.approx(float(phi_v.mean())),
        "copies_visual": 1,
        "size": n + 7,
    }


def test_modality_level_resampling_count(monkeypatch):
    method = build_run(short_config("smv", **{"method.level": "modality"})).method
    n = len(method.ctx.splits["train"])
    seen = {}

    def fake(dataset):
        seen["size"] = len(dataset)
        k = len(dataset)
        return {"audio": torch.full((k,), 1.25), "visual": torch.full((k,), 0.5)}

    monkeypatch.setattr(method, "valuate", fake)
    ds = method.resample(epoch=0)
    assert seen["size"] == int(n * 0.2)
    # gaps: audio -0.25, visual 0.5 -> d = 0.75 * 2/3 = 0.5 -> int(0.5 n) copies keeping visual only
    count = int(0.5 * n)
    assert len(ds) == n + count
    assert (ds.solo[n:] == 1).all()
    assert method.history[-1]["kept"] == "visual"


def test_valuation_agrees_with_manual_feature_zeroing():
    method = build_run(short_config("smv")).method
    base = method.ctx.splits["val"]
    sub = ResampledSplit(base, torch.arange(40), torch.full((40,), -1))
    phi = method.valuate(sub)
    model = method.model.eval()
    batch = base.__getitems__(list(range(40)))
    with torch.no_grad():
        f = model.encode(batch)
        y = batch["label"]
        z = {m: torch.zeros_like(v) for m, v in f.items()}
        c_all = (model.fusion(f).argmax(1) == y).float()
        c_a = (model.fusion({"audio": f["audio"], "visual": z["visual"]}).argmax(1) == y).float()
        c_v = (model.fusion({"audio": z["audio"], "visual": f["visual"]}).argmax(1) == y).float()
    torch.testing.assert_close(phi["audio"], (c_a + 2 * c_all - c_v) / 2)
    torch.testing.assert_close(phi["visual"], (c_v + 2 * c_all - c_a) / 2)


def test_solo_copies_train_on_one_modality_only():
    method = build_run(short_config("smv")).method
    batch = method.ctx.splits["val"].__getitems__([0, 1, 2])
    batch["solo"] = torch.tensor([-1, 0, 1])
    captured = {}
    head = method.model.head
    method.model.head = lambda feats: captured.update({m: v.detach().clone() for m, v in feats.items()}) or head(feats)
    method.training_step(batch, 0)
    assert captured["audio"][0].abs().sum() > 0 and captured["visual"][0].abs().sum() > 0
    assert captured["visual"][1].abs().sum() == 0 and captured["audio"][1].abs().sum() > 0
    assert captured["audio"][2].abs().sum() == 0 and captured["visual"][2].abs().sum() > 0


def test_first_warmup_epochs_train_on_the_original_set(monkeypatch):
    method = build_run(short_config("smv", **{"method.warmup": 2})).method
    n = len(method.ctx.splits["train"])
    monkeypatch.setattr(method, "valuate", lambda dataset: {m: torch.zeros(n) for m in AV})  # 2 copies each
    sizes = [len(method.train_loader(epoch).dataset) for epoch in range(4)]
    # released: epochs 0 and 1 (< warmup) on the original set; the valuation after epoch 1 feeds epoch 2
    assert sizes == [n, n, 5 * n, 5 * n]
    assert [r["epoch"] for r in method.history] == [3, 4]


@pytest.mark.slow
def test_short_run_with_resampling_learns(store):
    row = train_briefly("smv", epochs=2, store=store, **{"method.warmup": 1, "train.max_steps_per_epoch": 8})
    assert row["test_acc[last]"] > 2 * CHANCE_AV_DIGITS
    assert {"test_acc_audio[last]", "test_acc_visual[last]"} <= set(row)
    resampled = store.read_history(row["run_id"])["artifacts"]["resampling"]
    assert [r["epoch"] for r in resampled] == [2]  # warmup 1: one warm-up epoch, re-sampled from the second
    assert resampled[0]["size"] >= len(build_run(short_config("smv")).method.ctx.splits["train"])
