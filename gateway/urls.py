from django.urls import path

from . import views

app_name = "gateway"

urlpatterns = [
    path("workloads/<uuid:pk>/cutover/", views.cutover_edit, name="cutover_edit"),
]
