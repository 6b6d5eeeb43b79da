"""Golden fixture for ``agm`` from the released AGM code (``lihong2303/AGM_ICCV2023``).

    python scripts/golden/agm.py --released /path/to/AGM_ICCV2023

Runs the released ``run/CREMAD_main.py:train`` (``--methods AGM --modality Multimodal``, late fusion: the
``GradMod`` model of ``model/CREMAD_net.py`` around a concat ``AVClassifier``) for three epochs of three steps on
12 stored samples, in float64, from the suite's initial weights, with the optimiser and scheduler of
``tasks/CREMAD_task.py:build_optimizer``. The released loop numbers its epochs from 1 (``CREMAD_main``:
``range(start_epoch, EPOCHS + 1)``, ``start_epoch = 1``); the window is epoch 2 only, so the run crosses both
window edges (epoch 1: κ stays 1; epoch 2: κ updated every step; epoch 3: the last κ stays in force). The cumulative
mean scores are carried from epoch to epoch as ``CREMAD_main`` does.

Stored per step: the κ in force at the backward pass (``GradMod.scale_a/scale_v``), the Shapley scores
(``score_audio/visual``, from the released ``out_a``/``out_v``), the loss and whether the gradients were
clipped; then the parameters and buffers.
"""

from __future__ import annotations

import logging
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from released import (  # noqa: E402
    GOLDEN_DIR,
    Float64Tensor,
    float64,
    import_released,
    map_keys,
    nn_with,
    parse_args,
    patched,
    recorded_backward,
    samples,
    save_fixture,
    scaled_nn,
    seed_all,
)

from tests.golden.harness import suite_initial_state  # noqa: E402

WIDTH = 2  # suite model.resnet_width; the released ResNet18 is built at 64 / WIDTH
KEYS = {
    "encoders.audio.trunk.": "net.audio_net.",
    "encoders.visual.trunk.": "net.visual_net.",
    "fusion.": "net.fusion_module.",
}
WINDOW = (2, 2)  # released epoch numbers (1-based), inclusive
SUITE_OVERRIDES = {
    "model.resnet_width": WIDTH,
    "model.fusion": "concat",
    "train.batch_size": 4,
    "train.epochs": 3,
    "train.optimizer": "sgd",
    "train.lr": 0.01,
    "train.momentum": 0.9,  # build_optimizer hard-codes momentum 0.9 and weight decay 1e-4
    "train.weight_decay": 1e-4,
    "train.scheduler": "step",
    "train.step_size": 1,
    "train.gamma": 0.5,
    "method.alpha": 0.5,
    "method.variant": "official",
    "method.modulation_starts": WINDOW[0],
    "method.modulation_ends": WINDOW[1],
}


def released_run(checkout: str, init: dict, data: dict, meta: dict) -> tuple[dict, dict]:
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = object  # CREMAD_main imports it; a no-op writer is passed below
    sys.modules["torch.utils.tensorboard"] = tb
    main = import_released(checkout, "run.CREMAD_main")
    net, resnet = sys.modules["model.CREMAD_net"], sys.modules["model.utils.resnet"]
    task = sys.modules["tasks.CREMAD_task"]
    o = SUITE_OVERRIDES
    cfgs = types.SimpleNamespace(
        dataset="CREMAD",
        modality="Multimodal",
        methods="AGM",
        fusion_type="late_fusion",
        fusion="concat",
        mode="train",
        alpha=o["method.alpha"],
        modulation_starts=o["method.modulation_starts"],
        modulation_ends=o["method.modulation_ends"],
        learning_rate=o["train.lr"],
        lr_decay_step=o["train.step_size"],
        lr_decay_ratio=o["train.gamma"],
        EPOCHS=o["train.epochs"],
        use_mgpu=False,
    )
    narrow = scaled_nn(64 // WIDTH)
    with patched(net, "nn", narrow), patched(resnet, "nn", narrow):
        model = net.GradMod(cfgs)
    model.double()
    model.load_state_dict(map_keys(init, KEYS), strict=True)
    holder = types.SimpleNamespace(model=model, cfgs=cfgs)
    optimizer, scheduler = task.Cramed_Task.build_optimizer(holder)  # the released SGD(0.9, 1e-4) + StepLR

    size, n = o["train.batch_size"], len(data["label"])
    batches = [
        (
            data["index"][i : i + size],
            data["audio"][i : i + size].as_subclass(Float64Tensor),
            data["visual"][i : i + size].as_subclass(Float64Tensor),
            data["label"][i : i + size],
        )
        for i in range(0, n, size)
    ]

    outputs: list[tuple[torch.Tensor, ...]] = []
    forward = model.forward

    def recording_forward(*args: Any, **kwargs: Any):
        out = forward(*args, **kwargs)
        outputs.append(tuple(t.detach().clone() for t in out))
        return out

    model.forward = recording_forward  # type: ignore[method-assign]
    losses: list[float] = []
    kappas: list[tuple[float, float]] = []
    clipped: list[int] = []

    def clip(params, max_norm, *args, **kwargs):
        clipped[-1] = 1
        return torch.nn.utils.clip_grad_norm_(params, max_norm, *args, **kwargs)

    def before_backward() -> None:
        kappas.append((float(model.scale_a), float(model.scale_v)))
        clipped.append(0)

    writer = types.SimpleNamespace(add_scalar=lambda *a, **k: None, add_scalars=lambda *a, **k: None)
    logger = logging.getLogger("golden-agm")
    fake_nn = nn_with(utils=types.SimpleNamespace(clip_grad_norm_=clip))
    seed_all(meta["step_seed"])
    score_a, score_v = 0.0, 0.0  # CREMAD_main: each_epoch_score_a/v start at 0
    with patched(main, "nn", fake_nn), recorded_backward(losses, before_backward):
        for epoch in range(1, o["train.epochs"] + 1):  # CREMAD_main: range(start_epoch, EPOCHS + 1)
            score_a, score_v = main.train(
                model,
                batches,
                optimizer,
                scheduler,
                logger,
                cfgs,
                epoch,
                torch.device("cpu"),
                writer,
                score_a,
                score_v,
                1.0,
                1.0,
            )
    labels = [b[3] for b in batches] * o["train.epochs"]
    scores: dict[str, list[float]] = {"score_audio": [], "score_visual": []}
    for (total, pad_visual, pad_audio, _zero, _out), y in zip(outputs, labels, strict=True):
        for name, logits in (
            ("audio", 0.5 * (total - pad_audio + pad_visual)),
            ("visual", 0.5 * (total - pad_visual + pad_audio)),
        ):
            p = torch.softmax(logits, 1).gather(1, y.view(-1, 1)).clamp_min(1e-8)
            scores[f"score_{name}"].append(float(-p.log().mean()))
    trace = {
        "kappa_audio": torch.tensor([k[0] for k in kappas], dtype=torch.float64),
        "kappa_visual": torch.tensor([k[1] for k in kappas], dtype=torch.float64),
        "loss": torch.tensor(losses, dtype=torch.float64),
        "clipped": torch.tensor(clipped),
        **{k: torch.tensor(v, dtype=torch.float64) for k, v in scores.items()},
        "mean_score_audio": torch.tensor(score_a, dtype=torch.float64),
        "mean_score_visual": torch.tensor(score_v, dtype=torch.float64),
    }
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return state, trace


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    meta = {
        "released": "lihong2303/AGM_ICCV2023",
        "commit": args.commit,
        "generator": "scripts/golden/agm.py",
        "num_classes": 6,
        "seed": 0,
        "step_seed": 7,
        "window_counts_from": 1,
        "suite_overrides": SUITE_OVERRIDES,
        "notes": [
            "released epochs are numbered from 1; the window is epoch 2 of 3 (the suite's 0-based epoch 1)",
            "the released f_00 pass (unused in the loss) runs in the released code and is skipped by the suite",
        ],
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, init = suite_initial_state("agm", data, meta, SUITE_OVERRIDES, tmp)
    with float64():
        final, trace = released_run(args.released, init, data, meta)
    inverse = {v: k for k, v in KEYS.items()}
    out = Path(args.out or GOLDEN_DIR / "agm.npz")
    save_fixture(out, meta, {"init": init, "data": data, "final": map_keys(final, inverse), "trace": trace})
    print(f"wrote {out}")
    print({k: [round(x, 4) for x in v.reshape(-1).tolist()] for k, v in trace.items()})


if __name__ == "__main__":
    main()
