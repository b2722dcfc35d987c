from django.urls import path

from . import views

app_name = "billing"
urlpatterns = [
    path("", views.spend, name="spend"),
    path("export.csv", views.spend_export, name="export"),
    path("views/", views.saved_views, name="saved_views"),
    path("reconciliation/", views.reconciliation, name="reconciliation"),
    path("views/save/", views.saved_view_save, name="saved_view_save"),
    path("views/<uuid:pk>/delete/", views.saved_view_delete, name="saved_view_delete"),
    path("budgets/", views.budgets, name="budgets"),
    path("budgets/<uuid:pk>/", views.budget_edit, name="budget_edit"),
    path("rates/", views.invoice_rates, name="rates"),
    path("rates/<int:pk>/clear/", views.invoice_rate_clear, name="rate_clear"),
    path("alerts/", views.alerts, name="alerts"),
    path("alerts/digest/", views.digest_update, name="digest"),
    path("alerts/badge/", views.alerts_badge, name="alerts_badge"),
]
