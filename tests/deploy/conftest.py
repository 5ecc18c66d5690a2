"""The hub fixtures the deployment checks run against."""

from tests.service.conftest import hut, pki_dir  # noqa: F401 - fixtures shared with these tests
