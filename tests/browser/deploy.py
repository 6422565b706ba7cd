#!/usr/bin/env python3
"""Deploy and roll back from the dashboard, in a real headless Chromium
against a live exeio (run by `tests/integration/dashboard_deploy.rs`).

exeio must run a process `web` that takes releases (its command uses
`{release}`) with no release yet. --good, --second and --bad are release
archives: two that become healthy, one that does not. The script deploys
them through the page's file picker, checks the outcome shown and the
release under the process's name, rolls back after the confirmation, and
checks that a read-only key sees the release but neither button. Exits 1
on the first failure, or if the console shows an error other than the one
refused deploy it provokes.
"""

import argparse
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Api, Browser, login, visible, wait_for  # noqa: E402

# Failed requests the script causes on purpose (the browser logs each as an
# error): the bad release's deploy (409) and the session check of the page
# before logging in (401).
EXPECTED = [("/deploy/web", "409"), ("/session", "401")]
GATE = 60  # seconds a deploy may take (the health gate)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", required=True)
    ap.add_argument("--key", required=True)
    ap.add_argument("--readonly-key", required=True)
    ap.add_argument("--good", required=True)
    ap.add_argument("--second", required=True)
    ap.add_argument("--bad", required=True)
    a = ap.parse_args()
    api = Api(a.url, a.key)
    b = Browser()
    d = b.driver
    js = d.execute_script

    def step(what, f, *args):
        t = time.monotonic()
        out = f(*args)
        print(f"ok    {what} ({time.monotonic() - t:.2f}s)", flush=True)
        return out

    def button(act):
        return d.find_element("css selector", f"tr[data-id='web'] button[data-act='{act}']")

    def shown_release():
        return js("const l = document.querySelector(\"tr[data-id='web'] .rel-line\");"
                  "return l && !l.hidden ? l.querySelector('.rel').textContent : '';")

    def current():
        return api.ok("GET", "/releases/web")["current"]

    def deploy(path, want_ok):
        button("deploy").click()
        wait_for("the deploy dialog", lambda: visible(d, "#deploy-file"))
        d.find_element("css selector", "#deploy-file").send_keys(path)
        d.find_element("css selector", "#deploy-send").click()
        done = wait_for(
            "the outcome",
            lambda: (lambda t: t if ("is live" in t or "web: " in t and "…" not in t) else None)(
                js("return document.getElementById('deploy-result').textContent")),
            timeout=GATE,
        )
        cls = js("return document.getElementById('deploy-result').className")
        assert (cls == "ok") == want_ok, f"{done!r} ({cls})"
        d.find_element("css selector", "#deploy-cancel").click()
        wait_for("the dialog to close", lambda: not js("return document.getElementById('deploy').open"))
        return done

    try:
        step("log in as admin", login, b, a.url, a.key)
        wait_for("the web row", lambda: visible(d, "tr[data-id='web']"))

        def before():
            assert shown_release() == "no release yet", shown_release()
            assert not button("rollback").is_enabled(), "rollback with nothing to go back to"
        step("no release yet: none shown, no rollback", before)

        r1 = {}

        def first():
            text = deploy(a.good, True)
            r1["name"] = current()
            assert f"release {r1['name']} is live" in text, text
            wait_for("the release under the name", lambda: shown_release() == "release " + r1["name"])
        step("deploy a .tar.gz chosen in the page", first)

        def fits():
            for w in (1440, 360):
                b.set_viewport(w, 900)
                inner = js("const t = document.querySelector('.table-wrap');"
                           "return [t.scrollWidth, t.clientWidth];")
                assert inner[0] <= inner[1] + 1, f"at {w}px the table needs {inner[0]}px of {inner[1]}px"
            b.set_viewport(1440, 900)
        step("the release line scrolls nothing at 1,440 and 360 px", fits)

        def second():
            text = deploy(a.second, True)
            r2 = current()
            assert r2 != r1["name"], r2
            assert f"(was {r1['name']})" in text, text
            wait_for("the new release shown", lambda: shown_release() == "release " + r2)
            r1["second"] = r2
        step("deploy a second release: the previous one is named", second)

        def bad():
            text = deploy(a.bad, False)
            assert "did not become healthy" in text and "rolled back to" in text, text
            assert current() == r1["second"], current()
            wait_for("the notice", lambda: "did not become healthy" in
                     js("return document.getElementById('notice').textContent"))
            assert shown_release() == "release " + r1["second"], shown_release()
        step("a bad release: rolled back, and the page says why", bad)

        def roll():
            button("rollback").click()
            wait_for("the confirmation", lambda: visible(d, "#confirm-yes"))
            text = js("return document.getElementById('confirm-text').textContent")
            assert "Roll web back" in text, text
            assert d.find_element("css selector", "#confirm-yes").text == "Roll back"
            d.find_element("css selector", "#confirm-yes").click()
            wait_for("the rollback's notice", lambda: f"release {r1['name']} is live" in
                     js("return document.getElementById('notice').textContent"), timeout=GATE)
            assert current() == r1["name"], current()
            wait_for("the old release shown", lambda: shown_release() == "release " + r1["name"])
            assert js("return document.getElementById('confirm-yes').textContent") == "Remove"
        step("roll back after the confirmation", roll)

        def cancel():
            button("rollback").click()
            wait_for("the confirmation", lambda: visible(d, "#confirm-no"))
            d.find_element("css selector", "#confirm-no").click()
            time.sleep(0.3)  # nothing must happen: give it the chance to
            assert current() == r1["name"], current()
        step("a cancelled rollback changes nothing", cancel)

        def console():
            b.logs()
            bad = [e["message"] for e in b.console
                   if e.get("level") == "SEVERE"
                   and not any(p in e.get("message", "") and c in e.get("message", "")
                               for p, c in EXPECTED)]
            assert not bad, bad
        step("no console errors but the refused deploy", console)

        d.find_element("css selector", "#logout").click()
        wait_for("the log-in form", lambda: visible(d, "#key"))
        step("log in with a read-only key", login, b, a.url, a.readonly_key)

        def readonly():
            wait_for("the release shown", lambda: shown_release() == "release " + r1["name"])
            acts = js("return [...document.querySelectorAll(\"tr[data-id='web'] button[data-act]\")]"
                      ".map(b => b.dataset.act)")
            assert "deploy" not in acts and "rollback" not in acts, acts
        step("read-only: the release, no deploy or rollback", readonly)
    except Exception:
        traceback.print_exc()
        for e in b.console:
            print("console:", e, file=sys.stderr)
        b.close()
        return 1
    b.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
