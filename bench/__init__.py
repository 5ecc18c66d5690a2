"""Benchmarks (``make bench``). They print figures with their conditions; never assertions."""
