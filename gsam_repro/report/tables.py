"""The report's tables, built from a `Sweep` (runs.parquet / history.parquet) into `Table`s.

Every builder returns a Table, possibly empty with notes saying why; none raises on missing
columns or empty input. Statistics are over seeds: mean, sample standard deviation (ddof = 1,
absent for one seed) and n. Bold marks the best mean, chosen on the numbers, never on text.
Significance: Welch's t-test (unequal variances) over seeds (gsam_repro.report.stats), only with
n >= 3 on both sides; † marks p < 0.05. The comparison table tests each method against the
best baseline of its family, or the pairs the user names.

The builders live in modules with one job each; this module keeps every name importable from
where callers have always imported it: table_kit (shared building blocks), comparison (the
comparison table and its tests), paper_tables (Table 1, CIFAR-10), hparam_tables (ablations,
GSAM vs weighted, selection), cost_tables (cost to target, outcomes).
"""

from gsam_repro.report.comparison import (
    BASELINES,
    check_pairs,
    comparison,
    comparison_columns,
    parse_pair,
)
from gsam_repro.report.cost_tables import OUTCOMES, cost, default_target, outcomes
from gsam_repro.report.hparam_tables import ablation, gsam_vs_weighted, selection
from gsam_repro.report.load import variant_sort_key
from gsam_repro.report.paper_tables import IMAGENET_DATA, cifar10_paper, imagenet_runs, table1
from gsam_repro.report.stats import welch_p
from gsam_repro.report.table_kit import (
    METRIC_LABELS,
    SIG_MARK,
    bold_best,
    budget_labels,
    choose_setting,
    column_labels,
    groups,
    setting_text,
    stat_cell,
    tied_settings,
    varying_settings,
)

__all__ = [
    "BASELINES", "IMAGENET_DATA", "METRIC_LABELS", "OUTCOMES", "SIG_MARK", "ablation",
    "bold_best", "budget_labels", "check_pairs", "choose_setting", "cifar10_paper",
    "column_labels", "comparison", "comparison_columns", "cost", "default_target", "groups",
    "gsam_vs_weighted", "imagenet_runs", "outcomes", "parse_pair", "selection", "setting_text",
    "stat_cell", "table1", "tied_settings", "variant_sort_key", "varying_settings", "welch_p",
]
