"""Issue 16 §3: raw request bodies, generated. Every form endpoint and the JSON heartbeat endpoint
get bodies in varied content types and charsets (form-encoded, multipart with broken boundaries,
JSON, XML, binary; utf-8, utf-16, latin-1, unknown charsets), odd header values (long or
non-ASCII X-Request-ID, User-Agent, HX headers) and non-finite numbers (NaN, sNaN, Infinity,
1e999999) in every field. Never a 500, and a refused request (anything but a redirect) leaves
every row count in the database as it was: no half-saved object.
"""

from __future__ import annotations

import json
import os
from urllib.parse import quote_from_bytes

import pytest
from django.core.cache import cache
from django.urls import reverse
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.security.test_fuzz_forms import FORM_URLS, POST_ONLY_FIELDS, _field_names, _snapshot, _url, world  # noqa: F401

EXAMPLES = int(os.environ.get("PROVISIONER_RAW_FUZZ_EXAMPLES", "40"))
RAW_SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True,
                        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                               HealthCheck.data_too_large, HealthCheck.filter_too_much])

NON_FINITE = ["NaN", "nan", "sNaN", "-sNaN", "Infinity", "-Infinity", "inf", "1e999999", "-1e999999", "1E+999999999",
              "0e-999999999", "9" * 400]
CHARSETS = ["", "utf-8", "UTF-8", "utf-16", "utf-16-le", "utf-32", "latin-1", "iso-8859-1", "cp1252", "ascii",
            "no-such-charset", "x" * 300]  # (a NUL in a header value never reaches Django: gunicorn answers 400)
CONTENT_TYPES = ["application/x-www-form-urlencoded", "multipart/form-data; boundary=BOUNDARY",
                 "multipart/form-data", "multipart/form-data; boundary=", "application/json", "text/plain",
                 "application/xml", "application/octet-stream", ""]

values = st.one_of(st.sampled_from(NON_FINITE), st.text(max_size=30), st.sampled_from(["", "0.01", "-1", "\x00", "\ud800"]),
                   st.floats(allow_nan=True, allow_infinity=True).map(repr))
# the measured cases always run, whatever hypothesis generates besides
KNOWN = [(b"name=x&amount_usd=NaN", "application/x-www-form-urlencoded; charset=utf-16", {}),
         (b"username=a&password=b", "application/x-www-form-urlencoded; charset=utf-32", {}),
         (b"name=x", "application/x-www-form-urlencoded", {"HTTP_X_REQUEST_ID": "r" * 100}),
         (b"max_price_per_hour=sNaN&amount_usd=1e999999", "application/x-www-form-urlencoded", {})]
header_values = st.one_of(st.text(max_size=20), st.text(min_size=65, max_size=400), st.sampled_from(["", "x" * 100,
                          "id with spaces", "abc\u00e9", "\u202e", "1" * 64]))


def _encode(text: str, charset: str) -> bytes:
    try:
        return text.encode(charset or "utf-8", errors="surrogatepass")
    except (LookupError, ValueError):
        return text.encode("utf-8", errors="surrogatepass")


@st.composite
def raw_requests(draw, fields: list[str]):
    ctype = draw(st.sampled_from(CONTENT_TYPES))
    charset = draw(st.sampled_from(CHARSETS))
    data = draw(st.dictionaries(st.sampled_from(fields or ["name"]), values, max_size=len(fields or ["name"])))
    kind = draw(st.sampled_from(["form", "multipart", "json", "binary"]))
    if kind == "form":
        body = b"&".join(quote_from_bytes(_encode(k, charset)).encode() + b"=" + quote_from_bytes(_encode(v, charset)).encode()
                         for k, v in data.items())
    elif kind == "multipart":
        parts = [f'--BOUNDARY\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n' for k, v in data.items()]
        body = _encode("".join(parts) + draw(st.sampled_from(["--BOUNDARY--\r\n", "", "--BOUND"])), charset)
    elif kind == "json":
        raw = json.dumps({k: v for k, v in data.items()}, ensure_ascii=draw(st.booleans()))
        for token in draw(st.lists(st.sampled_from(NON_FINITE), max_size=2)):
            raw = raw.replace('""', token, 1)
        body = _encode(raw, charset)
    else:
        body = draw(st.binary(max_size=300))
    full_type = ctype + (f"; charset={charset}" if charset and ctype and "charset" not in ctype else "")
    headers = {"HTTP_X_REQUEST_ID": draw(header_values), "HTTP_USER_AGENT": draw(header_values),
               "HTTP_X_FORWARDED_FOR": draw(header_values)}
    if draw(st.booleans()):
        headers["HTTP_HX_REQUEST"] = "true"
        headers["HTTP_HX_CURRENT_URL"] = draw(header_values)
    return body, full_type, headers


@pytest.mark.django_db
@pytest.mark.parametrize("name", FORM_URLS)
def test_raw_bodies_never_500_nor_half_save(client, world, name):  # noqa: F811
    from django.test import Client

    client.force_login(world["owner"])
    url = _url(client, name, world)
    page = client.get(url)
    fields = POST_ONLY_FIELDS.get(name) or _field_names(page.content.decode(errors="replace"))
    raw_client = Client(raise_request_exception=False)
    raw_client.cookies = client.cookies  # the same session (and wizard state)

    @RAW_SETTINGS
    @given(req=raw_requests(fields))
    @example(req=KNOWN[0])
    @example(req=KNOWN[1])
    @example(req=KNOWN[2])
    @example(req=KNOWN[3])
    def post(req):
        body, content_type, headers = req
        cache.clear()  # the login throttle and heartbeat limits stay out of the way
        before = _snapshot()
        resp = raw_client.generic("POST", url, body, content_type=content_type, **headers)
        assert resp.status_code < 500, f"POST {url} {content_type!r} {body[:200]!r} {headers!r} -> {resp.status_code}"
        if resp.status_code not in (301, 302, 303):
            assert _snapshot() == before, f"POST {url} was refused ({resp.status_code}) but changed the database"

    post()


@pytest.mark.django_db
def test_raw_bodies_to_login_and_heartbeat(world):  # noqa: F811
    from django.test import Client

    from workloads.autoshutdown.telemetry import agent_token_issue

    pod = world["own"]["pod"]
    token = agent_token_issue(pod=pod)
    targets = [(reverse("login"), {}), (reverse("workloads:agent_heartbeat", kwargs={"pk": pod.pk}),
                                        {"HTTP_AUTHORIZATION": f"Bearer {token}"})]
    c = Client(raise_request_exception=False)

    @RAW_SETTINGS
    @given(req=raw_requests(["username", "password", "gpus", "error", "source", "interval"]), target=st.sampled_from(targets))
    @example(req=KNOWN[1], target=targets[0])
    @example(req=(b'--B\r\nContent-Disposition: form-data; name="gpus"\r\n\r\n1\r\n--B--\r\n',
                  "multipart/form-data; boundary=B", {}), target=targets[1])
    @example(req=(b'{"gpus": [{"index": 0, "util": 1}], "error": "gpu\\u0000fault"}', "application/json", {}),
             target=targets[1])
    @example(req=(b'{"gpus": [{"index": 0, "util": 1}], "error": "\\ud800"}', "application/json", {}), target=targets[1])
    def post(req, target):
        body, content_type, headers = req
        url, auth = target
        cache.clear()
        before = _snapshot()
        resp = c.generic("POST", url, body, content_type=content_type, **headers, **auth)
        assert resp.status_code < 500, f"POST {url} {content_type!r} {body[:200]!r} -> {resp.status_code}"
        if resp.status_code >= 300:
            assert _snapshot() == before

    post()
