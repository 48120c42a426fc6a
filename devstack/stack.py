"""The local stack: emulators plus every function in its own process.

``Stack.start()`` picks free ports, starts the Firestore, Pub/Sub and BigQuery
emulators, creates the dataset and tables from the schema files, starts each
function of ``functions/manifest.json`` under functions-framework (as in
production, one process per function), creates the topics and the push
subscriptions (each with a dead-letter topic), and waits until everything
answers. ``Stack.stop()`` ends every process group it started; the runner also
stops them on exit, Ctrl-C or failure.

Run ``python -m devstack.stack`` to keep a stack up until Ctrl-C.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "functions" / "manifest.json"
BQ_VENV = ROOT / ".venv-bq"
BQ_HOME = ROOT / ".cache" / "bq-home"
PROJECT = "calltrack-local"
DATASET = "calltrack"
# Pub/Sub retries a failing push about once a second on the emulator; five
# attempts then the dead-letter topic (the minimum Pub/Sub allows).
MAX_DELIVERY_ATTEMPTS = 5
READY_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the listening socket of ``port``.

    A port from ``free_port`` is free only when asked: another stack on the
    machine can take it before the function binds it, and then the other
    stack's server answers the readiness probe. Linux's /proc says whose
    socket it is; elsewhere the probe's answer is trusted.
    """
    tables = [Path("/proc/net/tcp"), Path("/proc/net/tcp6")]
    if not tables[0].exists():
        return True
    inodes = set()
    for table in tables:
        for line in table.read_text().splitlines()[1:]:
            cols = line.split()
            # cols: index, local address:port (hex), remote, state (0A listen)...
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f"socket:[{cols[9]}]")
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(fd) in inodes:
                return True
        except OSError:
            continue
    return False


def sdk_root() -> Path:
    gcloud = shutil.which("gcloud")
    if not gcloud:
        raise RuntimeError("The Google Cloud CLI (gcloud) is needed for the emulators.")
    out = subprocess.run(
        [gcloud, "info", "--format=value(installation.sdk_root)"],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def manifest() -> dict:
    return json.loads(MANIFEST.read_text())


def _get(url: str, timeout: float = 1.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, b""


def _request(method: str, url: str, body: dict | None = None) -> int:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Process:
    name: str
    popen: subprocess.Popen
    log_path: Path
    # How it was started, so that ``Stack.restart`` can start it again.
    argv: list[str] = field(default_factory=list)
    env: dict | None = None


@dataclass
class Stack:
    """A running local stack. Ports are free ones, so stacks never collide."""

    env_overrides: dict = field(default_factory=dict)
    functions: tuple[str, ...] | None = None  # None: every function
    quiet: bool = False
    run_dir: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="calltrack-stack-"))
    )
    processes: list[Process] = field(default_factory=list)
    ports: dict[str, int] = field(default_factory=dict)
    urls: dict[str, str] = field(default_factory=dict)
    # Processes killed by the chaos tests, whose held messages ``restart``
    # makes due again.
    _killed: set = field(default_factory=set, repr=False)

    # -- lifecycle ------------------------------------------------------------

    def start(self) -> Stack:
        atexit.register(self.stop)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        started = time.monotonic()
        sdk = sdk_root()
        self.ports = {
            "firestore": free_port(),
            "pubsub": free_port(),
            "bigquery": free_port(),
            "bigquery_grpc": free_port(),
        }
        self._spawn(
            "firestore",
            [
                str(sdk / "platform/cloud-firestore-emulator/cloud_firestore_emulator"),
                "start",
                "--host=127.0.0.1",
                f"--port={self.ports['firestore']}",
            ],
        )
        self._spawn(
            "pubsub",
            [
                str(sdk / "platform/pubsub-emulator/bin/cloud-pubsub-emulator"),
                "--host=127.0.0.1",
                f"--port={self.ports['pubsub']}",
            ],
        )
        bq_data = self.run_dir / "bigquery"
        bq_data.mkdir(exist_ok=True)
        self._spawn(
            "bigquery",
            [
                str(BQ_VENV / "bin" / "local-bigquery"),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports["bigquery"]),
                "--grpc-port",
                str(self.ports["bigquery_grpc"]),
                "--data-dir",
                str(bq_data),
                "--project",
                PROJECT,
            ],
            env={**os.environ, "HOME": str(BQ_HOME)},
        )

        for name in ("firestore", "pubsub", "bigquery"):
            self._wait(name, partial(self._ready, name))
        self._apply_env()
        self._create_tables()

        specs = manifest()["functions"]
        names = self.functions or tuple(specs)
        for name in names:
            self._spawn_function(name, specs[name])
        for name in names:
            self._wait_function(name, specs[name])
        self.create_topics()
        self._say(
            f"stack up in {time.monotonic() - started:.1f} s (logs in {self.run_dir})"
        )

    def stop(self) -> None:
        for proc in reversed(self.processes):
            if proc.popen.poll() is None:
                try:
                    os.killpg(proc.popen.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in self.processes:
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(proc.popen.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.popen.wait(timeout=5)
        self.processes.clear()

    # -- processes ------------------------------------------------------------

    def _say(self, text: str) -> None:
        if not self.quiet:
            print(f"[stack] {text}", file=sys.stderr, flush=True)

    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> Process:
        log_path = self.run_dir / f"{name}.log"
        with open(log_path, "ab") as out:
            popen = subprocess.Popen(
                argv,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env or os.environ.copy(),
                cwd=ROOT,
                start_new_session=True,
            )
        proc = Process(name, popen, log_path, argv, env)
        self.processes.append(proc)
        return proc

    def _wait(self, name: str, ready) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        proc = next((p for p in self.processes if p.name == name), None)
        while time.monotonic() < deadline:
            if proc and proc.popen.poll() is not None:
                tail = proc.log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited while starting:\n{tail}")
            try:
                if ready():
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{name} did not answer within {READY_TIMEOUT_S:.0f} s.")

    @property
    def firestore_host(self) -> str:
        return f"127.0.0.1:{self.ports['firestore']}"

    @property
    def pubsub_host(self) -> str:
        return f"127.0.0.1:{self.ports['pubsub']}"

    @property
    def bigquery_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['bigquery']}"

    def env(self) -> dict:
        """Environment for anything that talks to this stack."""
        return {
            "CALLTRACK_BACKEND": "emulator",
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "CALLTRACK_DATASET": DATASET,
            "FIRESTORE_EMULATOR_HOST": self.firestore_host,
            "PUBSUB_EMULATOR_HOST": self.pubsub_host,
            "BIGQUERY_EMULATOR_HOST": self.bigquery_url,
            **self.env_overrides,
        }

    def _apply_env(self) -> None:
        """Point this process's own clients at the stack too."""
        os.environ.update(self.env())
        from shared import clients, settings

        settings.get.cache_clear()
        for client in (clients.firestore, clients.publisher, clients.bigquery):
            client.cache_clear()

    def _wait_function(self, name: str, spec: dict, tries: int = 3) -> None:
        """Wait until a function serves; on a port taken meanwhile, move it."""
        for attempt in range(tries):
            try:
                return self._wait(name, lambda: self._function_up(name))
            except RuntimeError as exc:
                if "Address already in use" not in str(exc) or attempt == tries - 1:
                    raise
            self._say(f"{name}: port {self.ports[name]} was taken; another port")
            self.processes.remove(self._process(name))
            self._spawn_function(name, spec)

    def _spawn_function(self, name: str, spec: dict) -> None:
        self.ports[name] = free_port()
        self.urls[name] = f"http://127.0.0.1:{self.ports[name]}"
        env = {
            **os.environ,
            **self.env(),
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
        signature = "http" if spec["trigger"] == "http" else "cloudevent"
        self._spawn(
            name,
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--target",
                spec["entry_point"],
                "--source",
                str(ROOT / "functions" / name / "main.py"),
                "--signature-type",
                signature,
                "--host",
                "127.0.0.1",
                "--port",
                str(self.ports[name]),
            ],
            env=env,
        )

    def _ready(self, name: str) -> bool:
        """Whether ``name`` serves: an emulator's own probe, else a function's."""
        probes = {
            "firestore": f"http://{self.firestore_host}/",
            "pubsub": f"http://{self.pubsub_host}/v1/projects/{PROJECT}/topics",
            "bigquery": f"{self.bigquery_url}/discovery/v1/apis/bigquery/v2/rest",
        }
        if name in probes:
            return _get(probes[name])[0] == 200
        return self._function_up(name)

    def _function_up(self, name: str) -> bool:
        # Any HTTP answer means a server is serving (a 404/400 is fine here),
        # but it must be this function's own.
        status, _ = _get(self.urls[name] + "/__ready__", timeout=0.5)
        return status > 0 and listens_on(self._process(name).popen.pid,
                                         self.ports[name])

    # -- faults (the chaos tests) ---------------------------------------------

    def _process(self, name: str) -> Process:
        return next(p for p in self.processes if p.name == name)

    def kill(self, name: str) -> None:
        """End one emulator or function abruptly (SIGKILL), as a crash would."""
        proc = self._process(name)
        try:
            os.killpg(proc.popen.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.popen.wait(timeout=10)
        self._killed.add(name)

    def pause(self, name: str) -> None:
        """Freeze one process (SIGSTOP): it holds connections and answers none."""
        os.killpg(self._process(name).popen.pid, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.killpg(self._process(name).popen.pid, signal.SIGCONT)

    def restart(self, name: str) -> None:
        """Start a killed process again, same command and port; wait until up.

        The Pub/Sub emulator keeps nothing across a restart, so its topics and
        subscriptions are created again, as Terraform keeps them in production.
        """
        old = self._process(name)
        if old.popen.poll() is None:
            self.kill(name)
        self.processes.remove(old)
        self._spawn(name, old.argv, env=old.env)
        self._wait(name, partial(self._ready, name))
        if name == "pubsub":
            self.create_topics()
        trigger = manifest()["functions"].get(name, {}).get("trigger")
        if name in self._killed and trigger == "pubsub":
            self._redeliver(name)
        self._killed.discard(name)

    def _redeliver(self, subscription: str) -> None:
        """Make every message a subscription still holds due at once.

        Note: after a burst of failed pushes to a dead endpoint the Pub/Sub
        emulator stops pushing the messages that were in flight: measured, 8
        of 18 never came back within 400 s and none reached the dead-letter
        topic. Production Pub/Sub redelivers them by the retry policy. A seek
        stands in for that (and is the operator's own recovery step,
        ``gcloud pubsub subscriptions seek``). It marks every message
        published before its time as acked, so it goes back to the epoch: a
        message published seconds before the kill may still be waiting for
        its push (measured: one call of 18 lost when the seek went to the kill
        less 1 s). Acked messages stay acked, as the subscriptions keep none.
        """
        status = _request(
            "POST",
            f"http://{self.pubsub_host}/v1/projects/{PROJECT}/subscriptions/"
            f"{subscription}:seek",
            {"time": "1970-01-01T00:00:00Z"},
        )
        if status != 200:
            msg = f"Seeking subscription {subscription} answered {status}."
            raise RuntimeError(msg)

    # -- resources ------------------------------------------------------------

    def _create_tables(self) -> None:
        from shared import warehouse

        warehouse.ensure_tables()
        warehouse.ensure_views()

    def create_topics(self) -> None:
        """Topics, dead-letter topics and push subscriptions to the functions."""
        base = f"http://{self.pubsub_host}/v1/projects/{PROJECT}"
        spec = manifest()
        for topic in spec["topics"]:
            _request("PUT", f"{base}/topics/{topic}", {})
            _request("PUT", f"{base}/topics/{topic}-dead-letter", {})
            # A pull subscription keeps dead letters for replay and inspection.
            _request(
                "PUT",
                f"{base}/subscriptions/{topic}-dead-letter",
                {
                    "topic": f"projects/{PROJECT}/topics/{topic}-dead-letter",
                },
            )
        for name, fn in spec["functions"].items():
            if fn["trigger"] != "pubsub" or name not in self.urls:
                continue
            topic = fn["topic"]
            topic_path = f"projects/{PROJECT}/topics/{topic}"
            _request(
                "PUT",
                f"{base}/subscriptions/{name}",
                {
                    "topic": topic_path,
                    "pushConfig": {"pushEndpoint": f"{self.urls[name]}/{topic_path}"},
                    "ackDeadlineSeconds": 30,
                    "deadLetterPolicy": {
                        "deadLetterTopic": f"{topic_path}-dead-letter",
                        "maxDeliveryAttempts": MAX_DELIVERY_ATTEMPTS,
                    },
                    "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "10s"},
                },
            )

    def reset_firestore(self) -> None:
        url = (
            f"http://{self.firestore_host}/emulator/v1/projects/{PROJECT}"
            "/databases/(default)/documents"
        )
        for _ in range(100):
            if _request("DELETE", url) == 200:
                return
            time.sleep(0.2)  # 409 while a transaction is open
        raise RuntimeError("The Firestore emulator refused to reset.")

    def firestore(self):
        from shared import clients

        return clients.firestore()

    def bigquery(self):
        from shared import clients

        return clients.bigquery()

    def query(self, sql: str) -> list[dict]:
        sql = sql.replace("{dataset}", f"{PROJECT}.{DATASET}")
        return [dict(row) for row in self.bigquery().query(sql).result()]

    def log_text(self, name: str) -> str:
        proc = next(p for p in self.processes if p.name == name)
        return proc.log_path.read_text(errors="replace")


def main() -> int:
    stack = Stack().start()
    print(json.dumps({"urls": stack.urls, "env": stack.env()}, indent=2))
    print("Stack is up; Ctrl-C stops it.", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
