from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from provisioner.security import ThrottledLoginView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", ThrottledLoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("providers/", include("providers.urls")),
    path("spend/", include("billing.urls")),
    path("", include("workloads.urls")),
    path("", include("gateway.urls")),
    path("", include("tenants.urls")),
]

handler403 = "provisioner.errors.permission_denied"
handler404 = "provisioner.errors.page_not_found"
handler500 = "provisioner.errors.server_error"
