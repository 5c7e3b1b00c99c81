from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

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
    # The progress page's session login; login POSTs are rate-limited per client address.
    path(
        "accounts/login/",
        views.login_rate_limited(auth_views.LoginView.as_view(template_name="jobs/login.html")),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
]
# /metrics is not here: gunicorn's master serves it on METRICS_PORT (config/gunicorn.py), off
# the public port.
if settings.ADMIN_PATH:
    urlpatterns += [
        # Before admin.site.urls, so the admin's login is the rate-limited one.
        path(
            f"{settings.ADMIN_PATH}login/",
            views.login_rate_limited(admin.site.login),
            name="admin-login",
        ),
        path(settings.ADMIN_PATH, admin.site.urls),
    ]

handler404 = "jobs.api.not_found"
handler500 = "jobs.api.server_error"
