"""The running hub: intake pipeline, routing, delivery workers, outbox relay."""
