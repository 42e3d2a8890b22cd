"""Benchmarks that print figures and write JSON under results/benchmarks/."""
