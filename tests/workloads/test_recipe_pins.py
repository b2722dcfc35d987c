"""Pinned recipes (ux-expectations C: "Recipe catalogue as cards: title, description, type icon,
pin"): a member pins a card, it comes first in their catalog only, and unpins it again."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from tests.factories import make_tenant
from workloads.models import Recipe, RecipePin
from workloads.recipes.services import builtin_catalog_install

CATALOG = reverse("workloads:recipe_catalog")


@pytest.fixture
def catalog(db):
    builtin_catalog_install()


def _slugs(html: str) -> list[str]:
    return re.findall(r'class="tile recipe-card" href="[^"]+" data-slug="([^"]+)"', html)


@pytest.mark.django_db
def test_a_pinned_recipe_comes_first_for_that_member_only(client, catalog, developer, owner, tenant):
    client.force_login(developer)
    before = _slugs(client.get(CATALOG).content.decode())
    last = before[-1]
    r = client.post(reverse("workloads:recipe_pin", args=[last]), {"next": f"{CATALOG}?source=builtin"})
    assert r.status_code == 302 and r["Location"] == f"{CATALOG}?source=builtin"  # back to the filtered catalog
    html = client.get(CATALOG).content.decode()
    assert _slugs(html)[0] == last and _slugs(html)[1:] == before[:-1]
    assert f'id="pin-{last}" aria-pressed="true"' in html
    client.force_login(owner)  # someone else's pins change nothing for the owner
    assert _slugs(client.get(CATALOG).content.decode()) == before
    client.force_login(developer)
    client.post(reverse("workloads:recipe_pin", args=[last]))  # unpin
    assert _slugs(client.get(CATALOG).content.decode()) == before
    assert not RecipePin.objects.exists()


@pytest.mark.django_db
def test_pins_keep_the_search_filter_and_refuse_other_orgs_and_foreign_redirects(client, catalog, developer, owner):
    other = make_tenant("Other org", slug="other-org")
    Recipe.objects.create(tenant=other, slug="their-recipe", name="Theirs", category="custom")
    client.force_login(developer)
    assert client.post(reverse("workloads:recipe_pin", args=["their-recipe"])).status_code == 404
    assert client.post(reverse("workloads:recipe_pin", args=["no-such-recipe"])).status_code == 404
    slug = _slugs(client.get(CATALOG).content.decode())[0]
    r = client.post(reverse("workloads:recipe_pin", args=[slug]), {"next": "https://evil.example/"})
    assert r["Location"] == CATALOG  # never an open redirect
    assert client.get(reverse("workloads:recipe_pin", args=[slug])).status_code == 405  # POST only
    html = client.get(CATALOG, {"q": slug[:4]}, HTTP_HX_REQUEST="true").content.decode()
    assert slug in _slugs(html) and "★" in html
