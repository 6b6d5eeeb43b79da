"""The quick suite: every registered method on the embedded av_digits dataset, one seed, a few epochs."""

from benchmark.registry import register_suite
from benchmark.suites import Suite

register_suite(
    Suite(
        name="quick",
        description="every registered method on av_digits, 1 seed, few epochs (make quick; < 10 min on 2 CPUs)",
        datasets=("av_digits",),
        methods=None,
        seeds=(0,),
        overrides={"train.epochs": 6},
    )
)
