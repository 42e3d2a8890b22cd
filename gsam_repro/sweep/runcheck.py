"""What `sweep plan` checks in each run beyond `check_config`, before anything runs: that its
model and optimizer exist (with the closest name), and that its optimizer takes every keyword the
run gives it, by the optimizer's own check (`gsam_repro.optim.registry.check_arguments`, the one
`create_optimizer` makes), so a user's class is checked like a built-in.

The drop rule (docs/sweeps.md, "Optimizers that take different keys"): an optimizer key that the
run's optimizer does not take is dropped from that run (back to its default, out of the run id
and config.yaml) when it comes from the base config, `force:` or an override, the sources every
run shares; it is an error only when the run's own axis value or include entry writes it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.train.config import OptimizerConfig, RunConfig

# Optimizer keys a run can drop (name and lr are every optimizer's; kwargs is the user's own).
DROPPABLE = {f.name: f.default for f in dataclasses.fields(OptimizerConfig)
             if f.name not in ("name", "lr", "kwargs")}


class RunChecker:
    """Checks runs, remembering each answer: a grid repeats few distinct optimizer setups."""

    def __init__(self) -> None:
        self._models: dict[str, str | None] = {}
        self._accepted: dict[tuple[str, Any], Any] = {}
        self._arguments: dict[tuple, ConfigError | None] = {}

    def check(self, cfg: RunConfig, written: set[str]) -> tuple[str, ...]:
        """The dotted optimizer keys this run drops; raises ConfigError (dotted config key) for
        an unknown model or optimizer, or a keyword the optimizer does not take. `written`: the
        optimizer keys the run's own axis values and include entry set."""
        self._check_model(cfg.model.name)
        optimizer = cfg.optimizer
        accepted = self._accepted_keys(optimizer.name, optimizer.base)
        dropped = []
        if accepted is not None:
            for key, default in DROPPABLE.items():
                value = getattr(optimizer, key)
                if key in accepted or value is None or value == default:
                    continue
                if f"optimizer.{key}" in written:  # the variant itself asks for it
                    continue  # check_arguments names it below
                dropped.append(key)
        if dropped:
            cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(
                optimizer, **{key: DROPPABLE[key] for key in dropped}))
        self._check_arguments(cfg)
        return tuple(f"optimizer.{key}" for key in dropped)

    def _check_model(self, name: str) -> None:
        if name not in self._models:
            from gsam_repro.models import unknown_model

            self._models[name] = unknown_model(name)
        if self._models[name]:
            raise ConfigError("model.name", self._models[name])

    def _accepted_keys(self, name: str, base: str | None) -> Any:
        memo = (name, base)
        if memo not in self._accepted:
            from gsam_repro.optim.registry import ArgumentError, accepted_keys

            try:
                self._accepted[memo] = accepted_keys(name, base)
            except ArgumentError as err:
                self._accepted[memo] = ConfigError(f"optimizer.{err.key}", str(err))
            except ValueError as err:
                self._accepted[memo] = ConfigError("optimizer.name", _without_key(str(err)))
        answer = self._accepted[memo]
        if isinstance(answer, ConfigError):
            raise answer
        return answer

    def _check_arguments(self, cfg: RunConfig) -> None:
        from gsam_repro.optim.registry import ArgumentError, check_arguments
        from gsam_repro.train.loop import optimizer_kwargs

        kwargs = optimizer_kwargs(cfg)
        memo = (cfg.optimizer.name, repr(sorted(kwargs.items())))
        if memo not in self._arguments:
            problem = None
            try:
                check_arguments(cfg.optimizer.name, **kwargs)
            except ArgumentError as err:
                key = err.key
                if key in cfg.optimizer.kwargs and not key.startswith("kwargs."):
                    key = f"kwargs.{key}"
                problem = ConfigError(f"optimizer.{key}", _without_key(str(err)))
            except (ValueError, TypeError) as err:
                problem = ConfigError("optimizer.name", _without_key(str(err)))
            self._arguments[memo] = problem
        if self._arguments[memo] is not None:
            raise self._arguments[memo]


def _without_key(message: str) -> str:
    """The registry's messages may start with the key ('name: ...'); the sweep names it itself."""
    head, sep, rest = message.partition(": ")
    return rest if sep and head.isidentifier() and " " not in head else message
