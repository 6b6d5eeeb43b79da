"""Multimodal sarcasm detection (Cai et al. 2019): 24,635 tweets with an image, 2 classes.

Raw layouts under ``data.root``, either IGM's (``sarcasm_dataset.py``, configs/sarcasm.json)::

    annotations/{train,test}_data.json    [{"image": ".../<name>.jpg", "text": ..., "label": 0|1}, ...]
    images/<basename of image>

or the suite's earlier one: ``annotations/{train,valid,test}.json`` (or .jsonl, or the AMSS tsv with columns
Label, String, ImageID) and ``images/`` or ``dataset_image/`` (the original release's folder).

Splits: 19,816 / 2,410 (valid) / 2,409 in the original release; a valid file is our validation split, and
without one (IGM's layout) validation is 10 % of train, stratified, seed 0. Text: ``pre_caption`` only (IGM:
digits, ``@``, ``<user>`` and ``_`` stay; apostrophes go, ``can't`` -> ``cant``), at most 50 words.
"""

from __future__ import annotations

from benchmark.recipes import recipe
from benchmark.registry import register_dataset

from ._imagetext import ImageTextDataset


@register_dataset
class Sarcasm(ImageTextDataset):
    """Multimodal sarcasm detection (Cai et al. 2019): tweet text + image, 2 classes."""

    name = "sarcasm"
    classes = ("not_sarcastic", "sarcastic")
    text_cleaning = "caption"
    annotation_dirs = ("annotations", "text", ".")
    image_dirs = ("images", "dataset_image")
    download_hint = (
        "Download the sarcasm release of Cai et al. 2019 (https://github.com/headacheboy/data-of-multimodal-"
        "sarcasm-detection: dataset_image/ and the text splits) and write annotations/{train,test}_data.json "
        "with fields image, text, label (IGM's layout) and the images in images/ in one directory RAW."
    )
    # IGM configs (mie_igm.md 7): Adam beta (0.9, 0.99), wd 1e-4, lr 1e-5, batch 12.
    train_defaults = {
        **recipe("igm_image_text_adam"),
        "train.epochs": 30,
        "train.eval_batch_size": 64,
        "train.select_metric": "macro_f1",
    }
