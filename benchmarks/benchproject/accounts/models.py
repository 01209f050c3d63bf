"""People and organisations: who buys, sells and administers."""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    plan = models.CharField(max_length=20, default="free")
    is_verified = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Role(models.Model):
    code = models.CharField(max_length=50, unique=True)
    label = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.label


class Member(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="members"
    )
    email = models.EmailField(unique=True)
    first_name = models.CharField(max_length=100)
    last_name = models.CharField(max_length=100)
    is_active = models.BooleanField(default=True)
    date_joined = models.DateTimeField(default=timezone.now)
    last_login = models.DateTimeField(null=True, blank=True)
    roles = models.ManyToManyField("Role", blank=True, related_name="members")

    class Meta:
        indexes = [
            models.Index(fields=["last_name", "first_name"], name="member_name_idx"),
        ]

    def __str__(self) -> str:
        return self.email


class Profile(models.Model):
    member = models.OneToOneField(
        Member, on_delete=models.CASCADE, related_name="profile"
    )
    bio = models.TextField(blank=True)
    timezone = models.CharField(max_length=50, default="UTC")
    locale = models.CharField(max_length=10, default="en")
    newsletter = models.BooleanField(default=False)


class Address(models.Model):
    KINDS = [("billing", "Billing"), ("shipping", "Shipping")]

    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="addresses"
    )
    kind = models.CharField(max_length=10, choices=KINDS)
    line1 = models.CharField(max_length=200)
    line2 = models.CharField(max_length=200, blank=True)
    city = models.CharField(max_length=100)
    postal_code = models.CharField(max_length=20)
    country = models.CharField(max_length=2)
    is_default = models.BooleanField(default=False)

    class Meta:
        indexes = [
            models.Index(
                fields=["country", "postal_code"], name="address_country_postal_idx"
            ),
        ]


class Team(models.Model):
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="teams"
    )
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(Member, through="Membership", related_name="teams")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="team_unique_name"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    ROLES = [("member", "Member"), ("lead", "Lead"), ("admin", "Admin")]

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=20, choices=ROLES, default="member")
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        unique_together = [("team", "member")]


class ApiKey(models.Model):
    member = models.ForeignKey(
        Member, on_delete=models.CASCADE, related_name="api_keys"
    )
    prefix = models.CharField(max_length=8, db_index=True)
    hashed_key = models.CharField(max_length=128)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked = models.BooleanField(default=False)
