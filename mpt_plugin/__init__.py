"""Glue between this plugin and BasicSR 1.4.2: compatibility shims and start-up registration."""
