"""Figure 3 of the IGM paper: sensitivity to tau and rho on CREMA-D, one at a time around the defaults.

Each grid varies one hyper-parameter and keeps the other at MIE's default; the default point is in both
grids but runs once (identical configurations share a run id).
"""

from benchmark.registry import register_suite
from benchmark.suites import Suite

TAUS = (1e-3, 0.4, 1.3, 20.0, 100.0)
RHOS = (1e-15, 1e-10, 1e-8, 1e-6, 1e-4)

register_suite(
    Suite(
        name="sensitivity",
        description="Figure 3: MIE with method.tau in 1e-3..100 and method.rho in 1e-15..1e-4 on CREMA-D",
        datasets=("crema_d",),
        methods=("mie",),
        seeds=(0,),
        grid=tuple({"method.tau": t} for t in TAUS) + tuple({"method.rho": r} for r in RHOS),
    )
)
