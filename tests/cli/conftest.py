"""Fixtures shared with the service tests."""

from tests.service.conftest import pki_dir  # noqa: F401 - the development PKI, made once
