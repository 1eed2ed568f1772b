"""Locust users for ``bench/load.py``: each sends one request after another, with no think time, so the
number of users is the number of requests in flight (a closed loop at fixed concurrency).

``GrantUser`` asks for upload grants (``POST /api/uploads``, a valid body, the dev bearer token from
``VALET_LOAD_TOKEN``); ``HealthUser`` calls the trivial route of the same server (``GET /api/health``).
A response other than the expected status counts as a failure.
"""

from __future__ import annotations

import json
import os

from locust import FastHttpUser, constant, task

GRANT_BODY = json.dumps({"filename": "photo.png", "contentType": "image/png", "size": 123456})


class GrantUser(FastHttpUser):
    wait_time = constant(0)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Bearer {os.environ['VALET_LOAD_TOKEN']}",
                        "Content-Type": "application/json"}

    @task
    def grant(self) -> None:
        with self.client.post("/api/uploads", data=GRANT_BODY, headers=self.headers, name="POST /api/uploads",
                              catch_response=True) as response:
            if response.status_code != 201:
                response.failure(f"status {response.status_code}")


class HealthUser(FastHttpUser):
    wait_time = constant(0)

    @task
    def health(self) -> None:
        with self.client.get("/api/health", name="GET /api/health", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"status {response.status_code}")
