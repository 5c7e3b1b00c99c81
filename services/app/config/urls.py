from django.contrib import admin
from django.urls import include, path

from jobs import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    # POST /api/tasks/<name> enqueues; GET /api/tasks/<id> reads the state.
    path("api/tasks/<str:key>", api.tasks_endpoint, name="task-status"),
    path("api/workflows/report", api.start_report, name="report"),
    path("api/signup", api.signup, name="signup"),
    path("api/password-reset", api.password_reset, name="password-reset"),
    path("admin/", admin.site.urls),
    path("", include("django_prometheus.urls")),  # /metrics
]
