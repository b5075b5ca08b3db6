"""Maintainer tooling (not installed): benchmarks and studies, the starter models' release recipe, mutation testing.

Run from the repository root as modules, e.g. ``python -m tools.benchmark_quality`` (``docs/developer/tools.md``).
Commands for users live in ``scripts/``; helpers that several scripts or tools share live in the packages.
"""
