from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from .dashboard import dashboard
from .health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/dashboard/", dashboard, name="dashboard"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/", include("profiles.urls")),
    path("api/", include("segments.urls")),
    path("api/", include("recommendations.urls")),
    path("api/", include("campaigns.urls")),
]
