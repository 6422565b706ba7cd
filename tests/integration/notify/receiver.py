"""A webhook receiver for the notify tests: answers with the statuses of a
plan (the last one repeats), checks each request's signature with the
Standard Webhooks reference library, and prints one JSON line per request.

usage: receiver.py SECRET STATUSES [PORT] [RETRY_AFTER]
The first line printed is the port."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

secret = sys.argv[1]
plan = [int(s) for s in sys.argv[2].split(",")]
port = int(sys.argv[3]) if len(sys.argv) > 3 else 0
retry_after = sys.argv[4] if len(sys.argv) > 4 else ""
lock = threading.Lock()
count = 0


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        global count
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        try:
            Webhook(secret).verify(body, headers)
            verified = True
        except Exception as e:  # noqa: BLE001 - any failure is a bad signature
            verified = str(e) or type(e).__name__
        with lock:
            status = plan[min(count, len(plan) - 1)]
            count += 1
        self.send_response(status)
        if retry_after and status >= 400:
            self.send_header("Retry-After", retry_after)
        self.send_header("Content-Length", "0")
        self.end_headers()
        line = {
            "id": headers.get("webhook-id"),
            "timestamp": headers.get("webhook-timestamp"),
            "verified": verified,
            "status": status,
            "body": json.loads(body),
        }
        print(json.dumps(line), flush=True)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
