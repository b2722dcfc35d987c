"""Finance sees a provider's billing drift on the Spend page, in real Chromium.

A RunPod account of the demo organization points at the RunPod stand-in served on 127.0.0.1.
Two pods of ours ran there (metered by the real path); RunPod's billing endpoint reports the
first day $1 higher than we booked and the second day exactly. The daily reconciliation task
runs as beat would; finance opens Spend and finds the drift flagged on the account and day,
the other day matching, the drift alert in the banner, and the Lambda account marked as having
no billing API. The app's clock is frozen at a fixed instant (the live server reads it too).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from billing.rollups import rollup_dirty
from billing.tasks import reconcile_provider_billing
from providers.models import ProviderAccount
from provisioner import clock
from tests.billing.helpers import make_pod, run_timeline
from tests.e2e.helpers import log_in
from tests.standins import fixtures as _fx
from tests.standins.fixtures import STANDIN_CREDENTIALS, account_settings
from workloads.models import PodState

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("browser")]
served_runpod = _fx.served_runpod

H = timedelta(hours=1)
NOW = datetime(2026, 3, 18, 12, 0, tzinfo=UTC)


def _ran(tenant, project, owner, acct, *, start: datetime, hours: int, price: str, external_id: str):
    with clock.frozen(start):
        pod = make_pod(tenant, project, owner, acct, price=price, name=f"train-{external_id[-2:]}")
    pod.external_id = external_id
    pod.save(update_fields=["external_id"])
    run_timeline(pod, start, [(timedelta(0), PodState.RUNNING), (hours * H, PodState.TERMINATED)], meter_every=H)


@pytest.fixture
def drift(demo, served_runpod):
    from django.contrib.auth import get_user_model

    from tenants.models import Tenant

    tenant = Tenant.objects.get(slug="acme")
    project = tenant.projects.get(name="Default")
    admin = get_user_model().objects.get(username="admin")
    runpod = ProviderAccount.objects.create(tenant=tenant, kind="runpod", name="RunPod prod",
                                            credentials=STANDIN_CREDENTIALS["runpod"], settings=account_settings(served_runpod))
    ProviderAccount.objects.create(tenant=tenant, kind="lambda", name="Lambda main", credentials={"api_key": "k"})
    with clock.frozen(NOW):
        _ran(tenant, project, admin, runpod, start=datetime(2026, 3, 16, 8, tzinfo=UTC), hours=5, price="2.00",
             external_id="podaaaaaaaaaa1")  # we book $10.00 on the 16th
        _ran(tenant, project, admin, runpod, start=datetime(2026, 3, 17, 8, tzinfo=UTC), hours=3, price="2.00",
             external_id="podbbbbbbbbbb2")  # and $6.00 on the 17th
        served_runpod.standin.bill("podaaaaaaaaaa1", "2026-03-16", gpu=10.5, disk=0.5)  # RunPod: $11.00
        served_runpod.standin.bill("podbbbbbbbbbb2", "2026-03-17", gpu=6.0)
        rollup_dirty()  # the dashboard's history, as the hourly task builds it
        reconcile_provider_billing()  # the daily task, as beat runs it
        yield runpod


@pytest.mark.django_db(transaction=True)
def test_finance_sees_drift_flagged_on_the_spend_page(live_server, page, drift, tmp_path):
    page.set_default_timeout(20_000)
    log_in(page, live_server.url, "finance", "finance-demo-2026", "/")
    page.click("header >> a:text-is('Spend')")
    expect(page.locator("h1")).to_have_text("Spend")

    card = page.get_by_label("Provider reconciliation")  # loaded after the page
    row = card.locator("[data-testid=recon-row][data-account='RunPod prod']")
    expect(row.get_by_test_id("recon-ours")).to_have_text("$16.00")
    expect(row.get_by_test_id("recon-provider")).to_have_text("$17.00")
    expect(row.get_by_test_id("recon-drift")).to_have_text("-1.00 (-5.9%)")
    expect(row.get_by_test_id("recon-drift")).to_have_class("num bad")
    status = row.get_by_test_id("recon-status")
    expect(status).to_contain_text("Drift flagged")
    expect(status).to_contain_text("2026-03-16: $10.00 booked vs $11.00 charged")
    expect(status).not_to_contain_text("2026-03-17")  # that day matched
    expect(status).not_to_contain_text("without the provider's figure")  # the first run fetched 35 days back
    lam = card.locator("[data-testid=recon-row][data-account='Lambda main']")
    expect(lam).to_contain_text("has no billing API")
    expect(page.get_by_role("alert").filter(has_text="Billing drift")).to_contain_text(
        'Billing drift on "RunPod prod" for 2026-03-16 (UTC): we booked $10.00, RunPod charged $11.00')
    page.screenshot(path=str(tmp_path / "spend-reconciliation.png"), full_page=True)

    # narrowing the period to the 17th alone: the card follows the dashboard's filters
    page.select_option("#f-range", "custom")
    page.fill("#f-from", "2026-03-17")
    page.fill("#f-to", "2026-03-17")
    page.click("form.filters button[type=submit]")
    expect(row.get_by_test_id("recon-status")).to_contain_text("Matches")
    expect(row.get_by_test_id("recon-drift")).to_have_text("0.00 (0.0%)")
