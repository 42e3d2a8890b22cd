"""One training run: a RunConfig in, one run directory out."""
