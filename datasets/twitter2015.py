"""Twitter-2015 (TomBERT split; Yu & Jiang 2019): 5,338 tweets with an image, 3 sentiment classes.

Official splits 3,179 / 1,122 (dev) / 1,037; the dev split is our validation split (IGM selects on test).
Raw layout under ``data.root`` (TomBERT's release, or the AMSS ``annotations/`` copy)::

    twitter2015/{train,dev,test}.tsv  (or annotations/...)   index, #1 Label, #2 ImageID, #3 String, #3 String
    twitter2015_images/<ImageID>                              (or images/)

In TomBERT's tsv the sentence holds ``$T$`` where the target entity (the second String column) goes; it is put
back before cleaning. Labels: 0 negative, 1 neutral, 2 positive. Text/image pipeline: datasets/_imagetext.py.
"""

from __future__ import annotations

from benchmark.registry import register_dataset
from datasets._imagetext import ImageTextDataset


@register_dataset
class Twitter2015(ImageTextDataset):
    """Twitter-2015 multimodal sentiment (TomBERT split): tweet text + image, 3 classes."""

    name = "twitter2015"
    classes = ("negative", "neutral", "positive")
    annotation_dirs = ("twitter2015", "annotations", ".")
    image_dirs = ("twitter2015_images", "images")
    download_hint = (
        "Download the TomBERT Twitter-2015 release (https://github.com/jefferyYu/TomBERT: IJCAI2019_data/"
        "twitter2015/{train,dev,test}.tsv and twitter2015_images/) and put both folders in one directory RAW."
    )
    # IGM configs (mie_igm.md 7): Adam beta (0.9, 0.99), wd 1e-4, lr 1e-5, batch 12; macro-F1 as second metric.
    train_defaults = {
        "train.epochs": 30,
        "train.batch_size": 12,
        "train.eval_batch_size": 64,
        "train.optimizer": "adam",
        "train.lr": 1e-5,
        "train.betas": (0.9, 0.99),
        "train.weight_decay": 1e-4,
        "train.scheduler": "none",
    }
