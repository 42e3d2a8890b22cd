"""`gsam-repro check OPTIMIZER [key=value ...]`: the command around
gsam_repro.optim.check, which holds the properties. Kept apart so that building the CLI parser
does not import torch."""

from __future__ import annotations

import argparse
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("optimizer", help="a registered name (sgd, sam, gsam, ...), "
                        "package.module:Class or path/to/file.py:Class")
    parser.add_argument("options", nargs="*", metavar="key=value",
                        help="create_optimizer keywords, as in a run config's optimizer section "
                        "(rho=0.1 base=adamw every=2 ...)")


def run(args: argparse.Namespace) -> int:
    """Print each property's result; 1 if any failed, UsageError (exit 2) for bad input."""
    from gsam_repro.errors import UsageError
    from gsam_repro.optim.check import FAIL, check_optimizer
    from gsam_repro.yamlio import parse_override

    options: dict[str, Any] = {}
    for item in args.options:
        key, value = parse_override(item)
        if "." in key:
            raise UsageError(f"{item!r}: give optimizer keys without a section (rho=0.1)")
        options[key] = value
    try:
        results = check_optimizer(args.optimizer, options)
    except (ValueError, TypeError) as err:
        raise UsageError(f"optimizer: {err}") from None
    width = max(len(r.name) for r in results)
    for result in results:
        print(f"{result.status:<5} {result.name:<{width}}  {result.evidence}")
    failed = [r.name for r in results if r.status == FAIL]
    if failed:
        print(f"{args.optimizer}: {len(failed)} failed ({', '.join(failed)})")
        return 1
    print(f"{args.optimizer}: all properties pass or do not apply")
    return 0
