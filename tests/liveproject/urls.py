from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path
from notes import views

urlpatterns = [
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("notes/", views.note_list, name="note-list"),
    path("notes/new/", views.note_create, name="note-create"),
    path("notes/<int:pk>/", views.note_detail, name="note-detail"),
    path("count/", views.count),
    path("hit/", views.hit),
    path("depth/", views.depth),
    path("durable/", views.durable),
    path("boom/", views.boom),
    path("db-error/", views.db_error),
    path("db-error-caught/", views.db_error_caught),
    path("close/", views.close),
    path("commit/", views.commit),
    path("leak/", views.leak),
]
