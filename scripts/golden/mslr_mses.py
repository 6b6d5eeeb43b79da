"""Golden fixtures for ``mslr`` and ``mses`` from the AGM authors' re-implementation (``lihong2303/AGM_ICCV2023``).

    python scripts/golden/mslr_mses.py --released /path/to/AGM_ICCV2023 [--only mslr|mses]

Runs the released ``run/CREMAD_main.py`` ``CREMAD_main`` itself -- its epoch loop (epochs counted from 1), its
``train`` and ``test``, MSLR's accuracy memory and ratios (lines 671-684), MSES's smoothed losses, checkpoints,
stop and reload (lines 685-745) -- with stand-ins only for what reads CREMA-D from disk or logs: ``Cramed_Task``
gives the released ``AVClassifier_Sum`` (built at the suite's ResNet width) with the suite's initial weights,
the stored batches and the released ``Cramed_Task.build_optimizer`` (SGD, momentum 0.9, weight decay 1e-4,
StepLR); ``weight_init`` is a no-op (the weights come from the suite); ``SummaryWriter`` is a no-op;
``set_seed`` re-seeds with ``step_seed``. ``train`` and ``test`` are wrapped to record the ratios each epoch
trains with and what each evaluation returns. ``--out`` names a folder here.

* ``mslr.npz``: 12 samples (train = test, as the golden dataset has it), one batch per epoch, 8 epochs, window
  ``modulation_starts=0, modulation_ends=7``: the ratio from the 6th evaluation (2.0) acts in epoch 7, the
  window closes before epoch 8; the audio ratio is the visual one (AGM's ``test()`` bug, lines 402-404).

Both runs are well conditioned: a 1e-12 perturbation of the initial weights moves the final ones by about 1e-6
(smaller batches with BatchNorm on 1x1 maps made an earlier MSLR setting chaotic, amplification 1e12).
* ``mses.npz``: 8 training and 8 held-out test samples (8x8 inputs, one frame), one batch per epoch; the audio
  head's held-out loss stops improving, audio stops (``epoch - best > 80``) and the model of its best epoch is
  reloaded; the window ends one epoch after the stop, so one epoch runs with audio's gradients x 0 and the
  next with audio training again.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from released import (  # noqa: E402
    GOLDEN_DIR,
    exact32,
    float64,
    import_released,
    map_keys,
    parse_args,
    patched,
    save_fixture,
    scaled_nn,
    seed_all,
)

from tests.golden.harness import one_thread, suite_initial_state  # noqa: E402

WIDTH = 2
CLASSES = 6  # AVClassifier_Sum hard-codes nn.Linear(512, 6)
KEYS = {
    "encoders.audio.trunk.": "audio_net.",
    "encoders.visual.trunk.": "visual_net.",
    "fusion.fcs.audio.": "audio_cls.",
    "fusion.fcs.visual.": "visual_cls.",
}
COMMON = {
    "model.resnet_width": WIDTH,
    "model.fusion": "sum",
    "train.optimizer": "sgd",
    "train.momentum": 0.9,
    "train.weight_decay": 1e-4,
    "train.scheduler": "step",
}
FIXTURES = {
    "mslr": {
        **COMMON,
        "train.batch_size": 12,
        "train.epochs": 8,
        "train.lr": 0.03,
        "train.step_size": 70,
        "train.gamma": 0.1,
        "method.window": 5,
        "method.acc_split": "test",
        "method.accuracy": "official",
        "method.modulation_starts": 0,
        "method.modulation_ends": 7,
    },
    "mses": {
        **COMMON,
        "train.batch_size": 8,
        "train.epochs": 90,  # then stop + 3 (see main)
        "train.lr": 0.01,
        "train.step_size": 1000,
        "train.gamma": 0.1,
        "method.patience": 80,
        "method.monitor_split": "test",
        "method.variant": "official",
        "method.modulation_starts": 0,
        "method.modulation_ends": 1000,  # set from the stop epoch below
    },
}


class Float64Tensor(torch.Tensor):
    """The released loops call ``.float()`` on their inputs; this keeps them float64 (the golden runs' dtype)."""

    def float(self, *args, **kwargs):  # noqa: A003
        return self.as_subclass(torch.Tensor).double()


def samples(n: int, size: int, frames: int, seed: int, audio_signal: float, visual_signal: float):
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % CLASSES
    audio = torch.randn(n, size, size, generator=g).double() + audio_signal * label.view(-1, 1, 1)
    visual = torch.randn(n, 3, frames, size, size, generator=g).double() + visual_signal * label.view(-1, 1, 1, 1, 1)
    return {"audio": exact32(audio), "visual": exact32(visual), "label": label, "index": torch.arange(n)}


def data_for(name: str) -> dict[str, dict[str, torch.Tensor]]:
    if name == "mslr":
        return {"data": samples(12, 16, 2, 11, 0.5, 1.5)}
    # audio carries little class evidence: its held-out loss is lowest in epoch 2, then it overfits
    return {"data": samples(8, 8, 1, 21, 0.1, 1.0), "data_test": samples(8, 8, 1, 22, 0.1, 1.0)}


def loader(d: dict[str, torch.Tensor], size: int) -> list:
    """CREMA-D loader items (item, spectrogram, frames, label), in order."""
    n = len(d["label"])
    return [
        (
            d["index"][i : i + size],
            d["audio"][i : i + size].as_subclass(Float64Tensor),
            d["visual"][i : i + size].as_subclass(Float64Tensor),
            d["label"][i : i + size],
        )
        for i in range(0, n, size)
    ]


class Writer:
    def __init__(self, *args, **kwargs) -> None:
        pass

    def add_scalar(self, *args, **kwargs) -> None:
        pass

    def add_scalars(self, *args, **kwargs) -> None:
        pass


def released_run(checkout: str, name: str, init: dict, groups: dict, meta: dict, o: dict) -> tuple[dict, dict]:
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = Writer
    sys.modules["torch.utils.tensorboard"] = tb
    main = import_released(checkout, "run.CREMAD_main")
    net, resnet, task_mod = (sys.modules[m] for m in ("model.CREMAD_net", "model.utils.resnet", "tasks.CREMAD_task"))
    train_data = groups["data"]
    test_data = groups.get("data_test", train_data)
    epochs = o["train.epochs"]
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = types.SimpleNamespace(
            random_seed=meta["step_seed"],
            expt_dir=tmp,
            expt_name=name,
            use_mgpu=False,
            device="cpu",
            dataset="CREMAD",
            modality="Multimodal",
            methods=name.upper(),
            fusion_type="late_fusion",
            modulation_starts=o["method.modulation_starts"],
            modulation_ends=o["method.modulation_ends"],
            alpha=1.0,
            EPOCHS=epochs,
            breakpoint_path=None,
            learning_rate=o["train.lr"],
            lr_decay_step=o["train.step_size"],
            lr_decay_ratio=o["train.gamma"],
            save_checkpoint=False,
        )
        narrow = scaled_nn(64 // WIDTH)
        with patched(resnet, "nn", narrow), patched(net, "nn", narrow):
            model = net.AVClassifier_Sum(cfgs)
        model.double()
        model.load_state_dict(map_keys(init, KEYS), strict=True)
        holder = types.SimpleNamespace(model=model, cfgs=cfgs)
        optimizer, scheduler = task_mod.Cramed_Task.build_optimizer(holder)  # the released optimiser and schedule

        def task(_cfgs):
            return types.SimpleNamespace(
                train_dataloader=loader(train_data, o["train.batch_size"]),
                test_dataloader=loader(test_data, len(test_data["label"])),
                dep_dataloader=[],
                model=model,
                optimizer=optimizer,
                scheduler=scheduler,
            )

        record: dict[str, list] = {"ratio_audio": [], "ratio_visual": [], "evaluations": []}
        released_train, released_test = main.train, main.test

        def train(*args):
            record["ratio_audio"].append(args[-2])  # audio_lr_ratio, visual_lr_ratio: the last two arguments
            record["ratio_visual"].append(args[-1])
            return released_train(*args)

        def test(*args):
            out = released_test(*args)
            record["evaluations"].append([float(v) for v in out])
            return out

        cwd = os.getcwd()
        try:
            with (
                patched(main, "Cramed_Task", task),
                patched(main, "SummaryWriter", Writer),
                patched(main, "weight_init", lambda m: None),
                patched(main, "set_seed", lambda seed: seed_all(seed)),
                patched(main, "train", train),
                patched(main, "test", test),
                contextlib.suppress(SystemExit),  # MSES: "All modality training finished." then exit()
            ):
                main.CREMAD_main(cfgs)
        finally:
            os.chdir(cwd)
    ev = torch.tensor(record["evaluations"], dtype=torch.float64)  # accuracy, acc_a, acc_v, loss_a, loss_v
    trace = {
        "ratio_audio": torch.tensor(record["ratio_audio"], dtype=torch.float64),
        "ratio_visual": torch.tensor(record["ratio_visual"], dtype=torch.float64),
        "acc_audio": ev[:, 1],
        "acc_visual": ev[:, 2],
        "loss_audio": ev[:, 3],
        "loss_visual": ev[:, 4],
    }
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, trace


def mses_stop(trace: dict, patience: int = 80, smoothing: float = 0.6) -> int | None:
    """The epoch (1-based) at which audio stops, from the recorded losses (for choosing the window)."""
    losses = trace["loss_audio"].tolist()
    best, best_epoch, previous = float("inf"), 0, None
    for e, raw in enumerate(losses, start=1):
        smooth = raw if previous is None else smoothing * previous + (1 - smoothing) * raw
        previous = raw
        if smooth < best:
            best, best_epoch = smooth, e
        if e - best_epoch > patience:
            return e
    return None


def main() -> None:
    p_args = sys.argv[1:]
    only = None
    if "--only" in p_args:
        i = p_args.index("--only")
        only = p_args[i + 1]
        del p_args[i : i + 2]
    args = parse_args(__doc__.splitlines()[0], p_args)
    for name, overrides in FIXTURES.items():
        if only and name != only:
            continue
        groups = data_for(name)
        meta = {
            "released": "lihong2303/AGM_ICCV2023",
            "commit": args.commit,
            "generator": "scripts/golden/mslr_mses.py",
            "num_classes": CLASSES,
            "seed": 0,
            "step_seed": 7,
            "suite_overrides": overrides,
        }
        with tempfile.TemporaryDirectory() as tmp:
            _, init = suite_initial_state(name, groups["data"], meta, overrides, tmp)
        with float64(), one_thread():
            final, trace = released_run(args.released, name, init, groups, meta, overrides)
        if name == "mses":
            stop = mses_stop(trace)
            if stop is None:
                raise SystemExit(f"mses: audio never stopped; losses {trace['loss_audio'].tolist()}")
            overrides = {**overrides, "method.modulation_ends": stop + 1, "train.epochs": stop + 3}
            meta["suite_overrides"] = overrides
            meta["audio_stops_at"] = stop
            with float64(), one_thread():
                final, trace = released_run(args.released, name, init, groups, meta, overrides)
        print(name, {k: [round(x, 4) for x in v.tolist()][-12:] for k, v in trace.items()})
        inverse = {v: k for k, v in KEYS.items()}
        out = Path(args.out or GOLDEN_DIR) / f"{name}.npz"
        save_fixture(out, meta, {"init": init, **groups, "final": map_keys(final, inverse), "trace": trace})
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
