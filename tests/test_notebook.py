"""The exploration notebook runs headless (jupytext -> nbclient) on parquet this test writes,
so it cannot rot unnoticed."""

import os
import subprocess
import sys
from pathlib import Path

import jupytext
import nbclient

from gsam_repro.results.gather import frame, run_columns
from gsam_repro.results.schema import HISTORY_COLUMNS

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_sweep.py"


def write_sweep(folder: Path) -> dict[str, float]:
    runs, history, means = [], [], {}
    # two GSAM settings (alpha 0.1 and 0.3) that must not be pooled into one row
    for label, name, alpha, base in (("sgd", "sgd", None, 80.0), ("sam", "sam", None, 82.0),
                                     ("gsam α=0.1", "gsam", 0.1, 83.0),
                                     ("gsam α=0.3", "gsam", 0.3, 86.0)):
        accs = [base + seed for seed in range(3)]
        means[label] = sum(accs) / 3
        for seed, acc in enumerate(accs):
            run_id = f"{name}{alpha}{seed}"
            runs.append({"run_id": run_id, "status": "done", "seed": seed,
                         "optimizer.name": name, "optimizer.alpha": alpha, "test_acc": acc,
                         "hessian_max_eig": 90 - acc})
            history += [{"run_id": run_id, "epoch": e, "test_acc": acc * e / 2} for e in (1, 2)]
    folder.mkdir(parents=True)
    frame(runs, run_columns()).to_parquet(folder / "runs.parquet", index=False)
    frame(history, HISTORY_COLUMNS).to_parquet(folder / "history.parquet", index=False)
    return means


def test_notebook_executes_and_shows_table_and_figures(tmp_path, monkeypatch):
    means = write_sweep(tmp_path / "sweep")
    monkeypatch.setenv("GSAM_SWEEP_DIR", str(tmp_path / "sweep"))
    notebook = jupytext.read(NOTEBOOK)
    client = nbclient.NotebookClient(notebook, timeout=180, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code"
               for o in cell.get("outputs", [])]
    tables = [o["data"]["text/plain"] for o in outputs if "text/plain" in o.get("data", {})
              and "seeds" in o["data"]["text/plain"]]
    assert tables, "the summary table was not displayed"
    rows = summary_rows(tables[0])
    assert rows == {label: [round(mean, 2), 1.0, 3.0] for label, mean in means.items()}
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2


def summary_rows(text: str) -> dict[str, list[float]]:
    """label -> [mean, std, seeds] from the printed summary table (labels may hold spaces)."""
    rows = {}
    for line in text.splitlines():
        parts = line.split()
        try:
            numbers = [float(v) for v in parts[-3:]]
        except ValueError:
            continue
        if len(parts) > 3:
            rows[" ".join(parts[:-3])] = numbers
    return rows


def test_notebook_as_a_script_from_another_folder_finds_the_repository_sweep(tmp_path):
    # A checkout-like folder: results/quick beside notebooks/, started from notebooks/ with no
    # GSAM_SWEEP_DIR: the default must not depend on the working directory.
    means = write_sweep(tmp_path / "repo" / "results" / "quick")
    (tmp_path / "repo" / "notebooks").mkdir()
    env = {k: v for k, v in os.environ.items() if k != "GSAM_SWEEP_DIR"}
    out = subprocess.run([sys.executable, str(NOTEBOOK)], cwd=tmp_path / "repo" / "notebooks",
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert summary_rows(out.stdout) == {label: [round(mean, 2), 1.0, 3.0]
                                        for label, mean in means.items()}
    figures = sorted((tmp_path / "repo" / "results" / "quick" / "notebook").glob("*.png"))
    assert len(figures) == 2 and all(f"figure: {f}" in out.stdout for f in figures)
