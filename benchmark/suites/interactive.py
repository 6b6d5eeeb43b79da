"""Table 3 of the IGM paper: which modality's gradient is modified (w/o a-GM, w/o v-GM), CREMA-D, three seeds.

The per-stage accuracies of the table come from each run's ``artifacts["stages"]`` (history.json).
"""

from benchmark.registry import register_suite
from benchmark.suites import Suite

register_suite(
    Suite(
        name="interactive",
        description="Table 3: interactive enhancement on CREMA-D (mie, mie_no_a_gm, mie_no_v_gm)",
        datasets=("crema_d",),
        methods=("mie", "mie_no_a_gm", "mie_no_v_gm"),
        seeds=(0, 1, 2),
    )
)
