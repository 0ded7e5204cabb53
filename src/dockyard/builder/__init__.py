"""Dockerfile builds: frontend, solver, cache, context."""
