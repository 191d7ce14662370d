"""Benchmarks for Loom, run from the repository root (see DESIGN.md, "Performance")."""
