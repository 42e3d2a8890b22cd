"""gsam-repro: a reference suite for sharpness-aware training (SGD, SAM, GSAM, f_p + lambda*h)."""

__version__ = "0.1.0"
