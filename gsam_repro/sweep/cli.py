"""`gsam-repro sweep plan|run|status SPEC`: see what a spec expands to, run what is missing, and
watch a sweep's state from the files on disk. docs/sweeps.md has the spec reference."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from pathlib import Path

from gsam_repro.errors import UsageError

ACTIONS = {
    "plan": "list the runs a spec expands to and the state of each (writes nothing)",
    "run": "run every run not yet finished (resuming interrupted ones), then wait for them",
    "status": "the state of every run of a spec, from the files on disk",
}
LISTED = 100  # runs listed by plan/status without --all
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)  # `sweep run` stops cleanly when it cannot write


class _IntermixedParser(argparse.ArgumentParser):
    """Lets bare `key=value` overrides come before, between or after options, as `train`'s do
    (`sweep run SPEC --profile smoke seeds=1`); plain argparse stops positionals at an option."""

    _parsing = False

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if self._parsing:  # parse_known_intermixed_args calls back in here
            return super().parse_known_args(args, namespace)
        self._parsing = True
        try:
            return self.parse_known_intermixed_args(args, namespace)
        finally:
            self._parsing = False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="sweep_action", metavar="ACTION", required=True,
                                parser_class=_IntermixedParser)
    for action, help_text in ACTIONS.items():
        p = sub.add_parser(action, help=help_text, description=help_text)
        p.add_argument("spec", type=Path, help="sweep spec (YAML)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                       help="override any spec key (grid.optimizer.lr=[0.1,0.2], seeds=1, "
                       "executor.timeout_min=30) or fix a config key over every run "
                       "(schedule.epochs=2), as `train` takes them")
        p.add_argument("-o", "--override", action="append", default=[], metavar="KEY=VALUE",
                       help="the same as a bare KEY=VALUE; repeatable")
        p.add_argument("--profile", help="apply a named profile of the spec (e.g. smoke)")
        p.add_argument("--out", type=Path,
                       help="sweep directory (default: the spec's out_dir, else results/<name>)")
        p.add_argument("--yes", action="store_true",
                       help="go ahead with more runs than the spec's max_runs")
        if action in ("plan", "status"):
            p.add_argument("--all", action="store_true",
                           help=f"list every run (default: the first {LISTED})")
        if action == "run":
            p.add_argument("--executor", choices=("local", "debug", "slurm"),
                           help="where runs go (default: the spec's executor, else local)")
            p.add_argument("--max-parallel", type=int, metavar="N",
                           help="local runs at once (default: cores / threads per run)")
            p.add_argument("--local-mode", choices=("auto", "pool", "process"), default="auto",
                           help="local executor: warm workers that import torch once and take "
                           "runs one after another (pool), or a new process a run (process); "
                           "auto: pool when every run is short (train images x epochs <= 1M)")
            p.add_argument("--retry-failed", action="store_true",
                           help="run failed runs again (they resume from their checkpoint)")
            p.add_argument("--no-wait", action="store_true",
                           help="slurm: submit and return; `sweep status` follows the jobs")
            p.add_argument("--tensorboard", action="store_true",
                           help="TensorBoard event files in every run directory (the same as "
                           "train.tensorboard=true; not part of the run ids); then "
                           "`tensorboard --logdir SWEEP_DIR/runs`")


def run(args: argparse.Namespace) -> int:
    from gsam_repro.sweep.spec import load_spec
    from gsam_repro.sweep.tune import describe

    overrides = [*args.override, *args.overrides]
    if getattr(args, "tensorboard", False):
        overrides.append("train.tensorboard=true")
    spec = load_spec(args.spec, overrides, args.profile, args.out)
    if getattr(args, "executor", None):
        spec.executor.cluster = args.executor
    sweep, decision = _plan(spec, args.yes)
    for warning in sweep.warnings:
        print(f"gsam-repro sweep: warning: {warning}", file=sys.stderr)
    if args.sweep_action == "run":
        code = _run(sweep, args)
        if decision is not None and not decision.decided and code == 0 and not args.no_wait:
            sweep, decision = _plan(spec, args.yes)  # the trials are done: confirmation runs
            code = _run(sweep, args) if decision.decided else 1
        if decision is not None:
            print(describe(spec.tune, decision), file=sys.stderr)
        return code
    if decision is not None:
        print(describe(spec.tune, decision))
    return _show(sweep, args)


def _plan(spec, yes: bool):
    """The spec's runs, and for a tune: spec where its phases stand (trials, then the
    confirmation seeds of each method's chosen trial, see sweep/tune.py)."""
    from gsam_repro.sweep.plan import expand
    from gsam_repro.sweep.tune import plan

    if spec.tune is None:
        return expand(spec, yes=yes), None
    return plan(spec, yes=yes)


def _show(sweep, args: argparse.Namespace) -> int:
    from gsam_repro.sweep import store

    spec = sweep.spec
    states = store.run_states(spec.out_dir, [r.run_id for r in sweep.runs])
    counts: dict[str, int] = {}
    for state in states.values():
        counts[state.state] = counts.get(state.state, 0) + 1
    print(format_header(sweep, counts))
    print()
    print(format_table(sweep, states, limit=None if args.all else LISTED))
    for kind in ("stale", "failed"):  # stale: `sweep run` runs them again
        listed = [(r, states[r.run_id]) for r in sweep.runs if states[r.run_id].state == kind]
        if listed:
            print()
            print(f"{kind}:")
            for run, state in listed[: None if args.all else 20]:
                print(f"  {run.name}: {state.error or 'see failed.json'}")
    others = len(store.index_run_dirs(spec.out_dir).keys() - states.keys())
    if others:
        print(f"\n{others} other run director{'y' if others == 1 else 'ies'} in "
              f"{spec.out_dir / store.RUNS} (not in this spec as expanded now)")
    return 0


def format_header(sweep, counts: dict[str, int]) -> str:
    from gsam_repro.sweep.plan import iter_axes_summary

    spec = sweep.spec
    n = len(sweep.runs)
    lines = [f"sweep {spec.name}: {n:,} run{'s' if n != 1 else ''} in {spec.out_dir}"
             + (f" (profile {spec.profile})" if spec.profile else "")]
    if sweep.duplicates:
        lines.append(f"  ({sweep.duplicates:,} duplicate combinations give the same run id: "
                     "each runs once)")
    for key, values in iter_axes_summary(sweep):
        shown = ", ".join(values[:12]) + (", ..." if len(values) > 12 else "")
        lines.append(f"  {key}: {shown}")
    order = ("done", "diverged", "stale", "failed", "running", "pending")
    lines.append("  " + ", ".join(f"{counts[s]:,} {s}" for s in order if counts.get(s)))
    return "\n".join(lines)


def format_table(sweep, states, limit: int | None) -> str:
    from gsam_repro.sweep.ids import format_value

    headers = ["#", "run id", "state", *(sweep.short[k] for k in sweep.varying)]
    rows = []
    for i, run in enumerate(sweep.runs[:limit] if limit else sweep.runs):
        values = sweep.values(run)
        rows.append([str(i + 1), run.run_id, states[run.run_id].state,
                     *(format_value(values[k]) for k in sweep.varying)])
    widths = [max(len(h), *(len(r[c]) for r in rows)) for c, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    for row in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    if limit and len(sweep.runs) > limit:
        lines.append(f"... {len(sweep.runs) - limit:,} more (--all lists every run)")
    return "\n".join(lines)


def _run(sweep, args: argparse.Namespace) -> int:
    import yaml

    from gsam_repro.sweep import dispatch, store

    spec = sweep.spec
    if args.no_wait and spec.executor.cluster != "slurm":
        raise UsageError("--no-wait needs the slurm executor (local runs are throttled and "
                         "watched by this process)")
    if args.max_parallel is not None and args.max_parallel < 1:
        raise UsageError(f"--max-parallel must be at least 1, got {args.max_parallel}")
    sweep_dir = spec.out_dir.resolve()
    states = store.run_states(sweep_dir, [r.run_id for r in sweep.runs])
    index = store.index_run_dirs(sweep_dir)
    wanted = ("pending", "stale", "failed") if args.retry_failed else ("pending", "stale")
    todo = [r for r in sweep.runs
            if states[r.run_id].state in wanted and not states[r.run_id].live_job]
    live = {r.run_id: sweep_dir / store.RUNS / index.get(r.run_id, r.name)
            for r in sweep.runs if states[r.run_id].live_job}
    # every config through config_from_dict before anything is written or submitted
    tasks = [dispatch.Task(r.run_id, sweep_dir / store.RUNS / index.get(r.run_id, r.name),
                           sweep.config(r)) for r in todo]
    if any(t.config.train.tensorboard for t in tasks):
        from gsam_repro.train.tracking import require_tensorboard

        require_tensorboard()  # one clear error now, not one failed run each
    finished = {s: sum(1 for x in states.values() if x.state == s)
                for s in ("done", "diverged", "failed")}
    if not tasks and not live:
        skipped = f"; {finished['failed']} failed (--retry-failed runs them again)" \
            if finished["failed"] and not args.retry_failed else ""
        print(f"sweep {spec.name}: nothing to run: {finished['done'] + finished['diverged']} of "
              f"{len(sweep.runs)} runs finished{skipped}")
        print(sweep_dir_line(spec.out_dir))
        return 1 if finished["failed"] else 0
    sweep_dir.mkdir(parents=True, exist_ok=True)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous_sigterm = signal.signal(signal.SIGTERM, _raise_interrupt) if in_main_thread else None
    try:
        with store.sweep_lock(sweep_dir):
            header = (f"# The spec as run by `gsam-repro sweep run` (base inlined; profile and "
                      f"-o overrides applied).\n# source: {spec.source}"
                      + (f"; profile: {spec.profile}" if spec.profile else "")
                      + (f"; overrides: {' '.join(spec.overrides)}" if spec.overrides else "")
                      + "\n")
            store.atomic_write_text(sweep_dir / store.SPEC_FILE, header + yaml.safe_dump(
                spec.resolved, sort_keys=False, default_flow_style=False))
            print(f"sweep {spec.name}: {len(tasks)} to run on {spec.executor.cluster}"
                  + (f", {len(live)} already queued or running" if live else "")
                  + f", {finished['done'] + finished['diverged']} finished; logs in "
                  f"{spec.out_dir / store.SUBMITIT}", file=sys.stderr)
            progress = dispatch.Progress(len(tasks) + len(live), spec.name)
            try:
                outcome = dispatch.run_tasks(
                    tasks, sweep_dir=sweep_dir, executor=spec.executor, job_name=spec.name,
                    max_parallel=args.max_parallel, adopted=live, wait=not args.no_wait,
                    progress=progress, local_mode=args.local_mode)
            finally:
                progress.close()
    except OSError as err:
        if err.errno not in DISK_FULL:
            raise
        print(f"gsam-repro sweep: error: {err.strerror}"
              + (f" writing {err.filename}" if err.filename else "")
              + f"; stopped. Every run directory is resumable: free space and run "
              f"`gsam-repro sweep run {args.spec}` again", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous_sigterm)
    if outcome.left:
        print(f"sweep {spec.name}: {len(outcome.left)} runs submitted; follow them with "
              f"`gsam-repro sweep status {args.spec}`")
        print(sweep_dir_line(spec.out_dir))
        return 0
    print(f"sweep {spec.name}: {len(outcome.done)} done, {len(outcome.diverged)} diverged, "
          f"{len(outcome.failed)} failed")
    for rid in outcome.failed:
        state = store.finished_state(next(t.run_dir for t in tasks if t.run_id == rid)
                                     if any(t.run_id == rid for t in tasks) else live[rid])
        print(f"  failed: {rid}: {state.error if state else ''}")
    print(sweep_dir_line(spec.out_dir))
    return 1 if outcome.failed else 0


def sweep_dir_line(out_dir: Path) -> str:
    """The last line of every `sweep run`: where the runs are (a profile changes the folder, e.g.
    `results/<name>-smoke`), and the commands that read it."""
    return (f"sweep directory: {out_dir} (next: gsam-repro gather {out_dir} && "
            f"gsam-repro report {out_dir})")


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
