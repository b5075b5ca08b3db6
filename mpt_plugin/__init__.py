"""Glue between this plugin and BasicSR 1.4.2, the top layer: start-up registration (``autoload``), run-time
patches (``patches``, ``resume``), the start of a run (``startup``: the option file checked as data, ``--force_yml``
as data, the experiment folder locked), the ``mpt-train`` / ``mpt-test`` entry points (``cli``). No other package
of the plugin imports this one; it reads the others through BasicSR's registries."""
