"""Models: any timm model by name plus CIFAR nets (resnet18_cifar, wrn16_8, wrn28_10, small_cnn).

`create_model(name, num_classes, in_chans, **kwargs)` is the one entry point. Names of the CIFAR
nets win over timm names; `wrnD_W` builds any Wide ResNet (depth D = 6n + 4, width W); anything
else goes to `timm.create_model(name, pretrained=False, ...)`.
"""

from __future__ import annotations

import difflib
import os
import re

from gsam_repro.errors import UsageError

__all__ = ["create_model", "model_names", "unknown_model"]

_WRN = re.compile(r"^wrn(\d+)_(\d+)$")

# Models of the paper's Table 1 that timm does not register, as timm architectures.
# Mixer-S/8: the S/16 and S/32 settings (8 blocks, width 512) with 8-pixel patches.
PAPER_MODELS: dict[str, dict] = {
    "mixer_s8_224": {"patch_size": 8, "num_blocks": 8, "embed_dim": 512, "img_size": 224},
}


def model_names() -> list[str]:
    """The names built here: CIFAR nets and paper models timm lacks (timm's own are in
    timm.list_models())."""
    from gsam_repro.models.cifar import CIFAR_MODELS

    return sorted([*CIFAR_MODELS, *PAPER_MODELS])


def _suggest(name: str) -> str:
    """A 'did you mean' clause naming the closest CIFAR nets and timm models."""
    import timm

    candidates = model_names() + ["wrn40_4"] + timm.list_models()
    close = difflib.get_close_matches(name, candidates, n=5, cutoff=0.6)
    if not close:  # e.g. "resnet" -> resnet18, resnet50 ...
        close = [c for c in candidates if c.startswith(name.split("_")[0])][:5]
    return f"; did you mean {', '.join(close)}?" if close else ""


def unknown_model(name: str) -> str | None:
    """The error `create_model` gives for a name it cannot build, or None for a known name; a
    sweep asks before any run starts."""
    from gsam_repro.models.cifar import CIFAR_MODELS

    if name in CIFAR_MODELS or _WRN.match(name) or name in PAPER_MODELS:
        return None
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import timm

    if timm.is_model(name):
        return None
    return (f"unknown model {name!r} (not a CIFAR net here, nor a timm model)"
            f"{_suggest(name)}")


def create_model(name: str, num_classes: int, in_chans: int = 3, **kwargs):
    """A freshly initialised model (never pretrained: runs start from the seed's weights)."""
    from gsam_repro.models.cifar import CIFAR_MODELS, wrn

    try:
        if name in CIFAR_MODELS:
            return CIFAR_MODELS[name](num_classes=num_classes, in_chans=in_chans, **kwargs)
        match = _WRN.match(name)
        if match:
            return wrn(int(match[1]), int(match[2]), num_classes=num_classes, in_chans=in_chans,
                       **kwargs)
    except (TypeError, ValueError) as err:
        raise UsageError(f"model.kwargs: {name}: {err}") from None

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import timm

    if name in PAPER_MODELS:
        from timm.models.mlp_mixer import MlpMixer

        try:
            return MlpMixer(num_classes=num_classes, in_chans=in_chans,
                            **{**PAPER_MODELS[name], **kwargs})
        except TypeError as err:
            raise UsageError(f"model.kwargs: {name}: {err}") from None

    problem = unknown_model(name)
    if problem:
        raise UsageError(f"model.name: {problem}")
    try:
        return timm.create_model(name, pretrained=False, num_classes=num_classes,
                                 in_chans=in_chans, **kwargs)
    except TypeError as err:
        raise UsageError(f"model.kwargs: {name}: {err}") from None
