from django.urls import path

from routing.router import api, views

api_urlpatterns = [
    path(
        "projects/<int:project_id>/routing-policy/",
        api.RoutingPolicyView.as_view(),
        name="routing-policy",
    ),
    path(
        "projects/<int:project_id>/routing-policy/dry-run/",
        api.RoutingDryRunView.as_view(),
        name="routing-dry-run",
    ),
    path("projects/<int:project_id>/routing/route/", api.RouteView.as_view(), name="routing-route"),
    path(
        "projects/<int:project_id>/pipeline/", api.PipelineView.as_view(), name="project-pipeline"
    ),
    path(
        "projects/<int:project_id>/items/<int:item_id>/routing-decisions/",
        api.ItemDecisionsView.as_view(),
        name="routing-item-decisions",
    ),
]

page_urlpatterns = [
    path("projects/<int:project_id>/routing/", views.project_routing, name="routing-project"),
    path(
        "projects/<int:project_id>/pipeline/",
        views.project_pipeline,
        name="routing-project-pipeline",
    ),
    path(
        "projects/<int:project_id>/routing/dry-run/",
        views.routing_dry_run,
        name="routing-project-dry-run",
    ),
    path(
        "projects/<int:project_id>/routing/route-now/",
        views.routing_route_now,
        name="routing-project-route",
    ),
    path(
        "projects/<int:project_id>/items/<int:item_id>/routing/",
        views.item_routing,
        name="routing-item",
    ),
]
