"""Twitter-2015 (TomBERT split; Yu & Jiang 2019): 5,338 tweets with an image, 3 sentiment classes.

Raw layouts under ``data.root``, either IGM's (``twitter_dataset.py``, configs/twitter.json)::

    annotations/{train,test}.tsv      pandas tsv with columns Label, ImageID, String (no dev file)
    twitter2015_images/<ImageID>

or TomBERT's original release (or the AMSS ``annotations/`` copy of it)::

    twitter2015/{train,dev,test}.tsv  index, #1 Label, #2 ImageID, #3 String, #3 String
    twitter2015_images/<ImageID>       (or images/)

Splits: 3,179 / 1,122 (dev) / 1,037 in TomBERT's release; its dev split is our validation split. IGM's layout
has no dev file (IGM selects on test): validation is then 10 % of train, stratified, seed 0, as for the
audio-visual sets. In TomBERT's tsv the sentence holds ``$T$`` where the target entity (the second String
column) goes; it is put back before cleaning. IGM's converted tsv is read as it is (a ``$T$`` left in it
becomes the word ``t``). Labels: 0 negative, 1 neutral, 2 positive. Text: alphabetic words, then
``pre_caption`` (datasets/_imagetext.py).
"""

from __future__ import annotations

from benchmark.recipes import recipe
from benchmark.registry import register_dataset

from ._imagetext import ImageTextDataset


@register_dataset
class Twitter2015(ImageTextDataset):
    """Twitter-2015 multimodal sentiment (TomBERT split): tweet text + image, 3 classes."""

    name = "twitter2015"
    classes = ("negative", "neutral", "positive")
    text_cleaning = "twitter"
    annotation_dirs = ("twitter2015", "annotations", ".")
    image_dirs = ("twitter2015_images", "images")
    download_hint = (
        "Download the TomBERT Twitter-2015 release (https://github.com/jefferyYu/TomBERT: IJCAI2019_data/"
        "twitter2015/{train,dev,test}.tsv and twitter2015_images/) and put both folders in one directory RAW "
        "(or IGM's layout: RAW/annotations/{train,test}.tsv with columns Label, ImageID, String)."
    )
    # IGM configs (mie_igm.md 7): Adam beta (0.9, 0.99), wd 1e-4, lr 1e-5, batch 12; macro-F1 as second metric.
    train_defaults = {
        **recipe("igm_image_text_adam"),
        "train.epochs": 30,
        "train.eval_batch_size": 64,
    }
