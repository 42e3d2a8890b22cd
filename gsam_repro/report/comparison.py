"""The comparison table (any config keys as rows, one column per optimizer variant) and its
significance tests: Welch's t-test over seeds (gsam_repro.report.stats), only with n >= 3 on both
sides; † marks p < 0.05. Each method is tested against the best baseline of its family, or
against the pairs the user names with --compare.
"""

from __future__ import annotations

import difflib

import pandas as pd

from gsam_repro.errors import UsageError
from gsam_repro.report.load import Sweep, variant_sort_key
from gsam_repro.report.render import Cell, Table
from gsam_repro.report.stats import MIN_SEEDS_FOR_TEST, SIGNIFICANCE, welch_p
from gsam_repro.report.table_kit import (
    METRIC_LABELS,
    SIG_MARK,
    _base_variant,
    _require,
    _seed_note,
    bold_best,
    column_labels,
    groups,
    stat_cell,
)

BASELINES = {"plain": ("sgd", "adamw"), "sharpness_aware": ("sam",)}


# --------------------------------------------------------------------- comparison table
def comparison(sweep: Sweep, rows: list[str], metric: str = "test_acc",
               compare: list[tuple[str, str]] | None = None) -> Table:
    """Rows from any config keys, one column an optimizer variant, mean ± std (n) of `metric`;
    the best mean of each row bold; Welch p-values and † marks for the `compare` pairs
    (default: each method against the best baseline of its family)."""
    label = METRIC_LABELS.get(metric, metric)
    table = Table("comparison", f"{label}: mean ± std (seeds)", list(rows), [])
    df = sweep.done
    if not _require(sweep, table, df, [*rows, "optimizer.name", metric], "comparison table"):
        return table
    df = df.assign(column=column_labels(df, rows))
    ordered = sorted(df["column"].unique(), key=variant_sort_key)
    table.columns = list(ordered)
    for row_label, sub in groups(df, rows):
        table.add_row(row_label)
        for column in ordered:
            values = sub.loc[sub["column"] == column, metric]
            if len(values):
                table.set(row_label, column, stat_cell(values))
        bold_best(table, [table.get(row_label, c) for c in ordered])
    _significance(table, df, rows, metric, compare)
    if any("× epochs" in c for c in ordered):
        matched = [c for c in ordered if c.endswith("2× epochs") and
                   not df.loc[df["column"] == c, "sam_family"].astype(bool).any()]
        for column in matched:
            table.notes.append(f"{column}: compute-matched (twice the SAM-family epochs, the "
                               "same forward+backward passes as one SAM-family run)")
    _seed_note(table)
    return table


def comparison_columns(sweep: Sweep, rows: list[str]) -> list[str]:
    """The optimizer columns of the comparison table, in display order (for --compare)."""
    df = sweep.done
    if df.empty or "optimizer.name" not in df.columns or any(r not in df.columns for r in rows):
        return []
    return sorted(column_labels(df, rows).unique(), key=variant_sort_key)


def parse_pair(text: str) -> tuple[str, str]:
    """"A:B" -> ("A", "B"); a UsageError naming the text when it is not two names."""
    parts = [part.strip() for part in str(text).split(":")]
    if len(parts) != 2 or not all(parts):
        raise UsageError(f"--compare {text!r}: expected two optimizer columns as A:B, "
                         "e.g. 'gsam:sam'")
    return parts[0], parts[1]


def check_pairs(pairs: list[tuple[str, str]], columns: list[str]) -> None:
    """Refuse a pair naming a column the comparison table does not have."""
    for pair in pairs:
        for name in pair:
            if name not in columns:
                hint = difflib.get_close_matches(name, columns, n=1)
                extra = f"; did you mean {hint[0]!r}?" if hint else ""
                raise UsageError(f"--compare {':'.join(pair)}: {name!r} is not a column of the "
                                 f"comparison table (columns: {', '.join(columns)}){extra}")


def _family_base(column: str) -> str:
    return _base_variant(column).split("-")[0].split("(")[0]


def _default_pairs(sub: pd.DataFrame, metric: str) -> list[tuple[str, str]]:
    """Every method against the best-mean baseline of its family, within one row group."""
    pairs = []
    family_of = sub.groupby("column")["sam_family"].agg(lambda s: bool(s.astype(bool).any()))
    means = sub.groupby("column")[metric].mean()
    for family, names in BASELINES.items():
        present = [c for c in family_of.index if family_of[c] == (family == "sharpness_aware")]
        baselines = [c for c in present if _family_base(c) in names and pd.notna(means[c])]
        if not baselines:
            continue
        best = max(baselines, key=lambda c: means[c])
        pairs += [(c, best) for c in sorted(present, key=variant_sort_key)
                  if _family_base(c) not in names]
    return pairs


def _significance(table: Table, df: pd.DataFrame, rows: list[str], metric: str,
                  compare: list[tuple[str, str]] | None) -> None:
    tested = untested = 0
    for row_label, sub in groups(df, rows):
        pairs = compare if compare else _default_pairs(sub, metric)
        for first, second in pairs:
            a = sub.loc[sub["column"] == first, metric].to_numpy(dtype=float)
            b = sub.loc[sub["column"] == second, metric].to_numpy(dtype=float)
            if not (len(a) and len(b)):
                continue
            p_column = f"p ({first} vs {second})"
            p = welch_p(a, b)
            if p is None:
                untested += 1
                table.set(row_label, p_column, Cell(text="n/a", kind="p"))
                continue
            tested += 1
            table.set(row_label, p_column, Cell(value=p, kind="p"))
            if p < SIGNIFICANCE:
                cell = table.get(row_label, first)
                if cell is not None:
                    cell.mark = SIG_MARK
    if tested:
        marked = any(c.mark == SIG_MARK for c in table.cells.values())
        table.notes.append(
            (f"{SIG_MARK}: differs from the column in its p column at p < {SIGNIFICANCE}"
             if marked else f"no compared pair differs at p < {SIGNIFICANCE}")
            + f" (Welch's t-test over seeds, n ≥ {MIN_SEEDS_FOR_TEST} each)")
    if tested or untested:
        table.notes.append(
            "compared: the pairs given with --compare" if compare else
            "compared by default: each method against the best-mean baseline of its family "
            "(plain: " + "/".join(BASELINES["plain"]) + "; sharpness-aware: "
            + "/".join(BASELINES["sharpness_aware"]) + ")")
    if untested:
        table.notes.append(f"p = n/a: fewer than {MIN_SEEDS_FOR_TEST} seeds on a side (or no "
                           "spread on either), so no t-test")
