"""Figure 5b of the IGM paper: CLIP text and image towers on Twitter2015, alone (joint), with MLA and with MIE.

The unimodal runs give the per-tower rows. The CLIP weights come from ``model.pretrained`` (see
docs on backbones); the paper does not release its CLIP settings.
"""

from benchmark.registry import register_suite
from benchmark.suites import Suite

register_suite(
    Suite(
        name="clip",
        description="Figure 5b: CLIP towers on Twitter2015 for unimodal, joint, MLA and MIE",
        datasets=("twitter2015",),
        methods=("unimodal", "joint", "mla", "mie"),
        seeds=(0, 1, 2),
        overrides={"model.backbones": {"text": "clip_text", "image": "clip_image"}},
    )
)
