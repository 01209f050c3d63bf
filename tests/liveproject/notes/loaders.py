"""The "notes" template: 30 notes, loaded once."""

from __future__ import annotations

TEMPLATE_NOTES = 30


def load(*, using: str) -> None:
    from notes.models import Note

    Note.objects.using(using).bulk_create(
        Note(title=f"Template note {i}") for i in range(TEMPLATE_NOTES)
    )
