"""Table 1 of the IGM paper: every method and both unimodal rows on the five datasets, three seeds.

OGM(-GE), PMR and DOMFN are defined for two modalities; the paper leaves them out on NVGesture (three), so
does this suite. The methods are those that declare a Table-1 position (``paper_row``); each runs with its own
defaults for the dataset (``dataset_defaults``).
"""

from benchmark.registry import register_suite, table1_methods
from benchmark.suites import Suite

register_suite(
    Suite(
        name="main",
        description="Table 1: every method + unimodal rows on CREMA-D, KS, Twitter2015, Sarcasm, NVGesture, 3 seeds",
        datasets=("crema_d", "kinetics_sounds", "twitter2015", "sarcasm", "nvgesture"),
        methods=table1_methods,  # every method with a Table-1 position (paper_row), in order
        seeds=(0, 1, 2),
        exclude=(("ogm", "nvgesture"), ("ogm_ge", "nvgesture"), ("pmr", "nvgesture"), ("domfn", "nvgesture")),
    )
)
