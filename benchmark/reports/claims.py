"""The claims check: every qualitative claim of the IGM paper, tested on a suite's runs (issue #13).

One row per claim and dataset: the claim (side A above, or below, side B), the paper's values, ours (mean ±
std over seeds of each side), the paired difference A − B, a two-sided paired t-test over the seeds both sides
have (:func:`benchmark.reports.marks.paired_p`) and a verdict:

* ``holds``: the difference has the claimed sign and p < ``ALPHA``;
* ``reversed``: the opposite sign and p < ``ALPHA``;
* ``not significant``: p ≥ ``ALPHA`` (or no difference at all);
* ``one seed``: a single shared seed, no test possible; the sign is still shown;
* ``no data``: the CSV lacks the runs (the row says which).

The claims (IGM paper; MIE is its arXiv version):

* Table 1: IGM above every baseline in accuracy and in the dataset's second metric (MAP / macro-F1). Tested
  against the best baseline by mean (the hardest comparison): multimodal rows outside the MIE/IGM family.
* Table 2: IGM > IGM w/o SAM > IGM w/o GM > IGM w/o SAM & GM (multimodal accuracy); each component helps each
  modality: IGM's accuracy of modality m above that of IGM w/o SAM and of IGM w/o GM.
* Table 3: after the second outer iteration (the last stage of cycle 2) IGM above w/o a-GM and w/o v-GM.
* Figure 5a: SAM lowers the average singular value of every head layer (fc1, fc2, fc3): IGM below IGM w/o SAM.
  What MIE records is the spectrum of each head layer's input moment (``artifacts.singular_values``).
* Figure 1: the cosine between the old and the new modality's head gradients is higher for IGM w/o SAM than
  for MLA (more plasticity); the mean over the run of ``artifacts.grad_cosine[*].cosine`` of each.
* The imbalance itself: the weak modality's accuracy inside joint training below the same encoder trained
  alone (the weak modality = the one whose unimodal run is least accurate).

Accuracy claims use the report's selection rule; the artefact claims (Table 3, Figures 1 and 5a) use what the
run recorded (stage ends, the final model). Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from benchmark.reports import data as D
from benchmark.reports.configs import is_sweep
from benchmark.reports.figure_tables import PAPER_LAYER, singular_frame
from benchmark.reports.layout import Seeds, mean_std, seeds_of
from benchmark.reports.marks import paired_p
from benchmark.reports.paper_tables import modalities, stage_frame, weak_modality
from benchmark.reports.typeset import Cell, Table, fmt_number

ALPHA = 0.05
VERDICTS = ("holds", "not significant", "reversed", "one seed", "no data")
PROPOSED = "mie"


@dataclass
class Claim:
    """One claim on one dataset: side ``a`` above (``higher``) or below side ``b``."""

    key: str
    statement: str
    source: str
    a_name: str
    b_name: str
    a: Seeds = field(default_factory=dict)
    b: Seeds = field(default_factory=dict)
    higher: bool = True
    kind: str = "dec"
    paper: str = "–"
    missing: str = ""  # what the CSV lacks, for a "no data" row

    def paired(self) -> list[int]:
        return sorted(s for s in self.a if s in self.b and D.finite(self.a[s]) and D.finite(self.b[s]))

    def judge(self) -> tuple[str, float | None]:
        """(verdict, p-value)."""
        return judge(self.a, self.b, self.higher)


def judge(a: Seeds, b: Seeds, higher: bool, alpha: float = ALPHA) -> tuple[str, float | None]:
    """The verdict on "a above b" (``higher``) or "a below b" from the seeds both have, and the paired p."""
    seeds = sorted(s for s in a if s in b and D.finite(a[s]) and D.finite(b[s]))
    if not seeds:
        return "no data", None
    diff = float(np.mean([a[s] - b[s] for s in seeds]))
    signed = diff if higher else -diff
    if len(seeds) < 2:
        return "one seed", None
    p = paired_p(a, b)
    if p is None or p >= alpha or signed == 0:
        return "not significant", p
    return ("holds" if signed > 0 else "reversed"), p


# -- the paper's side ---------------------------------------------------------------------------------------------
def _paper_dataset(frame: pd.DataFrame, dataset: str) -> tuple[pd.DataFrame, str]:
    """The paper's rows for ``dataset``, else CREMA-D's (the paper's reference dataset) with a prefix."""
    own = frame[frame["dataset"] == dataset]
    if len(own):
        return own, ""
    return frame[frame["dataset"] == "crema_d"], "CREMA-D: "


def _dec(x: float | None, kind: str = "dec") -> str:
    return fmt_number(x, kind)


def _paper_pair(a: float | None, b: float | None, prefix: str, kind: str = "dec", b_name: str = "") -> str:
    if a is None or b is None:
        return "–"
    name = f" ({b_name})" if b_name else ""
    return f"{prefix}{_dec(a, kind)} vs {_dec(b, kind)}{name}"


def _value(frame: pd.DataFrame, **match: str) -> float | None:
    sel = frame
    for k, v in match.items():
        sel = sel[sel[k] == v]
    return float(sel["value"].iloc[0]) if len(sel) else None


# -- claim builders -----------------------------------------------------------------------------------------------
def _by_label(sub: pd.DataFrame, column: str) -> dict[str, Seeds]:
    return seeds_of(sub, lambda r: str(r["label"]), column)


def table1_claims(sub: pd.DataFrame, dataset: str, rule: str, metric_of: str) -> list[Claim]:
    ref, prefix = _paper_dataset(D.paper("table1"), dataset)
    out = []
    for metric in ("acc", metric_of):
        name = D.METRIC_DISPLAY.get(metric, metric)
        seeds = _by_label(sub, f"test_{metric}[{rule}]")
        baselines = {k: v for k, v in seeds.items() if not D.is_unimodal(k) and not D.is_proposed(k) and v}
        claim = Claim(f"table1_{metric}", f"IGM above every baseline ({name})", "Table 1", "IGM", "best baseline")
        if baselines:
            best = max(baselines, key=lambda k: mean_std(baselines[k])[0] or -np.inf)
            claim.b_name, claim.b = D.display(best), baselines[best]
        claim.a = seeds.get(PROPOSED, {})
        claim.missing = "" if claim.a and claim.b else "needs mie and at least one baseline (suite main or mini)"
        pm = ref[(ref["metric"] == metric) & ref["label"].map(lambda x: not D.is_unimodal(x))]
        base = pm[~pm["label"].map(D.is_proposed)]
        if len(base) and (pm["label"] == PROPOSED).any():
            top = base.loc[base["value"].idxmax()]
            claim.paper = _paper_pair(
                _value(pm, label=PROPOSED), float(top["value"]), prefix, b_name=str(top["paper_name"])
            )
        out.append(claim)
    return out


TABLE2_ORDER = (("mie", "mie_no_sam"), ("mie_no_sam", "mie_no_gm"), ("mie_no_gm", "mie_plain"))


def table2_claims(sub: pd.DataFrame, dataset: str, rule: str, mods: list[str]) -> list[Claim]:
    ref, prefix = _paper_dataset(D.paper("table2"), dataset)
    out = []
    seeds = _by_label(sub, f"test_acc[{rule}]")
    for a, b in TABLE2_ORDER:
        c = Claim(f"table2_{a}_{b}", f"{D.display(a)} above {D.display(b)}", "Table 2", D.display(a), D.display(b))
        c.a, c.b = seeds.get(a, {}), seeds.get(b, {})
        c.paper = _paper_pair(_value(ref, label=a, metric="acc"), _value(ref, label=b, metric="acc"), prefix)
        c.missing = "" if c.a and c.b else f"needs {a} and {b} (suite ablation or mini)"
        out.append(c)
    for m in mods:
        per_mod = _by_label(sub, f"test_acc_{m}[{rule}]")
        for b, component in (("mie_no_sam", "SAM"), ("mie_no_gm", "GM")):
            c = Claim(
                f"table2_{component.lower()}_{m}",
                f"{component} helps {D.modality_name(m)} (its accuracy inside IGM above {D.display(b)})",
                "Table 2",
                "IGM",
                D.display(b),
            )
            c.a, c.b = per_mod.get(PROPOSED, {}), per_mod.get(b, {})
            metric = f"acc_{m}"
            c.paper = _paper_pair(
                _value(ref, label=PROPOSED, metric=metric), _value(ref, label=b, metric=metric), prefix
            )
            c.missing = "" if c.a and c.b else f"needs mie and {b} with per-modality accuracy"
            out.append(c)
    return out


def _out2_column(stages: pd.DataFrame) -> str | None:
    """The last stage of the second outer iteration ("Out2 <modality>")."""
    cols = stages.sort_values("position").drop_duplicates("column")["column"].tolist()
    out2 = [c for c in cols if c.startswith("Out2 ")]
    return out2[-1] if out2 else None


def table3_claims(stages: pd.DataFrame, dataset: str) -> list[Claim]:
    ref, prefix = _paper_dataset(D.paper("table3"), dataset)
    col = _out2_column(stages) if not stages.empty else None
    part = stages[stages["column"] == col] if col else stages.iloc[0:0]
    seeds = seeds_of(part, lambda r: str(r["label"]), "test_acc") if len(part) else {}
    paper_out2 = ref[ref["outer"] == 2]["column"]
    pref = str(paper_out2.iloc[-1]) if len(paper_out2) else None  # the paper's last column ("Out2 Video")
    out = []
    for b in ("mie_no_a_gm", "mie_no_v_gm"):
        where = col or "Out2"
        c = Claim(f"table3_{b}", f"IGM above {D.display(b)} after {where}", "Table 3", "IGM", D.display(b))
        c.a, c.b = seeds.get(PROPOSED, {}), seeds.get(b, {})
        if pref:
            c.paper = _paper_pair(
                _value(ref, label=PROPOSED, column=pref), _value(ref, label=b, column=pref), prefix
            ) + ("" if pref == col or not col else f" ({pref})")
        c.missing = (
            "" if c.a and c.b else f"needs mie and {b} runs with two outer iterations (suite interactive or mini)"
        )
        out.append(c)
    return out


def fig5a_claims(sv: pd.DataFrame, dataset: str) -> list[Claim]:
    ref, prefix = _paper_dataset(D.paper("fig5a_singular_values"), dataset)
    if not sv.empty:
        sv = sv.groupby(["label", "seed", "layer"], as_index=False)["value"].mean()  # mean over modalities
    out = []
    for layer in ("fc1", "fc2", "fc3"):
        part = sv[sv["layer"] == layer] if not sv.empty else sv
        seeds = seeds_of(part, lambda r: str(r["label"]), "value") if len(part) else {}
        c = Claim(
            f"fig5a_{layer}",
            f"SAM lowers the singular values of {layer} ({PAPER_LAYER[layer]})",
            "Figure 5a",
            "IGM",
            "IGM w/o SAM",
            seeds.get(PROPOSED, {}),
            seeds.get("mie_no_sam", {}),
            higher=False,
            kind="num1",
        )
        c.paper = _paper_pair(
            _value(ref, label=PROPOSED, layer=layer), _value(ref, label="mie_no_sam", layer=layer), prefix, "num1"
        )
        c.missing = "" if c.a and c.b else "needs mie and mie_no_sam runs with singular-value artefacts"
        out.append(c)
    return out


def grad_cosine(df: pd.DataFrame, hist: D.Histories) -> pd.DataFrame:
    """(dataset, label, seed, value): the run's mean ``artifacts.grad_cosine[*].cosine`` (runs that log it)."""
    recs = []
    for _, r in df.iterrows():
        entries = hist.artifacts(r["run_id"]).get("grad_cosine") or []
        values = [float(e["cosine"]) for e in entries if D.finite(e.get("cosine"))]
        if values:
            recs.append(
                {"dataset": r["dataset"], "label": r["label"], "seed": int(r["seed"]), "value": np.mean(values)}
            )
    return pd.DataFrame(recs, columns=["dataset", "label", "seed", "value"])


def fig1_claim(cos: pd.DataFrame) -> Claim:
    seeds = seeds_of(cos, lambda r: str(r["label"]), "value") if len(cos) else {}
    c = Claim(
        "fig1_cosine",
        "Gradient cosine old vs new modality higher for IGM w/o SAM than for MLA (plasticity)",
        "Figure 1",
        "IGM w/o SAM",
        "MLA",
        seeds.get("mie_no_sam", {}),
        seeds.get("mla", {}),
        kind="diff",
        paper="higher (histogram; no numbers)",
    )
    c.missing = "" if c.a and c.b else "needs mie_no_sam and mla runs with grad_cosine artefacts"
    return c


def imbalance_claim(sub: pd.DataFrame, rule: str) -> Claim:
    weak = weak_modality(sub, rule)
    name = D.modality_name(weak) if weak else "weak modality"
    c = Claim(
        "imbalance",
        f"Joint training under-trains the weak modality ({name}: inside joint below alone)",
        "imbalance",
        f"{name} in joint",
        f"{name} alone",
        higher=False,
        paper="motivation (no number)",
    )
    if weak:
        c.a = _by_label(sub, f"test_acc_{weak}[{rule}]").get("joint", {})
        c.b = _by_label(sub, f"test_acc[{rule}]").get(f"unimodal_{weak}", {})
    c.missing = "" if c.a and c.b else "needs joint and the unimodal runs of every modality"
    return c


def claims_for(df: pd.DataFrame, hist: D.Histories, dataset: str, rule: str) -> list[Claim]:
    """Every claim on one dataset of a result frame (finished runs)."""
    sub = df[df["dataset"] == dataset]
    if is_sweep(sub):  # several configurations per method and seed: keep the default point only
        sub = sub.drop_duplicates(["label", "seed"], keep="first")
    mods = modalities(sub, rule)
    stages = stage_frame(sub, hist)
    sv = singular_frame(sub, hist)
    out = table1_claims(sub, dataset, rule, D.paper_metric(df, dataset))
    out += table2_claims(sub, dataset, rule, mods)
    out += table3_claims(stages, dataset)
    out += fig5a_claims(sv, dataset)
    out.append(fig1_claim(grad_cosine(sub, hist)))
    out.append(imbalance_claim(sub, rule))
    return out


# -- rendering ----------------------------------------------------------------------------------------------------
def _side(name: str, seeds: Seeds, kind: str) -> str:
    m, s = mean_std(seeds)
    if m is None:
        return f"{name} –"
    std_kind = {"diff": "dec"}.get(kind, kind)
    return f"{name} {fmt_number(m, std_kind)}" + (f" ± {fmt_number(s, std_kind)}" if s is not None else "")


def claims_table(claims: list[Claim], dataset: str, rule: str) -> Table:
    columns = [("Source",), ("Paper",), ("Ours",), ("Δ (A − B)",), ("p",), ("Seeds",), ("Verdict",)]
    rows = []
    for c in claims:
        verdict, p = c.judge()
        seeds = c.paired()
        diffs = {s: c.a[s] - c.b[s] for s in seeds}
        dm, ds = mean_std(diffs)
        if verdict == "no data":
            ours, delta = c.missing, "–"
        else:
            ours = f"{_side(c.a_name, c.a, c.kind)} vs {_side(c.b_name, c.b, c.kind)}"
            dk = "diff" if c.kind in ("dec", "diff") else c.kind
            delta = fmt_number(dm, dk) + (
                f" ± {fmt_number(ds, 'dec' if dk == 'diff' else dk)}" if ds is not None else ""
            )
        cells = [
            Cell(text=c.source, kind="text"),
            Cell(text=c.paper, kind="text"),
            Cell(text=ours, kind="text"),
            Cell(text=delta, kind="text"),
            Cell(text="–" if p is None else f"{p:.3f}", kind="text"),
            Cell(text=str(len(seeds)), kind="text"),
            Cell(text=verdict, kind="text"),
        ]
        rows.append((c.statement, cells))
    counts = summary_counts(claims)
    caption = (
        f"Claims check on {D.dataset_name(dataset)}: each claim of the IGM paper, ours (mean ± std over seeds; "
        f"accuracy claims under rule {rule}) and a two-sided paired t-test over seeds (α = {ALPHA}). "
        "Verdict: holds = claimed sign, p < α; reversed = opposite sign, p < α; not significant; one seed = no "
        "test possible; no data = runs missing. The paper's values are its own dataset's, else CREMA-D's. "
        + ", ".join(f"{n} {v}" for v, n in counts.items() if n)
        + "."
    )
    return Table(
        f"claims_{dataset}", f"Claims check ({D.dataset_name(dataset)})", caption, columns, rows, row_header="Claim"
    )


def summary_counts(claims: list[Claim]) -> dict[str, int]:
    counts = dict.fromkeys(VERDICTS, 0)
    for c in claims:
        counts[c.judge()[0]] += 1
    return counts


def build_claims(df: pd.DataFrame, hist: D.Histories, rule: str) -> list[Table]:
    """One claims table per dataset of the finished runs ``df``."""
    if df.empty:
        return []
    return [claims_table(claims_for(df, hist, ds, rule), ds, rule) for ds in D.order_datasets(df["dataset"].tolist())]
