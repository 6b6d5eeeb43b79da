"""Golden fixtures for ``domfn`` from the released DOMFN code (``njustkmg/MM22_DOMFN``, PyTorch branch).

    python scripts/golden/domfn.py --released /path/to/MM22_DOMFN

The released model (``models/encoder.py`` ``DOMFN``: three ``Fcn`` MLPs on pre-extracted text, vision and audio
features, sigmoid heads, the concat fusion MLP, the divergence penalty from the mean of the unimodal outputs)
is built with its hidden sizes divided by 16 and loaded with the suite's initial weights; the suite side uses
the golden dataset's feature vectors (``meta["feature_dims"]``, identity encoders).

* ``domfn.npz``: the released trainer itself, ``engines/mosi_trainer.py`` ``DomfnTrainer.train``, for two
  epochs of batch size 1 (as released) on 8 samples: per sample the joint step (all four optimisers) or the
  unimodal step (each modality's optimiser on its own ``CE_m``; the fusion head untouched). Its four Adam
  optimisers get one learning rate and one weight decay, the suite's ``train.lr``/``train.weight_decay``.
* ``domfn_minibatch.npz``: the suite's mini-batch rule (each sample contributes its released per-sample loss,
  one step per batch) computed from the released model: for each batch of 4 the released forward runs per
  sample, the joint loss or each ``CE_m`` is back-propagated divided by the batch size, then the released
  trainer's modality optimisers step, and its fusion optimiser only if some sample was joint. The released code
  cannot run batches larger than one (its ``if p < gamma`` needs a single value).

``trace/joint``: per step the fraction of joint samples (batch of one: 1 or 0). ``--out`` names a folder here.
"""

from __future__ import annotations

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

SCALE = 16  # released hidden sizes 512, 256, 128 (features), 64 (fusion) divided by this
MODALITIES = ("text", "vision", "audio")  # the released concatenation order
DIMS = {"text": 10, "vision": 12, "audio": 14}  # feature sizes (not multiples of 64: not scaled)
CLASSES = 3
KEYS = {
    **{f"fcn.{m}.": f"{m}_encoder.feature_layer." for m in MODALITIES},
    **{f"heads.{m}.": f"{m}_encoder.prediction_layer.0." for m in MODALITIES},
    "fusion.": "multi_encoder.",
}
COMMON = {
    "method.hidden": (512 // SCALE, 256 // SCALE),
    "method.feature_dim": 128 // SCALE,
    "method.fusion_hidden": 64 // SCALE,
    "method.reference": "mean",
    "method.gamma": 0.8,
    "method.eta": 0.5,
    "train.optimizer": "adam",
    "train.lr": 0.03,
    "train.weight_decay": 1e-3,
    "train.scheduler": "none",
}
# tau chosen so that both kinds of step occur: batch of one, 10 joint and 6 unimodal steps (interleaved);
# batches of 4, fully unimodal batches (fusion head untouched) and mixed ones.
FIXTURES = {
    "domfn": {**COMMON, "method.tau": 0.02, "train.batch_size": 1, "train.epochs": 2},
    "domfn_minibatch": {**COMMON, "method.tau": 0.01, "train.batch_size": 4, "train.epochs": 3},
}


def samples(n: int = 8) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(4321)
    label = torch.arange(n) % CLASSES
    out: dict[str, torch.Tensor] = {"label": label, "index": torch.arange(n)}
    for k, m in enumerate(MODALITIES):
        x = torch.randn(n, DIMS[m], generator=g).double()
        x[:, :CLASSES] += (1.0 + k) * torch.nn.functional.one_hot(label, CLASSES)  # class evidence
        out[m] = exact32(x)
    return out


def released_trainer(checkout: str, init: dict, o: dict):
    tr = import_released(checkout, "engines.mosi_trainer")
    encoder = import_released(checkout, "models.encoder")
    joint_log: list[float] = []

    class Recording(encoder.DOMFN):
        """The released model; records whether the trainer's switch (mosi_trainer.py:67-73) goes joint."""

        def forward(self, **kw):
            out = super().forward(**kw)
            p = [out[f"{m}_penalty"] / o["method.tau"] for m in MODALITIES]
            joint_log.append(float(all(bool(v < o["method.gamma"]) for v in p)))
            return out

    with patched(encoder, "nn", scaled_nn(SCALE)):
        model = Recording(DIMS["text"], DIMS["vision"], DIMS["audio"], 128, CLASSES, "concat")
    model.double()
    model.load_state_dict(map_keys(init, KEYS), strict=True)
    lr, wd = o["train.lr"], o["train.weight_decay"]
    config = types.SimpleNamespace(
        use_cuda=False,
        pre_lr=lr,
        text_ft_lr=lr,
        vision_ft_lr=lr,
        audio_ft_lr=lr,
        multi_lr=lr,
        weight_decay_text=wd,
        weight_decay_vision=wd,
        weight_decay_audio=wd,
        weight_decay_multi=wd,
        patience=20,
        is_pretrain=False,
        eta=o["method.eta"],
        tau=o["method.tau"],
        gamma=o["method.gamma"],
        num_label=CLASSES,
    )

    def plateau(optimizer, mode="min", verbose=False, **kw):  # `verbose` is gone from recent PyTorch
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode, **kw)

    with patched(tr, "ReduceLROnPlateau", plateau):
        trainer = tr.DomfnTrainer(config, model)
    return trainer, model, joint_log


def batches(data: dict, size: int) -> list[dict]:
    n = len(data["label"])
    return [
        {**{f"{m}_embeds": data[m][i : i + size] for m in MODALITIES}, "labels": data["label"][i : i + size]}
        for i in range(0, n, size)
    ]


def run_batch_of_one(checkout: str, init: dict, data: dict, meta: dict, o: dict):
    trainer, model, joint_log = released_trainer(checkout, init, o)
    seed_all(meta["step_seed"])
    for _ in range(o["train.epochs"]):
        trainer.train(batches(data, 1))
    return model, torch.tensor(joint_log, dtype=torch.float64)


def run_minibatch(checkout: str, init: dict, data: dict, meta: dict, o: dict):
    trainer, model, joint_log = released_trainer(checkout, init, o)
    modal = [trainer.text_optim, trainer.vision_optim, trainer.audio_optim]
    fractions = []
    seed_all(meta["step_seed"])
    for _ in range(o["train.epochs"]):
        model.train()
        for batch in batches(data, o["train.batch_size"]):
            size = len(batch["labels"])
            for opt in (*modal, trainer.multi_optim):
                opt.zero_grad()
            joint_count = 0
            for i in range(size):
                out = model(**{k: v[i : i + 1] for k, v in batch.items()}, eta=o["method.eta"])
                if joint_log[-1]:  # the released joint loss (mosi_trainer.py:70, 79)
                    joint_count += 1
                    loss = out["text_loss"] + out["vision_loss"] + out["audio_loss"] + out["multi_loss"]
                    (loss.sum() / size).backward()
                else:  # the released unimodal step's losses (mosi_trainer.py:87-93)
                    for m in MODALITIES:
                        (out[f"{m}_celoss"] / size).backward(retain_graph=True)
            for opt in modal:
                opt.step()
            if joint_count:
                trainer.multi_optim.step()
            fractions.append(joint_count / size)
    return model, torch.tensor(fractions, dtype=torch.float64)


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    for name, overrides in FIXTURES.items():
        meta = {
            "released": "njustkmg/MM22_DOMFN",
            "commit": args.commit,
            "generator": "scripts/golden/domfn.py",
            "num_classes": CLASSES,
            "modalities": list(MODALITIES),
            "feature_dims": DIMS,
            "seed": 0,
            "step_seed": 7,
            "suite_overrides": overrides,
        }
        with tempfile.TemporaryDirectory() as tmp:
            _, init = suite_initial_state("domfn", data, meta, overrides, tmp)
        run = run_batch_of_one if name == "domfn" else run_minibatch
        with float64(), one_thread():
            model, joint = run(args.released, init, data, meta, overrides)
        print(name, "joint per step", joint.tolist())
        final = {k: v.detach().clone() for k, v in model.state_dict().items()}
        inverse = {v: k for k, v in KEYS.items()}
        out = Path(args.out or GOLDEN_DIR) / f"{name}.npz"  # --out: a folder (two fixtures)
        trace = {"joint": joint}
        save_fixture(out, meta, {"init": init, "data": data, "final": map_keys(final, inverse), "trace": trace})
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
