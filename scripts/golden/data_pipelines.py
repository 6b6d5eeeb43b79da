"""Golden-sample fixtures of the five dataset pipelines from IGM's released loaders (``njustkmg/IJCAI25-IGM``).

    PYTHONPATH=/dir/with/cv2 python scripts/golden/data_pipelines.py --released /path/to/IJCAI25-IGM [--only NAME ...]

IGM's ``datasets/`` package imports OpenCV (``cv2``), which the suite does not depend on: install
``opencv-python-headless`` into a scratch directory (``pip install --no-deps --target DIR ...``) and put that
directory on ``PYTHONPATH`` for this script only. For each dataset the script builds the tiny release of
``tests/golden/releases.py`` (IGM's layout) in a temporary directory, runs IGM's dataset class on every sample
unchanged -- ``CramedDataset``, ``VADataset``, ``create_dataset('twitter' | 'sarcasm')``, ``NvGestureDataset``
-- after ``seed_all(seed)`` per sample, and stores in ``tests/golden/data_<name>.npz``:

* what it returns: images and frames back as the uint8 values they were normalised from (checked to be exact),
  as a strided subsample plus exact per-frame, per-channel sums (full 224x224 frames would not fit the size
  budget); spectrograms and flow as a subsample plus sums; the whole image for the 32x32 image-text samples;
* the random parameters it drew: crop boxes and flips (recorded by wrapping torchvision's
  ``RandomResizedCrop.get_params`` and ``functional.hflip``), RandomAugment's ops and arguments (by wrapping the
  entries of its ``func_dict``), NVGesture's crop corner and clip start (by wrapping the ``random`` module it
  uses);
* for the image-text sets the captions and the token ids of IGM's batches: ``BertTokenizer(texts,
  padding='longest', max_length=50 | 30)`` as ``train_twitter.py`` / ``train_sarcasm.py`` 50 and 299 call it, with
  the tiny vocabulary of ``datasets._fixtures.make_vocab`` (no BERT download);
* ``meta``: the sample ids, seeds, the content digest of the release and the released commit.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import random
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from released import GOLDEN_DIR, import_released, released_commit, save_fixture, seed_all  # noqa: E402

from mmbalance_datasets._fixtures import content_digest, make_vocab, pattern  # noqa: E402  (ours, before IGM's package)
from tests.golden.releases import IMAGE_RES, RELEASES  # noqa: E402

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
SEEDS = {"crema_d": 100, "kinetics_sounds": 200, "twitter2015": 300, "sarcasm": 400, "nvgesture": 500}
TRAIN_BATCH = 4  # token batches of the image-text training samples (the test samples form one batch)
# the op list IGM's datasets/__init__.py 25-26 passes to RandomAugment(2, 7, isPIL=True, augs=...)
AUGS = ("Identity", "AutoContrast", "Equalize", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateX")
AUGS += ("TranslateY", "Rotate")
OP_ARGS = {"Brightness": (1.36,), "Sharpness": (1.36,), "ShearX": (0.21, -0.21), "ShearY": (0.21, -0.21)}
OP_ARGS.update({"TranslateX": (7.0, -7.0), "TranslateY": (7.0, -7.0), "Rotate": (21.0, -21.0)})
FILL = (128, 128, 128)  # randaugment.py replace_value
SEQUENCES = 300  # seeds of the RandomAugment draw-sequence check


def to_uint8(x: torch.Tensor, stats: tuple[tuple[float, ...], tuple[float, ...]] | None) -> torch.Tensor:
    """A tensor made by ``ToTensor`` (+ ``Normalize(stats)``), channels first -> the uint8 values it came from."""
    shape = (-1,) + (1,) * (x.dim() - 1)
    if stats is None:
        u = torch.round(x.float() * 255)
        back = u / 255
    else:
        mean, std = (torch.tensor(s).view(shape) for s in stats)
        u = torch.round((x.float() * std + mean) * 255)
        back = (u / 255 - mean) / std
    if not torch.equal(back, x.float()):
        raise SystemExit("the released tensor is not ToTensor/Normalize of uint8 values; cannot store it exactly")
    return u.to(torch.uint8)


class Recorder:
    """Crop boxes, flips and RandomAugment ops the released transforms draw."""

    def __init__(self) -> None:
        self.crops: list[tuple[int, int, int, int]] = []
        self.flips: list[bool] = []
        self.ops: list[tuple[str, float]] = []


@contextlib.contextmanager
def recording(rec: Recorder, randaugment: Any = None) -> Iterator[None]:
    from torchvision import transforms
    from torchvision.transforms import functional as TF

    get_params, hflip = transforms.RandomResizedCrop.get_params, TF.hflip

    def recorded_params(img: Any, scale: Any, ratio: Any) -> Any:
        box = get_params(img, scale, ratio)
        rec.crops.append(tuple(int(v) for v in box))
        rec.flips.append(False)
        return box

    def recorded_flip(img: Any) -> Any:
        rec.flips[-1] = True
        return hflip(img)

    ops = dict(randaugment.func_dict) if randaugment is not None else {}

    def recorded_op(name: str) -> Any:
        def run(img: Any, *args: Any) -> Any:
            rec.ops.append((name, float(args[0]) if args else None))
            return ops[name](img, *args)

        return run

    transforms.RandomResizedCrop.get_params = staticmethod(recorded_params)
    TF.hflip = recorded_flip
    for name in ops:
        randaugment.func_dict[name] = recorded_op(name)
    try:
        yield
    finally:
        transforms.RandomResizedCrop.get_params = staticmethod(get_params)
        TF.hflip = hflip
        if randaugment is not None:
            randaugment.func_dict.update(ops)


def av_item(spec: Any, images: torch.Tensor, rec: Recorder, spec_step: tuple[int, int]) -> dict[str, Any]:
    spec = torch.as_tensor(np.asarray(spec), dtype=torch.float32)
    u = to_uint8(images, IMAGENET)  # (3, T, 224, 224)
    return {
        "spec_sub": spec[:: spec_step[0], :: spec_step[1]],
        "spec_sum": spec.double().sum(),
        "spec_shape": torch.tensor(spec.shape),
        "frames_sub": u[:, :, ::4, ::4],
        "frames_sum": u.long().sum((2, 3)),
        "crops": torch.tensor(rec.crops, dtype=torch.long).reshape(-1, 4),
        "flips": torch.tensor(rec.flips, dtype=torch.long),
    }


def run_av(name: str, root: Path, igm: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    if name == "crema_d":
        make, n_class, spec_step = igm["CREMA"].CramedDataset, 6, (8, 8)
    else:
        make, n_class, spec_step = igm["KS"].VADataset, 31, (8, 16)
    config = {"dataset": {"data_root": str(root)}, "setting": {"num_class": n_class}}
    groups: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] = {}
    for mode in ("train", "test"):
        ds = make(config, mode)
        paths = ds.image if name == "crema_d" else ds.video
        group: dict[str, Any] = {}
        for i in range(len(ds)):
            seed = SEEDS[name] + i + (50 if mode == "test" else 0)
            rec = Recorder()
            seed_all(seed)
            with recording(rec):
                spec, images, label = ds[i]
            for key, value in av_item(spec, images, rec, spec_step).items():
                group[f"{i}/{key}"] = value
            group[f"{i}/label"] = torch.tensor(int(label.argmax()))
            meta.setdefault(f"{mode}_ids", []).append(Path(paths[i]).name)
            meta.setdefault(f"{mode}_seeds", []).append(seed)
        groups[mode] = group
    return groups, meta


def run_image_text(name: str, root: Path, igm: Any, vocab: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    from transformers import BertTokenizer

    if name == "twitter2015":
        files = ("annotations/train.tsv", "annotations/test.tsv")
        image_root, key = str(root / "twitter2015_images") + "/", "twitter"
    else:
        files = ("annotations/train_data.json", "annotations/test_data.json")
        image_root, key = str(root / "images") + "/", "sarcasm"
    config = {
        "image_res": IMAGE_RES,
        "train_file": str(root / files[0]),
        "test_file": str(root / files[1]),
        "image_root": image_root,
        "max_tokens": 50,
    }
    train_ds, test_ds = igm["datasets"].create_dataset(key, config)
    tokenizer = BertTokenizer.from_pretrained(str(vocab))
    groups: dict[str, dict[str, Any]] = {"train": {}, "test": {}, "tokens": {}}
    meta: dict[str, Any] = {}
    for mode, ds in (("train", train_ds), ("test", test_ds)):
        texts = []
        for i in range(len(ds)):
            seed = SEEDS[name] + i + (50 if mode == "test" else 0)
            rec = Recorder()
            seed_all(seed)
            with recording(rec, igm["randaugment"]):
                image, text, label = ds[i]
            g = groups[mode]
            g[f"{i}/image"] = to_uint8(image, CLIP)
            g[f"{i}/label"] = torch.tensor(int(label))
            if mode == "train":
                g[f"{i}/crop"] = torch.tensor(rec.crops[0])
                g[f"{i}/flip"] = torch.tensor(int(rec.flips[0]))
                meta.setdefault("train_ops", []).append([[op, value] for op, value in rec.ops])
            meta.setdefault(f"{mode}_seeds", []).append(seed)
            texts.append(text)
        meta[f"{mode}_captions"] = texts
        size, max_length = (TRAIN_BATCH, 50) if mode == "train" else (len(texts), 30)
        for b in range(0, len(texts), size):
            enc = tokenizer(texts[b : b + size], padding="longest", max_length=max_length, return_tensors="pt")
            assert torch.equal(enc["attention_mask"].bool(), enc["input_ids"] != 0), "padding id is not 0"
            groups["tokens"][f"{mode}/{b // size}"] = enc["input_ids"]
    meta["train_batch"] = TRAIN_BATCH
    return groups, meta


class RandomLog:
    """Stands in for the ``random`` module of IGM's nvGesture.py and logs its ``randint`` draws."""

    def __init__(self) -> None:
        self.draws: list[int] = []

    def randint(self, a: int, b: int) -> int:
        value = random.randint(a, b)
        self.draws.append(value)
        return value

    def __getattr__(self, name: str) -> Any:
        return getattr(random, name)


def run_nvgesture(root: Path, igm: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    module = igm["nvGesture"]
    config = {"dataset": {"data_root": str(root) + "/"}, "setting": {"num_class": 25}}
    groups: dict[str, dict[str, Any]] = {}
    meta: dict[str, Any] = {}
    for mode in ("train", "test"):
        ds = module.NvGestureDataset(config, mode)
        group: dict[str, Any] = {}
        for i in range(len(ds)):
            seed = SEEDS["nvgesture"] + i + (50 if mode == "test" else 0)
            log = RandomLog()
            seed_all(seed)
            module.random = log
            try:
                rgb, flow, depth, label = ds[i]
            finally:
                module.random = random
            x, y, start = log.draws[:3]  # nvGesture.py 194-196
            u_rgb, u_depth = to_uint8(rgb, IMAGENET), to_uint8(depth, None)
            group[f"{i}/params"] = torch.tensor([start, y, x])
            group[f"{i}/rgb_sub"] = u_rgb[:, :, ::8, ::8]
            group[f"{i}/rgb_sum"] = u_rgb.long().sum((2, 3))
            group[f"{i}/depth_sub"] = u_depth[:, :, ::8, ::8]
            group[f"{i}/depth_sum"] = u_depth.long().sum((2, 3))
            group[f"{i}/flow_sub"] = flow[:, :, ::4, ::4]
            group[f"{i}/flow_sum"] = flow.double().sum((2, 3))
            group[f"{i}/shapes"] = torch.tensor([list(rgb.shape), list(depth.shape), list(flow.shape)])
            group[f"{i}/label"] = torch.tensor(int(label.argmax()))
            meta.setdefault(f"{mode}_seeds", []).append(seed)
        groups[mode] = group
    return groups, meta


def run_randaugment(igm: Any) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every op of IGM's RandomAugment on two small images (one channel with minimum 0, the others above 0), at
    level 7 with both signs, and the ops RandomAugment(2, 7) draws under each of ``SEQUENCES`` seeds."""
    from PIL import Image

    module = igm["randaugment"]
    images = [pattern(3, 1, (28, 22), 2), pattern(1, 2, (21, 17), 4)]
    images[0][5, 7, 0] = 0
    outputs: dict[str, Any] = {f"input{k}": torch.from_numpy(img) for k, img in enumerate(images)}
    for k, img in enumerate(images):
        for name in AUGS:
            for j, arg in enumerate(OP_ARGS.get(name, (None,))):
                args = () if arg is None else (arg, FILL) if name not in ("Brightness", "Sharpness") else (arg,)
                outputs[f"{name}/{j}/{k}"] = torch.from_numpy(module.func_dict[name](img.copy(), *args))
    augment = module.RandomAugment(2, 7, isPIL=True, augs=list(AUGS))
    ids = torch.full((SEQUENCES, 2), -1, dtype=torch.long)
    values = torch.zeros(SEQUENCES, 2, dtype=torch.float64)
    for seed in range(SEQUENCES):
        rec = Recorder()
        np.random.seed(seed)
        with recording(rec, module):
            augment(Image.fromarray(images[1]))
        for j, (name, value) in enumerate(rec.ops):
            ids[seed, j] = AUGS.index(name)
            values[seed, j] = 0.0 if value is None else value
    return {"ops": outputs, "sequences": {"ids": ids, "values": values}}, {"augs": list(AUGS)}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--released", required=True, help="checkout of njustkmg/IJCAI25-IGM (never committed here)")
    names = [*RELEASES, "randaugment"]
    p.add_argument("--only", nargs="*", default=names, choices=names)
    p.add_argument("--commit", default=None, help="released commit to record (default: git rev-parse of --released)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        vocab = make_vocab(base / "vocab")
        releases = [name for name in args.only if name in RELEASES]
        for name in releases:
            RELEASES[name](base / name)
        digests = {name: content_digest(base / name) for name in releases}
        try:
            import cv2  # noqa: F401
        except ImportError as exc:
            raise SystemExit("IGM's datasets package needs cv2: put opencv-python-headless on PYTHONPATH") from exc
        import_released(args.released, "datasets")  # IGM's package of the same name replaces ours from here on
        igm = {m: importlib.import_module(f"datasets.{m}") for m in ("CREMA", "KS", "nvGesture", "randaugment")}
        igm["datasets"] = importlib.import_module("datasets")
        for name in args.only:
            root = base / name
            if name == "randaugment":
                groups, meta = run_randaugment(igm)
            elif name in ("crema_d", "kinetics_sounds"):
                groups, meta = run_av(name, root, igm)
            elif name == "nvgesture":
                groups, meta = run_nvgesture(root, igm)
            else:
                groups, meta = run_image_text(name, root, igm, vocab)
            meta.update(
                {
                    "repository": "njustkmg/IJCAI25-IGM",
                    "commit": args.commit or released_commit(args.released),
                    "generator": "scripts/golden/data_pipelines.py",
                    "dataset": name,
                    "release_digest": digests.get(name),
                    "torch": torch.__version__,
                    "numpy": np.__version__,
                    "cv2": sys.modules["cv2"].__version__,
                }
            )
            path = save_fixture(GOLDEN_DIR / f"data_{name}.npz", meta, groups)
            print(f"{name}: {path} ({path.stat().st_size / 1024:.0f} KB)")


if __name__ == "__main__":
    main()
