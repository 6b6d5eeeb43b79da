"""Common code of the image-text releases (Twitter2015, Sarcasm): tweet text as token ids + one image.

Follows IGM's ``datasets/twitter_dataset.py`` (mie_igm.md 10): ``clean_str`` keeps alphabetic words,
``pre_caption`` lowercases, strips punctuation and keeps 50 words; BERT tokenizer (bert-base-uncased, with
[CLS]/[SEP]); images: train RandomResizedCrop(224, scale (0.5, 1), bicubic) + flip + RandAugment(2, 7),
test Resize((224, 224)) bicubic, CLIP mean/std. Tokens are computed once by ``prepare`` and stored as int32
(padded with the tokenizer's pad id 0 to ``max_tokens``); the encoders mask the padding.

Tokenizers come only from the local cache: ``tokenizer=bert-base-uncased`` (Hugging Face cache, read with
``local_files_only=True``), a local directory holding ``vocab.txt``, or ``clip:<open_clip model>`` for the
CLIP text tower. Offline without the files, prepare stops with a message that says how to get them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from benchmark.config import NOT_IDENTITY
from benchmark.data import DatasetConfig, DatasetInfo, DatasetNotFoundError, MultimodalDataset
from datasets._common import (
    CachedSplit,
    FieldSpec,
    PackedCache,
    Sample,
    check_root,
    default_cache_dir,
    read_image,
    write_packed,
)

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
SPLIT_FILES = {"train": ("train",), "val": ("dev", "valid", "val"), "test": ("test",)}


class TokenizerMissing(FileNotFoundError):
    """The tokenizer files are not in the local cache (nothing is downloaded at run time)."""


def clean_text(text: str, max_words: int = 50) -> str:
    """IGM's ``clean_str`` + ``pre_caption``: alphabetic words only, lower case, no punctuation, <= 50 words."""
    text = re.sub(r"[^A-Za-z\s]", " ", text).lower()
    return " ".join(text.split()[:max_words])


def load_tokenizer(name: str) -> tuple[Any, int]:
    """(tokenizer callable text -> ids, context length or 0) from the local cache only."""
    if name.startswith("clip:"):
        from benchmark.backbones.clip import tokenizer_for

        tok = tokenizer_for(name[5:])
        length = int(getattr(tok, "context_length", 77))
        return (lambda text: tok([text])[0].tolist()), length
    from transformers import BertTokenizerFast

    vocab = _bert_vocab_file(name)
    if vocab is None:
        # (transformers 5 would silently build an empty-vocabulary tokenizer here; we refuse instead)
        raise TokenizerMissing(
            f"BERT tokenizer {name!r}: no vocab.txt in the local Hugging Face cache or directory, and nothing is "
            f'downloaded here. On a machine with network access run: python -c "from transformers import '
            f"AutoTokenizer, AutoModel; AutoTokenizer.from_pretrained('{name}'); AutoModel.from_pretrained('{name}')\" "
            f"and copy the cache (~/.cache/huggingface), or pass --option tokenizer=/dir/with/vocab.txt."
        )
    # from the directory holding vocab.txt (the HF snapshot or a user directory): the constructor's argument
    # name differs between transformers 4 (vocab_file) and 5 (vocab) and an unknown one is silently ignored
    tok = BertTokenizerFast.from_pretrained(str(vocab.parent), local_files_only=True, do_lower_case=True)
    if tok.vocab_size != sum(1 for line in vocab.open(encoding="utf-8") if line.strip()):
        raise TokenizerMissing(f"tokenizer built from {vocab} does not hold its vocabulary (transformers mismatch?)")
    return (lambda text: tok(text)["input_ids"]), 0


def _bert_vocab_file(name: str) -> Path | None:
    local = Path(os.path.expanduser(name))
    if local.is_dir():
        return local / "vocab.txt" if (local / "vocab.txt").is_file() else None
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(name, "vocab.txt")
    return Path(found) if isinstance(found, str) else None


@dataclass
class ImageTextConfig(DatasetConfig):
    root: str = field(default="", metadata=NOT_IDENTITY)
    cache: str = field(default="", metadata=NOT_IDENTITY)
    image_size: int = 224
    # "igm": the IGM training augmentation; "none": the test transform for training too (the AMSS code).
    augment: Literal["igm", "none"] = "igm"


class ImageTextDataset(MultimodalDataset):
    """Base of the packed image-text datasets; subclasses name their files and classes."""

    Config: ClassVar[type] = ImageTextConfig
    classes: ClassVar[tuple[str, ...]] = ()
    store_size: ClassVar[int] = 256
    max_tokens: ClassVar[int] = 128
    download_hint: ClassVar[str] = ""
    annotation_dirs: ClassVar[tuple[str, ...]] = ("annotations", ".")
    image_dirs: ClassVar[tuple[str, ...]] = ("images",)

    # -- raw release ------------------------------------------------------------------------------------
    @classmethod
    def find_file(cls, root: Path, split: str) -> Path:
        for d in cls.annotation_dirs:
            for stem in SPLIT_FILES[split]:
                for ext in (".tsv", ".json", ".jsonl", ".txt"):
                    p = root / d / f"{stem}{ext}"
                    if p.exists():
                        return p
        raise DatasetNotFoundError(
            f"no {split} annotation file ({'/'.join(SPLIT_FILES[split])}.tsv|json|jsonl) under "
            f"{', '.join(str(root / d) for d in cls.annotation_dirs)}. {cls.download_hint}"
        )

    @classmethod
    def read_rows(cls, path: Path) -> list[dict[str, Any]]:
        """Rows as {"text", "image", "label"}; tsv (TomBERT / AMSS columns) or json / jsonl (IGM)."""
        if path.suffix in (".json", ".jsonl"):
            text = path.read_text(encoding="utf-8")
            data = (
                json.loads(text)
                if text.lstrip().startswith("[")
                else [json.loads(x) for x in text.splitlines() if x.strip()]
            )
            return [{"text": str(d["text"]), "image": str(d["image"]), "label": int(d["label"])} for d in data]
        rows = []
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
            header = [h.strip() for h in next(reader)]

            def col(*keys: str) -> int:
                for i, h in enumerate(header):
                    if any(k.lower() in h.lower() for k in keys):
                        return i
                raise ValueError(f"{path}: no column named like {keys} in header {header}")

            li, ii, si = col("Label"), col("ImageID", "image"), col("String", "text")
            target = next((i for i, h in enumerate(header) if i != si and h == header[si]), None)
            for r in reader:
                if not r:
                    continue
                sentence = r[si]
                if target is not None and "$T$" in sentence:  # TomBERT: the target entity replaces $T$
                    sentence = sentence.replace("$T$", r[target])
                rows.append({"text": sentence, "image": r[ii], "label": int(r[li])})
        return rows

    @classmethod
    def image_path(cls, root: Path, image: str) -> Path:
        for d in cls.image_dirs:
            for name in (image, f"{image}.jpg"):
                p = root / d / name
                if p.exists():
                    return p
        return root / cls.image_dirs[0] / image

    @classmethod
    def raw_samples(cls, root: Path) -> list[Sample]:
        samples = []
        for split in ("train", "val", "test"):
            for k, r in enumerate(cls.read_rows(cls.find_file(root, split))):
                samples.append(
                    Sample(
                        id=f"{split}/{k}",
                        label=r["label"],
                        split=split,
                        source={"text": r["text"], "image": str(cls.image_path(root, r["image"]))},
                    )
                )
        return samples

    @classmethod
    def prepare(
        cls, root: str, out: str = "", progress: bool = True, tokenizer: str = "bert-base-uncased"
    ) -> dict[str, Any]:
        """Raw release -> packed cache: images uint8 256x256, cleaned text as int32 token ids. Resumable."""
        raw = check_root(cls.name, root, cls.download_hint)
        samples = cls.raw_samples(raw)
        encode, context = load_tokenizer(tokenizer)
        width = context or cls.max_tokens

        def decode(s: Sample) -> dict[str, np.ndarray]:
            ids = list(encode(clean_text(s.source["text"])))[:width]
            if not 0 <= s.label < len(cls.classes):
                raise ValueError(f"label {s.label} outside 0..{len(cls.classes) - 1}")
            tokens = np.zeros(width, dtype=np.int32)
            tokens[: len(ids)] = ids
            return {"image": read_image(s.source["image"], cls.store_size), "text": tokens}

        fields = {
            "image": FieldSpec((cls.store_size, cls.store_size, 3), "uint8"),
            "text": FieldSpec((width,), "int32"),
        }
        params = {"tokenizer": tokenizer, "width": width, "store_size": cls.store_size, "clean": "igm-50"}
        out_dir = Path(out) if out else default_cache_dir(cls.name)
        return write_packed(out_dir, cls.name, samples, fields, decode, params, progress=progress)

    # -- training side ----------------------------------------------------------------------------------
    @property
    def info(self) -> DatasetInfo:
        return DatasetInfo(
            name=self.name,
            modalities=("text", "image"),
            num_classes=len(self.classes),
            class_names=self.classes,
            paper_metric="macro_f1",
            default_backbones={"text": "bert", "image": "resnet50"},
            backbone_args={"text": {}, "image": {"in_chans": 3}},
        )

    def _cache(self) -> PackedCache:
        if getattr(self, "_packed", None) is None:
            where = Path(os.path.expanduser(self.cfg.cache)) if self.cfg.cache else default_cache_dir(self.name)
            hint = f"Prepare it once: python -m datasets prepare {self.name} --root RAW --out {where}."
            self._packed = PackedCache(where, self.name, hint)
        return self._packed

    def image_tensor(self, img: np.ndarray, train: bool) -> torch.Tensor:
        from torchvision.transforms import InterpolationMode, v2
        from torchvision.transforms.v2 import functional as TF

        x = torch.from_numpy(np.array(img)).permute(2, 0, 1)
        size = self.cfg.image_size
        if train and self.cfg.augment == "igm":
            if not hasattr(self, "_augment"):
                self._augment = v2.Compose(
                    [
                        v2.RandomResizedCrop(size, scale=(0.5, 1.0), interpolation=InterpolationMode.BICUBIC),
                        v2.RandomHorizontalFlip(),
                        v2.RandAugment(num_ops=2, magnitude=7),
                    ]
                )
            x = self._augment(x)
        else:
            x = TF.resize(x, [size, size], interpolation=InterpolationMode.BICUBIC, antialias=True)
        y = x.float().div_(255.0)
        return (y - torch.tensor(CLIP_MEAN).view(3, 1, 1)) / torch.tensor(CLIP_STD).view(3, 1, 1)

    def make_item(self, row: int, train: bool) -> dict[str, torch.Tensor]:
        cache = self._cache()
        text = torch.from_numpy(np.asarray(cache.array("text")[row], dtype=np.int64))
        return {"text": text, "image": self.image_tensor(cache.array("image")[row], train)}

    def split(self, name: str) -> CachedSplit:
        return CachedSplit(self._cache(), name, self.make_item)
