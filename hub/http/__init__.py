"""HTTP faces: native API, health checks, metrics."""
