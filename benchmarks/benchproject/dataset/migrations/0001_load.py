from __future__ import annotations

import os
from typing import Any

from django.db import migrations


def load(apps: Any, schema_editor: Any) -> None:
    from benchproject import loaders

    size = os.environ.get("BENCHPROJECT_DATASET")
    if size:
        loaders.load(size, using=schema_editor.connection.alias)


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0020_alter_membership_role"),
        ("catalog", "0020_rename_stock_stocklevel"),
        ("sales", "0020_coupon_max_uses"),
    ]
    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
