"""The suite's own ``datasets`` package and the libraries we use (timm, open_clip, transformers) live side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import json, timm, open_clip, transformers
from transformers import BertConfig, BertModel, BertTokenizerFast
import datasets
from benchmark.registry import BACKBONES, DATASETS
from transformers.utils import is_datasets_available
model = BACKBONES.get("bert_tiny")(None)
print(json.dumps({
    "file": datasets.__file__,
    "registered": DATASETS.names(),
    "backbones": BACKBONES.names(),
    "hf_datasets_flag": is_datasets_available(),
    "bert_dim": model.out_dim,
}))
"""


def test_our_datasets_package_and_hf_libraries_import_together():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    assert Path(info["file"]).resolve() == ROOT / "datasets" / "__init__.py"
    assert {"crema_d", "kinetics_sounds", "twitter2015", "sarcasm"} <= set(info["registered"])
    assert {"bert", "bert_tiny", "resnet50", "resnet50_scratch"} <= set(info["backbones"])
    assert info["bert_dim"] == 32
    # transformers only asks importlib whether *a* module named "datasets" exists, so with our package on the
    # path it answers True although Hugging Face datasets is absent. None of the transformers code we use
    # (tokenizers, BertModel) consults the flag; this assert documents the clash so a change is noticed.
    try:
        import importlib.metadata as md

        md.version("datasets")
        hf_installed = True
    except md.PackageNotFoundError:
        hf_installed = False
    assert info["hf_datasets_flag"] is True or hf_installed
