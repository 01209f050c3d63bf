"""Deterministic data sets for the benchmark project, loaded in bulk.

``load_small`` writes about 1,000 rows and ``load_medium`` about 100,000,
spread over every table of the three apps (many-to-many tables included).
The rows are the same on every run and every engine: values come from a
seeded ``random.Random`` and fixed timestamps, and primary keys are explicit.

Loading is as fast as a loader can be without touching files: the rows are
generated and converted for the engine once per process (later loads reuse
them), then written with ``COPY`` on PostgreSQL and ``executemany`` (one
multi-row ``INSERT`` per batch) elsewhere, inside one transaction. This makes
"flush, then reload the data set" the best case of that strategy.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import io
import math
import random
from collections.abc import Callable, Iterator
from typing import Any

from django.apps import apps
from django.core.management.color import no_style
from django.db import connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

# Rows per table, by the table's model label ("app.model", or the
# auto-created many-to-many model "app.model_field").
SIZES: dict[str, dict[str, int]] = {
    "small": {
        "accounts.organization": 3,
        "accounts.role": 4,
        "accounts.member": 60,
        "accounts.member_roles": 40,
        "accounts.profile": 60,
        "accounts.address": 80,
        "accounts.team": 6,
        "accounts.membership": 70,
        "accounts.apikey": 15,
        "catalog.category": 10,
        "catalog.brand": 8,
        "catalog.supplier": 4,
        "catalog.tag": 12,
        "catalog.product": 50,
        "catalog.product_tags": 100,
        "catalog.productimage": 75,
        "catalog.warehouse": 2,
        "catalog.stocklevel": 80,
        "catalog.pricehistory": 60,
        "sales.coupon": 3,
        "sales.coupon_products": 6,
        "sales.order": 60,
        "sales.orderline": 100,
        "sales.payment": 60,
        "sales.shipment": 35,
        "sales.invoice": 35,
        "sales.review": 35,
        "sales.refund": 3,
    },
    "medium": {
        "accounts.organization": 60,
        "accounts.role": 8,
        "accounts.member": 6000,
        "accounts.member_roles": 4000,
        "accounts.profile": 6000,
        "accounts.address": 8000,
        "accounts.team": 300,
        "accounts.membership": 6000,
        "accounts.apikey": 1500,
        "catalog.category": 150,
        "catalog.brand": 120,
        "catalog.supplier": 80,
        "catalog.tag": 200,
        "catalog.product": 5000,
        "catalog.product_tags": 10000,
        "catalog.productimage": 7500,
        "catalog.warehouse": 8,
        "catalog.stocklevel": 8000,
        "catalog.pricehistory": 6000,
        "sales.coupon": 60,
        "sales.coupon_products": 300,
        "sales.order": 6000,
        "sales.orderline": 9000,
        "sales.payment": 6000,
        "sales.shipment": 3500,
        "sales.invoice": 3500,
        "sales.review": 3500,
        "sales.refund": 300,
    },
}

# Rows per multi-row INSERT.
BATCH_SIZE = 2000

EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
FIRST_NAMES = ["Ada", "Alan", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis"]
LAST_NAMES = [
    "Lovelace",
    "Turing",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Thompson",
    "Hamilton",
]
CITIES = [
    ("Paris", "FR"),
    ("Berlin", "DE"),
    ("Lisbon", "PT"),
    ("Leeds", "GB"),
    ("Oslo", "NO"),
]
STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled"]
CARRIERS = ["DHL", "UPS", "La Poste", "DPD"]
METHODS = ["card", "transfer", "paypal"]

Row = dict[str, Any]


def load_small(using: str) -> None:
    """About 1,000 rows over every table."""
    load("small", using=using)


def load_medium(using: str) -> None:
    """About 100,000 rows over every table."""
    load("medium", using=using)


def row_counts(size: str) -> dict[str, int]:
    """Rows per table of data set ``size``."""
    return dict(SIZES[size])


def prepare(size: str, *, using: str) -> None:
    """Generate and convert data set ``size`` for ``using``'s engine now, so
    that loads in this process only pay for the database work."""
    _prepared(size, connections[using])


def load(size: str, *, using: str) -> None:
    """Insert data set ``size`` into the (empty) database ``using``."""
    connection = connections[using]
    tables = _prepared(size, connection)
    with transaction.atomic(using=using), connection.cursor() as cursor:
        for table in tables:
            if connection.vendor == "postgresql":
                columns = ", ".join(connection.ops.quote_name(c) for c in table.columns)
                sql = f"COPY {connection.ops.quote_name(table.name)} ({columns}) FROM STDIN"
                with cursor.copy(sql) as copy:
                    copy.write(table.copy_text)
            else:
                for start in range(0, len(table.rows), BATCH_SIZE):
                    cursor.executemany(
                        table.insert_sql, table.rows[start : start + BATCH_SIZE]
                    )
        if connection.vendor == "postgresql":
            # Primary keys were explicit: move the sequences past them.
            for sql in connection.ops.sequence_reset_sql(
                no_style(), [t.model for t in tables]
            ):
                cursor.execute(sql)


class _Table:
    """One table's rows, converted for one engine."""

    def __init__(
        self,
        model: type[models.Model],
        connection: BaseDatabaseWrapper,
        rows: list[Row],
    ):
        self.model = model
        self.name = model._meta.db_table
        fields = model._meta.concrete_fields
        self.columns = [f.column for f in fields]
        converters = [_converter(f, connection) for f in fields]
        self.rows = [
            tuple(
                v if c is None else c(v)
                for v, c in zip((r[f.attname] for f in fields), converters, strict=True)
            )
            for r in rows
        ]
        qn = connection.ops.quote_name
        self.insert_sql = (
            f"INSERT INTO {qn(self.name)} ({', '.join(qn(c) for c in self.columns)}) "
            f"VALUES ({', '.join(['%s'] * len(self.columns))})"
        )
        self.copy_text = (
            _copy_text(self.rows) if connection.vendor == "postgresql" else ""
        )


_cache: dict[tuple[str, str], list[_Table]] = {}


def _prepared(size: str, connection: BaseDatabaseWrapper) -> list[_Table]:
    """The rows of data set ``size``, converted for ``connection``'s engine."""
    key = (size, connection.vendor)
    if key not in _cache:
        data = _generate(size)
        _cache[key] = [
            _Table(_model(label), connection, rows) for label, rows in data.items()
        ]
    return _cache[key]


def _model(label: str) -> type[models.Model]:
    app_label, _, name = label.partition(".")
    if "_" in name:
        model_name, _, field_name = name.partition("_")
        through = (
            apps.get_model(app_label, model_name)
            ._meta.get_field(field_name)
            .remote_field.through
        )
        assert through is not None
        return through
    return apps.get_model(app_label, name)


def _converter(
    field: models.Field[Any, Any], connection: BaseDatabaseWrapper
) -> Callable[[Any], Any] | None:
    if isinstance(field, models.DateTimeField | models.DateField | models.DecimalField):
        return lambda value: field.get_db_prep_save(value, connection)
    return None


def _copy_text(rows: list[tuple[Any, ...]]) -> str:
    """Rows in PostgreSQL's COPY text format."""
    out = io.StringIO()
    for row in rows:
        out.write("\t".join(_copy_value(v) for v in row))
        out.write("\n")
    return out.getvalue()


def _copy_value(value: Any) -> str:
    if value is None:
        return "\\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, datetime.date):
        return value.isoformat()
    text = str(value)
    if any(c in text for c in "\\\t\n\r"):
        text = (
            text.replace("\\", "\\\\")
            .replace("\t", "\\t")
            .replace("\n", "\\n")
            .replace("\r", "\\r")
        )
    return text


# --- generating the rows -----------------------------------------------------


def _generate(size: str) -> dict[str, list[Row]]:
    """Every table's rows, in an order that satisfies the foreign keys."""
    n = SIZES[size]
    rng = random.Random(f"benchproject-{size}")
    data: dict[str, list[Row]] = {}

    def at(hours: float) -> datetime.datetime:
        return EPOCH + datetime.timedelta(hours=hours)

    def money(low: int, high: int) -> decimal.Decimal:
        return decimal.Decimal(rng.randrange(low * 100, high * 100)) / 100

    def pick(label: str) -> int:
        return rng.randint(1, n[label])

    def maybe(label: str, chance: float = 0.8) -> int | None:
        return pick(label) if rng.random() < chance else None

    # accounts
    data["accounts.organization"] = [
        {
            "id": i,
            "name": f"Organization {i}",
            "slug": f"organization-{i}",
            "plan": rng.choice(["free", "team", "business"]),
            "is_verified": i % 3 == 0,
            "created_at": at(i),
        }
        for i in _ids(n["accounts.organization"])
    ]
    data["accounts.role"] = [
        {"id": i, "code": f"role-{i}", "label": f"Role {i}"}
        for i in _ids(n["accounts.role"])
    ]
    data["accounts.member"] = [
        {
            "id": i,
            "organization_id": pick("accounts.organization"),
            "email": f"member{i}@example.com",
            "first_name": rng.choice(FIRST_NAMES),
            "last_name": rng.choice(LAST_NAMES),
            "is_active": rng.random() < 0.9,
            "date_joined": at(100 + i / 10),
            "last_login": at(5000 + rng.randrange(3000))
            if rng.random() < 0.7
            else None,
        }
        for i in _ids(n["accounts.member"])
    ]
    data["accounts.member_roles"] = [
        {"id": i, "member_id": a, "role_id": b}
        for i, (a, b) in enumerate(
            _pairs(
                n["accounts.member_roles"], n["accounts.member"], n["accounts.role"], 3
            ),
            1,
        )
    ]
    data["accounts.profile"] = [
        {
            "id": i,
            "member_id": i,
            "bio": f"Member {i} likes {rng.choice(['tea', 'coffee', 'cocoa'])}.",
            "timezone": "Europe/Paris",
            "locale": rng.choice(["en", "fr", "de"]),
            "newsletter": rng.random() < 0.3,
        }
        for i in _ids(n["accounts.profile"])
    ]
    addresses = []
    for i in _ids(n["accounts.address"]):
        city, country = rng.choice(CITIES)
        addresses.append(
            {
                "id": i,
                "member_id": (i - 1) % n["accounts.member"] + 1,
                "kind": "billing" if i % 2 else "shipping",
                "line1": f"{i} Main Street",
                "line2": "",
                "city": city,
                "postal_code": f"{rng.randrange(10000, 99999)}",
                "country": country,
                "is_default": i <= n["accounts.member"],
            }
        )
    data["accounts.address"] = addresses
    data["accounts.team"] = [
        {
            "id": i,
            "organization_id": pick("accounts.organization"),
            "name": f"Team {i}",
            "created_at": at(50 + i),
        }
        for i in _ids(n["accounts.team"])
    ]
    data["accounts.membership"] = [
        {
            "id": i,
            "member_id": a,
            "team_id": b,
            "role": rng.choice(["member", "member", "member", "lead", "admin"]),
            "joined_at": at(200 + i / 5),
        }
        for i, (a, b) in enumerate(
            _pairs(
                n["accounts.membership"], n["accounts.member"], n["accounts.team"], 7
            ),
            1,
        )
    ]
    data["accounts.apikey"] = [
        {
            "id": i,
            "member_id": pick("accounts.member"),
            "prefix": f"{i:08x}",
            "hashed_key": hashlib.sha512(f"key-{i}".encode()).hexdigest(),
            "created_at": at(1000 + i),
            "expires_at": at(9000 + i) if i % 4 == 0 else None,
            "revoked": i % 10 == 0,
        }
        for i in _ids(n["accounts.apikey"])
    ]

    # catalog
    roots = max(1, n["catalog.category"] // 5)
    data["catalog.category"] = [
        {
            "id": i,
            "parent_id": None if i <= roots else rng.randint(1, roots),
            "name": f"Category {i}",
            "slug": f"category-{i}",
            "position": i % 10,
        }
        for i in _ids(n["catalog.category"])
    ]
    data["catalog.brand"] = [
        {
            "id": i,
            "name": f"Brand {i}",
            "country": rng.choice(CITIES)[1],
            "website": f"https://brand{i}.example.com",
        }
        for i in _ids(n["catalog.brand"])
    ]
    data["catalog.supplier"] = [
        {
            "id": i,
            "name": f"Supplier {i}",
            "contact_email": f"sales@supplier{i}.example.com",
            "organization_id": maybe("accounts.organization", 0.5),
            "lead_time_days": rng.randint(1, 30),
        }
        for i in _ids(n["catalog.supplier"])
    ]
    data["catalog.tag"] = [
        {"id": i, "name": f"tag-{i}"} for i in _ids(n["catalog.tag"])
    ]
    data["catalog.product"] = [
        {
            "id": i,
            "sku": f"SKU-{i:07d}",
            "name": f"Product {i}",
            "description": f"Product {i}, a fine thing made of {rng.choice(['oak', 'steel', 'wool', 'glass'])}.",
            "category_id": pick("catalog.category"),
            "brand_id": maybe("catalog.brand", 0.9),
            "supplier_id": maybe("catalog.supplier", 0.7),
            "price": money(1, 500),
            "is_active": rng.random() < 0.95,
            "weight_grams": rng.randrange(50, 20000) if rng.random() < 0.8 else None,
            "created_at": at(i / 2),
            "updated_at": at(3000 + i / 2),
        }
        for i in _ids(n["catalog.product"])
    ]
    data["catalog.product_tags"] = [
        {"id": i, "product_id": a, "tag_id": b}
        for i, (a, b) in enumerate(
            _pairs(
                n["catalog.product_tags"], n["catalog.product"], n["catalog.tag"], 11
            ),
            1,
        )
    ]
    data["catalog.productimage"] = [
        {
            "id": i,
            "product_id": (i - 1) % n["catalog.product"] + 1,
            "url": f"https://images.example.com/products/{i}.jpg",
            "alt_text": f"Picture {i}",
            "position": (i - 1) // n["catalog.product"],
        }
        for i in _ids(n["catalog.productimage"])
    ]
    data["catalog.warehouse"] = [
        {
            "id": i,
            "code": f"WH{i:02d}",
            "name": f"Warehouse {i}",
            "country": CITIES[i % len(CITIES)][1],
        }
        for i in _ids(n["catalog.warehouse"])
    ]
    data["catalog.stocklevel"] = [
        {
            "id": i,
            "product_id": a,
            "warehouse_id": b,
            "quantity": rng.randrange(0, 500),
            "reserved": rng.randrange(0, 20),
            "updated_at": at(4000 + i / 10),
        }
        for i, (a, b) in enumerate(
            _pairs(
                n["catalog.stocklevel"], n["catalog.product"], n["catalog.warehouse"], 5
            ),
            1,
        )
    ]
    data["catalog.pricehistory"] = [
        {
            "id": i,
            "product_id": pick("catalog.product"),
            "price": money(1, 500),
            "changed_at": at(2000 + i / 3),
            "reason": rng.choice(["", "sale", "supplier increase", "season"]),
        }
        for i in _ids(n["catalog.pricehistory"])
    ]

    # sales
    data["sales.coupon"] = [
        {
            "id": i,
            "code": f"SAVE{i:04d}",
            "percent_off": rng.choice([5, 10, 15, 20, 50]),
            "valid_from": at(i * 24),
            "valid_until": at(i * 24 + 720) if i % 2 else None,
            "max_uses": rng.choice([None, 100, 1000]),
        }
        for i in _ids(n["sales.coupon"])
    ]
    data["sales.coupon_products"] = [
        {"id": i, "coupon_id": a, "product_id": b}
        for i, (a, b) in enumerate(
            _pairs(
                n["sales.coupon_products"], n["sales.coupon"], n["catalog.product"], 13
            ),
            1,
        )
    ]
    orders = []
    for i in _ids(n["sales.order"]):
        customer = pick("accounts.member")
        orders.append(
            {
                "id": i,
                "number": f"ORD-{i:08d}",
                "customer_id": customer,
                # The member's own first address, when it has one.
                "shipping_address_id": customer
                if customer <= n["accounts.address"]
                else None,
                "status": rng.choice(STATUSES),
                "coupon_id": maybe("sales.coupon", 0.1),
                "total": money(5, 2000),
                "placed_at": at(6000 + i / 4),
                "notes": "" if i % 7 else "Leave at the door.",
            }
        )
    data["sales.order"] = orders
    data["sales.orderline"] = [
        {
            "id": i,
            "order_id": (i - 1) % n["sales.order"] + 1,
            "product_id": pick("catalog.product"),
            "quantity": rng.randint(1, 5),
            "unit_price": money(1, 500),
            "discount": decimal.Decimal("0.00") if i % 5 else money(1, 10),
        }
        for i in _ids(n["sales.orderline"])
    ]
    data["sales.payment"] = [
        {
            "id": i,
            "order_id": i if i <= n["sales.order"] else pick("sales.order"),
            "amount": money(5, 2000),
            "method": rng.choice(METHODS),
            "provider_reference": f"pi_{i:012d}",
            "paid_at": at(6000 + i / 4 + 1),
            "succeeded": rng.random() < 0.97,
        }
        for i in _ids(n["sales.payment"])
    ]
    data["sales.shipment"] = [
        {
            "id": i,
            "order_id": i,
            "warehouse_id": maybe("catalog.warehouse", 0.95),
            "carrier": rng.choice(CARRIERS),
            "tracking_number": f"TRK{i:010d}",
            "shipped_at": at(6000 + i / 4 + 24),
            "delivered_at": at(6000 + i / 4 + 96) if i % 3 else None,
        }
        for i in _ids(n["sales.shipment"])
    ]
    data["sales.invoice"] = [
        {
            "id": i,
            "order_id": i,
            "number": f"INV-{i:08d}",
            "issued_at": at(6000 + i / 4 + 2),
            "due_at": (EPOCH + datetime.timedelta(hours=6000 + i / 4 + 720)).date(),
            "paid": i % 4 != 0,
        }
        for i in _ids(n["sales.invoice"])
    ]
    data["sales.review"] = [
        {
            "id": i,
            "product_id": pick("catalog.product"),
            "author_id": pick("accounts.member"),
            "rating": rng.randint(1, 5),
            "title": f"Review {i}",
            "body": "Does what it says." if i % 2 else "",
            "is_published": i % 20 != 0,
            "created_at": at(7000 + i / 3),
        }
        for i in _ids(n["sales.review"])
    ]
    data["sales.refund"] = [
        {
            "id": i,
            "payment_id": pick("sales.payment"),
            "amount": money(1, 100),
            "reason": rng.choice(["", "damaged", "late", "changed mind"]),
            "created_at": at(8000 + i),
        }
        for i in _ids(n["sales.refund"])
    ]
    assert list(data) == list(n), (
        "tables generated in a different order than SIZES lists them"
    )
    return data


def _ids(count: int) -> range:
    return range(1, count + 1)


def _pairs(
    count: int, a_count: int, b_count: int, salt: int
) -> Iterator[tuple[int, int]]:
    """``count`` distinct (a, b) pairs, spread evenly over the a's."""
    per = math.ceil(count / a_count)
    if per > b_count:
        raise ValueError(
            f"cannot make {count} distinct pairs from {a_count} x {b_count}"
        )
    for i in range(count):
        a = i // per + 1
        yield a, (a * salt + i % per) % b_count + 1
