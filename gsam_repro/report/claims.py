"""The paper's claims as a table: each claim the sweep can test, one row, with the difference of
means over seeds, its 95 % Welch–Satterthwaite interval, Welch's p, n per side and a verdict.

Verdicts read the interval, never the point estimate: "supported" when it lies wholly on the
claimed side of zero, "contradicted" when wholly on the other side, "not resolved at this n" when
it straddles zero. With fewer than three seeds on a side there is no verdict at all.

Sides are matched like for like: GSAM against SAM on the same base optimizer and adaptive mode;
SAM against the plain optimizer it wraps (SGD, or AdamW for `sam-adamw`), at the SAM-family
epochs or, for the compute-matched claim, at twice them. A side with several settings (an α
grid) gives one row per setting, named in the A and B columns: settings are never pooled.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from gsam_repro.report.load import Sweep, _clean
from gsam_repro.report.probes import PROBE_PREFIX, probe_columns
from gsam_repro.report.render import Cell, Table
from gsam_repro.report.stats import CONFIDENCE, MIN_SEEDS_FOR_TEST, welch
from gsam_repro.report.tables import budget_labels, column_labels, groups, variant_sort_key

VANILLA = "vanilla"  # the plain optimizer a SAM-family run wraps (its base)
COMPUTE_MATCHED = "2× epochs"
SUPPORTED, CONTRADICTED, UNRESOLVED = "supported", "contradicted", "not resolved at this n"


@dataclass(frozen=True)
class Claim:
    """One claim: mean(`a`) higher (or lower) than mean(`b`) on `metric`."""

    text: str
    a: str  # optimizer.name of the claim's subject
    b: str  # optimizer.name of the reference, or VANILLA
    metric: str
    higher: bool = True
    budget_b: str = ""  # the reference's budget tail ("" or COMPUTE_MATCHED)


def paper_claims(df: pd.DataFrame, metric: str) -> list[Claim]:
    """The paper's claims a sweep of SGD / SAM / GSAM runs can test."""
    claims = [
        Claim("GSAM accuracy ≥ SAM's", "gsam", "sam", metric),
        Claim("SAM accuracy ≥ SGD's", "sam", VANILLA, metric),
    ]
    claims += [Claim(f"GSAM h(ρ={radius:g}) < SAM's", "gsam", "sam", column, higher=False)
               for radius, column in probe_columns(df)]
    claims += [
        Claim("GSAM λ_max < SAM's", "gsam", "sam", "hessian_max_eig", higher=False),
        Claim("SAM accuracy ≥ compute-matched SGD's", "sam", VANILLA, metric,
              budget_b=COMPUTE_MATCHED),
    ]
    return claims


def verdict(result, higher: bool) -> str:
    """Supported / contradicted / not resolved, from the interval; no verdict without a test."""
    if result.n_a < MIN_SEEDS_FOR_TEST or result.n_b < MIN_SEEDS_FOR_TEST:
        return f"no verdict: n < {MIN_SEEDS_FOR_TEST}"
    if not result.tested:
        return "no verdict: no spread"
    low, high = (result.low, result.high) if higher else (-result.high, -result.low)
    if low > 0:
        return SUPPORTED
    if high < 0:
        return CONTRADICTED
    return UNRESOLVED


def _config(df: pd.DataFrame, key: str) -> pd.Series:
    """A config column as Python values with None for missing (all None when absent)."""
    if key not in df.columns:
        return pd.Series(None, index=df.index, dtype="object")
    return df[key].astype(object).map(_clean)


def _sides(df: pd.DataFrame, rows: list[str]) -> pd.DataFrame:
    """Per run: name, the base it wraps (plain optimizers: themselves), adaptive mode, budget
    tail and comparison-table column."""
    names = df["optimizer.name"].astype("string").fillna("").str.lower()
    family = df["sam_family"].astype(bool)
    base = _config(df, "optimizer.base").map(
        lambda v: "sgd" if v in (None, "none", "") else str(v).lower())
    adaptive = _config(df, "optimizer.adaptive").map(
        lambda v: "" if v in (None, False, "false", "none") else str(v))
    tail = budget_labels(df, rows).map(lambda label: label.partition(" ")[2])
    return df.assign(_name=names, _base=base.where(family, names), _adaptive=adaptive,
                     _tail=tail, _column=column_labels(df, rows))


def _pairs(sub: pd.DataFrame, claim: Claim) -> list[tuple[str, str, pd.DataFrame, pd.DataFrame]]:
    """(column a, column b, runs a, runs b) for every like-for-like pair of columns."""
    a_runs = sub[(sub["_name"] == claim.a) & (sub["_tail"] == "")]
    out = []
    for (base, adaptive), side_a in a_runs.groupby(["_base", "_adaptive"], sort=True):
        if claim.b == VANILLA:
            side_b = sub[(sub["_name"] == base) & ~sub["sam_family"].astype(bool)]
        else:
            side_b = sub[(sub["_name"] == claim.b) & (sub["_base"] == base)
                         & (sub["_adaptive"] == adaptive)]
        side_b = side_b[side_b["_tail"] == claim.budget_b]
        for column_a in sorted(side_a["_column"].unique(), key=variant_sort_key):
            for column_b in sorted(side_b["_column"].unique(), key=variant_sort_key):
                out.append((column_a, column_b, side_a[side_a["_column"] == column_a],
                            side_b[side_b["_column"] == column_b]))
    return out


def claims_table(sweep: Sweep, rows: list[str], metric: str = "test_acc") -> Table:
    """The claims table (see the module docstring); notes name each claim left out and why."""
    table = Table("claims", "the paper's claims: difference of means over seeds, "
                  f"{CONFIDENCE:.0%} interval, Welch's t-test", [*rows, "claim", "A", "B"], [])
    df = sweep.done
    needed = [*rows, "optimizer.name"]
    missing = [c for c in needed if c not in df.columns]
    if missing or df.empty:
        table.notes.append("claims table left out: " + (
            f"runs.parquet has no {', '.join(missing)} column" if missing else "no finished runs"))
        return table
    df = _sides(df, rows)
    claims = paper_claims(df, metric)
    if not probe_columns(df):
        table.notes.append("claim 'GSAM h < SAM's at equal ρ' left out: runs.parquet has no "
                           f"{PROBE_PREFIX}* columns (older schema)")
    for claim in claims:
        if claim.metric not in df.columns or not df[claim.metric].notna().any():
            table.notes.append(f"claim '{claim.text}' left out: no values in {claim.metric}"
                               + ("" if claim.metric in df.columns else " (older schema)"))
            continue
        rendered = False
        for row_label, sub in groups(df, rows):
            for column_a, column_b, runs_a, runs_b in _pairs(sub, claim):
                _add_row(table, (*row_label, claim.text, column_a, column_b), claim,
                         runs_a[claim.metric], runs_b[claim.metric])
                rendered = True
        if not rendered:
            other = "the plain optimizer it wraps" if claim.b == VANILLA else claim.b
            extra = f" at {claim.budget_b}" if claim.budget_b else ""
            table.notes.append(f"claim '{claim.text}' left out: the sweep lacks {claim.a} "
                               f"runs or {other} runs{extra}")
    if not table.empty:
        table.notes.append(
            f"Δ = mean(A) − mean(B); {CONFIDENCE:.0%} interval: Welch–Satterthwaite t; "
            f"verdict: '{SUPPORTED}' when the interval lies wholly on the claimed side of 0, "
            f"'{CONTRADICTED}' when wholly on the other, else '{UNRESOLVED}'; no verdict "
            f"below {MIN_SEEDS_FOR_TEST} seeds a side; no correction for multiple claims")
    return table


def _add_row(table: Table, label: tuple, claim: Claim, a: pd.Series, b: pd.Series) -> None:
    result = welch(a.to_numpy(dtype=float, na_value=float("nan")),
                   b.to_numpy(dtype=float, na_value=float("nan")))
    kind = "delta" if claim.metric.endswith("acc") else "sci"
    table.set(label, "Δ (A − B)", Cell(value=result.diff, kind=kind))
    table.set(label, "CI low", Cell(value=result.low, kind=kind) if result.low is not None
              else Cell(text="n/a"))
    table.set(label, "CI high", Cell(value=result.high, kind=kind) if result.high is not None
              else Cell(text="n/a"))
    table.set(label, "p", Cell(value=result.p, kind="p") if result.p is not None
              else Cell(text="n/a"))
    table.set(label, "n A", Cell(value=result.n_a, kind="int"))
    table.set(label, "n B", Cell(value=result.n_b, kind="int"))
    table.set(label, "verdict", Cell(text=verdict(result, claim.higher)))
