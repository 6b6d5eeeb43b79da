"""The benchmark command writes its figures (the figures themselves are not asserted: they are timings)."""

import pandas as pd

from benchmark.bench import run_bench


def test_bench_writes_ratios_and_loader_throughput(tmp_path):
    path = run_bench(tmp_path, steps=2, methods=["unimodal"], cache_vs_raw=False)
    df = pd.read_csv(path)
    steps = df[df["kind"] == "step"].set_index("name")
    assert set(steps.index) == {"joint", "unimodal"}
    assert steps.loc["joint", "ratio_to_joint"] == 1.0
    assert steps.loc["unimodal", "mean_step_ms"] > 0
    loader = df[df["kind"] == "loader"]
    assert len(loader) == 1 and loader["samples_per_s"].iloc[0] > 0
