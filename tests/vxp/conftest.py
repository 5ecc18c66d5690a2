"""The service fixtures (a hub per backend) for the VXP face tests."""

from tests.service.conftest import hut, pki_dir

__all__ = ["hut", "pki_dir"]
