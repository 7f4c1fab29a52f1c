"""Debian's Chromium through Selenium (the system chromedriver, never Selenium Manager), and the
few page moves the tests make: open a page, log in, wait for a live value, click by test id."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    NoSuchElementException,
    StaleElementReferenceException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
WIDTH, HEIGHT = 1920, 1080
# a live page re-renders rows from the stream: an element found a moment ago may be gone
TRANSIENT = (NoSuchElementException, StaleElementReferenceException, ElementClickInterceptedException)

T = TypeVar("T")


def installed() -> bool:
    return CHROMIUM.is_file() and CHROMEDRIVER.is_file()


def make_driver(profile: Path, log: Path) -> webdriver.Chrome:
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", f"--window-size={WIDTH},{HEIGHT}", f"--user-data-dir={profile}",
                "--hide-scrollbars"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # the console, to catch script errors
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER), log_output=str(log)), options=opts)
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    # headless Chromium keeps room for a toolbar it does not draw: make the page itself WIDTH x HEIGHT
    dw, dh = driver.execute_script(
        "return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];")
    if dw or dh:
        driver.set_window_size(WIDTH + int(dw), HEIGHT + int(dh))
    return driver


def tid(testid: str) -> str:
    """The CSS selector of a ``data-testid``."""
    return f'[data-testid="{testid}"]'


def number(text: str) -> int:
    """A count as the HMI shows it (``1,234``)."""
    digits = re.sub(r"[^\d]", "", text)
    assert digits, f"not a number: {text!r}"
    return int(digits)


class Page:
    """One browser on one HMI."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base = base_url.rstrip("/")

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url[len(self.base):] if url.startswith(self.base) else url

    def wait(self, what: str, cond: Callable[[webdriver.Chrome], T], timeout_s: float = 30.0) -> T:
        return WebDriverWait(self.driver, timeout_s, poll_frequency=0.2, ignored_exceptions=TRANSIENT).until(
            cond, f"waiting {timeout_s:.0f} s for {what} on {self.path}")

    def find(self, testid: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, tid(testid))

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def present(self, testid: str) -> bool:
        return bool(self.all(tid(testid)))

    def read(self, css: str, get: Callable[[WebElement], T], timeout_s: float = 5.0) -> T:
        """``get(element)``, found afresh if the page redrew it meanwhile."""
        return self.wait(f"reading {css}", lambda d: (get(d.find_element(By.CSS_SELECTOR, css)),), timeout_s)[0]

    def text(self, testid: str) -> str:
        return self.read(tid(testid), lambda e: str(e.text).strip())

    def attr(self, testid: str, name: str) -> str:
        return self.read(tid(testid), lambda e: str(e.get_attribute(name) or ""))

    def enabled(self, testid: str) -> bool:
        return self.read(tid(testid), lambda e: bool(e.is_enabled()))

    def shown(self, testid: str) -> bool:
        return self.read(tid(testid), lambda e: bool(e.is_displayed()))

    def click(self, testid: str, timeout_s: float = 15.0) -> None:
        """Click once the element is there and enabled (a live row may be redrawn meanwhile)."""
        def clicked(d: webdriver.Chrome) -> bool:
            e = d.find_element(By.CSS_SELECTOR, tid(testid))
            if not (e.is_displayed() and e.is_enabled()):
                return False
            e.click()
            return True
        self.wait(f"{testid} to be clickable", clicked, timeout_s)

    def type(self, testid: str, text: str) -> None:
        e = self.find(testid)
        e.clear()
        e.send_keys(text)

    def wait_text(self, testid: str, want: Callable[[str], bool], what: str, timeout_s: float = 30.0) -> str:
        got: list[str] = []

        def ok(d: webdriver.Chrome) -> bool:
            got[:] = [str(d.find_element(By.CSS_SELECTOR, tid(testid)).text).strip()]
            return want(got[0])
        try:
            self.wait(f"{testid} {what}", ok, timeout_s)
        except Exception as exc:
            raise AssertionError(f"{testid}: {what}, last shown {got[:1]!r}") from exc
        return got[0]

    def live(self, topic: str = "overview") -> int:
        """When the page last took an update of ``topic`` from the stream (ms), 0 if never."""
        v = self.driver.execute_script(
            "return document.body.dataset['live' + arguments[0][0].toUpperCase() + arguments[0].slice(1)] || '0';",
            topic)
        return int(v)

    def wait_live(self, topic: str = "overview", timeout_s: float = 20.0) -> None:
        """Until the page has taken at least one update of ``topic`` (its live values are set)."""
        self.wait(f"a live '{topic}' update", lambda d: self.live(topic) > 0, timeout_s)

    def login(self, name: str, password: str) -> None:
        self.driver.delete_all_cookies()
        self.open("/login")
        self.type("login-user", name)
        self.type("login-password", password)
        self.click("login-submit")

    def confirm(self) -> None:
        """Press Send in the page's confirmation dialog."""
        self.wait("the confirmation dialog", lambda d: self.shown("confirm-dialog"), 10.0)
        self.click("confirm-ok")

    def script_errors(self) -> list[str]:
        """What the console logged as an error since the last call: script errors, CSP
        violations, a missing file. A refusal the page shows (401 login, 403 role, 422 a bad
        upload) is not one: the tests cause those on purpose."""
        errors = []
        for e in self.driver.get_log("browser"):
            msg = str(e.get("message", ""))
            if e.get("level") == "SEVERE" and not re.search(r"the server responded with a status of (401|403|422)\b", msg):
                errors.append(msg)
        return errors

    def send_js(self, command: str, args: Mapping[str, object]) -> tuple[int, object]:
        """POST a command from inside the page as its own script would (session cookie, CSRF
        token): the HTTP status and the JSON body."""
        got = self.driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "HMI.postJSON('/api/command', {command: arguments[0], args: arguments[1]})"
            ".then((r) => done([r.status, r.body]), (e) => done([0, String(e)]));",
            command, args)
        return int(got[0]), got[1]
