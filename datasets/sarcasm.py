"""Multimodal sarcasm detection (Cai et al. 2019): 24,635 tweets with an image, 2 classes.

Official splits 19,816 / 2,410 (valid) / 2,409; valid is our validation split (IGM selects on test).
Raw layout under ``data.root`` -- IGM's JSON annotations or the AMSS tsv copy::

    annotations/{train,valid,test}.json   [{"image": ..., "text": ..., "label": 0|1}, ...]  (or .jsonl / .tsv
                                          with columns Label, String, ImageID)
    images/<image>                        (or dataset_image/, the original release's folder)

Text/image pipeline: datasets/_imagetext.py (IGM's, same as Twitter-2015).
"""

from __future__ import annotations

from benchmark.registry import register_dataset
from datasets._imagetext import ImageTextDataset


@register_dataset
class Sarcasm(ImageTextDataset):
    """Multimodal sarcasm detection (Cai et al. 2019): tweet text + image, 2 classes."""

    name = "sarcasm"
    classes = ("not_sarcastic", "sarcastic")
    annotation_dirs = ("annotations", "text", ".")
    image_dirs = ("images", "dataset_image")
    download_hint = (
        "Download the sarcasm release of Cai et al. 2019 (https://github.com/headacheboy/data-of-multimodal-"
        "sarcasm-detection: dataset_image/ and the text splits) and write annotations/{train,valid,test}.json "
        "with fields image, text, label (IGM's layout) next to it in one directory RAW."
    )
    # IGM configs (mie_igm.md 7): Adam beta (0.9, 0.99), wd 1e-4, lr 1e-5, batch 12.
    train_defaults = {
        "train.epochs": 30,
        "train.batch_size": 12,
        "train.eval_batch_size": 64,
        "train.optimizer": "adam",
        "train.lr": 1e-5,
        "train.betas": (0.9, 0.99),
        "train.weight_decay": 1e-4,
        "train.scheduler": "none",
        "train.select_metric": "macro_f1",
    }
