"""Registries: ``registry.client`` talks the distribution API; ``registry.server`` serves it."""
