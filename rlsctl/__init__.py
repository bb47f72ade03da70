"""rlsctl: declare, render, lint, apply, test and report PostgreSQL row-level security.

The package is a library with a thin click CLI on top (`rlsctl.cli`); its
folders are the stages of the pipeline (docs/architecture.md).
"""
