from django.urls import path

from .autoshutdown import views as autoshutdown_views
from .placement import views as placement_views
from .pods import views as pod_views
from .recipes import views as recipe_views

app_name = "workloads"
urlpatterns = [
    path("pods/", pod_views.pod_list, name="pod_list"),
    path("pods/<uuid:pk>/", pod_views.pod_detail, name="pod_detail"),
    path("pods/<uuid:pk>/logs/", pod_views.pod_logs_view, name="pod_logs"),
    path("pods/<uuid:pk>/terminate/", pod_views.pod_terminate, name="pod_terminate"),
    path("pods/<uuid:pk>/utilization/", autoshutdown_views.pod_utilization, name="pod_utilization"),
    path("agent/heartbeat/<uuid:pk>/", autoshutdown_views.agent_heartbeat, name="agent_heartbeat"),
    path("agent/provisioner_agent.py", autoshutdown_views.agent_script, name="agent_script"),
    # the developer journey (recipes, declaration, workloads): recipes/views.py
    path("launch/", recipe_views.launch, name="launch"),
    path("launch/preview/", recipe_views.launch_preview, name="launch_preview"),
    path("recipes/", recipe_views.recipe_catalog, name="recipe_catalog"),
    path("recipes/new/", recipe_views.recipe_author, name="recipe_author"),
    path("recipes/<slug:slug>/", recipe_views.recipe_launch, name="recipe_launch"),
    path("recipes/<slug:slug>/pin/", recipe_views.recipe_pin, name="recipe_pin"),
    path("recipes/<slug:slug>/preview/", recipe_views.recipe_preview, name="recipe_preview"),
    path("recipes/<slug:slug>/edit/", recipe_views.recipe_author, name="recipe_edit"),
    path("secrets/", recipe_views.secrets_page, name="secrets"),
    path("workloads/", recipe_views.workload_list, name="workload_list"),
    path("workloads/<uuid:pk>/", recipe_views.workload_detail, name="workload_detail"),
    path("workloads/<uuid:pk>/clone/", recipe_views.workload_clone, name="workload_clone"),
    path("workloads/<uuid:pk>/relaunch/", recipe_views.workload_relaunch_view, name="workload_relaunch"),
    path("workloads/<uuid:pk>/stop/", recipe_views.workload_stop_view, name="workload_stop"),
    path("placement/preview/", placement_views.placement_preview, name="placement_preview"),
    path("workloads/<uuid:pk>/move/", placement_views.workload_move_view, name="workload_move"),
]
