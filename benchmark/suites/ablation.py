"""Table 2 of the IGM paper: SAM and gradient modification (GM) switched on and off, CREMA-D, three seeds."""

from benchmark.registry import register_suite
from benchmark.suites import Suite

register_suite(
    Suite(
        name="ablation",
        description="Table 2: MIE with/without SAM and GM on CREMA-D (mie, mie_no_sam, mie_no_gm, mie_plain)",
        datasets=("crema_d",),
        methods=("mie", "mie_no_sam", "mie_no_gm", "mie_plain"),
        seeds=(0, 1, 2),
    )
)
