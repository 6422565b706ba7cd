#!/usr/bin/env python3
"""Drive the exeio dashboard in a real headless Chromium against a live exeio.

The exeio at --url must already run these processes (the Rust test
`tests/integration/dashboard.rs` adds them through the API):

  echo     sh -c 'while read l; do echo "got $l"; done'   (prints a line per input)
  victim   sh -c 'exec sleep 100000'                      (stopped with a click)
  xss      prints <script>alert(1)</script> on stdout and <img src=x onerror=alert(2)> on stderr
  chatty   prints "line 1" ... "line 450", then sleeps   (older log pages)
  blinker  sh -c 'read x; exit 3'                         (exits on input: timing)

The script adds `late` through the API and `from-form` through the page.
It prints each check, and exits 1 on the first failure (after printing the
browser console) or if the browser console showed any error other than the
few failed requests the script provokes on purpose.
"""

import argparse
import os
import statistics
import sys
import time
import traceback
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Api, Browser, login, visible, wait_for  # noqa: E402

FIXTURES = ["echo", "victim", "xss", "chatty", "blinker"]
CHATTY_LINES = 450
TRIALS = 10
ACTIONS = ["start", "stop", "restart", "edit", "remove"]

# Failed requests the script causes on purpose (the browser logs each as an
# error): the session check of a page without a session, a wrong key, and
# an add the server refuses. Anything else in the console fails the test.
EXPECTED_FAILURES = {("/session", 401), ("/add", 400)}


class Failed(Exception):
    pass


class Run:
    def __init__(self, args):
        self.url = args.url.rstrip("/")
        self.api = Api(self.url, args.key)
        self.key = args.key
        self.readonly_key = args.readonly_key
        self.b = None
        self.d = None
        self.latencies = []

    # -- helpers ------------------------------------------------------------

    def check(self, what, f, *a):
        t = time.monotonic()
        try:
            out = f(*a)
        except Exception as e:
            raise Failed(f"{what}: {e}") from e
        print(f"ok    {what} ({time.monotonic() - t:.2f}s)", flush=True)
        return out

    def js(self, script, *args):
        return self.d.execute_script(script, *args)

    def row_status(self, pid):
        return self.js(
            "const c = document.querySelector(`tr[data-id='${arguments[0]}'] td.status`);"
            "return c ? [c.dataset.status, c.textContent] : null;",
            pid,
        )

    def wait_status(self, pid, status, timeout=15):
        return wait_for(
            f"{pid} to show {status}",
            lambda: (self.row_status(pid) or [None])[0] == status,
            timeout,
        )

    def button(self, pid, act):
        return self.d.find_element("css selector", f"tr[data-id='{pid}'] button[data-act='{act}']")

    def log_texts(self):
        return self.js(
            "return [...document.querySelectorAll('#log-lines .line')]"
            ".filter(e => !e.hidden).map(e => e.textContent)"
        )

    def open_logs(self, pid):
        self.button(pid, "logs").click()
        wait_for(
            f"the logs of {pid}",
            lambda: self.js("return document.getElementById('logs-title').textContent") == f"Logs: {pid}"
            and visible(self.d, "#log-view"),
        )
        wait_for(f"{pid}'s first lines", lambda: self.log_texts())

    def marker(self):
        return self.js("return window.__noReload === 1")

    # -- checks ---------------------------------------------------------------

    def headers(self):
        with urllib.request.urlopen(self.url + "/", timeout=10) as r:
            h = r.headers
            csp = h.get("Content-Security-Policy", "")
            for d in ("default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"):
                assert d in csp, f"{d} not in CSP {csp!r}"
            assert h.get("X-Frame-Options") == "DENY", h
            assert h.get("X-Content-Type-Options") == "nosniff", h

    def fixtures_exist(self):
        have = {p["id"] for p in self.api.ok("GET", "/list")}
        missing = [f for f in FIXTURES if f not in have]
        assert not missing, f"exeio lacks the fixture processes {missing} (see this script's docstring)"
        for f in ("late", "from-form"):
            if f in have:
                self.api.ok("POST", f"/remove/{f}")

    def login_page(self):
        self.d.get(self.url + "/")
        key = wait_for("the log-in form", lambda: visible(self.d, "#key"))
        assert self.js("return document.activeElement.id") == "key", "the key field has no focus"
        key.send_keys("not-the-key\n")
        err = wait_for("the wrong-key message", lambda: visible(self.d, "#login-error"))
        assert "not valid" in err.text, err.text
        assert not visible(self.d, "#procs")

    def login(self, key, role):
        field = self.d.find_element("css selector", "#key")
        field.clear()
        field.send_keys(key + "\n")
        wait_for("the process table", lambda: visible(self.d, "#procs"))
        who = self.d.find_element("css selector", "#who").text
        assert f"({role})" in who, who
        wait_for("the fixture rows", lambda: all(self.row_status(f) for f in FIXTURES))
        wait_for("the event stream", lambda: self.js("return document.getElementById('conn').textContent") == "live")

    def key_kept_nowhere(self):
        assert self.key not in self.d.current_url
        assert self.js("return document.getElementById('key').value") == ""
        assert self.js("return localStorage.length + sessionStorage.length") == 0
        assert "exeio_session" not in self.js("return document.cookie"), "the session cookie is not HttpOnly"
        self.js("window.__noReload = 1")

    def added_through_api(self):
        self.api.ok("POST", "/add", {"id": "late", "command": "sh", "args": ["-c", "exec sleep 100000"]})
        self.wait_status("late", "running")
        assert self.marker(), "the page reloaded"

    def stop_with_click(self):
        assert self.row_status("victim")[0] == "running", self.row_status("victim")
        self.button("victim", "stop").click()
        self.wait_status("victim", "manually_stopped")
        text = self.row_status("victim")[1]
        assert "stopped by hand" in text, text
        wait_for("the exit in the table", lambda: "TERM" in self.js(
            "return document.querySelector(\"tr[data-id='victim'] td.exit\").textContent"))
        assert self.marker(), "the page reloaded"
        assert self.api.ok("GET", "/status/victim")["process"]["status"] == "manually_stopped"

    def live_log_line(self):
        self.open_logs("echo")
        token = uuid.uuid4().hex[:12]
        self.api.ok("POST", "/input/echo", {"input": token})
        wait_for("the new line", lambda: any(f"got {token}" in t for t in self.log_texts()))
        return token

    def pause(self, first):
        pause = self.d.find_element("css selector", "#log-pause")
        pause.click()
        assert pause.get_attribute("aria-pressed") == "true"
        token = uuid.uuid4().hex[:12]
        self.api.ok("POST", "/input/echo", {"input": token})
        wait_for("the paused count", lambda: "1 new lines waiting" in self.d.find_element("css selector", "#log-info").text)
        assert not any(token in t for t in self.log_texts()), "a line showed while paused"
        pause.click()
        assert pause.get_attribute("aria-pressed") == "false"
        wait_for("the held line", lambda: any(f"got {token}" in t for t in self.log_texts()))
        # search within what is loaded
        box = self.d.find_element("css selector", "#log-search")
        box.send_keys(first)
        wait_for("the search", lambda: self.log_texts() and all(first in t for t in self.log_texts()))
        assert len(self.log_texts()) == 1, self.log_texts()
        assert self.js("return document.querySelectorAll('#log-lines mark').length") >= 1
        box.clear()  # fires no input event: send one
        self.js("document.getElementById('log-search').dispatchEvent(new Event('input'))")
        wait_for("all lines again", lambda: len(self.log_texts()) >= 3)

    def stream_filter(self):
        from selenium.webdriver.support.ui import Select

        select = Select(self.d.find_element("css selector", "#log-stream"))
        select.select_by_value("system")
        wait_for("system lines", lambda: self.log_texts() and all("SYSTEM:" in t for t in self.log_texts()))
        select.select_by_value("")
        wait_for("every stream", lambda: any("STDOUT:" in t for t in self.log_texts()))

    def older_pages(self):
        self.open_logs("chatty")
        wait_for("the tail of 200 lines", lambda: len(self.log_texts()) == 200)
        for _ in range(10):
            if "start of the log" in self.d.find_element("css selector", "#log-info").text:
                break
            n = len(self.log_texts())
            self.js("document.getElementById('log-view').scrollTop = 0")
            wait_for("older lines", lambda: len(self.log_texts()) > n
                     or "start of the log" in self.d.find_element("css selector", "#log-info").text)
        lines = [t.split("STDOUT: ", 1)[1] for t in self.log_texts() if "STDOUT: " in t]
        want = [f"line {i}" for i in range(1, CHATTY_LINES + 1)]
        assert lines == want, f"got {len(lines)} lines, first {lines[:3]}, last {lines[-3:]}"

    def xss_as_text(self):
        self.js("window.__alerted = 0; window.alert = () => { window.__alerted += 1; };")
        self.open_logs("xss")
        wait_for("the script line", lambda: any("<script>alert(1)</script>" in t for t in self.log_texts()))
        wait_for("the img line", lambda: any("<img src=x onerror=alert(2)>" in t for t in self.log_texts()))
        n = self.js("return document.querySelectorAll('main script, main img, dialog script, dialog img').length")
        assert n == 0, f"{n} elements made from process output"
        cmd = self.js("return document.querySelector(\"tr[data-id='xss'] .cmd\").textContent")
        assert "<script>alert(1)</script>" in cmd, cmd
        time.sleep(0.5)
        assert self.js("return window.__alerted") == 0, "alert() was called"
        from selenium.common.exceptions import NoAlertPresentException

        try:
            text = self.d.switch_to.alert.text
        except NoAlertPresentException:
            return
        raise AssertionError(f"an alert opened: {text}")

    def form_add(self):
        self.d.find_element("css selector", "#add").click()
        wait_for("the add dialog", lambda: self.js("return document.getElementById('edit').open"))
        f = lambda name: self.d.find_element("css selector", f"#edit-form [name='{name}']")  # noqa: E731
        f("id").send_keys("bad id!")
        f("command").send_keys("sh")
        f("args").send_keys("-c\nexec sleep 100000")
        self.d.find_element("css selector", "#edit-save").click()
        err = wait_for("the server's message next to the id", lambda: visible(self.d, "#err-id"))
        assert "id" in err.text.lower(), err.text
        assert f("id").get_attribute("aria-invalid") == "true"
        f("id").clear()
        f("id").send_keys("from-form")
        self.d.find_element("css selector", "#edit-save").click()
        wait_for("the dialog to close", lambda: not self.js("return document.getElementById('edit').open"))
        self.wait_status("from-form", "running")

    def form_edit(self):
        self.button("from-form", "edit").click()
        wait_for("the edit dialog", lambda: self.js("return document.getElementById('edit').open"))
        args = self.d.find_element("css selector", "#edit-form [name='args']")
        assert args.get_attribute("value") == "-c\nexec sleep 100000", args.get_attribute("value")
        args.clear()
        args.send_keys("-c\nexec sleep 200000")
        self.d.find_element("css selector", "#edit-save").click()
        wait_for("the dialog to close", lambda: not self.js("return document.getElementById('edit').open"))
        wait_for("the new command", lambda: "200000" in self.js(
            "return document.querySelector(\"tr[data-id='from-form'] .cmd\").textContent"))
        assert self.api.ok("GET", "/status/from-form")["process"]["args"] == ["-c", "exec sleep 200000"]

    def remove_confirmed(self):
        self.button("from-form", "remove").click()
        wait_for("the confirmation", lambda: self.js("return document.getElementById('confirm').open"))
        self.d.find_element("css selector", "#confirm-no").click()
        time.sleep(0.3)
        assert self.row_status("from-form"), "removed without confirmation"
        self.button("from-form", "remove").click()
        wait_for("the confirmation", lambda: self.js("return document.getElementById('confirm').open"))
        self.d.find_element("css selector", "#confirm-yes").click()
        wait_for("the row to go", lambda: self.row_status("from-form") is None)

    def exit_latency(self):
        """Time from the request that makes `blinker` exit to its row showing it."""
        for _ in range(TRIALS):
            if self.api.ok("GET", "/status/blinker")["process"]["status"] != "running":
                self.api.ok("POST", "/start/blinker")
            self.wait_status("blinker", "running")
            self.js(
                "window.__seen = 0;"
                "const cell = document.querySelector(\"tr[data-id='blinker'] td.status\");"
                "const o = new MutationObserver(() => {"
                "  if (cell.dataset.status !== 'running' && !window.__seen) {"
                "    window.__seen = performance.timeOrigin + performance.now(); o.disconnect(); } });"
                "o.observe(cell, {attributes: true});"
            )
            t0 = time.time() * 1000
            self.api.ok("POST", "/input/blinker", {"input": "go"})
            seen = wait_for("blinker's exit in the table", lambda: self.js("return window.__seen"))
            self.latencies.append(seen - t0)
            self.wait_status("blinker", "stopped")

    def keyboard(self):
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.keys import Keys

        self.js("document.activeElement.blur(); window.scrollTo(0, 0)")
        chain = ActionChains(self.d)
        for _ in range(40):
            chain.send_keys(Keys.TAB).perform()
            tag = self.js("const a = document.activeElement; return a.closest('#rows') ? a.tagName : ''")
            if tag == "BUTTON":
                break
        else:
            raise AssertionError("no button of the table was reached with Tab")
        outline = self.js("return getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), f"no visible focus (outline {outline})"

    def widths(self):
        for w in (360, 1440):
            self.b.set_viewport(w, 900)
            time.sleep(0.2)
            sw = self.js("return document.documentElement.scrollWidth")
            assert sw <= w + 1, f"at {w}px the page is {sw}px wide"
            inner = self.js("const t = document.querySelector('.table-wrap'); return [t.scrollWidth, t.clientWidth]")
            assert inner[0] <= inner[1] + 1, f"at {w}px the table needs {inner[0]}px of {inner[1]}px"
            status = self.d.find_element("css selector", "tr[data-id='echo'] td.status")
            assert status.is_displayed() and status.text, "status not shown"

    def schemes(self):
        colours = []
        for scheme in ("light", "dark"):
            self.d.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
            )
            colours.append(self.js("return getComputedStyle(document.body).backgroundColor"))
        self.d.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
        assert colours[0] != colours[1], colours

    def logout(self):
        self.d.find_element("css selector", "#logout").click()
        wait_for("the log-in form", lambda: visible(self.d, "#key"))
        assert not visible(self.d, "#procs")
        status = self.d.execute_async_script(
            "const done = arguments[0];"
            "fetch('/session', {credentials: 'same-origin'}).then(r => done(r.status), e => done(String(e)));"
        )
        assert status == 401, f"the session still works after logging out: {status}"

    def readonly(self):
        buttons = self.js(
            "return [...document.querySelectorAll('#rows button[data-act]')].map(b => b.dataset.act)"
        )
        shown = sorted({b for b in buttons if b in ACTIONS})
        assert not shown, f"a read-only key sees {shown}"
        assert "logs" in buttons, buttons
        assert not visible(self.d, "#add"), "a read-only key sees Add"

    def console(self):
        self.b.logs()
        bad = []
        for e in self.b.console:
            if e.get("level") != "SEVERE":
                continue
            msg = e.get("message", "")
            if e.get("source") == "network" and any(
                msg.startswith(f"{self.url}{path} - ")
                and f"status of {status} " in msg
                for path, status in EXPECTED_FAILURES
            ):
                continue
            bad.append(msg)
        assert not bad, "console errors:\n  " + "\n  ".join(bad)

    # -- the run ------------------------------------------------------------

    def run(self):
        c = self.check
        c("GET / carries the security headers", self.headers)
        c("the fixture processes exist", self.fixtures_exist)
        self.b = c("start Chromium", Browser, 1440, 900)
        self.d = self.b.driver
        self.d.set_script_timeout(20)
        c("the log-in form refuses a wrong key", self.login_page)
        c("log in with the admin key (keyboard: type, Enter)", self.login, self.key, "admin")
        c("the key is kept nowhere (URL, field, storage, script-visible cookie)", self.key_kept_nowhere)
        c("a process added through the API appears without a reload", self.added_through_api)
        c("Stop clicked: the status changes without a reload", self.stop_with_click)
        first = c("the logs show a new line live", self.live_log_line)
        c("pause holds new lines; search filters the loaded ones", self.pause, first)
        c("the stream filter shows system lines only", self.stream_filter)
        c(f"scrolling up loads older pages: all {CHATTY_LINES} lines once, in order", self.older_pages)
        c("<script> and <img onerror> output show as text, no alert", self.xss_as_text)
        c("the add form shows the server's message next to the field, then adds", self.form_add)
        c("the edit form changes the command", self.form_edit)
        c("remove asks first; cancel keeps, confirm removes", self.remove_confirmed)
        c(f"exit-to-table latency over {TRIALS} trials", self.exit_latency)
        c("Tab reaches the table's buttons with a visible focus", self.keyboard)
        c("no horizontal scrolling at 360 px and 1,440 px", self.widths)
        c("light and dark follow prefers-color-scheme", self.schemes)
        c("log out ends the session", self.logout)
        c("log in with the read-only key", self.login, self.readonly_key, "read")
        c("a read-only key sees no action buttons", self.readonly)
        c("no console errors", self.console)
        lat = sorted(self.latencies)
        print(
            f"exit-to-table latency (ms, {len(lat)} trials): p50 {statistics.median(lat):.1f}, "
            f"min {lat[0]:.1f}, max {lat[-1]:.1f}"
        )


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="exeio's address, e.g. http://127.0.0.1:8080")
    ap.add_argument("--key", required=True, help="an admin key")
    ap.add_argument("--readonly-key", required=True, help="a key with the read role")
    ap.add_argument("--screenshot-on-failure", metavar="PNG", help="where to save the page when a check fails")
    args = ap.parse_args()
    run = Run(args)
    code = 0
    try:
        run.run()
        print("dashboard: all checks passed")
    except Failed as e:
        code = 1
        print(f"FAIL  {e}", flush=True)
        traceback.print_exc()
        if run.b:
            try:
                run.b.logs()
                for entry in run.b.console:
                    print(f"console {entry.get('level')} {entry.get('source')}: {entry.get('message')}")
                if args.screenshot_on_failure:
                    run.d.save_screenshot(args.screenshot_on_failure)
                    print(f"page saved as {args.screenshot_on_failure}")
            except Exception as e2:  # the browser itself may be gone
                print(f"(could not read the browser: {e2})")
    finally:
        if run.b:
            run.b.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
