from __future__ import annotations

from django.apps import AppConfig


class SalesConfig(AppConfig):
    name = "benchproject.sales"
    label = "sales"
