"""A view that leaves an atomic block open: testbed rolls it back and fails
the test it ran in, with a message that says so (run apart, as it fails)."""

from __future__ import annotations

from live.helpers import fetch
from notes.models import Note

from testbed import testcases


class LeakTests(testcases.LiveServerTestCase):
    def test_1_leaking_view(self) -> None:
        self.assertEqual(fetch(self.live_server_url + "/leak/")[0], 200)
        self.assertFalse(Note.objects.filter(title="leaked").exists())

    def test_2_the_class_goes_on(self) -> None:
        Note.objects.create(title="after the leak")
        self.assertEqual(fetch(self.live_server_url + "/count/")[0], 200)
