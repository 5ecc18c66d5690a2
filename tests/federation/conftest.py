"""The development PKI fixture, shared with the service tests."""

from tests.service.conftest import pki_dir

__all__ = ["pki_dir"]
