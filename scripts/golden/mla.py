"""Golden fixture for ``mla`` from the released MLA code (``Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-
Adaptation``).

    python scripts/golden/mla.py --released /path/to/Multimodal-Learning-with-Alternating-Unimodal-Adaptation

Runs the released ``main.train_epoch`` in its ``gs_flag`` branch (``--gs_flag --dynamic``, ResNet18 ``AVClassifier``
with the shared ``fusion_module.fc_out``, ``GSPlugin``, under ``nn.DataParallel`` as released: the shared head is
reached as ``model.module``) for two epochs of three steps on 12 stored samples, in float64, from the suite's
initial weights, and after each epoch the released ``main.valid`` (entropy fusion over the whole test batch).
Stored: the parameters and buffers after the last step, per step the audio and visual losses, per epoch the
released gating weights, the fused test logits and the accuracies.
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

from tests.golden.harness import suite_initial_state  # noqa: E402

WIDTH = 2  # suite model.resnet_width; the released ResNet18 is built at 64 / WIDTH
KEYS = {
    "encoders.audio.trunk.": "audio_net.",
    "encoders.visual.trunk.": "visual_net.",
    "head.": "fusion_module.fc_out.",  # the shared head
}
SUITE_OVERRIDES = {
    "model.resnet_width": WIDTH,
    "train.batch_size": 4,
    "train.epochs": 2,
    "train.optimizer": "sgd",
    "train.lr": 0.01,
    "train.momentum": 0.9,  # hard-coded in main.py
    "train.weight_decay": 1e-4,  # hard-coded in main.py
    "train.scheduler": "step",
    "train.step_size": 1,
    "train.gamma": 0.5,
    "method.variant": "official",
    "method.inference": "dynamic",
}


class Recorder:
    """Stands in for ``torch.nn`` inside the released ``main``: its CrossEntropyLoss records every loss (per step
    audio, then visual) and its Softmax every input (``valid``: the fused logits first, then visual, audio)."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.softmax_inputs: list[torch.Tensor] = []
        rec = self

        class CrossEntropyLoss(nn.CrossEntropyLoss):
            def forward(self, input, target):  # noqa: A002
                out = super().forward(input, target)
                rec.losses.append(float(out.detach()))
                return out

        class Softmax(nn.Softmax):
            def forward(self, x):
                rec.softmax_inputs.append(x.detach().clone())
                return super().forward(x)

        self.nn = types.SimpleNamespace(**{n: getattr(nn, n) for n in dir(nn) if not n.startswith("__")})
        self.nn.CrossEntropyLoss, self.nn.Softmax = CrossEntropyLoss, Softmax


def released_run(checkout: str, init: dict, data: dict, meta: dict) -> tuple[dict, dict]:
    # main.py imports the M3AE / CAV-MAE models and the datasets of every benchmark at top level; the packages only
    # they use are stand-ins here (the ResNet18 branch never touches them).
    stub_missing("torch.utils.tensorboard", "einops", "ml_collections", "ml_collections.config_dict", "torchaudio")
    main = import_released(checkout, "main")
    backbone, fusion, basic = (sys.modules[f"models.{m}"] for m in ("backbone", "fusion_modules", "basic_model"))
    utils = sys.modules["utils.utils"]
    args = types.SimpleNamespace(
        dataset="CREMAD",
        fusion_method="concat",
        modulation="Normal",
        gs_flag=True,
        dynamic=True,
        lorb="base",  # the ResNet18 AVClassifier (neither "large" CAV-MAE nor "m3ae")
        clip=False,
        modal3=False,
        use_tensorboard=False,
    )
    narrow = scaled_nn(64 // WIDTH)
    with patched(backbone, "nn", narrow), patched(fusion, "nn", narrow):
        model = basic.AVClassifier(args)
    model.double()
    model.load_state_dict(map_keys(init, KEYS), strict=True)
    model = nn.DataParallel(model)  # CPU: a plain wrapper that adds the `module.` the released code reaches through
    o = SUITE_OVERRIDES
    optimizer = torch.optim.SGD(
        model.parameters(), lr=o["train.lr"], momentum=o["train.momentum"], weight_decay=o["train.weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, o["train.step_size"], o["train.gamma"])
    # GSPlugin keeps its (never used) 512 x 512 projector as a torch.cuda.FloatTensor; on the CPU a DoubleTensor.
    with patched(torch.cuda, "FloatTensor", torch.DoubleTensor):
        gs = utils.GSPlugin()
    size, n = o["train.batch_size"], len(data["label"])
    batches = [
        (
            data["audio"][i : i + size].as_subclass(Float64Tensor),
            data["visual"][i : i + size].as_subclass(Float64Tensor),
            data["label"][i : i + size],
            data["index"][i : i + size],
        )
        for i in range(0, n, size)
    ]
    test = [(data["audio"].as_subclass(Float64Tensor), data["visual"].as_subclass(Float64Tensor), data["label"], None)]
    recorder = Recorder()
    gating: list[tuple[float, float]] = []
    released_gating = main.calculate_gating_weights

    def record_gating(out_a, out_v):
        w = released_gating(out_a, out_v)
        gating.append((float(w[0]), float(w[1])))
        return w

    trace: dict[str, list] = {"eval_logits": [], "eval_acc": [], "eval_acc_audio": [], "eval_acc_visual": []}
    cpu = torch.device("cpu")
    seed_all(meta["step_seed"])
    with patched(main, "nn", recorder.nn), patched(main, "calculate_gating_weights", record_gating):
        for epoch in range(o["train.epochs"]):
            main.train_epoch(args, epoch, model, cpu, batches, optimizer, scheduler, gs_plugin=gs, gs_flag=True)
            start = len(recorder.softmax_inputs)
            acc, acc_a, acc_v = main.valid(args, model, cpu, test, gs_flag=True, av_alpha=meta["av_alpha"])
            trace["eval_logits"].append(recorder.softmax_inputs[start])  # softmax(out): the fused logits
            for key, value in (("eval_acc", acc), ("eval_acc_audio", acc_a), ("eval_acc_visual", acc_v)):
                trace[key].append(float(value))
    out = {
        "loss_audio": torch.tensor(recorder.losses[0::2], dtype=torch.float64),
        "loss_visual": torch.tensor(recorder.losses[1::2], dtype=torch.float64),
        "fusion_w_audio": torch.tensor([w[0] for w in gating], dtype=torch.float64),
        "fusion_w_visual": torch.tensor([w[1] for w in gating], dtype=torch.float64),
        "eval_logits": torch.stack(trace.pop("eval_logits")),
        **{k: torch.tensor(v, dtype=torch.float64) for k, v in trace.items()},
    }
    state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    return state, out


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    meta = {
        "released": "Cecile-hi/Multimodal-Learning-with-Alternating-Unimodal-Adaptation",
        "commit": args.commit,
        "generator": "scripts/golden/mla.py",
        "torch": torch.__version__,
        "num_classes": 6,
        "seed": 0,
        "step_seed": 7,
        "av_alpha": 0.55,  # main(av_alpha=0.55); unused with --dynamic
        "released_args": "--gs_flag --dynamic --fusion_method concat (ResNet18 AVClassifier), SGD lr 0.01, "
        "StepLR(1, 0.5), batch 4, 2 epochs",
        "suite_overrides": SUITE_OVERRIDES,
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, init = suite_initial_state("mla", data, meta, SUITE_OVERRIDES, tmp)
    with float64():
        final, trace = released_run(args.released, init, data, meta)
    inverse = {v: k for k, v in KEYS.items()}
    out = Path(args.out or GOLDEN_DIR / "mla.npz")
    save_fixture(out, meta, {"init": init, "data": data, "final": map_keys(final, inverse), "trace": trace})
    print(f"wrote {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
