"""Issue 16 §3.7 over real HTTP (a live WSGI server, as gunicorn serves it): a form POST in a
charset Python cannot decode a form with is a 400 from our middleware — anonymous /login/
included — never a 500 with an empty body."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest


def _post(url: str, charset: str) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data="username=a&password=b".encode("utf-16"), method="POST",
                                 headers={"Content-Type": f"application/x-www-form-urlencoded; charset={charset}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("charset", ["utf-16", "utf-32", "no-such-charset"])
@pytest.mark.parametrize("production", [False, True])
def test_undecodable_charset_over_http_is_a_400(live_server, settings, charset, production):
    # production: the headers middleware read request.user, which a request refused before
    # authentication never got (the measured "500 with an empty body" on /login/)
    settings.PRODUCTION = production
    status, body = _post(live_server.url + "/login/", charset)
    assert status == 400 and b"charset" in body
