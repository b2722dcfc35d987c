from django.urls import path

from . import views, views_placement, views_recipes, views_telemetry

app_name = "workloads"
urlpatterns = [
    path("pods/", views.pod_list, name="pod_list"),
    path("pods/<uuid:pk>/", views.pod_detail, name="pod_detail"),
    path("pods/<uuid:pk>/terminate/", views.pod_terminate, name="pod_terminate"),
    path("pods/<uuid:pk>/utilization/", views_telemetry.pod_utilization, name="pod_utilization"),
    path("agent/heartbeat/<uuid:pk>/", views_telemetry.agent_heartbeat, name="agent_heartbeat"),
    path("agent/provisioner_agent.py", views_telemetry.agent_script, name="agent_script"),
    # the developer journey (recipes, declaration, workloads): views_recipes
    path("launch/", views_recipes.launch, name="launch"),
    path("launch/preview/", views_recipes.launch_preview, name="launch_preview"),
    path("recipes/", views_recipes.recipe_catalog, name="recipe_catalog"),
    path("recipes/new/", views_recipes.recipe_author, name="recipe_author"),
    path("recipes/<slug:slug>/", views_recipes.recipe_launch, name="recipe_launch"),
    path("recipes/<slug:slug>/preview/", views_recipes.recipe_preview, name="recipe_preview"),
    path("recipes/<slug:slug>/edit/", views_recipes.recipe_author, name="recipe_edit"),
    path("secrets/", views_recipes.secrets_page, name="secrets"),
    path("workloads/", views_recipes.workload_list, name="workload_list"),
    path("workloads/<uuid:pk>/", views_recipes.workload_detail, name="workload_detail"),
    path("workloads/<uuid:pk>/clone/", views_recipes.workload_clone, name="workload_clone"),
    path("workloads/<uuid:pk>/relaunch/", views_recipes.workload_relaunch_view, name="workload_relaunch"),
    path("workloads/<uuid:pk>/stop/", views_recipes.workload_stop_view, name="workload_stop"),
    path("placement/preview/", views_placement.placement_preview, name="placement_preview"),
    path("workloads/<uuid:pk>/move/", views_placement.workload_move_view, name="workload_move"),
]
