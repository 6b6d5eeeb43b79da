"""Golden fixture for ``smv`` from the released SMV code (``GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation``).

    python scripts/golden/smv.py --released /path/to/Valuate-and-Enhance-Multimodal-Cooperation

The released ``code/sample_level.py`` ``main()`` crashes as shipped (``AV_KS_Dataset(mode=..., loader=...)``:
``__init__`` takes no ``loader``), so this script drives its epoch loop itself, in the order of ``main()``
(lines 321-340): ``warmup_epoch`` while ``epoch < warmup``, else ``train_epoch`` on the re-sampled loader; then
``execute_modulation`` (the valuation), whose loader replaces the training loader from ``epoch >= warmup - 1``;
then the scheduler step. The released functions and the released re-sampling dataset
(``datasets/dataloader.py`` ``AV_KS_Dataset_sample_level``, the copy bins of lines 154-186) run unchanged; the
stand-ins only supply the stored samples instead of Kinetics-Sounds files (a temporary folder holds the list
file and empty ``.npy`` files that its ``__init__`` checks for), drop the ``loader`` keyword the released call
passes, and keep the loaders unshuffled (the suite's golden runs are unshuffled too).

Stored: the parameters and buffers after four epochs (two warm-up, two re-sampled), each valuation's per-sample
Shapley values (``trace/phi_<modality>_<epoch>``) and each re-sampled training set (``trace/index_<epoch>``,
``trace/solo_<epoch>``: -1 = both modalities, 0 = audio only, 1 = visual only).
"""

from __future__ import annotations

import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torch.utils.data._utils.collate import default_collate

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

WIDTH = 2  # suite model.resnet_width; the released ResNet18 is built at 64 / WIDTH
CLASSES = 3
KEYS = {"encoders.audio.trunk.": "audio_net.", "encoders.visual.trunk.": "visual_net.", "fusion.": "fusion_module."}
SUITE_OVERRIDES = {
    "model.resnet_width": WIDTH,
    "model.fusion": "concat",
    "train.batch_size": 6,
    "train.epochs": 4,
    "train.optimizer": "adam",
    "train.lr": 0.01,
    "train.weight_decay": 1e-4,
    "train.scheduler": "step",
    "train.step_size": 3,
    "train.gamma": 0.1,
    "method.warmup": 2,
}
DROP_TO_SOLO = {0: -1, 2: 0, 1: 1}  # released drop (2 = visual zeroed, 1 = audio zeroed) -> suite solo


class Float64Tensor(torch.Tensor):
    """The released loops call ``.float()`` on their inputs; this keeps them float64 (the golden runs' dtype)."""

    def float(self, *args, **kwargs):  # noqa: A003
        return self.as_subclass(torch.Tensor).double()


def collate64(items):
    batch = default_collate(items)
    return [b.as_subclass(Float64Tensor) if b.is_floating_point() else b for b in batch]


def samples(n: int = 12, seed: int = 5) -> dict[str, torch.Tensor]:
    """Class evidence that disagrees between the modalities on some samples, so that the valuations give every
    Shapley value (-0.5 ... 1.5) and every copy bin."""
    g = torch.Generator().manual_seed(seed)
    label = torch.arange(n) % CLASSES
    audio = torch.randn(n, 16, 16, generator=g).double()
    visual = torch.randn(n, 3, 2, 16, 16, generator=g).double()
    a_class = label.clone()
    v_class = label.clone()
    a_class[1::4] = (label[1::4] + 1) % CLASSES  # audio points to a wrong class on a quarter of the samples
    v_class[2::4] = (label[2::4] + 2) % CLASSES  # visual on another quarter
    audio += 0.8 * a_class.view(-1, 1, 1)
    visual += 0.8 * v_class.view(-1, 1, 1, 1, 1)
    return {"audio": exact32(audio), "visual": exact32(visual), "label": label, "index": torch.arange(n)}


class Plain(Dataset):
    """The released ``AV_KS_Dataset`` items (image, spectrogram, label, index) from the stored samples."""

    def __init__(self, data: dict[str, torch.Tensor]) -> None:
        self.data = data

    def __len__(self) -> int:
        return len(self.data["label"])

    def __getitem__(self, i: int):
        d = self.data
        return d["visual"][i], d["audio"][i][None], int(d["label"][i]), i


def released_run(checkout: str, init: dict, data: dict, meta: dict) -> tuple[dict, dict]:
    tb = types.ModuleType("torch.utils.tensorboard")
    tb.SummaryWriter = object  # sample_level.py imports it; unused here
    sys.modules["torch.utils.tensorboard"] = tb
    sys.modules.setdefault("h5py", types.ModuleType("h5py"))  # imported by datasets/dataloader.py, unused
    # The suite's own `datasets` package must not shadow the released one (a folder without __init__.py,
    # which Python only takes when no regular package of that name is on the path).
    for name in list(sys.modules):
        if name.split(".")[0] in ("datasets", "models"):
            del sys.modules[name]
    root = str(Path(__file__).resolve().parents[2])
    saved_path = list(sys.path)
    sys.path[:] = [p for p in sys.path if p not in (root, "")]
    try:
        sl = import_released(checkout, "sample_level", subdir="code")
    finally:
        sys.path[:] = [p for p in sys.path if p not in saved_path] + saved_path
    backbone, models, loader_mod = (sys.modules[m] for m in ("models.backbone", "models.models", "datasets.dataloader"))
    o = SUITE_OVERRIDES
    n = len(data["label"])
    trace: dict[str, torch.Tensor] = {}
    epoch_box = {"epoch": 0}

    class SampleLevel(loader_mod.AV_KS_Dataset_sample_level):
        """The released re-sampling dataset, minus the ``loader`` keyword its caller passes (the crash)."""

        def __init__(self, mode, contribution, loader=None):
            super().__init__(mode, contribution)
            e = epoch_box["epoch"] + 1  # the epoch that trains on this set (0-based)
            for k, m in enumerate(("audio", "visual")):
                trace[f"phi_{m}_{e}"] = torch.tensor([contribution[i][k] for i in range(n)], dtype=torch.float64)
            trace[f"index_{e}"] = torch.tensor([int(name) for name in self.data])
            trace[f"solo_{e}"] = torch.tensor([DROP_TO_SOLO[d] for d in self.drop])

        def __getitem__(self, idx):
            i = int(self.data[idx])
            return data["visual"][i], data["audio"][i][None], self.label[idx], idx, self.drop[idx]

    def loader(dataset, batch_size, shuffle=True, num_workers=0, pin_memory=False):
        return DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate64)

    args = types.SimpleNamespace(
        n_classes=CLASSES,
        batch_size=o["train.batch_size"],
        warmup=o["method.warmup"],
        loader=165,
        log_path=None,
    )
    narrow = scaled_nn(64 // WIDTH)
    with patched(backbone, "nn", narrow), patched(models, "nn", narrow):
        model = models.AVClassifier(args)
    model.double()
    model.load_state_dict(map_keys(init, KEYS), strict=True)
    model = nn.DataParallel(model)  # CPU: a plain wrapper; execute_modulation calls model.module.exec_drop
    optimizer = torch.optim.Adam(
        model.parameters(), lr=o["train.lr"], betas=(0.9, 0.999), eps=1e-08, weight_decay=o["train.weight_decay"]
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, o["train.step_size"], o["train.gamma"])
    train_loader = loader(Plain(data), args.batch_size)
    train_val_loader = loader(Plain(data), args.batch_size)
    device = torch.device("cpu")
    with tempfile.TemporaryDirectory() as tmp:
        # what AV_KS_Dataset_sample_level.__init__ reads: the list file and one (empty) .npy file per sample
        os.makedirs(f"{tmp}/ks_audio/train")
        with open(f"{tmp}/ks_audio/train_1fps_path.txt", "w") as fh:
            for i in range(n):
                fh.write(f"train/{i} {int(data['label'][i])}\n")
                Path(f"{tmp}/ks_audio/train/{i}.npy").touch()
        os.makedirs(f"{tmp}/log")
        args.log_path = f"{tmp}/log"
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            seed_all(meta["step_seed"])
            with patched(sl, "AV_KS_Dataset_sample_level", SampleLevel), patched(sl, "DataLoader", loader):
                for epoch in range(o["train.epochs"]):  # main(), lines 303-340
                    epoch_box["epoch"] = epoch
                    if epoch < args.warmup:
                        sl.warmup_epoch(args, epoch, model, device, train_loader, optimizer)
                    else:
                        sl.train_epoch(args, epoch, model, device, train_loader, optimizer)
                    _, _, resampled = sl.execute_modulation(args, model, device, train_val_loader, "golden", epoch)
                    if epoch >= args.warmup - 1:
                        train_loader = resampled
                    scheduler.step()
        finally:
            os.chdir(cwd)
    state = {k: v.detach().clone() for k, v in model.module.state_dict().items()}
    last = o["train.epochs"]
    for m in ("audio", "visual"):  # the valuation after the last epoch trains nothing: not stored
        trace.pop(f"phi_{m}_{last}", None)
    trace.pop(f"index_{last}", None)
    trace.pop(f"solo_{last}", None)
    return state, trace


def main() -> None:
    args = parse_args(__doc__.splitlines()[0])
    data = samples()
    meta = {
        "released": "GeWu-Lab/Valuate-and-Enhance-Multimodal-Cooperation",
        "commit": args.commit,
        "generator": "scripts/golden/smv.py",
        "num_classes": CLASSES,
        "seed": 0,
        "step_seed": 7,
        "suite_overrides": SUITE_OVERRIDES,
    }
    with tempfile.TemporaryDirectory() as tmp:
        _, init = suite_initial_state("smv", data, meta, SUITE_OVERRIDES, tmp)
    with float64(), one_thread():
        final, trace = released_run(args.released, init, data, meta)
    values = torch.cat([trace[k] for k in trace if k.startswith("phi_")])
    meta["phi_values"] = sorted({float(v) for v in values})
    print("phi values", meta["phi_values"], {k: len(v) for k, v in trace.items() if k.startswith("index")})
    inverse = {v: k for k, v in KEYS.items()}
    out = Path(args.out or GOLDEN_DIR / "smv.npz")
    save_fixture(out, meta, {"init": init, "data": data, "final": map_keys(final, inverse), "trace": trace})
    print(f"wrote {out}")


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
