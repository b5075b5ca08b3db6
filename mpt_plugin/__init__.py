"""Glue between this plugin and BasicSR 1.4.2, the top layer: start-up registration (``autoload``), run-time
patches (``patches``, ``resume``), start-up option checks read through BasicSR's registries (``option_checks``),
the ``mpt-train`` / ``mpt-test`` entry points (``cli``). No other package of the plugin imports this one."""
