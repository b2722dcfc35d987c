"""The provider connection wizard: steps, validation, Back/Next, refresh, abandonment,
permissions, secrets, against the Sandbox and the RunPod stand-in (served on 127.0.0.1)."""

from __future__ import annotations

import re

import pytest
from django.contrib.sessions.models import Session
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from providers.adapters import registry
from providers.adapters.base import CredentialField, InvalidCredentials, ProviderInfo
from providers.adapters.sandbox import SandboxAdapter
from providers.models import ProviderAccount
from tests.standins.fixtures import STANDIN_CREDENTIALS, robot_ssh_key, served_hetzner, served_runpod  # noqa: F401

CONNECT = "/providers/connect/"
RUNPOD_KEY = STANDIN_CREDENTIALS["runpod"]["api_key"]


def _step_url(response) -> str:
    assert response.status_code == 302, response.content.decode()[:2000]
    return response["Location"]


def start(client, kind: str = "sandbox") -> str:
    """Pick the provider; returns the credentials step URL."""
    return _step_url(client.post(CONNECT, {"kind": kind}))


def walk_to_review(client, kind="sandbox", creds=None, cap="250", preset="any", countries="", gpu=None) -> str:
    url = start(client, kind)
    url = _step_url(client.post(url, {"name": f"My {kind}", **(creds or {})}))
    url = _step_url(client.post(url, {"spending_cap_usd": cap, "spending_cap_period": "month"}))
    url = _step_url(client.post(url, {"preset": preset, "countries": countries, "regions": ""}))
    if gpu is None:
        body = client.get(url).content.decode()
        gpu = re.search(r'name="default_gpu_class" value="([^"]+)"', body).group(1)
    url = _step_url(client.post(url, {"default_gpu_class": gpu}))
    assert url.endswith("/review/")
    return url


def wizard_sessions_text() -> str:
    return " ".join(str(s.get_decoded()) for s in Session.objects.all())


@pytest.mark.django_db
def test_sandbox_journey_creates_nothing_until_connect(owner_client, tenant):
    page = owner_client.get(CONNECT).content.decode()
    assert "Connect a provider" in page and 'data-kind="sandbox"' in page
    review = walk_to_review(owner_client, preset="EU")  # the first class offered in the EU (seed-dependent)
    assert not ProviderAccount.objects.exists()  # nothing in the DB before the last step
    body = owner_client.get(review).content.decode()
    assert "Live capacity now" in body and any(r in body for r in ("sbx-de-fra", "sbx-nl-ams", "sbx-fi-hel"))
    assert "sbx-us-east" not in body  # the EU-only choice applies to the live listing
    response = owner_client.post(review, {"_nav": "next"}, follow=True)
    account = ProviderAccount.objects.get()
    assert account.tenant == tenant and account.kind == "sandbox" and account.name == "My sandbox"
    assert account.spending_cap_usd == 250 and account.spending_cap_period == "month"
    assert "DE" in account.allowed_countries and "US" not in account.allowed_countries
    assert account.default_gpu_class in set(account.offers.values_list("gpu_class", flat=True))
    assert account.offer_count > 0 and account.offers.count() == account.offer_count
    assert set(account.offers.values_list("country", flat=True)) <= set(account.allowed_countries)
    assert response.redirect_chain[-1][0] == reverse("providers:detail", args=[account.pk])
    assert f"Connected {account.name}" in response.content.decode()
    assert review.split("/")[3] not in wizard_sessions_text()  # the wizard's state is dropped


@pytest.mark.django_db
def test_each_step_validates_on_the_server(owner_client):
    assert "Pick a provider" in owner_client.post(CONNECT, {}).content.decode()
    assert owner_client.post(CONNECT, {"kind": "nope"}).status_code == 200  # re-rendered with the error
    url = start(owner_client)
    assert "This field is required" in owner_client.post(url, {"name": ""}).content.decode()
    cap = _step_url(owner_client.post(url, {"name": "S"}))
    body = owner_client.post(cap, {"spending_cap_usd": "-5", "spending_cap_period": "month"}).content.decode()
    assert "greater than or equal to 0" in body
    regions = _step_url(owner_client.post(cap, {"spending_cap_usd": "10", "spending_cap_period": "week"}))
    body = owner_client.post(regions, {"preset": "custom", "countries": ""}).content.decode()
    assert "List at least one country" in body
    body = owner_client.post(regions, {"preset": "custom", "countries": "DE, XYZ"}).content.decode()
    assert "Not ISO country codes or presets: XYZ" in body
    gpu = _step_url(owner_client.post(regions, {"preset": "custom", "countries": "DE, fi"}))
    body = owner_client.post(gpu, {"default_gpu_class": "B200"}).content.decode()  # the Sandbox has no B200
    assert "Select a valid choice" in body
    assert not ProviderAccount.objects.exists()


@pytest.mark.django_db
def test_gpu_step_offers_only_the_providers_classes(owner_client):
    url = start(owner_client)
    url = _step_url(owner_client.post(url, {"name": "S"}))
    url = _step_url(owner_client.post(url, {"spending_cap_usd": "10", "spending_cap_period": "day"}))
    url = _step_url(owner_client.post(url, {"preset": "any"}))
    body = owner_client.get(url).content.decode()
    offered = set(re.findall(r'name="default_gpu_class" value="([^"]+)"', body))
    from providers.adapters.sandbox import SANDBOX_PRICES

    assert offered and offered <= set(SANDBOX_PRICES)
    assert "B200" not in offered and "H200" not in offered


@pytest.mark.django_db
def test_back_and_forward_keep_what_was_typed(owner_client):
    creds = start(owner_client)
    cap = _step_url(owner_client.post(creds, {"name": "Research sandbox"}))
    regions = _step_url(owner_client.post(cap, {"spending_cap_usd": "1234.50", "spending_cap_period": "week"}))
    # type on the regions step, then go Back without finishing it: the typing is kept
    back = _step_url(owner_client.post(regions, {"_nav": "back", "preset": "custom", "countries": "DE, FR"}))
    assert back == cap
    body = owner_client.get(cap).content.decode()
    assert 'value="1234.50"' in body and 'value="week" selected' in body
    body = owner_client.get(creds).content.decode()
    assert 'value="Research sandbox"' in body
    # forward again: both the valid step and the draft come back
    assert _step_url(owner_client.post(cap, {"spending_cap_usd": "1234.50", "spending_cap_period": "week"})) == regions
    body = owner_client.get(regions).content.decode()
    assert 'value="DE, FR"' in body and re.search(r'value="custom"[^>]*checked', body)


@pytest.mark.django_db
def test_refresh_and_a_new_request_lose_nothing(owner_client):
    # the GPU step offers the classes the Sandbox has in the US this hour (its availability moves
    # with the hour, so a fixed class like T4 is sometimes not offered): take the first one offered
    url = start(owner_client, "sandbox")
    url = _step_url(owner_client.post(url, {"name": "My sandbox"}))
    url = _step_url(owner_client.post(url, {"spending_cap_usd": "77", "spending_cap_period": "month"}))
    url = _step_url(owner_client.post(url, {"preset": "US", "countries": "", "regions": ""}))
    gpu = re.search(r'name="default_gpu_class" value="([^"]+)"', owner_client.get(url).content.decode()).group(1)
    review = _step_url(owner_client.post(url, {"default_gpu_class": gpu}))
    for _ in range(2):  # a reload of the same URL renders the same state
        body = owner_client.get(review).content.decode()
        assert "$77" in body and gpu in body and "US" in body
    # the step list links back to every finished step
    wizard_id = review.split("/")[3]
    for step in ("credentials", "cap", "regions", "gpu"):
        assert f"/providers/connect/{wizard_id}/{step}/" in body


@pytest.mark.django_db
def test_cannot_skip_ahead(owner_client):
    creds = start(owner_client)
    wizard_id = creds.split("/")[3]
    response = owner_client.get(f"/providers/connect/{wizard_id}/review/")
    assert response.status_code == 302 and response["Location"] == creds
    response = owner_client.post(f"/providers/connect/{wizard_id}/review/", {"_nav": "next"})
    assert response["Location"] == creds
    assert not ProviderAccount.objects.exists()


@pytest.mark.django_db
def test_cancel_and_abandon_save_nothing(owner_client):
    review = walk_to_review(owner_client)
    wizard_id = review.split("/")[3]
    assert wizard_id in wizard_sessions_text()
    response = owner_client.post(f"/providers/connect/{wizard_id}/cancel/", follow=True)
    assert "Nothing was saved" in response.content.decode()
    assert wizard_id not in wizard_sessions_text()
    assert not ProviderAccount.objects.exists()
    # the cancelled wizard's URLs lead back to a fresh start
    assert owner_client.get(review)["Location"] == CONNECT
    # simply walking away leaves nothing either
    walk_to_review(owner_client)
    assert not ProviderAccount.objects.exists()


@pytest.mark.django_db
def test_duplicate_name_is_refused_inline(owner_client, sandbox):
    url = start(owner_client)
    body = owner_client.post(url, {"name": sandbox.name}).content.decode()
    assert "already have a provider account with this name" in body
    # the proposed name avoids taken ones
    sandbox.name = "Sandbox"
    sandbox.save()
    assert 'value="Sandbox 2"' in owner_client.get(start(owner_client)).content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize("persona", ["developer", "finance", "viewer"])
def test_only_provider_managers_see_the_wizard(client, owner, persona, request):
    client.force_login(owner)
    creds = start(client)
    client.force_login(request.getfixturevalue(persona))
    assert client.get(CONNECT).status_code == 403
    assert client.post(CONNECT, {"kind": "sandbox"}).status_code == 403
    assert client.get(creds).status_code == 403
    assert not ProviderAccount.objects.exists()


@pytest.mark.django_db
def test_a_wizard_is_bound_to_its_session_and_organization(client, owner, outsider):
    client.force_login(owner)
    creds = start(client)
    other = client.__class__()
    other.force_login(outsider)  # an admin of another organization
    response = other.get(creds)
    assert response.status_code == 302 and response["Location"] == CONNECT
    assert other.post(creds, {"name": "x"})["Location"] == CONNECT
    assert not ProviderAccount.objects.exists()


@pytest.mark.django_db
def test_htmx_steps_swap_the_panel_and_push_the_url(owner_client):
    htmx = {"HTTP_HX_REQUEST": "true"}
    response = owner_client.post(CONNECT, {"kind": "sandbox"}, **htmx)
    assert response.status_code == 200
    body = response.content.decode()
    assert body.lstrip().startswith("<div id=\"wizard\"") and "<html" not in body
    assert 'data-step="credentials"' in body
    creds_url = response["HX-Push-Url"]
    assert creds_url.endswith("/credentials/")
    response = owner_client.post(creds_url, {"name": ""}, **htmx)
    # 200, not 422: htmx swaps only 2xx answers, and the re-rendered step carries the errors
    assert response.status_code == 200 and "This field is required" in response.content.decode()
    response = owner_client.get(creds_url)  # a refresh of the pushed URL renders the whole page
    assert "<html" in response.content.decode() and 'data-step="credentials"' in response.content.decode()


# --- a real provider kind: RunPod through its stand-in on 127.0.0.1 ---------------------------


@pytest.mark.django_db
def test_runpod_wrong_key_inline_error_saves_nothing_and_is_not_echoed(owner_client, served_runpod):  # noqa: F811
    creds = start(owner_client, "runpod")
    page = owner_client.get(creds).content.decode()
    assert 'name="api_key"' in page and 'type="password"' in page and "API base URL (advanced)" in page
    wrong = "rpa_WRONG_KEY_never_echo_123456"
    response = owner_client.post(creds, {"name": "RunPod", "api_key": wrong, "base_url": served_runpod.url})
    body = response.content.decode()
    assert response.status_code == 200 and "refused these credentials" in body
    assert wrong not in body  # not in the re-rendered field, not in the error message
    assert 'value="RunPod"' in body and served_runpod.url in body  # non-secrets are kept
    assert not ProviderAccount.objects.exists()
    assert wrong not in wizard_sessions_text()


@pytest.mark.django_db
def test_runpod_right_key_connects_with_live_offers(owner_client, tenant, served_runpod):  # noqa: F811
    review = walk_to_review(owner_client, "runpod", creds={"api_key": RUNPOD_KEY, "base_url": served_runpod.url})
    # the verified key is sealed in the session, never stored in clear
    assert RUNPOD_KEY not in wizard_sessions_text()
    body = owner_client.get(review).content.decode()
    assert "Live capacity now" in body and "No offers yet" not in body
    assert RUNPOD_KEY not in body
    # Back to the credentials step: the key is held (leave blank to keep it), never rendered
    wizard_id = review.split("/")[3]
    body = owner_client.get(f"/providers/connect/{wizard_id}/credentials/").content.decode()
    assert "A value is stored" in body and RUNPOD_KEY not in body
    owner_client.post(review, {"_nav": "next"})
    account = ProviderAccount.objects.get(tenant=tenant)
    assert account.kind == "runpod" and account.credentials == {"api_key": RUNPOD_KEY}
    assert account.settings["base_url"] == served_runpod.url
    assert account.offer_count > 0 and account.health == "ok"
    assert wizard_id not in wizard_sessions_text()  # dropped after connect


@pytest.mark.django_db
def test_base_url_override_needs_the_setting(owner_client, settings):
    settings.PROVIDER_BASE_URL_OVERRIDE_ALLOWED = False
    creds = start(owner_client, "runpod")
    assert "API base URL" not in owner_client.get(creds).content.decode()


# --- a provider whose credential is a file (kubeconfig, service-account JSON) -------------------

KUBECONFIG = "apiVersion: v1\nkind: Config\nusers:\n- name: u\n  user:\n    token: kube-token-SECRET-0123456789\n"


class FileCredentialAdapter(SandboxAdapter):
    info = ProviderInfo(kind="test_filecred", label="File cluster", description="tests", supports_spot=False,
                        credential_fields=(
                            CredentialField("kubeconfig", "Kubeconfig", multiline=True, file=True),
                            CredentialField("namespace", "Namespace", secret=False, required=False),
                        ))

    def verify(self) -> None:
        if "kube-token-SECRET" not in str(self.credentials.get("kubeconfig", "")):
            raise InvalidCredentials("Unauthorized: the token in this kubeconfig was refused")


@pytest.fixture
def file_kind(monkeypatch):
    monkeypatch.setitem(registry.ADAPTERS, "test_filecred", f"{__name__}:FileCredentialAdapter")


@pytest.mark.django_db
def test_credential_file_upload_or_paste_never_echoed(owner_client, file_kind):
    creds = start(owner_client, "test_filecred")
    page = owner_client.get(creds).content.decode()
    assert 'type="file" name="kubeconfig"' in page and 'name="kubeconfig__paste"' in page
    assert 'enctype="multipart/form-data"' in page
    # nothing given: a clear inline error
    body = owner_client.post(creds, {"name": "Cluster"}).content.decode()
    assert "Upload the file or paste its content" in body
    # a wrong pasted kubeconfig: refused inline, the pasted text not rendered back
    bad = KUBECONFIG.replace("kube-token-SECRET", "kube-token-WRONG")
    body = owner_client.post(creds, {"name": "Cluster", "kubeconfig__paste": bad, "namespace": "ml"}).content.decode()
    assert "refused" in body and "kube-token-WRONG" not in body and 'value="ml"' in body
    # the right file, uploaded
    upload = SimpleUploadedFile("config", KUBECONFIG.encode(), content_type="application/octet-stream")
    cap = _step_url(owner_client.post(creds, {"name": "Cluster", "kubeconfig": upload, "namespace": "ml"}))
    assert cap.endswith("/cap/")
    assert "kube-token-SECRET" not in wizard_sessions_text()  # sealed in the session
    body = owner_client.get(creds).content.decode()
    assert "A value is stored" in body and "kube-token-SECRET" not in body
    # Next without re-uploading keeps the verified file
    assert _step_url(owner_client.post(creds, {"name": "Cluster", "namespace": "ml"})) == cap


@pytest.mark.django_db
def test_hetzner_ssh_key_must_match_the_fingerprint_and_is_never_echoed(owner_client, served_hetzner):  # noqa: F811
    """The worker logs in to delivered servers with the account's private key: a key that is not
    the one whose fingerprint orders install is refused inline, before any login to Robot."""
    creds = start(owner_client, "hetzner")
    other = robot_ssh_key(b"another-key-another-key-32bytes!")
    form = {"name": "Hetzner", "base_url": served_hetzner.url, **STANDIN_CREDENTIALS["hetzner"],
            "ssh_private_key": other["ssh_private_key"]}
    response = owner_client.post(creds, form)
    body = response.content.decode()
    assert response.status_code == 200 and f"fingerprint is {other['ssh_key_fingerprint']}" in body
    assert "PRIVATE KEY" not in body and not ProviderAccount.objects.exists()
    assert served_hetzner.standin.exchanges == []  # no login attempt spent on it
    response = owner_client.post(creds, {**form, "ssh_private_key": STANDIN_CREDENTIALS["hetzner"]["ssh_private_key"]})
    assert response.status_code == 302 and response["Location"].endswith("/cap/")
    assert "PRIVATE KEY" not in wizard_sessions_text()  # sealed in the session


@pytest.mark.django_db
def test_hetzner_credentials_step_says_a_refused_login_is_not_retried(owner_client):
    page = owner_client.get(start(owner_client, "hetzner")).content.decode()
    assert "10 minutes after 3 failed logins" in page and "never retried automatically" in page
    assert 'name="ssh_private_key"' in page


# --- issue 15 §2.3/§2.4: residency presets and no silent widening ---------------------------------


def _to_regions(client) -> str:
    url = start(client, "sandbox")
    url = _step_url(client.post(url, {"name": "My sandbox"}))
    return _step_url(client.post(url, {"spending_cap_usd": "100", "spending_cap_period": "month"}))


def _saved_regions(client, url) -> list[str]:
    wizard_id = url.strip("/").split("/")[-2]
    entry = client.session["provider_wizards"][wizard_id]
    return entry["steps"]["regions"]["clean"]["allowed_countries"]


@pytest.mark.django_db
def test_eu_and_eea_are_distinct_presets(owner_client):
    from providers.catalog import expand_countries

    eu, eea = expand_countries(["EU"]), expand_countries(["EEA"])
    assert len(eu) == 27 and not {"IS", "LI", "NO", "CH", "GB"} & set(eu)
    assert len(eea) == 30 and set(eea) - set(eu) == {"IS", "LI", "NO"}
    regions = _to_regions(owner_client)
    page = owner_client.get(regions).content.decode()
    assert "EU only (the 27 member states)" in page and "EEA only (EU + Iceland, Liechtenstein, Norway)" in page
    _step_url(owner_client.post(regions, {"preset": "EU", "countries": "", "regions": ""}))
    assert sorted(_saved_regions(owner_client, regions)) == sorted(eu)


@pytest.mark.django_db
def test_widening_a_saved_residency_choice_needs_an_explicit_confirmation(owner_client):
    regions = _to_regions(owner_client)
    _step_url(owner_client.post(regions, {"preset": "EU", "countries": "", "regions": ""}))
    # the form shows the saved choice
    assert re.search(r'value="EU"[^>]*checked|checked[^>]*value="EU"', owner_client.get(regions).content.decode())
    # a stale form posting "Anywhere" (or EEA, wider than EU) is refused inline; EU stays saved
    for preset in ("any", "EEA"):
        response = owner_client.post(regions, {"preset": preset, "countries": "", "regions": ""})
        assert response.status_code == 200
        body = response.content.decode()
        assert "This widens where pods may run" in body and 'name="confirm_widen"' in body
        assert "NO" not in _saved_regions(owner_client, regions) and len(_saved_regions(owner_client, regions)) == 27
    # narrowing needs no confirmation
    _step_url(owner_client.post(regions, {"preset": "custom", "countries": "DE", "regions": ""}))
    assert _saved_regions(owner_client, regions) == ["DE"]
    # widening with the box ticked is a deliberate choice; the box is never refilled afterwards
    _step_url(owner_client.post(regions, {"preset": "any", "countries": "", "regions": "", "confirm_widen": "on"}))
    assert _saved_regions(owner_client, regions) == []
    assert 'name="confirm_widen"' not in owner_client.get(regions).content.decode()  # nothing narrower to protect


# --- ux-expectations A: key / quota prerequisites stated up front ---------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("kind, fact", [
    ("aws", "Running On-Demand G and VT instances"),
    ("gcp", "GPUS_ALL_REGIONS"),
    ("azure", "Total Regional Spot vCPUs"),
    ("lambda", "SSH key already added"),
    ("kubernetes", "nvidia.com/gpu"),
])
def test_credentials_step_states_the_providers_prerequisites_before_anything_is_typed(owner_client, kind, fact):
    page = owner_client.get(start(owner_client, kind)).content.decode()
    before = page.index('id="prerequisites"')
    assert fact in page[before:] and before < page.index("<input", before)  # above the form's fields


def test_every_registered_provider_has_its_prerequisites_with_sources():
    from providers.adapters.registry import ADAPTERS
    from providers.prerequisites import PREREQUISITES

    assert set(PREREQUISITES) == set(ADAPTERS)
    for kind, items in PREREQUISITES.items():
        assert kind == "sandbox" or items, kind
        assert all(p.text and p.source for p in items), kind


@pytest.mark.django_db
def test_the_sandbox_needs_no_prerequisites_box(owner_client):
    assert 'id="prerequisites"' not in owner_client.get(start(owner_client, "sandbox")).content.decode()
