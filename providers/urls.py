from django.urls import path

from . import views

app_name = "providers"
urlpatterns = [
    path("", views.provider_list, name="list"),
    path("connect/", views.connect, name="connect"),
    path("capacity/", views.capacity, name="capacity"),
    path("<uuid:pk>/", views.provider_detail, name="detail"),
]
