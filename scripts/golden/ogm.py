"""Golden fixtures for ``ogm`` and ``ogm_ge`` from the released OGM-GE code (``GeWu-Lab/OGM-GE_CVPR2022``).

    python scripts/golden/ogm.py --released /path/to/OGM-GE_CVPR2022

Runs the released ``main.train_epoch`` (concat fusion, under ``nn.DataParallel`` as released: its encoder lookup
``name.split('.')[1]`` needs the ``module.`` prefix) for three epochs of three steps on 12 stored samples, in
float64, from the suite's initial weights, and stores the parameters, buffers, per-step coefficients and losses.
The modulation window is epoch 1 only (``main.py`` numbers epochs from 0: ``for epoch in range(args.epochs)``),
so the fixture crosses both window edges: epoch 0 is not modulated, epoch 1 is, epoch 2 is not.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

import torch
from torch import nn

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
KEYS = {"encoders.audio.trunk.": "audio_net.", "encoders.visual.trunk.": "visual_net.", "fusion.": "fusion_module."}
SUITE_OVERRIDES = {
    "model.resnet_width": WIDTH,
    "model.fusion": "concat",
    "train.batch_size": 4,
    "train.epochs": 3,
    "train.optimizer": "sgd",
    "train.lr": 0.05,
    "train.momentum": 0.9,
    "train.weight_decay": 1e-4,
    "train.scheduler": "step",
    "train.step_size": 1,
    "train.gamma": 0.5,
    "method.alpha": 0.8,
    "method.modulation_starts": 1,
    "method.modulation_ends": 1,
}


class Recorder:
    """Stands in for ``torch.nn`` inside the released ``main`` module: its Softmax and Tanh record what the
    modulation code feeds them (per step: out_v, then out_a, row by row; then tanh(alpha * relu(rho)))."""

    def __init__(self) -> None:
        self.softmax_inputs: list[torch.Tensor] = []
        self.tanh_outputs: list[float] = []
        rec = self

        class Softmax(nn.Softmax):
            def forward(self, x):
                rec.softmax_inputs.append(x.detach().clone())
                return super().forward(x)

        class Tanh(nn.Tanh):
            def forward(self, x):
                out = super().forward(x)
                rec.tanh_outputs.append(float(out))
                return out

        self.nn = nn_with(Softmax=Softmax, Tanh=Tanh)

    def coefficients(self, labels: list[torch.Tensor], alpha: float) -> dict[str, list[float]]:
        """Per step the released (k_audio, k_visual): the branch from the recorded logits, k from tanh."""
        out: dict[str, list[float]] = {"k_audio": [], "k_visual": [], "ratio_v": []}
        i = 0
        for step, y in enumerate(labels):
            b = len(y)
            out_v, out_a = self.softmax_inputs[i], self.softmax_inputs[i + b]
            i += 2 * b
            score_v = torch.softmax(out_v, 1).gather(1, y.view(-1, 1)).sum()
            score_a = torch.softmax(out_a, 1).gather(1, y.view(-1, 1)).sum()
            ratio_v = float(score_v / score_a)
            k = 1.0 - self.tanh_outputs[step]
            out["ratio_v"].append(ratio_v)
            out["k_visual"].append(k if ratio_v > 1 else 1.0)
            out["k_audio"].append(1.0 if ratio_v > 1 else k)
        return out


def released_run(checkout: str, modulation: str, init: dict, data: dict, meta: dict) -> tuple[dict, dict]:
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = object  # main.py imports it; unused here
    sys.modules["torch.utils.tensorboard"] = tb
    main = import_released(checkout, "main")
    backbone, fusion, basic = (sys.modules[f"models.{m}"] for m in ("backbone", "fusion_modules", "basic_model"))
    args = types.SimpleNamespace(
        dataset="CREMAD",
        fusion_method="concat",
        modulation=modulation,
        alpha=meta["alpha"],
        modulation_starts=SUITE_OVERRIDES["method.modulation_starts"],
        modulation_ends=SUITE_OVERRIDES["method.modulation_ends"],
        use_tensorboard=False,
    )
    narrow = scaled_nn(64 // WIDTH)
    with patched(backbone, "nn", narrow), patched(fusion, "nn", narrow):
        model = basic.AVClassifier(args)
    model.double()
    model.load_state_dict(map_keys(init, KEYS), strict=True)
    model = nn.DataParallel(model)  # CPU: a plain wrapper that adds the `module.` prefix the released code needs
    o = SUITE_OVERRIDES
    optimizer = torch.optim.SGD(
        model.parameters(), lr=o["train.lr"], momentum=o["train.momentum"], weight_decay=o["train.weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, o["train.step_size"], o["train.gamma"])
    size, n = o["train.batch_size"], len(data["label"])
    batches = [
        (
            data["audio"][i : i + size].as_subclass(Float64Tensor),
            data["visual"][i : i + size].as_subclass(Float64Tensor),
            data["label"][i : i + size],
        )
        for i in range(0, n, size)
    ]
    recorder = Recorder()
    losses: list[float] = []
    seed_all(meta["step_seed"])
    with patched(main, "nn", recorder.nn), recorded_backward(losses):
        for epoch in range(o["train.epochs"]):
            main.train_epoch(args, epoch, model, torch.device("cpu"), batches, optimizer, scheduler)
    labels = [b[2] for b in batches] * o["train.epochs"]
    trace = {k: torch.tensor(v, dtype=torch.float64) for k, v in recorder.coefficients(labels, meta["alpha"]).items()}
    trace["loss"] = torch.tensor(losses, dtype=torch.float64)
    state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    return state, trace


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    for name, modulation in (("ogm", "OGM"), ("ogm_ge", "OGM_GE")):
        meta = {
            "released": "GeWu-Lab/OGM-GE_CVPR2022",
            "commit": args.commit,
            "generator": "scripts/golden/ogm.py",
            "num_classes": 6,
            "seed": 0,
            "step_seed": 7,
            "alpha": 0.8,
            "modulation": modulation,
            "suite_overrides": SUITE_OVERRIDES,
        }
        with tempfile.TemporaryDirectory() as tmp:
            _, init = suite_initial_state(name, data, meta, SUITE_OVERRIDES, tmp)
        with float64():
            final, trace = released_run(args.released, modulation, init, data, meta)
        inverse = {v: k for k, v in KEYS.items()}
        out = Path(args.out or GOLDEN_DIR / f"{name}.npz")
        save_fixture(out, meta, {"init": init, "data": data, "final": map_keys(final, inverse), "trace": trace})
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
