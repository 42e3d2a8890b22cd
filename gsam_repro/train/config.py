# size: sections, their checks and the run id in one place: a new key beside its id rule
"""The typed run config: what one training run is, validated before any work starts.

A config is plain data with sections `data`, `model`, `optimizer`, `schedule`, `train`, `eval`,
`tuning` and `seed`. `load_config` turns YAML or a mapping (plus dotted overrides) into a
`RunConfig`; every mistake raises `ConfigError` naming the dotted key (and the closest valid
key when a name is unknown). `run_id` hashes the canonical resolved config minus the keys that
cannot change a result.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gsam_repro.errors import ConfigError
from gsam_repro.optim.rules import check_adaptive, check_rho_range
from gsam_repro.yamlio import KeyLines, load_yaml, parse_override, set_dotted

DATASETS = ("cifar10", "cifar100", "imagefolder", "digits", "synthetic")
AUGMENTS = ("none", "cifar", "inception")
DECAYS = ("linear", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")
LOADERS = ("auto", "gpu", "torch")
DEFAULT_PROBE_RHOS = (0.01, 0.02, 0.05, 0.1)
TUNE_PHASES = ("trial", "confirm")  # tuning.phase: a search trial, a confirmation seed
RUN_ID_LENGTH = 10  # hex digits of a run id
PROBE_PREFIX = "probe_h_rho"  # summary.json / runs.parquet columns probe_h_rho<r>


def probe_key(rho: float) -> str:
    """The column of the sharpness probe at radius `rho`, e.g. probe_h_rho0.05."""
    return f"{PROBE_PREFIX}{format(float(rho), 'g')}"


@dataclass
class DataConfig:
    """Where the images come from and how they are batched."""

    name: str = "synthetic"
    root: str | None = None  # dataset folder; not part of the run id (a moved dataset is the same)
    download: bool = False  # cifar10/cifar100 only, for machines with internet
    train_size: int | None = None  # None: all; a fixed subset otherwise (same for every seed)
    test_size: int | None = None
    val_size: int = 0  # held out of the training set, same for every seed and optimizer
    image_size: int | None = None  # digits: upsampled to this; synthetic: generated at this
    augment: str = "none"  # none | cifar (pad-crop + flip) | inception (random-resized crop + flip)
    cutout: int = 0  # cutout square size in pixels (cifar augment), 0 = off
    batch_size: int = 128
    eval_batch_size: int = 512
    loader: str = "auto"  # auto | gpu (whole set on device) | torch (DataLoader)
    num_workers: int = 0  # DataLoader workers; not part of the run id
    cache_dir: str | None = None  # decoded-image cache; None: $GSAM_REPRO_CACHE or
    # ~/.cache/gsam_repro; not part of the run id
    label_noise: float = 0.0  # fraction of training labels replaced by another class (symmetric)
    label_noise_seed: int = 0  # which labels flip and to what; independent of the run's seed


@dataclass
class ModelConfig:
    """A timm model by name, or one of the CIFAR nets (`resnet18_cifar`, `wrn16_8`, ...)."""

    name: str = "small_cnn"
    num_classes: int | None = None  # None: taken from the data
    kwargs: dict = field(default_factory=dict)  # passed to the model constructor


@dataclass
class OptimizerConfig:
    """Anything `gsam_repro.optim.create_optimizer` knows, by name or `package.module:Class`.

    Fields left as None are not passed on, so SGD carries no rho or alpha."""

    name: str = "sgd"
    base: str | None = None  # base optimizer for the SAM family: sgd | adamw
    lr: float = 0.1
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float = 0.0
    betas: list | None = None
    rho: float | None = None  # sam, weighted
    rho_max: float | None = None  # gsam
    rho_min: float | None = None  # gsam
    alpha: float | None = None  # gsam
    lam: float | None = None  # weighted (min f_p + lam * h)
    adaptive: bool | str | None = None  # False | "paper" | "asam"
    grad_clip: float | None = None  # global-norm clip of the final direction
    # Cheap variants of any sharpness-aware optimizer (docs/optimizers.md, "Cheap variants"):
    every: int | None = None  # the method every k-th step, plain base steps between
    looksam: int | None = None  # LookSAM: the method every k-th step, reuse steps between
    looksam_alpha: float | None = None  # LookSAM's alpha (default 0.7)
    switch_prob: float | None = None  # RST: each step is the method with probability p
    switch_seed: int | None = None  # seed of switch_prob's generator (default 0)
    start_fraction: float | None = None  # late phase: plain steps for this fraction of the run
    m: int | None = None  # m-sharpness: the method per chunk of m examples, directions averaged
    kwargs: dict = field(default_factory=dict)  # extra keywords for a user's own optimizer


@dataclass
class ScheduleConfig:
    """Warmup steps, then decay from lr_max (= optimizer.lr) to lr_min."""

    epochs: int = 1
    warmup_steps: int = 0
    decay: str = "linear"  # linear (the paper) | cosine | constant
    lr_min: float | None = None  # None: optimizer.lr / 100, as in the paper


@dataclass
class TrainConfig:
    """How the loop runs: precision, device, determinism."""

    precision: str = "fp32"  # fp32 | bf16 (autocast) | fp16 (autocast + GradScaler)
    label_smoothing: float = 0.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    channels_last: bool = False
    compile: bool = False
    threads: int | None = None  # torch CPU threads; not part of the run id
    log_every: int = 50  # steps between log lines when not on a terminal; not part of the run id
    tensorboard: bool = False  # TensorBoard event files in the run directory; not in the run id
    loggers: list = field(default_factory=list)  # "module:factory" run loggers (e.g. Weights &
    # Biases, see docs/training.md); not part of the run id


@dataclass
class EvalConfig:
    """Measurements beyond accuracy."""

    every: int = 1  # evaluate on test (and val) every N epochs, and always at the end
    hessian_batches: int = 0  # batches for the dominant Hessian eigenvalue at the end; 0 = off
    hessian_iters: int = 20  # power-iteration steps
    # Sharpness probes at the end of training, the same for every optimizer (SGD included):
    # h(r) = f(w + r g/||g||) - f(w) for each r, per batch of the run's own batch size, over the
    # first `probe_batches` un-augmented training batches (fixed; the same for every seed).
    probe_rhos: list = field(default_factory=lambda: list(DEFAULT_PROBE_RHOS))
    probe_batches: int = 4  # 0 = no probes
    probe_adaptive: bool = False  # eps = r |w|^2 g / || |w| g || (ASAM's scaling) instead


@dataclass
class TuningConfig:
    """Which phase of a `tune:` sweep a run belongs to (set by the sweep, not by hand): a trial
    of a method's search, or a confirmation seed of its chosen setting. None outside tuning."""

    method: str | None = None  # the method's name under tune.methods
    phase: str | None = None  # trial | confirm
    trial: int | None = None  # the trial's index (0-based) within its method; None for confirm


@dataclass
class RunConfig:
    """One training run, fully specified."""

    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    tuning: TuningConfig = field(default_factory=TuningConfig)

    def to_dict(self) -> dict:
        """Plain nested dict (YAML/JSON ready)."""
        return dataclasses.asdict(self)

    def flat(self) -> dict[str, Any]:
        """Dotted keys -> values ("optimizer.rho_max": 0.04); dict-valued fields stay whole."""
        return flatten(self.to_dict())

    @property
    def lr_min(self) -> float:
        """The schedule's lr_min resolved (optimizer.lr / 100 when not given)."""
        return resolve_lr_min(self.optimizer.lr, self.schedule.lr_min)


# Keys that cannot change a run's result: excluded from the run id.
NON_IDENTIFYING = frozenset(
    {"data.root", "data.download", "data.num_workers", "data.cache_dir", "train.threads",
     "train.log_every", "train.tensorboard", "train.loggers"}
)

# Keys added after runs were first recorded: while at these defaults they are left out of the
# run id, so a run made before the key existed keeps its id (and is not redone).
OMITTED_AT_DEFAULT: dict[str, Any] = {
    "data.label_noise": 0.0,
    "data.label_noise_seed": 0,
    "eval.probe_rhos": list(DEFAULT_PROBE_RHOS),
    "eval.probe_batches": 4,
    "eval.probe_adaptive": False,
    # the cheap SAM variants and m-sharpness: unset (None) unless a run uses them
    **{f"optimizer.{key}": None for key in ("every", "looksam", "looksam_alpha", "switch_prob",
                                            "switch_seed", "start_fraction", "m")},
    # tags of a `tune:` sweep's runs: unset outside one
    "tuning.method": None, "tuning.phase": None, "tuning.trial": None,
}

SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "optimizer": OptimizerConfig,
    "schedule": ScheduleConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
    "tuning": TuningConfig,
}


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> dotted keys. Free-form dict fields (`kwargs`) stay as one value."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and key != "kwargs":
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def valid_keys() -> list[str]:
    """Every dotted key a run config accepts."""
    return sorted(flatten(RunConfig().to_dict()))


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str | None:
    """The closest valid name, for 'did you mean' hints."""
    matches = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.5)
    return matches[0] if matches else None


def _unknown(key: str, choices: list[str], lines: KeyLines | None, source: str | None):
    hint = closest(key.rpartition(".")[2], [c.rpartition(".")[2] for c in choices])
    prefix = key.rpartition(".")[0]
    message = "unknown key"
    if hint:
        message += f"; did you mean {prefix + '.' if prefix else ''}{hint}?"
    line = lines.line(key) if lines else None
    return ConfigError(key, message, source=source, line=line)


def coerce_value(key: str, value: Any, annotation: Any, err) -> Any:
    """Check `value` against a field annotation (int, float, str, bool, X | None, list, dict)."""
    origin = typing.get_origin(annotation)
    if origin in (types.UnionType, typing.Union):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        problems = []
        for option in options:
            if option is type(None):
                continue
            try:
                return coerce_value(key, value, option, err)
            except ConfigError as problem:
                problems.append(problem)
        raise problems[0]
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise err(key, f"expected true or false, got {value!r}")
    if annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise err(key, f"expected an integer, got {value!r}")
    if annotation is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value)  # YAML 1.1 reads "5e-4" as a string
            except ValueError:
                pass
        if number is None:
            raise err(key, f"expected a number, got {value!r}")
        if not math.isfinite(number):  # .nan / .inf would only show up as a diverged run
            raise err(key, f"expected a finite number, got {value!r}")
        return number
    if annotation is str:
        if isinstance(value, str):
            return value
        raise err(key, f"expected a string, got {value!r}")
    if annotation is list or origin is list:
        if isinstance(value, (list, tuple)):
            _check_finite(key, value, err)
            return list(value)
        raise err(key, f"expected a list, got {value!r}")
    if annotation is dict or origin is dict:
        if isinstance(value, dict):
            _check_finite(key, value, err)
            return dict(value)
        raise err(key, f"expected a mapping, got {value!r}")
    return value


def _check_finite(key: str, value: Any, err) -> None:
    """No NaN or infinity anywhere in a config, free-form lists and mappings (kwargs) included."""
    if isinstance(value, float) and not math.isfinite(value):
        raise err(key, f"expected a finite number, got {value!r}")
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_finite(f"{key}[{i}]", item, err)
    elif isinstance(value, dict):
        for name, item in value.items():
            _check_finite(f"{key}.{name}", item, err)


@functools.cache
def field_types(cls: type) -> dict[str, Any]:
    """A config dataclass's field types, resolved once (its annotations are strings, and
    resolving them costs more than checking a whole run config)."""
    return typing.get_type_hints(cls)


def section_from_dict(name: str, cls: type, values: Any, err, lines, source) -> Any:
    """Build one config section from a mapping, type-checking each key (used by sweep specs to
    check each written value once)."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise err(name, f"expected a mapping, got {values!r}")
    hints = field_types(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{name}.{key}"
        if key not in names:
            raise _unknown(dotted, [f"{name}.{n}" for n in names], lines, source)
        kwargs[key] = coerce_value(dotted, value, hints[key], err)
    return cls(**kwargs)


def check_config(cfg: RunConfig, err) -> None:
    """Ranges, choices and cross-key rules of a built config, named by dotted key; `err(key,
    message)` makes the exception (sweep specs attribute it to their own YAML lines)."""
    d, m, o, s, t, e = cfg.data, cfg.model, cfg.optimizer, cfg.schedule, cfg.train, cfg.eval

    def choice(key: str, value: Any, options: tuple) -> None:
        if value not in options:
            hint = closest(str(value), [str(x) for x in options])
            extra = f"; did you mean {hint}?" if hint else ""
            raise err(key, f"{value!r} is not one of {', '.join(map(str, options))}{extra}")

    def at_least(key: str, value: Any, low: float, strict: bool = False) -> None:
        if value is None:
            return
        if value < low or (strict and value == low):
            raise err(key, f"must be {'>' if strict else '>='} {low}, got {value!r}")

    choice("data.name", d.name, DATASETS)
    choice("data.augment", d.augment, AUGMENTS)
    choice("data.loader", d.loader, LOADERS)
    for key in ("train_size", "test_size", "image_size", "batch_size", "eval_batch_size"):
        at_least(f"data.{key}", getattr(d, key), 1)
    for key in ("val_size", "cutout", "num_workers"):
        at_least(f"data.{key}", getattr(d, key), 0)
    if d.download and d.name not in ("cifar10", "cifar100"):
        raise err("data.download", f"only cifar10 and cifar100 can be downloaded, not {d.name}")
    if d.name == "imagefolder" and not d.root:
        raise err("data.root", "imagefolder needs a root folder with train/ and val/ or test/")
    if not m.name:
        raise err("model.name", "must not be empty")
    at_least("model.num_classes", m.num_classes, 1)
    if not o.name:
        raise err("optimizer.name", "must not be empty")
    at_least("optimizer.lr", o.lr, 0.0, strict=True)
    for key in ("momentum", "weight_decay", "rho", "rho_max", "rho_min", "alpha", "lam"):
        at_least(f"optimizer.{key}", getattr(o, key), 0.0)
    at_least("optimizer.grad_clip", o.grad_clip, 0.0, strict=True)
    for key in ("every", "looksam", "m"):
        at_least(f"optimizer.{key}", getattr(o, key), 1)
    for key in ("switch_prob", "start_fraction"):
        at_least(f"optimizer.{key}", getattr(o, key), 0.0)
        if getattr(o, key) is not None and getattr(o, key) > 1:
            raise err(f"optimizer.{key}", f"must be <= 1, got {getattr(o, key)!r}")
    for key, rule, args in (("optimizer.rho_min", check_rho_range, (o.rho_max, o.rho_min)),
                            ("optimizer.adaptive", check_adaptive, (o.adaptive,))):
        try:  # the optimizers' own rules (gsam_repro.optim.rules), named by config key here
            rule(*args)
        except ValueError as problem:
            raise err(key, str(problem)) from None
    at_least("schedule.epochs", s.epochs, 1)
    at_least("schedule.warmup_steps", s.warmup_steps, 0)
    choice("schedule.decay", s.decay, DECAYS)
    at_least("schedule.lr_min", s.lr_min, 0.0)
    if s.lr_min is not None and s.lr_min > o.lr:
        raise err("schedule.lr_min", f"{s.lr_min} is larger than optimizer.lr {o.lr}")
    choice("train.precision", t.precision, PRECISIONS)
    if not (0.0 <= t.label_smoothing < 1.0):
        raise err("train.label_smoothing", f"must be in [0, 1), got {t.label_smoothing}")
    if not (t.device in ("auto", "cpu", "cuda", "mps") or t.device.startswith("cuda:")):
        raise err("train.device", f"{t.device!r} is not auto, cpu, cuda, cuda:N or mps")
    at_least("train.threads", t.threads, 1)
    at_least("train.log_every", t.log_every, 1)
    for i, path in enumerate(t.loggers):
        if not isinstance(path, str) or ":" not in path.strip(":"):
            raise err(f"train.loggers[{i}]", f"expected 'package.module:factory' or "
                      f"'path/to/file.py:factory', got {path!r}")
    at_least("eval.every", e.every, 1)
    at_least("eval.hessian_batches", e.hessian_batches, 0)
    at_least("eval.hessian_iters", e.hessian_iters, 1)
    if not (0.0 <= d.label_noise < 1.0):
        raise err("data.label_noise", f"must be in [0, 1), got {d.label_noise}")
    at_least("eval.probe_batches", e.probe_batches, 0)
    if e.probe_batches and not e.probe_rhos:
        raise err("eval.probe_rhos", "must list at least one radius (or set eval.probe_batches: 0)")
    for value in e.probe_rhos:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                0 < value < float("inf")):
            raise err("eval.probe_rhos", f"every radius must be a number > 0, got {value!r}")
    if len(set(map(float, e.probe_rhos))) != len(e.probe_rhos):
        raise err("eval.probe_rhos", f"radii repeat: {e.probe_rhos}")
    if cfg.tuning.phase is not None:
        choice("tuning.phase", cfg.tuning.phase, TUNE_PHASES)
    at_least("tuning.trial", cfg.tuning.trial, 0)


def config_from_dict(
    tree: dict | None,
    overrides: list[str] | None = None,
    *,
    source: str | None = None,
    lines: KeyLines | None = None,
) -> RunConfig:
    """Build and validate a RunConfig from nested data plus `dotted.key=value` overrides."""
    tree = copy.deepcopy(tree) if tree else {}
    if not isinstance(tree, dict):
        raise ConfigError("", f"a run config must be a mapping, got {type(tree).__name__}",
                          source=source)
    override_keys = set()
    for item in overrides or []:
        key, value = parse_override(item)
        set_dotted(tree, key, value)
        override_keys.add(key)

    def err(key: str, message: str) -> ConfigError:
        if key in override_keys or any(key.startswith(k + ".") for k in override_keys):
            return ConfigError(key, message, source="override")
        return ConfigError(key, message, source=source, line=lines.line(key) if lines else None)

    top = ["seed", *SECTIONS]
    for key in tree:
        if key not in top:
            raise _unknown(str(key), top, lines, source)
    seed = coerce_value("seed", tree.get("seed", 0), int, err)
    sections = {
        name: section_from_dict(name, cls, tree.get(name), err, lines, source)
        for name, cls in SECTIONS.items()
    }
    cfg = RunConfig(seed=seed, **sections)
    check_config(cfg, err)
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run config and validate it (see `config_from_dict`)."""
    tree, lines = load_yaml(path)
    return config_from_dict(tree, overrides, source=str(path), lines=lines)


def identifying(key: str, value: Any) -> bool:
    """Whether a flat config key with this value is part of the run id."""
    if key in NON_IDENTIFYING:
        return False
    return key not in OMITTED_AT_DEFAULT or value != OMITTED_AT_DEFAULT[key]


def resolve_lr_min(lr: float, lr_min: float | None) -> float:
    """The schedule's final learning rate: `lr_min`, or lr / 100 (the paper's) when not given."""
    return lr / 100 if lr_min is None else lr_min


def id_fragment(key: str, value: Any) -> str:
    """One flat key's piece of the canonical JSON (`"key":value`); empty when the run id leaves
    the key out at this value. `schedule.lr_min` must come resolved (see `resolve_lr_min`)."""
    if not identifying(key, value):
        return ""
    dump = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return json.dumps(key) + ":" + dump


def id_from_fragments(fragments: list[str], length: int = RUN_ID_LENGTH) -> str:
    """The run id of a config given as its `id_fragment`s in sorted key order (empty ones are
    skipped): the one hash every run id comes from, the trainer's and the sweep's alike."""
    text = "{" + ",".join(f for f in fragments if f) + "}"
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_id(cfg: RunConfig, length: int = RUN_ID_LENGTH) -> str:
    """Short stable hash: the same run asked for twice gets the same id."""
    flat = cfg.flat() | {"schedule.lr_min": cfg.lr_min}
    return id_from_fragments([id_fragment(k, flat[k]) for k in sorted(flat)], length)
