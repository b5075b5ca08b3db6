"""Placeholder until its issue lands."""

import mpt_plugin.compat  # noqa: F401  (before any basicsr import)
