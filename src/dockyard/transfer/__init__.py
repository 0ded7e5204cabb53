"""Copying images between any two homes (registry, store, OCI layout, archives)."""
