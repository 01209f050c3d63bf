"""TemplateDBLiveServerTestCase: django-ttdb's class (commits, the clone
reloaded once per class), or on the shared engine a TestCase whose tests
roll back."""

from __future__ import annotations

import json

from notes.loaders import TEMPLATE_NOTES
from notes.models import Hit

from live.helpers import committed, fetch, on_shared_engine
from testbed import TemplateDBLiveServerTestCase


class TemplateLiveServerTests(TemplateDBLiveServerTestCase):
    template_database = "notes"

    def test_1_server_sees_the_template(self) -> None:
        status, body = fetch(self.live_server_url + "/count/")
        self.assertEqual(json.loads(body)["notes"], TEMPLATE_NOTES)
        self.assertEqual(
            fetch(self.live_server_url + "/hit/", method="POST"), (200, "1")
        )
        self.assertEqual(Hit.objects.count(), 1)

    def test_2_rolled_back_only_on_the_shared_engine(self) -> None:
        kept = 0 if on_shared_engine() else 1
        self.assertEqual(Hit.objects.count(), kept)
        self.assertEqual(committed("notes_hit"), kept)
