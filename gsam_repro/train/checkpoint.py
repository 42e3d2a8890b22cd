"""Checkpoints: everything needed to continue a run exactly where an epoch ended.

A checkpoint holds the model, optimizer, LR scheduler and loss-scaler states, the torch RNG
states, the epoch, the metrics so far and the cumulative counters. The data order needs no
state of its own: it is a function of (seed, epoch). Files are replaced atomically.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from gsam_repro.fsio import atomic_write_bytes

FORMAT_VERSION = 1


def rng_states() -> dict:
    """The torch random number generator states (CPU and every CUDA device)."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["cpu"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def save_checkpoint(path: Path, state: dict) -> None:
    """Write `state` (plus the format version) to `path` atomically."""
    buffer = io.BytesIO()
    torch.save({"format": FORMAT_VERSION, **state}, buffer)
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint onto the CPU (load_state_dict moves tensors to their device)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state.get("format") != FORMAT_VERSION:
        raise ValueError(f"{path}: checkpoint format {state.get('format')} is not "
                         f"{FORMAT_VERSION}")
    return state
