"""Golden fixture for ``mmpareto`` from the released MMPareto code (``GeWu-Lab/MMPareto_ICML2024``).

    python scripts/golden/mmpareto.py --released /path/to/MMPareto_ICML2024

Runs the released ``code/MMPareto.py:train_epoch`` (``AVClassifier`` with ``head``, ``head_audio``, ``head_video``,
under ``nn.DataParallel`` as released; ``MinNormSolver`` from ``code/min_norm_solvers.py``) for eight epochs of one
step (all 12 stored samples in one batch), in float64 on one thread, from the suite's initial weights, and stores
the parameters, buffers, the per-step losses, cosines and Pareto weights. Both encoders start with agreeing
multimodal and unimodal gradients (equal weights), conflict later (the min-norm branch: audio in steps 5, 6 and 8,
visual in steps 4-6) and agree again.
"""

from __future__ import annotations

import sys
import tempfile
import types
from pathlib import Path

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
    stub_missing,
)

from tests.golden.harness import one_thread, suite_initial_state  # noqa: E402

WIDTH = 2  # suite model.resnet_width; the released ResNet18 is built at 64 / WIDTH
KEYS = {
    "encoders.audio.trunk.": "audio_net.",
    "encoders.visual.trunk.": "visual_net.",
    "head.": "head.",
    "unimodal_heads.audio.": "head_audio.",
    "unimodal_heads.visual.": "head_video.",
}
SUITE_OVERRIDES = {
    "model.resnet_width": WIDTH,
    # one batch of all 12 samples per epoch: batches of 4 made BatchNorm over 1x1 maps ill-conditioned (the
    # final biases moved by ~1e-5 with the thread count); see "well conditioned" in tests/golden/README.md
    "train.batch_size": 12,
    "train.epochs": 8,
    "train.optimizer": "sgd",
    "train.lr": 0.01,
    "train.momentum": 0.9,  # hard-coded in MMPareto.py
    "train.weight_decay": 1e-4,  # hard-coded in MMPareto.py
    "train.scheduler": "step",  # built, never stepped (variant official)
    "train.step_size": 30,
    "train.gamma": 0.1,
    "method.variant": "official",
    "method.gamma": 1.5,
}


class Recorder:
    """Stands in for ``torch.nn`` and ``torch.nn.functional`` inside the released ``MMPareto`` module and wraps
    ``MinNormSolver.find_min_norm_element``: records the losses (per step multimodal, audio, visual), the cosines
    (audio, visual) and every min-norm solution."""

    def __init__(self, solver: type) -> None:
        self.losses: list[float] = []
        self.cosines: list[float] = []
        self.min_norm: list[tuple[float, float]] = []
        rec = self

        class CrossEntropyLoss(nn.CrossEntropyLoss):
            def forward(self, input, target):  # noqa: A002
                out = super().forward(input, target)
                rec.losses.append(float(out.detach()))
                return out

        def cosine_similarity(*args, **kwargs):
            out = torch.nn.functional.cosine_similarity(*args, **kwargs)
            rec.cosines.append(float(out))
            return out

        released_solver = solver.find_min_norm_element

        def find_min_norm_element(vecs):
            sol, cost = released_solver(vecs)
            rec.min_norm.append((float(sol[0]), float(sol[1])))
            return sol, cost

        self.nn = types.SimpleNamespace(**{n: getattr(nn, n) for n in dir(nn) if not n.startswith("__")})
        self.nn.CrossEntropyLoss = CrossEntropyLoss
        self.F = types.SimpleNamespace(
            **{n: getattr(nn.functional, n) for n in dir(nn.functional) if not n.startswith("__")}
        )
        self.F.cosine_similarity = cosine_similarity
        self.find_min_norm_element = staticmethod(find_min_norm_element)

    def trace(self) -> dict[str, torch.Tensor]:
        """Per step: losses, cosines and (k_mm, k_uni) per modality, the branch taken as the released code does."""
        out: dict[str, list[float]] = {k: [] for k in ("loss_mm", "loss_audio", "loss_visual")}
        out.update({f"{k}_{m}": [] for k in ("cos", "k_mm", "k_uni") for m in ("audio", "visual")})
        solutions = iter(self.min_norm)
        for step in range(len(self.cosines) // 2):
            for i, key in enumerate(("loss_mm", "loss_audio", "loss_visual")):
                out[key].append(self.losses[3 * step + i])
            for i, m in enumerate(("audio", "visual")):
                cos = self.cosines[2 * step + i]
                k = (0.5, 0.5) if cos > 0 else next(solutions)
                out[f"cos_{m}"].append(cos)
                out[f"k_mm_{m}"].append(k[0])
                out[f"k_uni_{m}"].append(k[1])
        assert next(solutions, None) is None, "every min-norm solution belongs to a step"
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in out.items()}


def released_run(checkout: str, init: dict, data: dict, meta: dict) -> tuple[dict, dict]:
    stub_missing("torchaudio")  # imported by dataset/av_dataset.py, unused here
    mmpareto = import_released(checkout, "MMPareto", subdir="code")
    backbone, models = sys.modules["models.backbone"], sys.modules["models.models"]
    solver = sys.modules["min_norm_solvers"].MinNormSolver
    args = types.SimpleNamespace(dataset="CREMAD", n_classes=6)
    narrow = scaled_nn(64 // WIDTH)
    with patched(backbone, "nn", narrow), patched(models, "nn", narrow):
        model = models.AVClassifier(args)
    model.double()
    model.load_state_dict(map_keys(init, KEYS), strict=True)
    model = nn.DataParallel(model)  # as released (CPU: a plain wrapper)
    o = SUITE_OVERRIDES
    optimizer = torch.optim.SGD(
        model.parameters(), lr=o["train.lr"], momentum=o["train.momentum"], weight_decay=o["train.weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, o["train.step_size"], o["train.gamma"])
    size, n = o["train.batch_size"], len(data["label"])
    # av_dataset.AVDataset_CD yields the spectrogram as (1, F, T) and the frames as (T, C, H, W).
    audio = data["audio"].unsqueeze(1)
    visual = data["visual"].permute(0, 2, 1, 3, 4).contiguous()
    batches = [
        (
            audio[i : i + size].as_subclass(Float64Tensor),
            visual[i : i + size].as_subclass(Float64Tensor),
            data["label"][i : i + size],
        )
        for i in range(0, n, size)
    ]
    recorder = Recorder(solver)
    seed_all(meta["step_seed"])
    with (
        patched(mmpareto, "nn", recorder.nn),
        patched(mmpareto, "F", recorder.F),
        patched(solver, "find_min_norm_element", recorder.find_min_norm_element),
    ):
        for epoch in range(o["train.epochs"]):
            mmpareto.train_epoch(None, epoch, model, torch.device("cpu"), batches, optimizer, scheduler)
    state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    return state, recorder.trace()


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    meta = {
        "released": "GeWu-Lab/MMPareto_ICML2024",
        "commit": args.commit,
        "generator": "scripts/golden/mmpareto.py",
        "torch": torch.__version__,
        "num_classes": 6,
        "seed": 0,
        "step_seed": 7,
        "released_args": "--dataset CREMAD --n_classes 6, SGD lr 0.01 (0.9, 1e-4), batch 12, 4 epochs",
        "suite_overrides": SUITE_OVERRIDES,
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, init = suite_initial_state("mmpareto", data, meta, SUITE_OVERRIDES, tmp)
    with float64(), one_thread():
        final, trace = released_run(args.released, init, data, meta)
    inverse = {v: k for k, v in KEYS.items()}
    out = Path(args.out or GOLDEN_DIR / "mmpareto.npz")
    save_fixture(out, meta, {"init": init, "data": data, "final": map_keys(final, inverse), "trace": trace})
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
