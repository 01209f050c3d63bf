"""A small Django project written into a pytester directory, whose schema
the plugin's end-to-end tests change between runs as a developer would."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests import settings as test_settings

MODEL_V1 = """
from django.db import models


class Item(models.Model):
    name = models.CharField(max_length=50)
"""

MODEL_V2 = (
    MODEL_V1
    + """    colour = models.CharField(max_length=20, default="red")
"""
)

MIGRATION_0001 = """
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel(
            name="Item",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
                ("name", models.CharField(max_length=50)),{extra}
            ],
        ),
    ]
"""

COLOUR_FIELD = """
                ("colour", models.CharField(default="red", max_length=20)),"""

MIGRATION_0002 = """
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("shop", "0001_initial")]
    operations = [
        migrations.AddField(
            model_name="item",
            name="colour",
            field=models.CharField(default="red", max_length=20),
        ),
    ]
"""

LOADERS = """
def load(*, using):
    from shop.models import Item

    Item.objects.using(using).bulk_create(Item(name=f"item {i}") for i in range(50))
"""

TESTS_V1 = """
import pytest

from shop.models import Item


@pytest.mark.django_db
@pytest.mark.parametrize("i", range(4))
def test_create(i):
    Item.objects.create(name="a")
    assert Item.objects.count() == 1
"""

TESTS_V2 = """
import pytest

from shop.models import Item


@pytest.mark.django_db
@pytest.mark.parametrize("i", range(4))
def test_create(i):
    Item.objects.create(name="a", colour="blue")
    assert Item.objects.filter(colour="blue").count() == 1
"""


def database(vendor: str, name: str) -> str:
    """The ``DATABASES['default']`` entry, as settings.py source."""
    if vendor == "postgresql":
        return repr(test_settings.postgresql(name))
    if vendor == "mysql":
        return repr(test_settings.mysql(name))
    # A file test database (in memory there is nothing to reuse), with
    # paths as startproject writes them: Path objects.
    return (
        '{"ENGINE": "django.db.backends.sqlite3", '
        f'"NAME": BASE_DIR / "{name}.sqlite3", '
        f'"TEST": {{"NAME": BASE_DIR / "test_{name}.sqlite3"}}}}'
    )


class PluginProject:
    """The project in ``pytester.path``; ``name`` makes its database names."""

    def __init__(self, pytester: pytest.Pytester, vendor: str, name: str) -> None:
        self.pytester = pytester
        self.vendor = vendor
        self.name = name
        self.path = pytester.path
        pytester.makeini(
            """
            [pytest]
            DJANGO_SETTINGS_MODULE = settings
            pythonpath = .
            addopts = -p no:cacheprovider -p no:randomly
            """
        )
        self.write(
            "settings.py",
            f"""
            from pathlib import Path

            BASE_DIR = Path(__file__).resolve().parent
            SECRET_KEY = "testbed-plugin-tests"
            USE_TZ = True
            DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
            INSTALLED_APPS = ["django.contrib.contenttypes", "shop"]
            DATABASES = {{"default": {database(vendor, name)}}}
            TESTBED = {{
                "CACHE_DIR": str(BASE_DIR / ".testbed"),
                "TEMPLATES": {{"catalog": {{"LOADERS": ["shop.loaders.load"]}}}},
            }}
            """,
        )
        self.write("shop/__init__.py", "")
        self.write("shop/migrations/__init__.py", "")
        self.write("shop/loaders.py", LOADERS)
        self.schema(version=1)

    def write(self, relative: str, text: str) -> None:
        path = self.path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())

    def remove(self, relative: str) -> None:
        (self.path / relative).unlink()

    def schema(self, *, version: int, edited: bool = False) -> None:
        """Version 1: Item(name). Version 2: with colour, by migration 0002
        or, ``edited``, by an edited 0001."""
        self.write("shop/models.py", MODEL_V1 if version == 1 else MODEL_V2)
        self.write("test_shop.py", TESTS_V1 if version == 1 else TESTS_V2)
        colour_in_0001 = version == 2 and edited
        self.write(
            "shop/migrations/0001_initial.py",
            MIGRATION_0001.replace("{extra}", COLOUR_FIELD if colour_in_0001 else ""),
        )
        second = self.path / "shop/migrations/0002_item_colour.py"
        if version == 2 and not edited:
            self.write("shop/migrations/0002_item_colour.py", MIGRATION_0002)
        elif second.exists():
            second.unlink()

    def run(self, *args: str) -> pytest.RunResult:
        result = self.pytester.runpytest_subprocess(*args, timeout=300)
        # Tests may fail; the session itself (set-up, clean-up) must not.
        output = result.stdout.str() + result.stderr.str()
        assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), output
        assert "Traceback" not in result.stderr.str(), output
        return result

    def leftovers(self) -> list[str]:
        """testbed's per-run databases still there: template clones and
        stand-ins, which every run must drop at its end."""
        if self.vendor == "sqlite":
            names = [p.name for p in self.path.iterdir()]
        else:
            from tests.utils import databases_containing

            names = databases_containing(self.vendor, self.name)
        return [n for n in names if "_tbc_" in n or "_tbs_" in n]

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """pytest in the background, its output in ``stdout``."""
        return subprocess.Popen(
            [sys.executable, "-m", "pytest", *args],
            cwd=self.path,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )


def notes_of(result: pytest.RunResult) -> list[str]:
    """The lines testbed wrote to the terminal."""
    return [line for line in result.outlines if line.startswith("testbed: ")]


def summary(result: pytest.RunResult) -> str:
    lines = [line for line in notes_of(result) if " template(s) built" in line]
    assert lines, result.stdout.str()
    return lines[-1]
