"""Serving the real app on loopback and driving it: the uvicorn thread, the HTTP client of every
actor, sessions (password, TOTP at the simulated time, step-up), the webhook receiver, and the
single-threaded driver that moves the shared clock from one actor's step to the next.

uvicorn runs with ``proxy_headers`` and trusts 127.0.0.1 only, so the ``X-Forwarded-For`` that
each actor sends becomes the request's client address, which the API records as the audit
event's ``source``: every actor appears from its own address, as behind the lab's reverse proxy.

An actor is a generator: it makes its requests, then yields how long it waits (a `timedelta`)
or until when (a `datetime`). The driver runs one step at a time, in simulated-time order, then
waits until the alerts that step raised are delivered: the run is deterministic and an alert
is delivered before the clock moves on.
"""

from __future__ import annotations

import heapq
import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pyotp

from labvault.clock import FixedClock
from labvault.secret import Secret
from labvault.simulator.lab import ZONE
from labvault.watch.channels import SignatureInvalid, verify_signature

Step = Generator[timedelta | datetime, None, Any]
IDLE = timedelta(minutes=14)  # the server's idle limit is 15 min
LIFETIME = timedelta(hours=7, minutes=50)  # and its absolute limit 8 h
GIVE_UP = timedelta(minutes=30)  # a person whose login fails tries again this much later


class ApiServer:
    """The app under uvicorn in a thread, on 127.0.0.1 and a free port."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, proxy_headers=True,
                                forwarded_allow_ips=["127.0.0.1"], log_level="warning",
                                access_log=False, server_header=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="labvault-sim-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ApiServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=20)
        self._sock.close()


class WebhookReceiver:
    """A small HTTP server on loopback receiving the watcher's webhook, checking signatures;
    it notes when each alert arrived (wall clock, `time.perf_counter`)."""

    def __init__(self, secret: bytes, clock: FixedClock) -> None:
        self.received: list[tuple[float, dict[str, Any]]] = []
        self.refused = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                arrived = time.perf_counter()
                try:
                    verify_signature(Secret(secret), self.headers.get("X-Labvault-Timestamp", ""),
                                     body, self.headers.get("X-Labvault-Signature", ""),
                                     now=clock.now())
                except SignatureInvalid:
                    receiver.refused += 1
                    self.send_response(401)
                else:
                    receiver.received.append((arrived, json.loads(body)))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/alerts"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class Driver:
    """Actors in simulated-time order; `after_step` runs after each step."""

    def __init__(self, clock: FixedClock, after_step: Callable[[], None] = lambda: None) -> None:
        self.clock = clock
        self._after = after_step
        self._heap: list[tuple[datetime, int, Step]] = []
        self._seq = 0

    def spawn(self, actor: Step, at: datetime) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, actor))

    def run_until(self, end: datetime) -> None:
        while self._heap and self._heap[0][0] < end:
            at, _, actor = heapq.heappop(self._heap)
            if at > self.clock.now():
                self.clock.set(at)
            try:
                wait = next(actor)
            except StopIteration:
                wait = None
            self._after()
            if wait is not None:
                self.spawn(actor, wait if isinstance(wait, datetime) else self.clock.now() + wait)
        if self.clock.now() < end:
            self.clock.set(end)


@dataclass
class Truth:
    """What an attacker got: the patients whose data a 200 answer returned, when first, and
    the ids its searches returned."""

    exposed: dict[uuid.UUID, datetime] = field(default_factory=dict)
    searched: set[uuid.UUID] = field(default_factory=set)
    requests: int = 0
    first: datetime | None = None
    last: datetime | None = None


@dataclass
class Actor:
    """One client: an address, credentials, and the session it holds."""

    label: str
    address: str
    email: str | None = None
    password: str | None = field(default=None, repr=False)
    totp: pyotp.TOTP | None = field(default=None, repr=False)
    bearer: str | None = field(default=None, repr=False)
    service: bool = False
    day_key: str | None = None  # counted in user-days (the normal workload)
    truth: Truth | None = None  # attackers: the ground truth of what they got
    opened_at: datetime | None = None
    used_at: datetime | None = None
    last_step: int = -1
    blocked_until: datetime | None = None


def _error(r: httpx.Response) -> str | None:
    try:
        return r.json().get("error")
    except ValueError:
        return None


class Api:
    """The actors' HTTP client (one keep-alive connection) and their sessions."""

    def __init__(self, url: str, clock: FixedClock) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        self.clock = clock
        self.requests = 0
        self.server_errors = 0
        self.last_sent = 0.0
        self.user_days: set[tuple[str, str]] = set()

    def close(self) -> None:
        self.http.close()

    def call(self, a: Actor, method: str, path: str, body: Any = None,
             auth: bool = True) -> httpx.Response:
        headers = {"X-Forwarded-For": a.address}
        if auth and a.bearer:
            headers["Authorization"] = f"Bearer {a.bearer}"
        now = self.clock.now()
        if a.truth is not None:
            a.truth.requests += 1
            a.truth.first = a.truth.first or now
            a.truth.last = now
        self.last_sent = time.perf_counter()
        r = self.http.request(method, path, json=body, headers=headers)
        self.requests += 1
        if r.status_code >= 500:
            self.server_errors += 1
        elif r.status_code < 400:
            a.used_at = now
            if a.day_key is not None:
                self.user_days.add((a.day_key, now.astimezone(ZONE).date().isoformat()))
            if a.truth is not None and (method == "GET" or path == "/patients/search"):
                _note(a.truth, path, r, now)
        return r

    def _fresh_step(self, a: Actor) -> timedelta | None:
        """How long until a TOTP code this actor has not used yet (replays are refused)."""
        now = self.clock.now().timestamp()
        if int(now) // 30 > a.last_step:
            return None
        return timedelta(seconds=(a.last_step + 1) * 30 - now + 1)

    def _code(self, a: Actor) -> str:
        assert a.totp is not None
        now = self.clock.now()
        a.last_step = int(now.timestamp()) // 30
        return a.totp.at(now)

    def login(self, a: Actor) -> Step:
        """Password, then TOTP; False if refused (wrong password, locked, throttled)."""
        for _ in range(3):
            wait = self._fresh_step(a)
            if wait:
                yield wait
            r = self.call(a, "POST", "/auth/login", {"email": a.email, "password": a.password},
                          auth=False)
            if r.status_code != 200:
                return False
            yield timedelta(seconds=6)  # reading the code off the phone
            r = self.call(a, "POST", "/auth/mfa", {"challenge": r.json()["challenge"],
                                                   "code": self._code(a)}, auth=False)
            if r.status_code == 200:
                a.bearer, a.opened_at, a.used_at = r.json()["token"], self.clock.now(), self.clock.now()
                return True
            yield timedelta(seconds=31)  # a code of a step the account used already: the next
        return False

    def step_up(self, a: Actor) -> Step:
        for _ in range(3):
            wait = self._fresh_step(a)
            if wait:
                yield wait
            r = self.call(a, "POST", "/auth/step-up", {"code": self._code(a)})
            if r.status_code == 204:
                return True
            if r.headers.get("retry-after") or _error(r) != "authentication_failed":
                return False
            yield timedelta(seconds=31)
        return False

    def session_ok(self, a: Actor) -> bool:
        if a.bearer is None:
            return False
        if a.service:
            return True
        now = self.clock.now()
        return (a.used_at is not None and a.opened_at is not None and now - a.used_at < IDLE
                and now - a.opened_at < LIFETIME)

    def act(self, a: Actor, method: str, path: str, body: Any = None) -> Step:
        """One request with whatever it takes first: a login, a step-up when asked. None when
        the actor cannot get in (then a person waits `GIVE_UP` before trying again)."""
        now = self.clock.now()
        if a.blocked_until is not None and now < a.blocked_until:
            return None
        for _ in range(3):
            if not self.session_ok(a):
                if a.service:
                    return None
                if not (yield from self.login(a)):
                    a.bearer, a.blocked_until = None, self.clock.now() + GIVE_UP
                    return None
            r = self.call(a, method, path, body)
            if r.status_code == 401:
                a.bearer = None
                if a.service:
                    return r
                continue
            if r.status_code == 403 and _error(r) == "step_up_required":
                if not (yield from self.step_up(a)):
                    a.bearer = None
                continue
            return r
        return None


def _note(truth: Truth, path: str, r: httpx.Response, now: datetime) -> None:
    if path == "/patients/search":
        truth.searched.update(uuid.UUID(p) for p in r.json()["patient_ids"])
        return
    if path == "/export":
        docs = [json.loads(line) for line in r.text.splitlines() if line.strip()]
    else:
        docs = [r.json()]
    for doc in docs:
        if not isinstance(doc, dict):
            continue
        patient = doc.get("patient", doc)
        if isinstance(patient, dict) and "id" in patient and "last_name" in patient:
            truth.exposed.setdefault(uuid.UUID(patient["id"]), now)


__all__ = ["Actor", "Api", "ApiServer", "Driver", "Step", "Truth", "WebhookReceiver"]
