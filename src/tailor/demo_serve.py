"""The end of `make demo`: serve the demo shop on localhost and show curl calls that work.

With ``TAILOR_DEMO_SMOKE=1`` the same server starts, each example is called once through
HTTP, and the demo exits (non-zero if an answer is not what the example promises).
"""

from __future__ import annotations

import json
import shlex
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console

from tailor.config import Settings
from tailor.errors import TailorError

DEMO_KEY_NAME = "demo"
DEMO_PORT = 8000


@dataclass(frozen=True)
class Example:
    """One call a user can paste: what it shows, and the status it must answer."""

    title: str
    method: str
    path: str
    body: dict | None = None
    status: int = 200
    expect: str | None = None
    """A key the JSON answer must hold, not empty when it is a list (the smoke run checks)."""

    def curl(self, base: str) -> str:
        command = "curl -s"
        if self.method != "GET":
            command += f" -X {self.method}"
        # Double quotes, so the shell expands the key the demo exported.
        command += ' -H "Authorization: Bearer $TAILOR_API_KEY"'
        if self.body is not None:
            command += " -H 'Content-Type: application/json' -d " + shlex.quote(
                json.dumps(self.body)
            )
        return f"{command} {shlex.quote(base + self.path)}"


def demo_examples(
    user_id: str,
    item_id: str,
    country: str,
    buyer_id: str | None = None,
    budget: float | None = None,
    device_id: str | None = None,
    home_id: str | None = None,
) -> list[Example]:
    """The calls the demo prints (and the smoke run makes): one per kind of answer."""
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    view = {
        "event_type": "view",
        "event_id": f"demo-{uuid.uuid4().hex[:12]}",
        "subject_id": user_id,
        "item_id": item_id,
        "occurred_at": now,
    }
    plan = (
        [
            Example(
                "a budget plan: split the next 4 weeks' ad spend over the channels",
                "POST",
                "/v1/budget/plan",
                {"budget": budget, "horizon": 4, "relative_bounds": [0.5, 2.0]},
                expect="per_period",
            )
        ]
        if budget
        else []
    )
    devices = (
        [
            Example(
                "a thermostat's learned schedule for the next 24 hours, each change with why",
                "GET",
                f"/v1/devices/{device_id}/schedule?hours=24",
                expect="changes",
            ),
            Example(
                "what a home's model learned: habits, occupancy, heat-up rates",
                "GET",
                f"/v1/homes/{home_id}/insights",
                expect="habits",
            ),
        ]
        if device_id and home_id
        else []
    )
    return (
        [
            Example("liveness", "GET", "/v1/health"),
            Example("readiness and model version", "GET", "/v1/ready"),
            Example(
                "a customer's recommendations", "GET", f"/v1/users/{user_id}/recommendations?k=5"
            ),
            Example(
                "a new visitor (trending in their country)",
                "GET",
                f"/v1/users/new-visitor/recommendations?k=5&country={country}",
            ),
            Example("similar items", "GET", f"/v1/items/{item_id}/similar?k=5"),
            Example("bought together", "GET", f"/v1/items/{item_id}/bought-together?k=5"),
            Example("send a view (stored before the answer)", "POST", "/v1/events", view),
            Example("what tailor holds about the customer", "GET", f"/v1/users/{user_id}/data"),
            Example("customer segments", "GET", "/v1/segments"),
            Example(
                "the lifecycle dashboard's data (the page: /dashboard)",
                "GET",
                "/v1/admin/dashboard",
            ),
        ]
        + (
            [
                Example(
                    "a buyer's churn risk and lifetime value",
                    "GET",
                    f"/v1/users/{buyer_id}/profile",
                )
            ]
            if buyer_id
            else []
        )
        + plan
        + devices
    )


def serve_demo(
    settings: Settings,
    model_dir: Path,
    *,
    user_id: str,
    item_id: str,
    country: str,
    console: Console,
    smoke: bool,
    audience_dir: Path | None = None,
    buyer_id: str | None = None,
    budget_dir: Path | None = None,
    budget: float | None = None,
    devices_dir: Path | None = None,
    device_id: str | None = None,
    home_id: str | None = None,
) -> None:
    """Create a demo key, start the API on 127.0.0.1 and print (or, ``smoke``, call) the
    examples. Without ``smoke`` it serves until Ctrl-C."""
    import uvicorn

    from tailor.api.app import create_app

    token = _demo_key(settings)
    sock = _listening_socket(DEMO_PORT if not smoke else 0)
    port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    app = create_app(
        settings=settings,
        model_path=model_dir,
        audience_path=audience_dir,
        budget_path=budget_dir,
        devices_path=devices_dir,
    )
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on")
    )
    examples = demo_examples(
        user_id,
        item_id,
        country or "GB",
        buyer_id,
        budget,
        device_id=device_id if devices_dir else None,
        home_id=home_id if devices_dir else None,
    )
    console.rule(f"the HTTP API on {base} (OpenAPI: {base}/docs)")
    console.print(f"export TAILOR_API_KEY={token}", soft_wrap=True, highlight=False)
    for example in examples:
        console.print(f"# {example.title}", style="dim")
        console.print(example.curl(base), soft_wrap=True, highlight=False, markup=False)
    console.print(
        f"# the dashboard: open {base}/dashboard and log in with the key above", style="dim"
    )
    if not smoke:
        console.print("serving; press Ctrl-C to stop", style="bold")
        server.run(sockets=[sock])
        return
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        _wait_started(server)
        _call_examples(base, token, examples, console)
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _demo_key(settings: Settings) -> str:
    """A fresh admin key for this run; the previous runs' demo keys are revoked."""
    from tailor.api.keys import KeyRing

    ring = KeyRing.load(settings.api.keys_file)
    for key in ring.list():
        if key.name == DEMO_KEY_NAME and not key.revoked:
            ring.revoke(key.key_id)
    _, token = ring.create(
        name=DEMO_KEY_NAME,
        scopes=["admin"],
        tenant="default",
        rate_per_s=settings.api.default_rate_per_s,
        burst=settings.api.default_burst,
    )
    ring.save()
    return token


def _listening_socket(port: int) -> socket.socket:
    """Port ``port`` on loopback, or any free one when it is taken (another demo running)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:
        sock.bind(("127.0.0.1", 0))
    return sock


def _wait_started(server, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or server.should_exit:
            raise TailorError("the demo server did not start; see the log above")
        time.sleep(0.05)


def _holds(answer: object, key: str) -> bool:
    """Whether ``answer`` is an object with ``key``, and a list there is not empty (a schedule
    with no changes, a home with no habits is not what the example promises)."""
    if not isinstance(answer, dict) or key not in answer:
        return False
    value = answer[key]
    return not (isinstance(value, list) and not value)


def _call_examples(base: str, token: str, examples: list[Example], console: Console) -> None:
    import httpx

    headers = {"Authorization": f"Bearer {token}"}
    failures = []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for example in examples:
            answer = client.request(example.method, example.path, json=example.body)
            ok = answer.status_code == example.status
            if ok and example.expect is not None:
                ok = _holds(answer.json(), example.expect)
            console.print(
                f"{'ok ' if ok else 'BAD'} {answer.status_code} {example.method} "
                f"{example.path.split('?')[0]}  {answer.text[:100]}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )
            if not ok:
                failures.append(f"{example.method} {example.path}: {answer.status_code}")
    if failures:
        raise TailorError("smoke run: these endpoints failed: " + "; ".join(failures))
    console.print(f"smoke run: all {len(examples)} endpoints answered as expected")
