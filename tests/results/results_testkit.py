"""Run directories written by hand, as the trainer writes them, for the gather tests."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from gsam_repro.train.config import config_from_dict, run_id


def make_run(sweep_dir: Path, lr: float, *, status: str | None = "done", epochs: int = 2,
             failed: str | None = None, seed: int = 0) -> dict:
    """A run directory for a synthetic small_cnn config with this lr and seed; returns what was
    written: run_id, name, config, summary, history."""
    cfg = config_from_dict({"seed": seed, "optimizer": {"name": "sgd", "lr": lr}})
    rid = run_id(cfg)
    name = f"lr={lr},seed={seed}-{rid}"
    run_dir = Path(sweep_dir) / "runs" / name
    run_dir.mkdir(parents=True)
    tree = cfg.to_dict()
    tree["schedule"]["lr_min"] = cfg.lr_min
    (run_dir / "config.yaml").write_text(f"# run_id: {rid}\n" + yaml.safe_dump(tree))
    history = [{"epoch": e, "lr": lr, "train_loss": 2.0 / e, "train_acc": 10.0 * e,
                "test_loss": 2.5 / e, "test_acc": 11.0 * e, "epoch_s": 0.5,
                "fwd_bwd_passes": 4 * e, "wall_s": 0.5 * e, "extra_key": "ignored"}
               for e in range(1, epochs + 1)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    summary = None
    if status is not None:
        last = history[-1] if history else {}
        summary = {"run_id": rid, "status": status, "epochs_completed": epochs,
                   "test_acc": last.get("test_acc"), "test_loss": last.get("test_loss"),
                   "train_loss": last.get("train_loss"), "wall_s": last.get("wall_s"),
                   "fwd_bwd_passes": last.get("fwd_bwd_passes"), "torch_version": "2.x",
                   "device": "cpu", "git_sha": "abc", "hostname": "here", "unknown": 1}
        (run_dir / "summary.json").write_text(json.dumps(summary))
    if failed is not None:
        (run_dir / "failed.json").write_text(json.dumps({"error": failed, "traceback": "..."}))
    return {"run_id": rid, "name": name, "config": cfg, "summary": summary, "history": history,
            "dir": run_dir}
