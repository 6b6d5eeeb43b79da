"""Golden fixtures for ``mie`` and ``mie_no_sam`` from the released IGM code (``njustkmg/IJCAI25-IGM``).

    python scripts/golden/mie.py --released /path/to/IJCAI25-IGM

Runs the released ``train_CREMA.py`` stage loop on 12 stored samples in float64, from the suite's initial
weights: three stages (audio, visual, audio; two epochs of three steps each), ``train_withoutP`` in the first
stage and ``compute_P_matrix`` + ``train_withP`` in the others, a fresh SGD and ``StepLR`` per stage with
``scheduler.step()`` before every epoch, and after every epoch the released ``val(..., 'test')`` macro-F1 that
decides which state the next stage restarts from (``best_model.pth``, kept in memory here). The stage loop is
the released ``__main__`` block (lines 374-418) written out, because that block cannot be imported; everything
it calls is the released code, unchanged.

Recorded per fixture: the final parameters and buffers; per step the loss and the mixup draws (``lam``, the
permutation; replayed into the suite through ``Mie.mixup_draw``); per stage the T matrix of every head layer
and the singular values the code decomposed; per epoch the test macro-F1 and which epoch's state each stage
restarted from.

``mie``: rho (``noise_ratio`` = ``noise_ratio_cls``) = 0.05 so that SAM matters. ``mie_no_sam``: the released
code has no switch; IGM w/o SAM is the same loop with ``noise_ratio = noise_ratio_cls = 0`` and
``flat_ratio = 0`` (the loss is then the mixup loss alone and no parameter moves).
"""

from __future__ import annotations

import contextlib
import copy
import importlib.util
import io
import sys
import tempfile
import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

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

from tests.golden.harness import suite_initial_state  # noqa: E402

WIDTH = 2  # suite model.resnet_width; the released ResNet18 is built at 64 / WIDTH
HEAD_DIMS = (24, 12)  # suite method.head_dims; the released head's 256 and 64 become these
FRAMES = 1  # visual frames per sample (the released VideoEncoder's ``fps``; CREMA-D's config has 1)
STAGES = (2, 2, 2)  # epochs per stage: audio, visual, audio
LAYERS = {"fc1": "0", "fc2": "2", "fc3": "3"}  # suite head layer -> index in the released nn.Sequential
KEYS = {
    "encoders.audio.trunk.": "audio_encoder.audio_net.",
    "encoders.visual.trunk.": "video_encoder.video_net.",
    **{f"heads.audio.{n}.": f"cls_a.{i}." for n, i in LAYERS.items()},
    **{f"heads.visual.{n}.": f"cls_v.{i}." for n, i in LAYERS.items()},
}
BASE_OVERRIDES = {
    "model.resnet_width": WIDTH,
    # Batch 8: at 16x16 inputs layer4's BatchNorm normalises over the batch alone (1x1 maps); with 4 samples a
    # 1e-12 change of the weights grew ~1e8-fold in 18 steps, so float64 rounding alone could fail the test.
    "train.batch_size": 8,
    "train.epochs": sum(STAGES),
    "train.optimizer": "sgd",
    "train.momentum": 0.9,
    "train.weight_decay": 1e-4,
    # released StepLR(patience=2, 0.1) stepped before each epoch = ours (step 1) after it, in 2-epoch stages
    "train.scheduler": "step",
    "train.step_size": 1,
    "train.gamma": 0.1,
    "train.select_metric": "macro_f1",
    "method.stage_epochs": STAGES,
    "method.stage_order": ("audio", "visual"),
    "method.restart_select": "test_official",
    "method.head_dims": HEAD_DIMS,
    "method.tau": 0.4,
    "method.mixup_alpha": 1.0,
}
VARIANTS = {
    # name: (suite overrides, released noise_ratio = noise_ratio_cls, released flat_ratio)
    # learning rates chosen so that a stage restarts from an earlier epoch (the released rule keeps the earlier
    # epoch on a tie: mie's epochs 1 and 2 tie, 4 is best; mie_no_sam's best epochs are 1 and 3)
    "mie": ({**BASE_OVERRIDES, "train.lr": 0.1, "method.rho": 0.05, "method.flat_ratio": 0.3}, 0.05, 0.3),
    "mie_no_sam": ({**BASE_OVERRIDES, "train.lr": 0.02}, 0.0, 0.0),
}
PATIENCE = 2  # released lr_scheduler.patience (StepLR step size)


class Float64Tensor(torch.Tensor):
    """The released loop calls ``.float()`` on its inputs; this keeps them float64 (the golden runs' dtype)."""

    def float(self, *args, **kwargs):  # noqa: A003
        return self.as_subclass(torch.Tensor).double()


def samples(n: int = 24, classes: int = 6) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4321)
    label = torch.arange(n) % classes
    audio = torch.randn(n, 16, 16, generator=g).double() + label.view(-1, 1, 1)
    visual = torch.randn(n, 3, FRAMES, 16, 16, generator=g).double() + label.view(-1, 1, 1, 1, 1)
    return {"audio": exact32(audio), "visual": exact32(visual), "label": label, "index": torch.arange(n)}


def head_nn() -> types.SimpleNamespace:
    """``torch.nn`` for ``models/AudioVideo.py``: its Linear layers map 512 -> the narrow feature size and the head
    sizes 256, 64 -> ``HEAD_DIMS`` (the suite's heads do not scale with the ResNet width)."""
    sizes = {512: 512 // (64 // WIDTH), 256: HEAD_DIMS[0], 64: HEAD_DIMS[1]}

    class Linear(nn.Linear):
        def __init__(self, in_features: int, out_features: int, *args: Any, **kwargs: Any) -> None:
            super().__init__(
                sizes.get(in_features, in_features), sizes.get(out_features, out_features), *args, **kwargs
            )

    ns = types.SimpleNamespace(**{n: getattr(nn, n) for n in dir(nn) if not n.startswith("__")})
    ns.Linear = Linear
    return ns


def _stub_missing(*names: str) -> None:
    # datasets/randaugment.py imports cv2 at import time; no dataset class is used here
    for name in names:
        if name not in sys.modules and importlib.util.find_spec(name) is None:
            sys.modules[name] = types.ModuleType(name)


@contextlib.contextmanager
def released_packages(*tops: str):
    """The released ``datasets``/``models``/``utils``/``configs`` packages shadow the suite's ``datasets`` while the
    released code runs; the suite's modules (and ``sys.path``) are put back afterwards."""
    saved = {k: v for k, v in sys.modules.items() if k.split(".")[0] in tops}
    path = list(sys.path)
    for k in saved:
        del sys.modules[k]
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k.split(".")[0] in tops]:
            del sys.modules[k]
        sys.modules.update(saved)
        sys.path[:] = path


class Recorder:
    """Wraps what the released functions call, to record without changing what they compute."""

    def __init__(self, tc: types.ModuleType) -> None:
        self.draws: list[tuple[float, torch.Tensor]] = []
        self.averagers: list[Any] = []
        self.T: dict[str, torch.Tensor] = {}
        self.stage = 0
        rec, base = self, tc.Averager

        class Averager(base):  # train_with(out)P creates tl (loss) then ta (accuracy) per epoch
            def __init__(self) -> None:
                super().__init__()
                self.values: list[float] = []
                rec.averagers.append(self)

            def add(self, x: float) -> None:
                self.values.append(float(x))
                super().add(x)

        self.Averager = Averager
        self._mixup, self._compute_P = tc.mixup_data, tc.compute_P_matrix

    def mixup_data(self, x, y, alpha=1.0, use_cuda=True):
        """The released ``mixup_data``; its two draws are replayed from the saved RNG states to record them."""
        np_state, t_state = np.random.get_state(), torch.get_rng_state()
        out = self._mixup(x, y, alpha, use_cuda)
        np_after, t_after = np.random.get_state(), torch.get_rng_state()
        np.random.set_state(np_state)
        torch.set_rng_state(t_state)
        lam = float(np.random.beta(alpha, alpha)) if alpha > 0 else 1.0
        perm = torch.randperm(x.size()[0])
        assert np_after[1].tolist() == np.random.get_state()[1].tolist() and torch.equal(t_after, torch.get_rng_state())
        assert lam == float(out[3]) and torch.equal(out[2], y[perm])
        torch.testing.assert_close(out[0], lam * x + (1 - lam) * x[perm], rtol=0, atol=0)
        self.draws.append((lam, perm))
        return out

    def compute_P_matrix(self, model, loader, config, state) -> None:
        self._compute_P(model, loader, config, state)
        src = model.cls_a if state == "train_audio" else model.cls_v
        for name, idx in LAYERS.items():
            w = src[int(idx)].weight
            self.T[f"T{self.stage}/{name}"] = model.P_matrix[w].detach().clone()
            _, s, _ = torch.svd(model.fea_in[w], some=False)  # the decomposition get_P_matrix made
            self.T[f"singular_values{self.stage}/{name}"] = s.detach().clone()

    def losses(self) -> list[float]:
        return [v for a in self.averagers[0::2] for v in a.values]


def released_run(
    checkout: str, init: dict, data: dict, meta: dict, overrides: dict
) -> tuple[dict, dict[str, torch.Tensor]]:
    _stub_missing("cv2")
    tc = import_released(checkout, "train_CREMA")
    resnet, av = sys.modules["models.Resnet"], sys.modules["models.AudioVideo"]
    o = overrides
    tc.deep_update_dict(
        {
            "train": {
                "epoch_list": list(STAGES),
                "batch_size": o["train.batch_size"],
                "mixup_alpha": o["method.mixup_alpha"],
                "flat_ratio": meta["flat_ratio"],
                "noise_ratio": meta["noise_ratio"],
                "noise_ratio_cls": meta["noise_ratio"],
                "temperature1": o["method.tau"],
                "optimizer": {
                    "type": "SGD",
                    "momentum": o["train.momentum"],
                    "lr": o["train.lr"],
                    "wc": o["train.weight_decay"],
                },
                "lr_scheduler": {"patience": PATIENCE},
            },
            "setting": {"num_class": 6},
            "fps": FRAMES,
            "print_inteval": 10**9,
        },
        tc.config,
    )
    tc.cfg = tc.config  # the released __main__ binds cfg to the same dict (deep_update_dict updates in place)
    cfg = tc.cfg
    size, n = o["train.batch_size"], len(data["label"])
    onehot = torch.eye(6, dtype=torch.float64)[data["label"]]
    train = [
        (
            data["audio"][i : i + size].as_subclass(Float64Tensor),
            data["visual"][i : i + size].as_subclass(Float64Tensor),
            onehot[i : i + size],
        )
        for i in range(0, n, size)
    ]
    test = [(data["audio"].as_subclass(Float64Tensor), data["visual"].as_subclass(Float64Tensor), onehot)]
    logger = types.SimpleNamespace(info=lambda *a, **k: None)
    rec = Recorder(tc)
    f1s: list[float] = []
    restarts: list[int] = []  # per stage after the first: the epoch (1-based, global) whose state it reloads
    best_acc, best_epoch, best_state = 0.0, 0, None
    state_dict = {"train_audio": "train_video", "train_video": "train_audio"}
    narrow = scaled_nn(64 // WIDTH)
    no_cuda = patched(torch.Tensor, "cuda", lambda self, *a, **k: self)  # CPU stand-in for the .cuda() calls
    with (
        no_cuda,
        patched(tc, "Averager", rec.Averager),
        patched(tc, "mixup_data", rec.mixup_data),
        contextlib.redirect_stdout(io.StringIO()),
    ):
        state, epoch_global = "train_audio", 0
        for stage, train_stage_epoch in enumerate(cfg["train"]["epoch_list"], 1):  # lines 378-418
            with patched(resnet, "nn", narrow), patched(av, "nn", head_nn()):
                model = tc.create_model(cfg)
            model.double()
            if stage != 1:
                model.load_state_dict(best_state)
                restarts.append(best_epoch)
                rec.stage = stage
                with torch.no_grad():
                    rec.compute_P_matrix(model, train, cfg, state)
                state = state_dict[state]
            else:
                model.load_state_dict(map_keys(init, KEYS), strict=True)
                state = "train_audio"
                seed_all(meta["step_seed"])
            opt = cfg["train"]["optimizer"]
            optimizer = torch.optim.SGD(
                model.parameters(), lr=opt["lr"], momentum=opt["momentum"], weight_decay=opt["wc"]
            )
            scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg["train"]["lr_scheduler"]["patience"], 0.1)
            for epoch in range(train_stage_epoch):
                scheduler.step()
                train_fn = tc.train_withoutP if stage == 1 else tc.train_withP
                model = train_fn(epoch, train, model, optimizer, logger, state)
                acc = tc.val(epoch, test, model, logger, "test")
                epoch_global += 1
                f1s.append(float(acc))
                if acc > best_acc:
                    best_acc, best_epoch = acc, epoch_global
                    best_state = copy.deepcopy(model.state_dict())
    assert f1s[0] > 0, "the first epoch must select a state (the released best_acc starts at 0, ours at -inf)"
    trace = {
        "loss": torch.tensor(rec.losses(), dtype=torch.float64),
        # float64 bits as int64: a float32-rounded lambda would change every mixed input by ~1e-8
        "lam_bits": torch.tensor([d[0] for d in rec.draws], dtype=torch.float64).view(torch.int64),
        "perm": torch.stack([d[1] for d in rec.draws]),
        "test_macro_f1": torch.tensor(f1s, dtype=torch.float64),
        "restart_epoch": torch.tensor(restarts),
        **rec.T,
    }
    final = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return final, trace


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    for name, (overrides, noise, flat) in VARIANTS.items():
        meta = {
            "released": "njustkmg/IJCAI25-IGM",
            "commit": args.commit,
            "generator": "scripts/golden/mie.py",
            "num_classes": 6,
            "seed": 0,
            "step_seed": 7,
            "noise_ratio": noise,
            "flat_ratio": flat,
            "lr_scheduler_patience": PATIENCE,
            "suite_overrides": overrides,
        }
        with tempfile.TemporaryDirectory() as tmp:
            _, init = suite_initial_state(name, data, meta, overrides, tmp)
        with float64(), released_packages("datasets", "models", "utils", "configs", "train_CREMA"):
            final, trace = released_run(args.released, init, data, meta, overrides)
        inverse = {v: k for k, v in KEYS.items()}
        out = Path(args.out or GOLDEN_DIR) / f"{name}.npz"
        save_fixture(out, meta, {"init": init, "data": data, "final": map_keys(final, inverse), "trace": trace})
        print(
            f"wrote {out}: restarts from epochs {trace['restart_epoch'].tolist()}, f1 {trace['test_macro_f1'].tolist()}"
        )


if __name__ == "__main__":
    main()
