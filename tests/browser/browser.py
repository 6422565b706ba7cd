"""Shared by the dashboard's browser scripts: a headless Debian Chromium driven
by selenium, and a tiny API client for the admin key.

Only the system's browser and driver are used (/usr/bin/chromium and
/usr/bin/chromedriver, from Debian's `chromium` and `chromium-driver`);
selenium is never allowed to download one.
"""

import json
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.request

CHROMIUM = os.environ.get("EXEIO_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("EXEIO_CHROMEDRIVER", "/usr/bin/chromedriver")

# Selenium Manager must not look for (or fetch) a browser or a driver.
os.environ.setdefault("SE_OFFLINE", "true")
os.environ.setdefault("SE_AVOID_STATS", "true")

try:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
except ImportError:  # reported by need_browser()
    webdriver = None


def need_browser():
    """Exit 2 with what to install when the browser tooling is missing."""
    missing = []
    if webdriver is None:
        missing.append("selenium (python3 -m pip install selenium)")
    for path, pkg in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            missing.append(f"{path} (apt-get install -y {pkg})")
    if missing:
        raise SystemExit("missing: " + "; ".join(missing))


class Browser:
    """A fresh headless Chromium with its own profile, removed on close."""

    def __init__(self, width=1440, height=900):
        need_browser()
        self.profile = tempfile.mkdtemp(prefix="exeio-chromium-")
        opts = Options()
        opts.binary_location = CHROMIUM
        for flag in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--hide-scrollbars",
            f"--window-size={width},{height}",
            f"--user-data-dir={self.profile}",
        ):
            opts.add_argument(flag)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        try:
            self.driver = webdriver.Chrome(
                service=Service(executable_path=CHROMEDRIVER), options=opts
            )
        except Exception:
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.console = []  # every browser log entry seen so far

    def set_viewport(self, width, height):
        """Make the page's viewport (not the window) width x height."""
        d = self.driver
        d.set_window_size(width, height)
        inner = d.execute_script("return [window.innerWidth, window.innerHeight]")
        d.set_window_size(width + (width - inner[0]), height + (height - inner[1]))

    def logs(self):
        """New browser console entries (also kept in self.console)."""
        new = self.driver.get_log("browser")
        self.console.extend(new)
        return new

    def close(self):
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


class Api:
    """The HTTP API with a key header (never a cookie)."""

    def __init__(self, url, key):
        self.url = url.rstrip("/")
        self.key = key

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("exeio-api-key", self.key)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, method, path, body=None):
        status, answer = self.call(method, path, body)
        if status != 200:
            raise AssertionError(f"{method} {path} -> {status} {answer}")
        return answer


def wait_for(what, predicate, timeout=15.0, every=0.05):
    """Poll `predicate` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = predicate()
        except Exception as e:  # a stale element, a missing one: try again
            last = e
            if time.monotonic() >= deadline:
                raise AssertionError(f"timed out waiting for {what}: {e!r}") from e
        else:
            if last:
                return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(every)


def login(browser, url, key):
    """Open the page and log in with `key` as a person would: type and Enter."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser.driver
    d.get(url.rstrip("/") + "/")
    field = wait_for("the key field", lambda: visible(d, "#key"))
    field.send_keys(key + Keys.ENTER)
    wait_for("the process table", lambda: visible(d, "#procs"))
    return d.find_element(By.CSS_SELECTOR, "#rows")


def visible(driver, css):
    """The first element matching `css` if it is displayed, else None."""
    from selenium.webdriver.common.by import By

    for el in driver.find_elements(By.CSS_SELECTOR, css):
        if el.is_displayed():
            return el
    return None
