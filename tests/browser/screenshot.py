#!/usr/bin/env python3
"""Take a screenshot of the exeio dashboard of a running exeio.

Starts nothing and adds nothing: point it at an exeio that already has a few
processes, e.g. (see the README):

    python3 tests/browser/screenshot.py --url http://127.0.0.1:8080 --key KEY \
        --logs ticker --out examples/dashboard.png
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from browser import Browser, login, visible, wait_for  # noqa: E402
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="exeio's address, e.g. http://127.0.0.1:8080")
    ap.add_argument("--key", required=True, help="a key to log in with")
    ap.add_argument("--out", default="examples/dashboard.png", help="the PNG to write")
    ap.add_argument("--logs", metavar="ID", help="also open the logs of this process")
    ap.add_argument("--width", type=int, default=1440)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--dark", action="store_true", help="prefer the dark colour scheme")
    a = ap.parse_args()

    b = Browser(a.width, a.height)
    try:
        d = b.driver
        if a.dark:
            d.execute_cdp_cmd(
                "Emulation.setEmulatedMedia",
                {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
            )
        b.set_viewport(a.width, a.height)
        login(b, a.url, a.key)
        wait_for("some processes", lambda: d.find_elements("css selector", "#rows tr"))
        if a.logs:
            d.find_element("css selector", f'tr[data-id="{a.logs}"] button[data-act="logs"]').click()
            wait_for("log lines", lambda: d.find_elements("css selector", "#log-lines .line"))
        time.sleep(1.5)  # let the live figures settle (uptime ticks, a few log lines)
        d.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        ActionChains(d).move_to_element(d.find_element("css selector", ".brand")).perform()
        notice = visible(d, "#notice")
        if notice:
            d.execute_script("document.getElementById('notice').hidden = true")
        d.save_screenshot(a.out)
        # (The session check of the log-in page answers 401: expected.)
        errors = [
            e
            for e in b.logs()
            if e.get("level") == "SEVERE" and "/session - " not in e.get("message", "")
        ]
        for e in errors:
            print("console error:", e.get("message"), file=sys.stderr)
        print(f"wrote {a.out} ({a.width}x{a.height})")
    finally:
        b.close()


if __name__ == "__main__":
    main()
