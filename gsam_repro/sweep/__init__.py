"""Sweep specs (YAML grids) expanded into run configs and dispatched through submitit."""
