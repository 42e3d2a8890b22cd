"""The `gsam-repro` command. Each subcommand lives in its own module, which provides
`add_arguments(parser)` and `run(args) -> int`; this file only wires them together and turns
user errors into one line on stderr and exit code 2."""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from gsam_repro import __version__
from gsam_repro.errors import UsageError

# name -> (module, one-line help). Modules keep heavy imports (torch, pandas) inside `run`.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("gsam_repro.train.cli", "run one training config into a run directory"),
    "sweep": ("gsam_repro.sweep.cli", "plan, run or inspect a sweep spec"),
    "gather": ("gsam_repro.results.cli", "gather a sweep's run directories into parquet"),
    "report": ("gsam_repro.report.cli", "render tables and figures from a sweep's parquet files"),
    "toy": ("gsam_repro.toy_cli", "the 2-D illustration and its basin map (from how many "
            "starts GSAM ends flat where SAM ends sharp)"),
    "bench": ("gsam_repro.bench.cli", "benchmarks that print figures and write JSON"),
    "check": ("gsam_repro.check", "conformance check of an optimizer before a sweep"),
    "demo": ("gsam_repro.demo", "the main job: experiments/quick.yaml end to end"),
}


# The import names of the `suite` extra's distributions (pyproject.toml; a test keeps them
# equal): the command needs them, the optimizers do not.
SUITE_MODULES = frozenset({"numpy", "torchvision", "timm", "pandas", "pyarrow", "matplotlib",
                           "submitit", "yaml", "tqdm", "sklearn", "scipy"})
SUITE_HINT = "pip install 'gsam-repro[suite]'"


def missing_suite_module(err: ImportError) -> str | None:
    """The suite package whose absence raised `err`, or None for any other import error."""
    top = (getattr(err, "name", None) or "").split(".")[0]
    return top if isinstance(err, ModuleNotFoundError) and top in SUITE_MODULES else None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gsam-repro",
        description="Reproduce GSAM (ICLR 2022) and compare optimizers against SGD, SAM, GSAM "
        "and the f_p + lambda*h baseline.",
    )
    parser.add_argument("--version", action="version", version=f"gsam-repro {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Idle OpenMP threads that spin instead of sleeping cost several times the step time on a
    # shared or busy CPU; set before torch loads, and inherited by every sweep job.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        return _main(argv)
    except ModuleNotFoundError as err:
        missing = missing_suite_module(err)
        if missing is None:
            raise
        # a core install (torch alone) holds the optimizers; the command needs the suite extra
        print(f"gsam-repro: error: the command needs the suite's packages ({missing!r} is not "
              f"installed; the core install holds only gsam_repro.optim): {SUITE_HINT}",
              file=sys.stderr)
        return 2


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # overrides may come anywhere, also after an option such as `train ... --show`
        if not (isinstance(getattr(args, "overrides", None), list)
                and all("=" in item and not item.startswith("-") for item in extra)):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides.extend(extra)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        code = int(args._run(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except BrokenPipeError:
        return _quiet_broken_pipe()
    except UsageError as err:
        print(f"gsam-repro {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _quiet_broken_pipe() -> int:
    """`gsam-repro sweep plan ... | head`: the reader left. Point stdout at /dev/null so the
    interpreter's final flush cannot raise again, and exit as a process killed by SIGPIPE would
    (128 + 13), without a traceback."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 141


if __name__ == "__main__":
    sys.exit(main())
