"""The exploration notebook runs headless (jupytext -> nbclient) on parquet this test writes,
so it cannot rot unnoticed."""

from pathlib import Path

import jupytext
import nbclient

from gsam_repro.results.gather import frame, run_columns
from gsam_repro.results.schema import HISTORY_COLUMNS

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "explore_sweep.py"


def write_sweep(folder: Path) -> dict[str, float]:
    runs, history, means = [], [], {}
    for name, base in (("sgd", 80.0), ("sam", 82.0), ("gsam", 83.0)):
        accs = [base + seed for seed in range(3)]
        means[name] = sum(accs) / 3
        for seed, acc in enumerate(accs):
            run_id = f"{name}{seed}"
            runs.append({"run_id": run_id, "status": "done", "seed": seed,
                         "optimizer.name": name, "test_acc": acc, "hessian_max_eig": 90 - acc})
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
    gsam_line = next(line for line in tables[0].splitlines() if line.startswith("gsam"))
    assert gsam_line.split() == ["gsam", f"{means['gsam']:.1f}", "1.0", "3"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2
