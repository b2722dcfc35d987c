from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("org/switch/", views.switch_tenant, name="switch_tenant"),
]
