"""Issue 16 §4: user-supplied outbound URLs (budget webhooks) reach public addresses only — never
loopback, private, link-local or metadata ranges, IPv4 or IPv6 — over https in production, with
no redirects, from a worker with retry and backoff. Names are resolved through a stub."""

from __future__ import annotations

import http.server
import threading
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest
from django.urls import reverse

from billing.budgets import alert_once, budget_create
from billing.models import Budget, BudgetAlert
from billing.webhooks import BACKOFF_SECONDS
from provisioner.outbound import OutboundRefused, address_problem, check_outbound_url

PUBLIC = "93.184.216.34"
REFUSED = ["127.0.0.1", "127.8.9.10", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "169.254.1.1",
           "100.64.0.1", "0.0.0.0", "224.0.0.1", "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
           "fd00:ec2::254", "::ffff:127.0.0.1", "::ffff:10.1.2.3", "2002:7f00:1::1", "ff02::1"]


@pytest.mark.parametrize("address", REFUSED)
def test_internal_addresses_are_refused(address):
    assert address_problem(address) is not None


@pytest.mark.parametrize("address", [PUBLIC, "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address):
    assert address_problem(address) is None


def _stub(settings, answers: dict[str, list[str]]):
    settings.OUTBOUND_RESOLVER = lambda host: answers[host]


@pytest.mark.parametrize("answers", [["10.0.0.5"], [PUBLIC, "127.0.0.1"], ["fd00:ec2::254"], ["::ffff:169.254.169.254"]])
def test_a_name_resolving_to_any_internal_address_is_refused(settings, answers):
    _stub(settings, {"hooks.example.com": answers})
    with pytest.raises(OutboundRefused):
        check_outbound_url("https://hooks.example.com/hook")


def test_https_only_in_production(settings):
    _stub(settings, {"hooks.example.com": [PUBLIC]})
    settings.PRODUCTION = True
    with pytest.raises(OutboundRefused, match="https"):
        check_outbound_url("http://hooks.example.com/hook")
    assert check_outbound_url("https://hooks.example.com/hook").address == PUBLIC
    for bad in ("ftp://hooks.example.com/", "https://user:pw@hooks.example.com/", "https:///nohost", "gopher://x"):
        with pytest.raises(OutboundRefused):
            check_outbound_url(bad)


@pytest.mark.django_db
@pytest.mark.parametrize("url", ["http://127.0.0.1:9/hook", "https://169.254.169.254/latest/meta-data/",
                                 "https://[::1]/hook", "https://internal.example.com/hook"])
def test_budget_form_refuses_internal_webhooks_inline(client, finance, settings, url):
    _stub(settings, {"internal.example.com": ["10.1.2.3"]})
    client.force_login(finance)
    r = client.post(reverse("billing:budgets"), {"name": "Team", "period": "month", "amount_usd": "100",
                                                 "soft_thresholds": "50", "webhook_url": url})
    assert r.status_code == 200 and "only public addresses" in r.content.decode()
    assert not Budget.objects.exists()


def _alert(tenant, url: str) -> tuple[Budget, BudgetAlert]:
    # stored directly, as a budget saved before this check existed would be
    budget = budget_create(tenant=tenant, name="Hooked", amount_usd=Decimal("10"), webhook_url=url,
                           webhook_secret="s3cret", soft_thresholds=[50])
    alert = alert_once(tenant_id=tenant.pk, period_start_at=datetime(2026, 3, 1, tzinfo=UTC), threshold=50,
                       spent=Decimal("6"), limit=Decimal("10"), message="Hooked at 50%", budget=budget)
    return budget, alert


class _Receiver(http.server.BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_POST(self):  # noqa: N802
        _Receiver.hits.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.mark.django_db
def test_the_measured_exploit_posts_nothing_to_a_local_port(tenant, django_capture_on_commit_callbacks):
    """The finance user's http://127.0.0.1:<port>/ webhook: a real local receiver gets nothing."""
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.hits = []
    try:
        with django_capture_on_commit_callbacks(execute=True):
            _, alert = _alert(tenant, f"http://127.0.0.1:{server.server_port}/steal")
    finally:
        server.shutdown()
    assert _Receiver.hits == []
    alert.refresh_from_db()
    assert alert.webhook_status.startswith("refused")


@pytest.mark.django_db
def test_rebinding_after_save_is_caught_at_send_time(tenant, settings, monkeypatch, django_capture_on_commit_callbacks):
    answers = {"hooks.example.com": [PUBLIC]}
    _stub(settings, answers)
    posted = []
    monkeypatch.setattr(httpx, "post", lambda *a, **kw: posted.append(a) or httpx.Response(204))
    check_outbound_url("https://hooks.example.com/hook")  # fine when saved
    answers["hooks.example.com"] = ["127.0.0.1"]  # ...then the name moves inside
    with django_capture_on_commit_callbacks(execute=True):
        _, alert = _alert(tenant, "https://hooks.example.com/hook")
    alert.refresh_from_db()
    assert posted == [] and alert.webhook_status.startswith("refused")


@pytest.mark.django_db
def test_send_connects_to_the_checked_address_and_never_follows_redirects(tenant, settings, monkeypatch,
                                                                            django_capture_on_commit_callbacks):
    _stub(settings, {"hooks.example.com": [PUBLIC]})
    calls = []

    def fake_post(url, **kw):
        calls.append((url, kw))
        return httpx.Response(302, headers={"Location": "http://169.254.169.254/"})

    monkeypatch.setattr(httpx, "post", fake_post)
    with django_capture_on_commit_callbacks(execute=True):
        _, alert = _alert(tenant, "https://hooks.example.com:8443/hook?x=1")
    (url, kw), = calls  # one request: the redirect was not followed, nor retried
    assert url == f"https://{PUBLIC}:8443/hook?x=1"
    assert kw["headers"]["Host"] == "hooks.example.com:8443" and kw["extensions"] == {"sni_hostname": "hooks.example.com"}
    assert kw["follow_redirects"] is False and kw["timeout"].connect <= 3 and kw["timeout"].read <= 5
    alert.refresh_from_db()
    assert alert.webhook_status == "HTTP 302 (redirect not followed)"


@pytest.mark.django_db
def test_failed_delivery_is_retried_from_the_worker_with_backoff(tenant, settings, monkeypatch,
                                                                 django_capture_on_commit_callbacks):
    from billing import tasks

    _stub(settings, {"hooks.example.com": [PUBLIC]})
    answers = [httpx.ConnectError("down"), httpx.Response(503), httpx.Response(204)]

    def fake_post(url, **kw):
        a = answers.pop(0)
        if isinstance(a, Exception):
            raise a
        return a

    countdowns = []

    def fake_apply_async(args, kwargs=None, countdown=None, **kw):
        if countdown is not None:  # a retry (the first send is a plain delay)
            countdowns.append(countdown)
        tasks.send_budget_webhook(*args)

    monkeypatch.setattr(httpx, "post", fake_post)
    monkeypatch.setattr(tasks.send_budget_webhook, "apply_async", fake_apply_async)
    with django_capture_on_commit_callbacks(execute=True):
        _, alert = _alert(tenant, "https://hooks.example.com/hook")
    assert countdowns == list(BACKOFF_SECONDS[:2]) and answers == []
    alert.refresh_from_db()
    assert alert.webhook_status == "HTTP 204"


@pytest.mark.django_db
def test_delivery_gives_up_after_the_last_backoff(tenant, settings, monkeypatch, django_capture_on_commit_callbacks):
    from billing import tasks

    _stub(settings, {"hooks.example.com": [PUBLIC]})
    monkeypatch.setattr(httpx, "post", lambda url, **kw: httpx.Response(500))
    countdowns = []

    def fake_apply_async(args, kwargs=None, countdown=None, **kw):
        if countdown is not None:
            countdowns.append(countdown)
        tasks.send_budget_webhook(*args)

    monkeypatch.setattr(tasks.send_budget_webhook, "apply_async", fake_apply_async)
    with django_capture_on_commit_callbacks(execute=True):
        _, alert = _alert(tenant, "https://hooks.example.com/hook")
    assert countdowns == list(BACKOFF_SECONDS)
    alert.refresh_from_db()
    assert alert.webhook_status == f"HTTP 500 (try {len(BACKOFF_SECONDS) + 1}, gave up)"
