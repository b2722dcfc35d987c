from django.urls import path

from . import views, views_admin

urlpatterns = [
    path("", views.home, name="home"),
    path("org/switch/", views.switch_tenant, name="switch_tenant"),
    path("org/members/", views_admin.members, name="members"),
    path("org/members/<int:pk>/role/", views_admin.member_role, name="member_role"),
    path("org/members/<int:pk>/remove/", views_admin.member_remove, name="member_remove"),
    path("org/members/<int:pk>/projects/<uuid:project_pk>/grant/", views_admin.member_grant, name="member_grant"),
    path("org/invitations/<uuid:pk>/revoke/", views_admin.invitation_revoke_view, name="invitation_revoke"),
    path("invite/<str:token>/", views.invitation, name="invitation_accept"),
    path("org/audit/", views_admin.audit_log, name="audit_log"),
]
