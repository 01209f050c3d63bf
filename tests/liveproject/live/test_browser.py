"""A real browser against testbed's StaticLiveServerTestCase: it logs in and
creates a note through the UI; the test checks the note from Python; the
next test sees a clean database."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from notes.models import Note

from live import browser
from live.helpers import fetch
from testbed import testcases


class BrowserTests(testcases.StaticLiveServerTestCase):
    driver: Any
    alice: User

    @classmethod
    def setUpClass(cls) -> None:
        cls.driver = browser.start()
        cls.addClassCleanup(browser.stop, cls.driver)
        super().setUpClass()

    @classmethod
    def setUpTestData(cls) -> None:
        cls.alice = User.objects.create_user("alice", password="not-a-secret")

    def wait_for(self, element_id: str) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.wait import WebDriverWait

        return WebDriverWait(self.driver, 60).until(
            expected_conditions.presence_of_element_located((By.ID, element_id))
        )

    def test_1_log_in_and_create_a_note(self) -> None:
        from selenium.webdriver.common.by import By

        driver = self.driver
        driver.get(f"{self.live_server_url}/notes/new/")  # redirects to the login page
        self.wait_for("login-form")
        driver.find_element(By.NAME, "username").send_keys("alice")
        driver.find_element(By.NAME, "password").send_keys("not-a-secret")
        driver.find_element(By.ID, "log-in").click()
        self.wait_for("note-form")
        driver.find_element(By.NAME, "title").send_keys("Written in Chromium")
        driver.find_element(By.NAME, "body").send_keys("through the form")
        driver.find_element(By.ID, "save").click()
        self.assertEqual(self.wait_for("title").text, "Written in Chromium")
        self.assertEqual(driver.find_element(By.ID, "owner").text, "alice")

        note = Note.objects.get(title="Written in Chromium")
        self.assertEqual((note.body, note.owner), ("through the form", self.alice))

    def test_2_the_next_test_sees_a_clean_database(self) -> None:
        from selenium.webdriver.common.by import By

        self.assertFalse(Note.objects.exists())
        self.driver.get(f"{self.live_server_url}/notes/")
        self.wait_for("notes")
        self.assertEqual(self.driver.find_elements(By.CSS_SELECTOR, "#notes li"), [])
        # The stylesheet comes from the app's static files.
        status, css = fetch(f"{self.live_server_url}/static/notes/style.css")
        self.assertEqual((status, css.startswith("body")), (200, True))
