"""Views the live-server tests call: a login-protected form, and views that
write, nest atomic blocks, fail, close the connection or misbehave."""

from __future__ import annotations

import json

from django import forms
from django.contrib.auth.decorators import login_required
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.csrf import csrf_exempt

from notes.models import Hit, Note, Tag


class NoteForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Note
        fields = ["title", "body"]


def note_list(request: HttpRequest) -> HttpResponse:
    return render(request, "notes/list.html", {"notes": Note.objects.order_by("title")})


@login_required
def note_create(request: HttpRequest) -> HttpResponse:
    form = NoteForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        note = form.save(commit=False)
        note.owner = request.user
        note.save()
        return redirect("note-detail", pk=note.pk)
    return render(request, "notes/form.html", {"form": form})


def note_detail(request: HttpRequest, pk: int) -> HttpResponse:
    return render(
        request, "notes/detail.html", {"note": get_object_or_404(Note, pk=pk)}
    )


def count(request: HttpRequest) -> HttpResponse:
    return JsonResponse(
        {
            "notes": Note.objects.count(),
            "titles": sorted(Note.objects.values_list("title", flat=True)),
            "hits": Hit.objects.count(),
            "tags": Tag.objects.count(),
        }
    )


@csrf_exempt
def hit(request: HttpRequest) -> HttpResponse:
    """Write inside an atomic block: the count it sees shows the order."""
    with transaction.atomic():
        seen = Hit.objects.count() + 1
        Hit.objects.create(seen=seen)
    return HttpResponse(str(seen))


def depth(request: HttpRequest) -> HttpResponse:
    """How many atomic blocks are open inside this view's own one."""
    with transaction.atomic():
        return JsonResponse(
            {
                "blocks": len(connection.atomic_blocks),
                "savepoints": len([s for s in connection.savepoint_ids if s]),
            }
        )


@csrf_exempt
@transaction.non_atomic_requests  # durable blocks can't nest in ATOMIC_REQUESTS'
def durable(request: HttpRequest) -> HttpResponse:
    with transaction.atomic(durable=True):
        Note.objects.create(title="durable")
    return HttpResponse("ok", status=201)


def boom(request: HttpRequest) -> HttpResponse:
    Note.objects.create(title="before boom")
    raise RuntimeError("boom")


def db_error(request: HttpRequest) -> HttpResponse:
    Tag.objects.create(name="seeded")  # IntegrityError: the tag exists
    return HttpResponse("unreachable")


@transaction.non_atomic_requests
def db_error_caught(request: HttpRequest) -> HttpResponse:
    """Catches a failed statement outside any atomic block: on PostgreSQL
    the transaction it ran in is broken afterwards."""
    try:
        Tag.objects.create(name="seeded")
    except IntegrityError:
        return HttpResponse("caught")
    return HttpResponse("no error")


def close(request: HttpRequest) -> HttpResponse:
    connection.close()
    return HttpResponse(str(Note.objects.count()))


@transaction.non_atomic_requests
def commit(request: HttpRequest) -> HttpResponse:
    Note.objects.create(title="committed?")
    try:
        transaction.commit()
    except TransactionManagementError as exc:
        return HttpResponse(str(exc), status=409)
    return HttpResponse("committed")


@transaction.non_atomic_requests
def leak(request: HttpRequest) -> HttpResponse:
    """Enters an atomic block and never leaves it."""
    transaction.atomic().__enter__()
    Note.objects.create(title="leaked")
    return HttpResponse(json.dumps({"open": len(connection.atomic_blocks)}))
