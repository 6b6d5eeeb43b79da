"""Figure 5c of the IGM paper: training time against accuracy on CREMA-D (``wall_time_s`` in the CSV).

Compare timings only between runs on the same kind of device (the ``device`` column).
"""

from benchmark.registry import register_suite
from benchmark.suites import Suite

register_suite(
    Suite(
        name="time",
        description="Figure 5c: training time vs accuracy on CREMA-D (joint, mla, agm, mie, reconboost, smv, pmr)",
        datasets=("crema_d",),
        methods=("joint", "mla", "agm", "mie", "reconboost", "smv", "pmr"),
        seeds=(0,),
    )
)
