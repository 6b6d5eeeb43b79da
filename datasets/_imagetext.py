"""Common code of the image-text releases (Twitter2015, Sarcasm): tweet text as token ids + one image.

The default pipeline feeds what IGM's ``datasets/twitter_dataset.py`` / ``sarcasm_dataset.py`` and
``datasets/__init__.py`` feed:

* text: Twitter keeps the alphabetic words (``clean_str``: ``\\b[A-Za-z]+\\b``, so tokens that mix letters with
  digits or ``_`` are dropped), then ``pre_caption``; Sarcasm applies ``pre_caption`` only (digits, ``@``,
  ``<user>`` and ``_`` stay). ``pre_caption``: lower case, strip ``,.'!?"()*#:;~``, ``-`` and ``/`` to spaces,
  ``<person>`` to ``person``, runs of whitespace to one space, at most 50 words (``max_tokens`` 50);
* tokens: the BERT tokenizer with [CLS]/[SEP] and no truncation (IGM calls it with ``padding='longest'`` and a
  ``max_length`` that, without ``truncation=True``, cuts nothing); ids are stored padded with 0 to the longest
  text of the release, and the text encoder drops the batch's all-padding tail, so the model sees the batch
  padded to its longest text, as in IGM;
* images: test ``Resize((224, 224))`` bicubic from the original (stored so at prepare time); train
  ``RandomResizedCrop(224, scale=(0.5, 1), bicubic)`` with the box drawn on the original image's size, a
  horizontal flip, then ALBEF's ``RandomAugment(2, 7)`` (``datasets/_randaugment.py``); CLIP mean/std.

Difference left: the training crop is cut from the stored 224x224 copy, not from the original (docs/datasets.md).

Tokenizers come only from the local cache: ``tokenizer=bert-base-uncased`` (Hugging Face cache, read with
``local_files_only=True``), a local directory holding ``vocab.txt``, or ``clip:<open_clip model>`` for the
CLIP text tower. Offline without the files, prepare stops with a message that says how to get them.
"""

from __future__ import annotations

import csv
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch

from benchmark.data import DatasetInfo, DatasetNotFoundError

from ._packed import FieldSpec, PackedConfig, PackedDataset, Sample, check_root, default_cache_dir, write_packed
from ._randaugment import AlbefRandomAugment
from ._transforms import load_image, normalize, random_resized_crop_box, resized_crop

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# stems of the split files: the original releases' and IGM's ({train,test}_data.json); no val file -> carved
SPLIT_FILES = {
    "train": ("train", "train_data"),
    "val": ("dev", "valid", "val", "valid_data", "dev_data"),
    "test": ("test", "test_data"),
}
MAX_WORDS = 50  # IGM configs: max_tokens 50, passed to the datasets as max_words
TRAIN_SCALE = (0.5, 1.0)  # IGM datasets/__init__.py 23


class TokenizerMissing(FileNotFoundError):
    """The tokenizer files are not in the local cache (nothing is downloaded at run time)."""


def alphabetic_words(text: str) -> str:
    """IGM Twitter's ``clean_str``: the runs of ASCII letters that stand as whole words, joined by spaces."""
    return " ".join(re.findall(r"\b[A-Za-z]+\b", text))


_CAPTION_PUNCT = re.compile(r"[,.'!?\"()*#:;~]")


def pre_caption(text: str, max_words: int = MAX_WORDS) -> str:
    """ALBEF's ``pre_caption`` as IGM uses it (``twitter_dataset.py`` 14-34, ``sarcasm_dataset.py`` 14-34)."""
    text = _CAPTION_PUNCT.sub("", text.lower())
    text = text.replace("-", " ").replace("/", " ").replace("<person>", "person")
    text = re.sub(r"\s{2,}", " ", text).rstrip("\n").strip(" ")
    words = text.split(" ")  # split on single spaces, as the release: a lone tab stays inside a word
    return " ".join(words[:max_words]) if len(words) > max_words else text


def clean_text(text: str, cleaning: str, max_words: int = MAX_WORDS) -> str:
    """``cleaning`` "twitter" (alphabetic words, then pre_caption) or "caption" (pre_caption only: Sarcasm)."""
    if cleaning == "twitter":
        text = alphabetic_words(text)
    elif cleaning != "caption":
        raise ValueError(f"unknown text cleaning {cleaning!r}; expected 'twitter' or 'caption'")
    return pre_caption(text, max_words)


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
class ImageTextConfig(PackedConfig):
    image_size: int = 224
    # "igm": IGM's training augmentation (crop, flip, ALBEF RandomAugment(2, 7) with its two quirks);
    # "igm_corrected": the same without the quirks (AutoContrast's wrapped offset, Sharpness's unclipped cast);
    # "none": the test transform for training too (the AMSS code).
    augment: Literal["igm", "igm_corrected", "none"] = "igm"


class ImageTextDataset(PackedDataset):
    """Base of the packed image-text datasets; subclasses name their files, classes and text cleaning."""

    Config: ClassVar[type] = ImageTextConfig
    classes: ClassVar[tuple[str, ...]] = ()
    text_cleaning: ClassVar[str] = "caption"  # see clean_text
    store_size: ClassVar[int] = 224
    annotation_dirs: ClassVar[tuple[str, ...]] = ("annotations", ".")
    image_dirs: ClassVar[tuple[str, ...]] = ("images",)

    # -- raw release ------------------------------------------------------------------------------------
    @classmethod
    def find_file(cls, root: Path, split: str) -> Path | None:
        """The split's annotation file; None for a missing val file (validation is then carved from train)."""
        for d in cls.annotation_dirs:
            for stem in SPLIT_FILES[split]:
                for ext in (".tsv", ".json", ".jsonl", ".txt"):
                    p = root / d / f"{stem}{ext}"
                    if p.exists():
                        return p
        if split == "val":
            return None
        raise DatasetNotFoundError(
            f"no {split} annotation file ({'|'.join(SPLIT_FILES[split])}.tsv|json|jsonl) under "
            f"{', '.join(str(root / d) for d in cls.annotation_dirs)}. {cls.download_hint}"
        )

    @classmethod
    def read_rows(cls, path: Path) -> list[dict[str, Any]]:
        """Rows as {"text", "image", "label"}: json / jsonl (IGM's Sarcasm), IGM's tsv (header ``Label``,
        ``ImageID``, ``String``, read with pandas as IGM does) or TomBERT's / AMSS's tsv (``#1 Label`` ...)."""
        if path.suffix in (".json", ".jsonl"):
            text = path.read_text(encoding="utf-8")
            data = (
                json.loads(text)
                if text.lstrip().startswith("[")
                else [json.loads(x) for x in text.splitlines() if x.strip()]
            )
            return [{"text": str(d["text"]), "image": str(d["image"]), "label": int(d["label"])} for d in data]
        with path.open(encoding="utf-8", newline="") as fh:
            header = [h.strip() for h in fh.readline().rstrip("\r\n").split("\t")]
        if {"Label", "ImageID", "String"} <= set(header):  # IGM's converted tsv: pandas.read_csv(sep="\t")
            import pandas as pd

            table = pd.read_csv(path, sep="\t")
            return [
                {"text": str(t), "image": str(i), "label": int(lab)}
                for t, i, lab in zip(table["String"], table["ImageID"], table["Label"])
            ]
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
        """IGM joins the image folder with the basename of the ``image`` field (``sarcasm_dataset.py`` 58);
        a relative path and a name without ``.jpg`` are also tried."""
        base = image.split("/")[-1]
        for d in cls.image_dirs:
            for name in (base, image, f"{base}.jpg"):
                p = root / d / name
                if p.is_file():
                    return p
        return root / cls.image_dirs[0] / base

    @classmethod
    def raw_samples(cls, root: Path) -> list[Sample]:
        samples = []
        for split in ("train", "val", "test"):
            path = cls.find_file(root, split)
            if path is None:
                continue
            for k, r in enumerate(cls.read_rows(path)):
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
        cls,
        root: str,
        out: str = "",
        progress: bool = True,
        tokenizer: str = "bert-base-uncased",
        store_size: int | str | None = None,
    ) -> dict[str, Any]:
        """Raw release -> packed cache: test images uint8 (bicubic from the original), their original size,
        cleaned text as int32 token ids padded with 0 to the longest text (none is truncated). Resumable."""
        raw = check_root(cls.name, root, cls.download_hint)
        samples = cls.raw_samples(raw)
        size = int(store_size or cls.store_size)
        encode, context = load_tokenizer(tokenizer)
        ids = {s.id: list(encode(clean_text(s.source["text"], cls.text_cleaning))) for s in samples}
        width = context or max((len(v) for v in ids.values()), default=1)

        def decode(s: Sample) -> dict[str, np.ndarray]:
            if not 0 <= s.label < len(cls.classes):
                raise ValueError(f"label {s.label} outside 0..{len(cls.classes) - 1}")
            tokens = np.zeros(width, dtype=np.int32)
            tokens[: len(ids[s.id])] = ids[s.id][:width]
            image, original = load_image(s.source["image"], size, "bicubic")
            return {"image": image, "image_size": np.array(original, dtype=np.int32), "text": tokens}

        fields = {
            "image": FieldSpec((size, size, 3), "uint8"),
            "image_size": FieldSpec((2,), "int32"),
            "text": FieldSpec((width,), "int32"),
        }
        params = {
            "tokenizer": tokenizer,
            "width": width,
            "store_size": size,
            "resize": "bicubic",
            "clean": f"igm-{cls.text_cleaning}-{MAX_WORDS}",
        }
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

    def augmented(
        self,
        img: np.ndarray,
        source_size: Any = None,
        rng: np.random.RandomState | None = None,
        trace: list[Any] | None = None,
    ) -> np.ndarray:
        """IGM's training transform up to ``ToTensor`` on a stored image: uint8 (size, size, 3).

        Crop box and flip draw from torch's global generator in torchvision's order; RandomAugment draws from
        ``rng`` (default: a numpy RandomState seeded from torch's generator, so a seeded run repeats). ``trace``
        receives the crop box (top, left, h, w), the flip and the ops that ran.
        """
        size = self.cfg.image_size
        if source_size is None:
            source_size = (img.shape[1], img.shape[0])
        box = random_resized_crop_box(int(source_size[0]), int(source_size[1]), TRAIN_SCALE)
        x = resized_crop(img, box, source_size, size, "bicubic")
        flip = bool(torch.rand(1).item() < 0.5)
        if flip:
            x = np.ascontiguousarray(x[:, ::-1])
        if rng is None:
            rng = np.random.RandomState(int(torch.randint(2**31 - 1, (1,))))
        augment = AlbefRandomAugment(2, 7, corrected=self.cfg.augment == "igm_corrected")
        ops = augment.sample(rng)
        if trace is not None:
            trace += [box, flip, ops]
        return augment.apply(x, ops)

    def image_tensor(
        self, img: np.ndarray, train: bool, source_size: Any = None, rng: np.random.RandomState | None = None
    ) -> torch.Tensor:
        """A stored image -> normalised float (3, size, size): IGM's train or test transform."""
        if train and self.cfg.augment != "none":
            x = self.augmented(img, source_size, rng)
        else:
            x = img
            size = self.cfg.image_size
            if x.shape[0] != size or x.shape[1] != size:  # a cache stored at another size than asked for
                x = resized_crop(x, (0, 0, x.shape[0], x.shape[1]), None, size, "bicubic")
        return normalize(x, CLIP_MEAN, CLIP_STD)

    def make_item(self, row: int, train: bool) -> dict[str, torch.Tensor]:
        cache = self._cache()
        text = torch.from_numpy(np.asarray(cache.array("text")[row], dtype=np.int64))
        size = cache.array("image_size")[row] if "image_size" in cache.fields else None  # older caches: none
        return {"text": text, "image": self.image_tensor(np.asarray(cache.array("image")[row]), train, size)}
