"""403, 404 and 500 pages: in the app's layout, saying what the user can do next."""

import uuid

import pytest
from django.test import RequestFactory

from provisioner.errors import server_error


@pytest.mark.django_db
def test_403_names_the_role_the_refused_action_and_whom_to_ask(client, finance, owner):
    client.force_login(finance)
    response = client.get("/providers/connect/")
    html = response.content.decode()
    assert response.status_code == 403
    assert 'id="error-403"' in html and 'class="top"' in html  # the app's layout, with its menu
    assert "Your role (Finance) cannot connect or change providers." in html
    assert owner.username in html and "Ask an owner" in html


@pytest.mark.django_db
def test_404_in_the_layout_with_ways_forward(client, developer):
    client.force_login(developer)
    response = client.get(f"/pods/{uuid.uuid4()}/")
    html = response.content.decode()
    assert response.status_code == 404
    assert 'id="error-404"' in html and 'class="top"' in html
    assert 'href="/pods/"' in html and "belongs to another organization" in html


def test_500_stands_alone_and_says_what_to_do():
    response = server_error(RequestFactory().get("/launch/"))
    html = response.content.decode()
    assert response.status_code == 500
    assert 'id="error-500"' in html and "/static/css/app.css" in html
    assert "saved whole or not at all" in html and 'href="/pods/"' in html
