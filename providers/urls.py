from django.urls import path

from . import views

app_name = "providers"
urlpatterns = [
    path("", views.provider_list, name="list"),
    path("connect/", views.connect, name="connect"),
    path("connect/<str:wizard_id>/cancel/", views.wizard_cancel, name="wizard_cancel"),
    path("connect/<str:wizard_id>/<slug:step>/", views.wizard_step, name="wizard_step"),
    path("capacity/", views.capacity, name="capacity"),
    path("<uuid:pk>/", views.provider_detail, name="detail"),
    path("<uuid:pk>/edit/", views.account_edit, name="edit"),
    path("<uuid:pk>/credentials/", views.account_credentials, name="credentials"),
    path("<uuid:pk>/poll/", views.account_poll, name="poll"),
    path("<uuid:pk>/remove/", views.account_remove, name="remove"),
]
