"""Table 4 of the IGM paper: share of parameters (deep to shallow) under gradient modification, CREMA-D.

1.3% is the classification head (the default); 0% is MIE without GM.
"""

from benchmark.registry import register_suite
from benchmark.suites import Suite

GM_SCOPES = (1.0, 0.5, 0.3, 0.013, 0.0)

register_suite(
    Suite(
        name="scope",
        description="Table 4: MIE with method.gm_scope in 100/50/30/1.3/0 % on CREMA-D",
        datasets=("crema_d",),
        methods=("mie",),
        seeds=(0, 1, 2),
        grid=tuple({"method.gm_scope": s} for s in GM_SCOPES),
    )
)
