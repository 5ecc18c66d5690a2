"""Push endpoints the hub will send packages to: https only (unless a laboratory allows
http), no credentials in the URL; checked when an organ is saved and before each push."""

from __future__ import annotations

import pytest

from hub.errors import InputError
from hub.service.endpoints import check_push_url


@pytest.mark.parametrize(
    "url",
    [
        "https://dms.tayninh.gov.vn/lienthong/inbox",
        "HTTPS://dms.example:8443/inbox?system=a",
        "https://[2001:db8::1]/inbox",
    ],
)
def test_https_endpoints_are_accepted(url: str) -> None:
    assert check_push_url(url, allow_http=False) == url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("http://dms.example/inbox", "push_url_not_https"),
        ("https://user:secret@dms.example/inbox", "bad_push_url"),
        ("https://token@dms.example/inbox", "bad_push_url"),
        ("ftp://user:secret@dms.example/inbox", "bad_push_url"),
        ("https://user:secret@[::1/inbox", "bad_push_url"),
        ("https:///inbox", "bad_push_url"),
        ("/inbox", "bad_push_url"),
        ("ftp://dms.example/inbox", "bad_push_url"),
        ("file:///etc/passwd", "bad_push_url"),
        ("https://dms.example:port/inbox", "bad_push_url"),
        ("https://dms.example/inbox#frag", "bad_push_url"),
        ("https://[::1/inbox", "bad_push_url"),
    ],
)
def test_other_endpoints_are_refused_with_a_code(url: str, code: str) -> None:
    with pytest.raises(InputError) as err:
        check_push_url(url, allow_http=False)
    assert err.value.error_code == code
    assert "secret" not in err.value.message  # the credential is not echoed back


def test_plain_http_only_where_allowed() -> None:
    assert check_push_url("http://127.0.0.1:8080/inbox", allow_http=True)
    with pytest.raises(InputError) as err:
        check_push_url("http://u:p@127.0.0.1/inbox", allow_http=True)
    assert err.value.error_code == "bad_push_url"
