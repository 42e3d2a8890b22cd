"""Sharpness-aware optimizers (SAM, GSAM, f_p + lambda*h) usable with any torch loop."""
