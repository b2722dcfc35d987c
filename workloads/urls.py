from django.urls import path

from . import views, views_telemetry

app_name = "workloads"
urlpatterns = [
    path("pods/", views.pod_list, name="pod_list"),
    path("pods/<uuid:pk>/", views.pod_detail, name="pod_detail"),
    path("pods/<uuid:pk>/terminate/", views.pod_terminate, name="pod_terminate"),
    path("pods/<uuid:pk>/utilization/", views_telemetry.pod_utilization, name="pod_utilization"),
    path("agent/heartbeat/<uuid:pk>/", views_telemetry.agent_heartbeat, name="agent_heartbeat"),
    path("agent/provisioner_agent.py", views_telemetry.agent_script, name="agent_script"),
    path("launch/", views.launch, name="launch"),
    path("workloads/", views.workload_list, name="workload_list"),
    path("workloads/<uuid:pk>/", views.workload_detail, name="workload_detail"),
]
