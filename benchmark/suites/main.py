"""Table 1 of the IGM paper: every method and both unimodal rows on the five datasets, three seeds.

OGM(-GE), PMR and DOMFN are defined for two modalities; the paper leaves them out on NVGesture (three), so
does this suite. Each method runs with its own defaults for the dataset (``dataset_defaults``).
"""

from benchmark.registry import register_suite
from benchmark.suites import Suite

TABLE1_METHODS = (
    "unimodal",  # one run per modality: Unimodal-1/2(/3)
    "joint",  # the concatenation baseline
    "ogm_ge",  # OGM with generalisation enhancement (the paper's OGM row is compared with `ogm`)
    "ogm",
    "domfn",
    "mses",
    "pmr",
    "agm",
    "mslr",
    "reconboost",
    "smv",
    "mmpareto",
    "mla",
    "msam",
    "gblending",  # OGR-GB in the table
    "mie_no_sam",
    "mie",
)

register_suite(
    Suite(
        name="main",
        description="Table 1: every method + unimodal rows on CREMA-D, KS, Twitter2015, Sarcasm, NVGesture, 3 seeds",
        datasets=("crema_d", "kinetics_sounds", "twitter2015", "sarcasm", "nvgesture"),
        methods=TABLE1_METHODS,
        seeds=(0, 1, 2),
        exclude=(("ogm", "nvgesture"), ("ogm_ge", "nvgesture"), ("pmr", "nvgesture"), ("domfn", "nvgesture")),
    )
)
