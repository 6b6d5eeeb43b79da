"""The quick suite: every registered method on the embedded av_digits dataset, one seed, a few epochs.

A smoke test (does every method install, train, evaluate and report?), not a ranking: 6 epochs are far
from convergence (MIE gets 3 epochs per modality), so the order of the methods says nothing about them.
The converged miniature of the paper is the ``mini`` suite.
"""

from benchmark.registry import register_suite
from benchmark.suites import Suite

register_suite(
    Suite(
        name="quick",
        description="smoke test: every registered method on av_digits, 1 seed, 6 epochs (make quick; < 10 min)",
        datasets=("av_digits",),
        methods=None,
        seeds=(0,),
        overrides={"train.epochs": 6},
        report_note=(
            "Smoke test: 6 epochs, one seed. No method has converged (MIE trains each modality for 3 epochs), "
            "so these numbers do not rank the methods. The converged miniature of the paper is the mini suite: "
            "python run_all.py --suite mini --cluster local --workers 2."
        ),
    )
)
