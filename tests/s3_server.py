"""A real S3-compatible HTTP server for tests: moto in server mode (as s3fs and zarr test against).

Fixtures (registered from tests/conftest.py through `pytest_plugins`):
- `s3_server` (session): starts `python -m moto.server` on a free local port, points the standard AWS
  variables at it for the whole session (so spawned children and subprocesses find it too) and yields an
  `S3Server` (`.endpoint_url`, `.count_requests()`). The server is killed at the end of the session.
- `s3_bucket` (function): a fresh, uniquely named bucket on that server, as `s3://<bucket>`.

`S3Server.count_requests()` counts on the server side, through moto's request recorder
(`/moto-api/recorder/*`): every S3 request the server received inside the `with` block, in order, as
`Request(method, path, range)`. moto records a request before handling it, so every request whose
response the client has seen is in the list.

moto is a test dependency (deps/versions.txt): when it is missing the fixture fails, it does not skip.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple
from urllib.parse import urlsplit

import pytest

START_TIMEOUT_S = 60


class Request(NamedTuple):
    method: str
    path: str  # "/<bucket>/<key>", with "?<query>" when there is one
    range: str | None  # the Range header, e.g. "bytes=100-199"

    @property
    def range_length(self) -> int | None:
        """Bytes the Range header asks for (None without one)."""
        if self.range is None:
            return None
        first, last = self.range.removeprefix("bytes=").split("-")
        return int(last) - int(first) + 1


class S3Server:
    def __init__(self, endpoint_url: str, proc: subprocess.Popen, log: Path) -> None:
        self.endpoint_url, self.proc, self.log = endpoint_url, proc, log

    def _api(self, action: str) -> str:
        # moto's control API, not S3: plain HTTP is the only client it has.
        url = f"{self.endpoint_url}/moto-api/recorder/{action}"
        with urllib.request.urlopen(urllib.request.Request(url, method="POST"), timeout=30) as resp:
            return resp.read().decode()

    @contextlib.contextmanager
    def count_requests(self) -> Iterator[list[Request]]:
        """Yield a list that, after the block, holds every request the server got inside it."""
        got: list[Request] = []
        self._api("reset-recording")
        self._api("start-recording")
        try:
            yield got
        finally:
            self._api("stop-recording")
            for line in self._api("download-recording").splitlines():
                entry = json.loads(line)
                parts = urlsplit(entry["url"])
                headers = {k.lower(): v for k, v in entry["headers"].items()}
                path = parts.path + (f"?{parts.query}" if parts.query else "")
                got.append(Request(entry["method"], path, headers.get("range")))

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until_up(server: S3Server) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if server.proc.poll() is not None:
            pytest.fail(f"moto server exited with {server.proc.returncode}:\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(f"{server.endpoint_url}/moto-api/", timeout=2):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means it is serving
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(f"moto server did not answer within {START_TIMEOUT_S} s:\n{server.log_tail()}")
            time.sleep(0.1)


def _clear_fsspec_instances() -> None:
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    missing = [m for m in ("moto", "flask", "flask_cors") if importlib.util.find_spec(m) is None]
    if missing:
        pytest.fail(
            f"the S3 test server needs moto's server mode; not installed: {missing} (deps/versions.txt)"
        )
    work = tmp_path_factory.mktemp("moto")
    log = work / "server.log"
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(work / "recording.jsonl")}
    # The server's log goes to a file: an unread pipe would fill up and stall the server.
    with open(log, "wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = S3Server(endpoint, proc, log)
    try:
        _wait_until_up(server)
        with pytest.MonkeyPatch.context() as mp:
            for key, value in {
                "AWS_ENDPOINT_URL": endpoint,
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ALLOW_HTTP": "true",
            }.items():
                mp.setenv(key, value)
            for key in ("AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
                mp.delenv(key, raising=False)  # a developer's real settings must not leak in
            _clear_fsspec_instances()
            yield server
            _clear_fsspec_instances()
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    import boto3

    name = f"test-{uuid.uuid4().hex[:16]}"
    client = boto3.client("s3", endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return f"s3://{name}"
