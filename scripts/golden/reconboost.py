"""Golden fixture for ``reconboost`` from the released ReconBoost code (``huacong/ReconBoost``).

    python scripts/golden/reconboost.py --released /path/to/ReconBoost

Runs the released ``train.main`` unchanged for two stages (audio, then visual) from scratch (no
``--use_pretrain``: the stage-0 ensemble is the constant ``c0``), one phase-1 epoch and one phase-2 epoch per
stage, three steps each, on 12 stored samples, in float64, from the suite's initial weights. Its surroundings are
stand-ins: the data set and loader yield the stored samples in order (batch 4, ``drop_last``), the learners and the
``DynamicNet`` are built narrow and loaded with the suite's initial state, ``.cuda()`` is the CPU, the
``dtype=torch.float32`` casts of the ensemble output are float64, and ``check_status`` stops after two stages.
Stored: every learner's parameters and BatchNorm buffers (``num_batches_tracked`` included), the shared head and
the boost rate after the last step, per step the boosting, MSE and rectification losses (what ``train.py`` averages
with ``np.mean``), and the test accuracy after each stage.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ogm import Float64Tensor, samples  # noqa: E402
from released import (  # noqa: E402
    GOLDEN_DIR,
    float64,
    import_released,
    map_keys,
    parse_args,
    patched,
    save_fixture,
    scaled_nn,
    seed_all,
    stand_in,
    stub_missing,
)

from tests.golden.harness import suite_initial_state  # noqa: E402

WIDTH = 2  # suite model.resnet_width; the released ResNet18 is built at 64 / WIDTH
STAGES = 2
MODALITIES = ("audio", "visual")
LEARNER_KEYS = {m: {f"learners.{m}.encoder.trunk.": f"{m}_net.", f"learners.{m}.fc.": "fc."} for m in MODALITIES}
HEAD_KEYS = {"head.0.": "fc1.", "head.2.": "fc2."}  # released dynamic_net.Head: fc1, relu, fc2
SUITE_OVERRIDES = {
    "model.resnet_width": WIDTH,
    "train.batch_size": 4,
    "train.epochs": STAGES * 2,  # (epochs_per_stage + correct_epoch) per stage
    "train.optimizer": "sgd",
    "train.lr": 0.01,  # m_lr = e_lr
    "train.momentum": 0.9,  # hard-coded in train.py
    "train.weight_decay": 5e-4,  # hard-coded in train.py
    "train.scheduler": "none",
    "method.variant": "official",
    "method.init_from": "scratch",
    "method.epochs_per_stage": 1,
    "method.correct_epoch": 1,
    "method.w1": 5.0,
    "method.w2": 1.0,
    "method.alpha": 0.5,
    "method.boost_rate": 1.0,
}


def _part(state: dict[str, torch.Tensor], keys: dict[str, str]) -> dict[str, torch.Tensor]:
    return map_keys({k: v for k, v in state.items() if k.startswith(tuple(keys))}, keys)


class Recorder:
    """Stands in for ``numpy`` and ``torch.nn`` in the released ``train`` module and wraps its ``test``: records the
    lists ``np.mean`` averages at the end of each stage (boosting losses, MSE losses, rectification losses) and the
    test accuracy after each stage."""

    def __init__(self, released_test) -> None:
        self.means: list[list[float]] = []
        self.test_acc: list[float] = []

        def mean(values, *args, **kwargs):
            self.means.append([float(v) for v in values])
            return np.mean(values, *args, **kwargs)

        def test(*args, **kwargs):
            acc = released_test(*args, **kwargs)
            self.test_acc.append(float(acc))
            return acc

        self.np = stand_in(np, mean=mean)
        self.test = test

    def trace(self) -> dict[str, torch.Tensor]:
        boost, ga, ce = self.means[0::3], self.means[1::3], self.means[2::3]
        return {
            "boost_loss": torch.tensor([v for stage in boost for v in stage], dtype=torch.float64),
            "ga_loss": torch.tensor([v for stage in ga for v in stage], dtype=torch.float64),
            "rectify_loss": torch.tensor([v for stage in ce for v in stage], dtype=torch.float64),
            "test_acc": torch.tensor(self.test_acc, dtype=torch.float64),
        }


def released_run(checkout: str, init: dict, data: dict, tmp: str) -> tuple[dict, dict]:
    stub_missing("torch.utils.tensorboard", "h5py")  # train.py imports them at top level; unused here
    train = import_released(checkout, "train")
    backbone, basic = sys.modules["models.CREMA.backbone"], sys.modules["models.CREMA.basic_model"]
    dynamic = sys.modules["models.dynamic_net"]
    narrow = scaled_nn(64 // WIDTH)
    learners: dict[str, nn.Module] = {}
    own_fc: dict[str, nn.Module] = {}
    nets: list = []

    def learner(m: str):
        def build(dataset: str, latent_in: int = 512):
            with patched(backbone, "nn", narrow), patched(basic, "nn", narrow):
                net = getattr(basic, "AudioNet" if m == "audio" else "VisualNet")(dataset, latent_in)
            net.double()
            net.load_state_dict(_part(init, LEARNER_KEYS[m]), strict=True)
            learners[m], own_fc[m] = net, net.fc
            return net

        return build

    cpu_torch = stand_in(torch, tensor=lambda *a, device=None, **k: torch.tensor(*a, **k))

    def dynamic_net(**kwargs):
        # The head's hidden 256 is not scaled with the width (the suite's mlp_head keeps it too).
        with patched(dynamic, "nn", scaled_nn(64 // WIDTH, keep=(256,))), patched(dynamic, "torch", cpu_torch):
            net = dynamic.DynamicNet(**kwargs)
        net.head.double()
        net.head.load_state_dict(_part(init, HEAD_KEYS), strict=True)
        with torch.no_grad():
            net.boost_rate.copy_(init["boost_rate"])
        nets.append(net)
        return net

    size, n = SUITE_OVERRIDES["train.batch_size"], len(data["label"])

    class Samples:  # stands in for loaders.CramedDataset: (spectrogram (F, T), frames (C, T, H, W), label)
        def __init__(self, dataset_dir: str, mode: str) -> None:
            self.mode = mode

    def loader(dataset, batch_size, shuffle, num_workers, drop_last):  # the stored samples in order
        assert batch_size == size and drop_last
        return [
            (
                data["audio"][i : i + size].as_subclass(Float64Tensor),
                data["visual"][i : i + size].as_subclass(Float64Tensor),
                data["label"][i : i + size],
            )
            for i in range(0, n - n % size, size)
        ]

    o = SUITE_OVERRIDES
    args = types.SimpleNamespace(
        dataset="CREMAD",
        dataset_path=tmp,
        n_class=6,
        batch_size=size,
        boost_rate=o["method.boost_rate"],
        n_worker=0,
        epochs_per_stage=o["method.epochs_per_stage"],
        correct_epoch=o["method.correct_epoch"],
        common_space=True,
        use_lr=True,
        m_lr=o["train.lr"],
        e_lr=o["train.lr"],
        use_br=True,
        use_pretrain=False,
        m1ckpt="",  # unused without --use_pretrain
        m2ckpt="",
        use_ga=True,
        weight1=o["method.w1"],
        weight2=o["method.w2"],
        alpha=o["method.alpha"],
        ckpt_dir=tmp,
        use_tensorboard=False,
        tensorboard_dir=tmp,
    )
    recorder = Recorder(train.test)
    with (
        patched(torch.Tensor, "cuda", lambda self, *a, **k: self),
        patched(nn.Module, "cuda", lambda self, *a, **k: self),
        patched(train, "device", torch.device("cpu")),
        patched(train, "torch", stand_in(torch, float32=torch.float64)),
        patched(train, "np", recorder.np),
        patched(train, "test", recorder.test),
        patched(train, "AudioNet", learner("audio")),
        patched(train, "VisualNet", learner("visual")),
        patched(train, "DynamicNet", dynamic_net),
        patched(train, "CramedDataset", Samples),
        patched(train, "DataLoader", loader),
        patched(train, "check_status", lambda stage: stage < STAGES),
    ):
        train.main(args, "golden")  # setup_seed() inside: torch and random seeded with 0, as released
    (net,) = nets
    state: dict[str, torch.Tensor] = {}
    for m in MODALITIES:
        trunk = getattr(learners[m], f"{m}_net")
        state.update({f"learners.{m}.encoder.trunk.{k}": v for k, v in trunk.state_dict().items()})
        state.update({f"learners.{m}.fc.{k}": v for k, v in own_fc[m].state_dict().items()})
    state.update(map_keys(net.head.state_dict(), {v: k for k, v in HEAD_KEYS.items()}))
    state["boost_rate"] = net.boost_rate.detach()
    state["uses_head"] = torch.tensor([learners[m].fc is net.head for m in MODALITIES])
    state["member"] = torch.tensor([m in net.models_name for m in MODALITIES])
    return {k: v.detach().clone() for k, v in state.items()}, recorder.trace()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    meta = {
        "released": "huacong/ReconBoost",
        "commit": args.commit,
        "generator": "scripts/golden/reconboost.py",
        "torch": torch.__version__,
        "num_classes": 6,
        "seed": 0,
        "step_seed": 0,  # train.main's setup_seed()
        "released_args": "--dataset CREMAD --n_class 6 --batch_size 4 --epochs_per_stage 1 --correct_epoch 1 "
        "(no --use_pretrain), two stages",
        "suite_overrides": SUITE_OVERRIDES,
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, init = suite_initial_state("reconboost", data, meta, SUITE_OVERRIDES, tmp)
        seed_all(meta["step_seed"])
        with float64():
            final, trace = released_run(args.released, init, data, tmp)
    out = Path(args.out or GOLDEN_DIR / "reconboost.npz")
    save_fixture(out, meta, {"init": init, "data": data, "final": final, "trace": trace})
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
