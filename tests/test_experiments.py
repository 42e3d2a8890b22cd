"""Every spec in experiments/ stays runnable: its header says how to run it, every profile
expands to valid runs whose models and optimizers can be built, and its `smoke` profile goes
end to end through the command line (plan, run, gather, report).

Smoke runs go through the in-process `debug` executor to keep the suite fast; the worked
custom-optimizer example goes through the `local` executor, so its optimizer, named by a file
path, is also resolved in a separate job process as it is for users.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch

from gsam_repro.cli import main

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = REPO / "experiments"
SPECS = sorted(EXPERIMENTS.rglob("*.yaml"))
SPEC_IDS = [str(p.relative_to(EXPERIMENTS)) for p in SPECS]
# Specs whose smoke run goes through submitit's LocalExecutor (job processes), not in-process.
LOCAL_EXECUTOR = {"custom_optimizer/compare.yaml"}
# Specs whose report also draws the figures (the slow part of a report).
WITH_FIGURES = {"custom_optimizer/compare.yaml", "efficient_sam.yaml"}
# Tables a spec exists to produce; its smoke report must contain them. (Table 1 and the CIFAR
# WRN-16-8 table need the real data sets and models, which smoke runs replace.)
EXPECTED_TABLES = {
    "cifar10_ablation_alpha.yaml": ["ablation_alpha", "selection"],
    "cifar10_ablation_rho.yaml": ["ablation_rho", "selection"],
    "cifar10_gsam_vs_weighted.yaml": ["gsam_vs_weighted"],
    "tuned_comparison.yaml": ["tune_budget", "tune_curve", "tune_final"],
}
HEADER_LINES = ("# Command", "# Hardware:", "# Expected time", "# Target:")


def header(spec: Path) -> str:
    """The comment block at the top of a spec, before its first YAML line."""
    lines = []
    for line in spec.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def cli(*args: object) -> int:
    return main([str(a) for a in args])


@pytest.fixture(autouse=True)
def in_repo(monkeypatch):
    """Commands run from the repository root (specs name files relative to it); a failing
    in-process run must not stop in the debugger."""
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("pdb.post_mortem", lambda *args, **kwargs: None)


def test_the_paper_tables_and_tracks_have_specs():
    names = set(SPEC_IDS)
    for wanted in ("imagenet_resnet.yaml", "imagenet_vit.yaml", "imagenet_mixer.yaml",
                   "cifar10_wrn16_8.yaml", "cifar10_ablation_alpha.yaml",
                   "cifar10_ablation_rho.yaml", "cifar10_gsam_vs_weighted.yaml",
                   "cifar10_compute_matched.yaml", "cifar10_gpu_fast.yaml",
                   "custom_optimizer/compare.yaml", "quick.yaml"):
        assert wanted in names


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_header_says_command_hardware_time_and_target(spec):
    text = header(spec)
    for start in HEADER_LINES:
        assert re.search(rf"^{re.escape(start)}", text, re.MULTILINE), f"{spec}: no {start!r}"
    # the command names this very file (or the demo that runs it)
    relative = str(spec.relative_to(REPO))
    assert relative in text or (spec.name == "quick.yaml" and "gsam-repro demo" in text)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_docs_list_every_spec(spec):
    docs = (REPO / "docs" / "experiments.md").read_text()
    assert str(spec.relative_to(REPO)) in docs


def _expand(spec: Path, profile: str | None):
    from gsam_repro.sweep.spec import expand, load_spec

    loaded = load_spec(spec, [], profile, None)
    sweep = expand(loaded)
    return loaded, [sweep.config(run) for run in sweep.runs]


def _profiles(spec: Path) -> list[str]:
    import yaml

    return sorted((yaml.safe_load(spec.read_text()) or {}).get("profiles") or {})


def _planned_after_run(spec: Path, profile: str, out: Path):
    """Every run's config once a sweep has run: a tune: spec's trials and, decided after them,
    its confirmation runs."""
    from gsam_repro.sweep.spec import expand, load_spec
    from gsam_repro.sweep.tune import plan

    loaded = load_spec(spec, [], profile, out)
    sweep = plan(loaded)[0] if loaded.tune else expand(loaded)
    return [sweep.config(run) for run in sweep.runs]


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_every_profile_expands_to_buildable_runs(spec):
    """`sweep plan` checks config keys and values; a model name or an optimizer keyword that does
    not fit only shows when a run starts (hours later, on a cluster). Build each here: models on
    the meta device (no memory, no time), optimizers over a tiny model."""
    from gsam_repro.models import create_model
    from gsam_repro.optim import create_optimizer
    from gsam_repro.train.loop import optimizer_kwargs

    assert "smoke" in _profiles(spec)
    built_models, built_optimizers = set(), set()
    for profile in [None, *_profiles(spec)]:
        loaded, configs = _expand(spec, profile)
        assert configs
        executor = loaded.executor
        processes = executor.params.get("nodes", 1) * executor.params.get("tasks_per_node", 1)
        if profile == "smoke":  # seconds on any laptop: one local process a run
            assert executor.cluster == "local" and processes == 1
        for cfg in configs:
            # a data-parallel run splits every batch evenly over its processes
            assert cfg.data.batch_size % processes == 0
            key = (cfg.model.name, repr(sorted(cfg.model.kwargs.items())), cfg.data.name)
            if key not in built_models:
                built_models.add(key)
                with torch.device("meta"):
                    model = create_model(cfg.model.name, num_classes=cfg.model.num_classes or 10,
                                         in_chans=1 if cfg.data.name == "digits" else 3,
                                         **cfg.model.kwargs)
                assert sum(p.numel() for p in model.parameters()) > 0
            kwargs = optimizer_kwargs(cfg)
            key = (cfg.optimizer.name, repr(sorted(kwargs.items())), cfg.lr_min)
            if key not in built_optimizers:
                built_optimizers.add(key)
                tiny = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
                optimizer = create_optimizer(cfg.optimizer.name, tiny.parameters(), **kwargs,
                                             lr_max=cfg.optimizer.lr, lr_min=cfg.lr_min,
                                             model=tiny, total_steps=100)
                sam_family = any(getattr(cfg.optimizer, k) is not None
                                 for k in ("rho", "rho_max"))
                cheap = any(getattr(cfg.optimizer, k) is not None
                            for k in ("every", "looksam", "switch_prob", "start_fraction"))
                if sam_family and cheap:  # the method on some steps only
                    assert 1 < optimizer.passes_per_step < 2
                else:
                    assert optimizer.passes_per_step == (2 if sam_family else 1)


@pytest.mark.parametrize("spec", SPECS, ids=SPEC_IDS)
def test_smoke_profile_end_to_end(spec, tmp_path, capsys):
    spec_id = str(spec.relative_to(EXPERIMENTS))
    out = tmp_path / "sweep"
    _, configs = _expand(spec, "smoke")

    assert cli("sweep", "plan", spec, "--profile", "smoke", "--out", out) == 0
    assert f"{len(configs)} pending" in capsys.readouterr().out

    executor = "local" if spec_id in LOCAL_EXECUTOR else "debug"
    assert cli("sweep", "run", spec, "--profile", "smoke", "--out", out,
               "--executor", executor) == 0
    configs = _planned_after_run(spec, "smoke", out)
    summaries = sorted(out.glob("runs/*/summary.json"))
    assert len(summaries) == len(configs)

    assert cli("gather", out) == 0
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == len(configs)
    assert set(runs["status"]) == {"done"}
    history = pd.read_parquet(out / "history.parquet")
    epochs = {cfg.schedule.epochs for cfg in configs}
    assert len(history) == sum(cfg.schedule.epochs for cfg in configs)
    assert set(history["epoch"]) == set(range(1, max(epochs) + 1))

    figures = [] if spec_id in WITH_FIGURES else ["--no-figures"]
    assert cli("report", out, *figures) == 0
    report = out / "report"
    assert (report / "report.md").is_file()
    for table in ["comparison", "cost", *EXPECTED_TABLES.get(spec_id, [])]:
        assert (report / f"{table}.md").is_file(), f"{spec_id}: no {table} table"
    if spec_id in WITH_FIGURES:
        assert list(report.glob("fig_*.png"))
    if spec.name == "cifar10_compute_matched.yaml":
        assert "2× epochs" in (report / "comparison.md").read_text()
    if spec.name == "efficient_sam.yaml":
        _check_cheap_form_passes(runs)
        assert (report / "fig_accuracy_vs_passes.png").is_file()
        assert "passes / step" in (report / "cost.md").read_text()

    # running it again finds everything finished and starts nothing
    assert cli("sweep", "run", spec, "--profile", "smoke", "--out", out,
               "--executor", executor) == 0
    assert "nothing to run" in capsys.readouterr().out


def _check_cheap_form_passes(runs: pd.DataFrame) -> None:
    """Each deterministic cheap form spends what its definition says over the run's T steps:
    every-2 and LookSAM-2 the method at steps 0, 2, ...; late phase 0.5 the method in the last
    T/2; m-sharpness still two whole passes a step; RST between one and two a step."""
    def option(run, key):
        value = run.get(f"optimizer.{key}")
        return None if value is None or pd.isna(value) else value

    for _, run in runs.iterrows():
        steps, passes = int(run["steps"]), int(run["fwd_bwd_passes"])
        if option(run, "every") == 2 or option(run, "looksam") == 2:
            assert passes == steps + (steps + 1) // 2
        elif option(run, "start_fraction") == 0.5:
            assert passes == steps + (steps - round(steps / 2))
        elif option(run, "switch_prob") is not None:
            assert steps <= passes <= 2 * steps
        elif run["optimizer.name"] in ("sam", "gsam"):
            assert passes == 2 * steps
        else:
            assert passes == steps


def test_new_optimizer_keys_leave_recorded_run_ids_alone():
    """Runs recorded before the cheap variants existed keep their ids (their directories end
    with them), and a run that sets one of the new keys gets an id of its own."""
    from gsam_repro.train.config import config_from_dict, run_id

    _, configs = _expand(EXPERIMENTS / "quick.yaml", None)
    recorded = {p.name.rpartition("-")[2] for p in (REPO / "results/quick/runs").iterdir()}
    assert {run_id(cfg) for cfg in configs} == recorded
    tree = {"optimizer": {"name": "sam", "rho": 0.05}}
    assert run_id(config_from_dict(tree)) != run_id(config_from_dict(
        {"optimizer": {**tree["optimizer"], "every": 2}}))


def test_imagenet_data_root_comes_from_the_command_line(tmp_path):
    """The ImageNet specs read ImageFolder data from a root the user gives with -o; the run id
    does not depend on where the data lives."""
    from gsam_repro.sweep.spec import expand, load_spec
    from gsam_repro.train.config import run_id

    for name in ("imagenet_resnet.yaml", "imagenet_vit.yaml", "imagenet_mixer.yaml"):
        spec = EXPERIMENTS / name
        default = expand(load_spec(spec, [], None, None))
        moved = expand(load_spec(spec, [f"base.data.root={tmp_path}"], None, None))
        assert [r.run_id for r in moved.runs] == [r.run_id for r in default.runs]
        configs = [moved.config(r) for r in moved.runs]
        assert {c.data.root for c in configs} == {str(tmp_path)}
        assert {c.data.name for c in configs} == {"imagefolder"}
        assert [run_id(c) for c in configs] == [r.run_id for r in moved.runs]


def test_imagenet_specs_follow_table_4():
    """Each model's GSAM run carries its own Table 4 values (the package's copy of the table),
    and its SAM run uses rho = GSAM's rho_max, with the shared recipe of its family."""
    from gsam_repro.report import paper

    seen = set()
    for name in ("imagenet_resnet.yaml", "imagenet_vit.yaml", "imagenet_mixer.yaml"):
        _, configs = _expand(EXPERIMENTS / name, None)
        for cfg in configs:
            published = paper.hparams(cfg.model.name)
            assert published is not None, cfg.model.name
            assert cfg.optimizer.lr == pytest.approx(published["lr_max"])
            assert cfg.lr_min == pytest.approx(published["lr_min"])
            assert cfg.schedule.epochs == published["epochs"]
            assert cfg.schedule.warmup_steps == published["warmup_steps"]
            assert cfg.schedule.decay == published["lr_schedule"]
            assert cfg.data.batch_size == 4096 and cfg.data.augment == "inception"
            base = cfg.optimizer.base or cfg.optimizer.name
            assert base == published["base_optimizer"]
            if base == "adamw":  # the ResNets' weight decay is explained in their spec
                assert cfg.optimizer.weight_decay == pytest.approx(published["weight_decay"])
            if cfg.optimizer.name == "gsam":
                assert cfg.optimizer.rho_max == pytest.approx(published["rho_max"])
                assert cfg.optimizer.rho_min == pytest.approx(published["rho_min"])
                assert cfg.optimizer.alpha == pytest.approx(published["alpha"])
            if cfg.optimizer.name == "sam":
                assert cfg.optimizer.rho == pytest.approx(published["rho_max"])
            seen.add((paper.model_key(cfg.model.name), cfg.optimizer.name))
    models = set(paper.models())
    vanilla = {"sgd", "adamw"}
    assert {m for m, o in seen if o in vanilla} == models
    assert {m for m, o in seen if o == "sam"} == models
    assert {m for m, o in seen if o == "gsam"} == models


def test_random_sam_example_steps_from_a_random_point_of_the_sphere():
    """The worked example's optimizer against the update written out by hand: with the same
    noise u, w <- w - lr * grad f(w + rho u / ||u||) (plain SGD, no momentum)."""
    from gsam_repro.optim import create_optimizer

    torch.manual_seed(0)
    inputs, targets = torch.randn(16, 5), torch.randn(16, 2)
    model = torch.nn.Linear(5, 2)
    start = [p.detach().clone() for p in model.parameters()]
    rho, lr = 0.3, 0.1

    def loss_at(weights):
        weight, bias = weights
        return ((inputs @ weight.T + bias - targets) ** 2).mean()

    optimizer = create_optimizer("experiments/custom_optimizer/random_sam.py:RandomSAM",
                                 model.parameters(), base="sgd", lr=lr, rho=rho, model=model)
    assert optimizer.passes_per_step == 2

    def closure():
        loss = loss_at(list(model.parameters()))
        loss.backward()
        return loss

    torch.manual_seed(123)
    optimizer.step(closure)
    after = [p.detach().clone() for p in model.parameters()]

    torch.manual_seed(123)
    noise = [torch.randn_like(p) for p in start]
    norm = torch.sqrt(sum((u ** 2).sum() for u in noise))
    perturbed = [(w + rho * u / norm).requires_grad_() for w, u in zip(start, noise, strict=True)]
    grads = torch.autograd.grad(loss_at(perturbed), perturbed)
    expected = [w - lr * g for w, g in zip(start, grads, strict=True)]
    for got, want in zip(after, expected, strict=True):
        torch.testing.assert_close(got, want)
    # the surrogate gap it reports is the loss increase at that random point
    assert float(optimizer.stats["h"]) == pytest.approx(
        float((loss_at(perturbed) - loss_at(start)).detach()), abs=1e-6)
