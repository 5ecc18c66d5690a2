"""Implementations of the ports declared in ``hub`` (brokers, stores, upstream axis)."""
