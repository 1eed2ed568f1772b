"""``valet dev``: the whole app on this machine, until Ctrl-C.

* Azurite (HTTPS, OAuth, pinned in package.json) with its data in ``.valet/azurite`` (ignored by git),
  on the ports ``local.settings.sample.json`` names (10000 blob, 10001 queue), or on ports Azurite binds
  itself when ``VALET_STORAGE_ACCOUNT_URL`` names port 0 (tests and the demo: no port race);
* settings from ``local.settings.json`` (created with fresh secrets by ``valet init`` when missing), real
  environment variables first, as Core Tools loads them;
* a development OIDC issuer on loopback, trusted only because this runner adds it to
  ``VALET_AUTH_ISSUERS``, and a development API key;
* the app's own registered functions from ``function_app.py``: HTTP routes on
  ``http://127.0.0.1:7071/api/...``, the blob trigger fed by watching the uploads container, timer
  triggers on their NCRONTAB schedules, everything else through ``POST /admin/functions/{name}``;
* ``.valet/dev.env`` with ``VALET_URL``, ``VALET_DEV_TOKEN`` (valid 12 hours), ``VALET_DEV_API_KEY`` and
  ``VALET_DEV_REVIEW_TOKEN`` (another dev user, with the review role);
* with ``--instances N``, N-1 more app instances as separate processes on the next ports (same storage,
  issuer, keys and settings; :mod:`valet.local.instance`), and ``VALET_URLS`` (every instance's base URL,
  space-separated) in ``.valet/dev.env``; ``VALET_URL`` stays the first.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.blob import BlobServiceClient
from azure.storage.queue import QueueClient

from valet import telemetry
from valet.audit.flusher import close_all as close_audit_flushers
from valet.cors import apply_storage_cors, parse_origins
from valet.local import ops
from valet.local.devhost import FunctionHost
from valet.local.devidp import DevIssuer
from valet.local.emulator import PROJECT_ROOT, Azurite, EmulatorError, port_in_use
from valet.local.instance import start_instances, stop_instances
from valet.local.localsettings import LOCAL, effective_environment, init
from valet.local.ncrontab import Schedule
from valet.storage import EmulatorCredential

DEV_ISSUER_PORT = 7072
TOKEN_HOURS = 12


HOST_TRIES = 5  # the Functions host's tries of a blob trigger before its message goes to the poison queue


class BlobWatcher:
    """Feeds the blob trigger: every new or changed blob (name and ETag) in the uploads container, once;
    a failed invocation is tried again, up to the host's five tries, then given up on (the host's poison
    queue; the reconciler timer picks such uploads up)."""

    def __init__(self, service: BlobServiceClient, container: str, host: FunctionHost, function: str,
                 interval: float = 1.0, tries: int = HOST_TRIES) -> None:
        self._container = service.get_container_client(container)
        self._name = container
        self._host, self._function, self._interval = host, function, interval
        self._tries = tries
        self._seen: dict[str, str] = {}
        self._failures: dict[tuple[str, str], int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="valet-blob-watcher", daemon=True)

    def start(self) -> BlobWatcher:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def poll_once(self) -> int:
        fired = 0
        for blob in self._container.list_blobs():
            if self._seen.get(blob.name) == blob.etag:
                continue
            self._seen[blob.name] = str(blob.etag)
            try:
                self._host.invoke(self._function, f"{self._name}/{blob.name}")
            except Exception as exc:  # noqa: BLE001 - the host retries later, as the real trigger does
                key = (blob.name, str(blob.etag))
                self._failures[key] = failures = self._failures.get(key, 0) + 1
                if failures < self._tries:
                    print(f"  validate_upload failed ({type(exc).__name__}); will retry", flush=True)
                    self._seen.pop(blob.name, None)
                else:
                    print(f"  validate_upload failed {failures} times ({type(exc).__name__}); given up, as the "
                          "host's poison queue would (the reconcile_uploads timer tries again later)", flush=True)
            fired += 1
        return fired

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll_once()
            except AzureError:
                pass  # storage restarting; next round


def _timers(host: FunctionHost, stop: threading.Event) -> None:
    """Timer triggers on their own NCRONTAB schedules (UTC), checked every second."""
    schedules = {}
    for name, expression in host.schedules.items():
        try:
            schedules[name] = Schedule(expression)
        except ValueError as exc:
            print(f"  {name}: {exc}; not scheduled locally (invoke it via the admin endpoint)", flush=True)
    last = None
    while not stop.wait(0.25):
        now = datetime.now(UTC).replace(microsecond=0)
        if now == last:
            continue
        last = now
        for name, schedule in schedules.items():
            if schedule.matches(now):
                try:
                    host.invoke(name, "")
                except Exception as exc:  # noqa: BLE001 - report and keep the runner alive, like the host
                    print(f"  {name} failed ({type(exc).__name__})", flush=True)


def _dev_api_key(env: dict[str, str]) -> str:
    from valet.auth import BlobKeyStore
    from valet.auth.keytool import main as keytool
    from valet.settings import Settings
    from valet.storage import make_blob_service, make_credential

    out = io.StringIO()
    settings = Settings.from_env(env)
    service = make_blob_service(settings.storage, make_credential(settings.storage))
    code = keytool(["create", "--owner", "dev", "--name", f"valet-dev-{int(time.time())}", "--tenant", "dev"],
                   store_factory=lambda auth: BlobKeyStore(service.get_container_client(auth.apikey_container)),
                   environ=env, out=out)
    if code != 0:
        raise EmulatorError("could not create the development API key")
    for line in out.getvalue().splitlines():
        if line.startswith("api key"):
            return line.rsplit(" ", 1)[1]
    raise EmulatorError("the key tool printed no key")


def provision(service: BlobServiceClient, env: dict[str, str], queue_url: str, ca: str, table_url: str = "") -> None:
    """The containers, the decision-event queue and the quota table, as the deployment templates create
    them in Azure."""
    names = [env.get("VALET_UPLOADS_CONTAINER", "uploads"), env.get("VALET_ACCEPTED_CONTAINER", "accepted"),
             env.get("VALET_QUARANTINE_CONTAINER", "quarantine"), env.get("VALET_APIKEY_CONTAINER", "valet-apikeys")]
    if env.get("VALET_AUDIT_CONTAINER", "audit") != "none":
        names.append(env.get("VALET_AUDIT_CONTAINER", "audit"))  # Azurite enforces no immutability policy
    for name in names:
        try:
            service.create_container(name)
        except ResourceExistsError:
            pass
    queue = QueueClient(queue_url, env.get("VALET_DECISION_QUEUE", "valet-decisions"),
                        credential=EmulatorCredential(queue_url), connection_verify=ca)
    try:
        queue.create_queue()
    except ResourceExistsError:
        pass
    finally:
        queue.close()
    if table_url:
        from azure.data.tables import TableClient

        from valet.quotas.settings import DEFAULT_TABLE, QUOTA_TABLE

        table = TableClient(table_url, env.get(QUOTA_TABLE) or DEFAULT_TABLE, credential=EmulatorCredential(table_url),
                            connection_verify=ca)
        try:
            table.create_table()
        except ResourceExistsError:
            pass
        finally:
            table.close()


def run(port: int = 7071, *, root: Path = PROJECT_ROOT, ready: threading.Event | None = None,
        stop: threading.Event | None = None, blob_trigger: bool = True, instances: int = 1,
        otlp_endpoint: str | None = None) -> int:
    """Run until ``stop`` is set. ``root`` holds local.settings(.sample).json and the ``.valet`` state.
    ``blob_trigger=False`` feeds no blob to ``validate_upload``, as when Event Grid deliveries are lost:
    then only the ``reconcile_uploads`` timer decides uploads. ``instances`` app hosts serve on ``port``
    (the one bound, for 0) and the ports after it. Telemetry is kept in memory for the operations page,
    and also exported to ``otlp_endpoint`` when one is given."""
    stop = stop or threading.Event()
    state = root / ".valet"
    try:
        if port and port_in_use(port):  # something answers there (a server on another address, too)
            raise OSError(port)
        listener = bind_loopback(port)  # bound now: every URL below names the real port, even for --port 0
    except OSError:
        print(f"valet dev: port {port} is already in use (another valet dev or func start?)", file=sys.stderr)
        return 2
    bound = int(listener.getsockname()[1])
    extra: list[socket.socket] = []  # the other instances' ports, reserved now: bound until each serves
    for number, taken in enumerate(range(bound + 1, bound + instances), 2):
        try:
            if port_in_use(taken):
                raise OSError(taken)
            extra.append(bind_loopback(taken))
        except OSError:
            print(f"valet dev: port {taken} is already in use (for instance {number})", file=sys.stderr)
            for sock in (listener, *extra):
                sock.close()
            return 2
    try:
        return _run(listener, root=root, state=state, ready=ready, stop=stop, blob_trigger=blob_trigger,
                    extra=extra, otlp_endpoint=otlp_endpoint)
    finally:
        for sock in (listener, *extra):
            sock.close()


def bind_loopback(port: int) -> socket.socket:
    """A listening TCP socket on 127.0.0.1:``port`` (0: a free port the kernel picks)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", port))
        listener.listen(1024)
    except OSError:
        listener.close()
        raise
    return listener


def _run(listener: socket.socket, *, root: Path, state: Path, ready: threading.Event | None,
         stop: threading.Event, blob_trigger: bool, extra: Sequence[socket.socket] = (),
         otlp_endpoint: str | None = None) -> int:
    port = int(listener.getsockname()[1])
    instances = 1 + len(extra)
    if not (root / LOCAL).exists():
        print(f"valet dev: {LOCAL} not found; creating it with fresh development secrets")
        init(root)
    env = effective_environment(root)
    blob_port = int(env["VALET_STORAGE_ACCOUNT_URL"].split(":")[2].split("/")[0])
    try:
        azurite = Azurite(state / "azurite", blob_port=blob_port, queue_port=blob_port + 1 if blob_port else 0,
                          table_port=blob_port + 2 if blob_port else 0).start()
    except EmulatorError as exc:
        print(f"valet dev: {exc}", file=sys.stderr)
        return 2
    if blob_port == 0:
        env["VALET_STORAGE_ACCOUNT_URL"] = azurite.blob_url
    try:
        taken = port_in_use(DEV_ISSUER_PORT) or DEV_ISSUER_PORT in range(port, port + instances)
        issuer = DevIssuer(port=0 if taken else DEV_ISSUER_PORT, key_file=state / "dev-issuer-key.pem").start()
    except OSError:  # the port was taken between the check and the bind (another valet dev starting)
        issuer = DevIssuer(port=0, key_file=state / "dev-issuer-key.pem").start()
    try:
        issuers = with_dev_issuer(env.get("VALET_AUTH_ISSUERS"), issuer.settings_value())
    except ValueError as exc:
        print(f"valet dev: {exc}", file=sys.stderr)
        issuer.stop()
        azurite.stop()
        return 2
    env.update({
        "VALET_QUEUE_SERVICE_URL": azurite.queue_url,  # this runner's Azurite; its ports may be its own choice
        "VALET_TABLE_SERVICE_URL": azurite.table_url,
        "VALET_STORAGE_CA_BUNDLE": str(azurite.cert),
        "VALET_AUTH_ISSUERS": issuers,
        "VALET_ALLOW_INSECURE_HTTP": env.get("VALET_ALLOW_INSECURE_HTTP", "true"),  # http://127.0.0.1 locally
        "VALET_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
    })
    env.setdefault("VALET_CORS_ORIGINS", f"http://127.0.0.1:{port},http://localhost:{port}")
    env.setdefault("VALET_UI_ENABLED", "true")
    service = BlobServiceClient(azurite.blob_url, credential=EmulatorCredential(azurite.blob_url),
                                connection_verify=str(azurite.cert))
    provision(service, env, azurite.queue_url, str(azurite.cert), azurite.table_url)
    apply_storage_cors(service, parse_origins(env["VALET_CORS_ORIGINS"], setting="VALET_CORS_ORIGINS"))
    api_key = _dev_api_key(env) if env.get("VALET_APIKEY_PEPPER") else ""
    os.environ.update(env)
    dev_telemetry, ops_view = ops.dev_telemetry(otlp_endpoint)
    previous = telemetry.install(dev_telemetry)  # before the app starts: the app keeps it (valet/telemetry/setup.py)
    try:
        return _serve(listener, env, service, azurite, issuer, api_key, ops_view, state=state, ready=ready,
                      stop=stop, blob_trigger=blob_trigger, extra=extra, otlp_endpoint=otlp_endpoint)
    finally:
        telemetry.install(previous)
        dev_telemetry.close()  # the grants' spans still queued (valet/telemetry/batching.py), then the providers
        ops_view.close()


def _serve(listener: socket.socket, env: dict[str, str], service: BlobServiceClient, azurite: Azurite,
           issuer: DevIssuer, api_key: str, ops_view: ops.OpsView, *, state: Path, ready: threading.Event | None,
           stop: threading.Event, blob_trigger: bool, extra: Sequence[socket.socket],
           otlp_endpoint: str | None) -> int:
    instances = 1 + len(extra)
    extra_ports = [int(sock.getsockname()[1]) for sock in extra]
    sys.modules.pop("function_app", None)
    sys.path.insert(0, str(PROJECT_ROOT))
    function_app = importlib.import_module("function_app")
    host = FunctionHost(function_app.app, listener=listener, local_routes=ops.routes(ops_view)).start()
    try:
        others = start_instances(extra, os.environ)
    except EmulatorError as exc:
        print(f"valet dev: {exc}", file=sys.stderr)
        host.stop()
        issuer.stop()
        azurite.stop()
        return 2
    urls = [host.url, *(f"http://127.0.0.1:{p}" for p in extra_ports)]
    watcher = BlobWatcher(service, env.get("VALET_UPLOADS_CONTAINER", "uploads"), host, "validate_upload")
    if blob_trigger:
        watcher.start()
    else:
        print("valet dev: the blob trigger is off (--no-blob-trigger); reconcile_uploads decides uploads")
    timers = threading.Thread(target=_timers, args=(host, stop), daemon=True)
    timers.start()

    token = issuer.mint("dev-user", lifetime_seconds=TOKEN_HOURS * 3600)
    # A second user who may review quarantined uploads (and upload: reviewers never review their own).
    reviewer = issuer.mint("dev-reviewer", roles=("Uploads.Write", "Uploads.Review"),
                           lifetime_seconds=TOKEN_HOURS * 3600)
    state.mkdir(exist_ok=True)
    dev_env = state / "dev.env"
    dev_env.write_text(f"VALET_URL={host.url}\nVALET_URLS=\"{' '.join(urls)}\"\nVALET_DEV_TOKEN={token}\n"
                       f"VALET_DEV_API_KEY={api_key}\nVALET_DEV_REVIEW_TOKEN={reviewer}\n")
    dev_env.chmod(0o600)
    print(f"valet dev: app on {host.url}/api  (Azurite {azurite.blob_url}, dev issuer {issuer.issuer})")
    if instances > 1:
        print(f"  {instances} instances (separate processes, same storage and keys): {' '.join(urls)}")
    print(f"  credentials in {dev_env}; use them with:")
    print("    set -a; . .valet/dev.env; set +a")
    print('    curl -sS -X POST "$VALET_URL/api/uploads" -H "Authorization: Bearer $VALET_DEV_TOKEN" \\')
    print("         -H 'content-type: application/json' \\")
    print("""         -d '{"filename": "a.png", "contentType": "image/png", "size": 68}'""")
    if function_app.runtime.loaded is not None and function_app.runtime.loaded.settings.ui_enabled:
        print(f"  upload page: {host.url}/api/ui  (paste VALET_DEV_TOKEN or VALET_DEV_API_KEY;"
              " VALET_DEV_REVIEW_TOKEN shows the review view)")
    print(f"  operations page: {host.url}{ops.PAGE_ROUTE}" + (f"  (telemetry also to {otlp_endpoint})"
                                                             if otlp_endpoint else ""))
    print("  Ctrl-C stops everything.", flush=True)
    if ready is not None:
        ready.set()
    try:
        while not stop.wait(0.5):
            pass
    finally:
        if blob_trigger:
            watcher.stop()
        stop_instances(others)
        host.stop()
        close_audit_flushers()  # the audit records still buffered, appended while the emulator answers
        issuer.stop()
        azurite.stop()
        print("valet dev: stopped", flush=True)
    return 0


def with_dev_issuer(configured: str | None, dev_entry: str) -> str:
    """``VALET_AUTH_ISSUERS`` with the dev issuer added to what the environment or local.settings.json
    configures (never replacing it), so a developer can try a real provider next to the dev one."""
    dev = json.loads(dev_entry)
    try:
        current = json.loads(configured) if configured and configured.strip() else []
    except ValueError:
        raise ValueError("VALET_AUTH_ISSUERS must be a JSON list") from None
    if not isinstance(current, list) or not all(isinstance(e, dict) for e in current):
        raise ValueError("VALET_AUTH_ISSUERS must be a JSON list of objects")
    ours = {e["issuer"] for e in dev}
    return json.dumps([*(e for e in current if e.get("issuer") not in ours), *dev])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="valet dev", description="Run valet locally until Ctrl-C")
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--root", type=Path, default=PROJECT_ROOT,
                        help="folder with local.settings.json; state goes to <root>/.valet")
    parser.add_argument("--no-blob-trigger", action="store_true",
                        help="do not feed new uploads to validate_upload (as if every event were lost); "
                             "the reconcile_uploads timer still decides them")
    parser.add_argument("--instances", type=int, default=1, choices=range(1, 17), metavar="N",
                        help="run N app instances as separate processes on --port and the ports after it "
                             "(1-16; VALET_URLS in .valet/dev.env lists them)")
    parser.add_argument("--otlp-endpoint", default=os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
                        help="also export metrics and traces to this OTLP/HTTP collector, e.g. http://127.0.0.1:4318 "
                             "(default: OTEL_EXPORTER_OTLP_ENDPOINT; without either, telemetry stays in memory)")
    args = parser.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    return run(args.port, root=args.root, stop=stop, blob_trigger=not args.no_blob_trigger,
               instances=args.instances, otlp_endpoint=args.otlp_endpoint)
