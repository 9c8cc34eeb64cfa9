"""Pages of the viewer and Django's standard login form."""
from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from viewer import tokens, views

app_name = "viewer"
urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(next_page="viewer:login"), name="logout"),
    path("studies/<str:datastore_id>/<str:study_uid>/", views.study, name="study"),
    path("studies/<str:datastore_id>/<str:study_uid>/send/", views.study_send, name="study_send"),
    path("view/<str:datastore_id>/<str:image_set_id>/", views.viewer, name="viewer"),
    path("account/tokens/", tokens.tokens, name="tokens"),
    path("account/tokens/<str:token_id>/revoke/", tokens.token_revoke, name="token_revoke"),
    path("share/<str:token>/", views.share, name="share"),
    path("thumbnails/<str:datastore_id>/<str:image_set_id>/<str:series_uid>.jpg", views.thumbnail, name="thumbnail"),
]
