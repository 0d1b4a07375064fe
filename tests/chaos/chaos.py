#!/usr/bin/env python3
"""Gatehouse chaos run (docs/reliability.md): a private PostgreSQL and Redis, a control API, two
dataplanes and a usage-worker as separate `gatehouse` processes in front of the MCP fixture;
tool calls at a fixed rate through both dataplanes while the usage-worker, Redis and PostgreSQL
are killed and restarted; then the audit trail and usage are checked against what was sent.

Started by tests/chaos/run.sh, which builds the binaries. Standard library only.
"""

import argparse
import base64
import http.client
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor


def pg_bin():
    """PostgreSQL's server binaries: $PG_BIN, else the newest /usr/lib/postgresql/<n>/bin."""
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    found = sorted((int(v), v) for v in os.listdir("/usr/lib/postgresql") if v.isdigit()) \
        if os.path.isdir("/usr/lib/postgresql") else []
    if found:
        return f"/usr/lib/postgresql/{found[-1][1]}/bin"
    return os.path.dirname(shutil.which("initdb") or "/usr/bin/initdb")


PG_BIN = pg_bin()
PROTOCOL = "2026-07-28"
TOOL = "fx__greet"
ORGS = ("demo", "chaos")
LIMIT = {"per_minute": 600000, "burst": 10000}
STREAM = "gatehouse:events"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what, check, timeout, interval=0.2):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - a check that raises is "not yet"
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(interval)


def cpu_ticks():
    """The machine's (busy, steal, total) CPU ticks from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle, steal = v[3] + v[4], v[7]
    return sum(v) - idle - steal, steal, sum(v)


def machine_shares(before, after):
    busy, steal, total = (a - b for a, b in zip(after, before))
    return {"busy_pct": round(100 * busy / total, 1), "steal_pct": round(100 * steal / total, 1),
            "idle_pct": round(100 * (total - busy - steal) / total, 1),
            "cores": os.cpu_count(), "loadavg_1m_at_end": os.getloadavg()[0]}


def event_metrics(port):
    """The dataplane's event counters (docs/operations.md, "Events"), from its internal listener."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("gatehouse_events_") and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def http_get_status(port, path):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------
# The private PostgreSQL and Redis


class Postgres:
    """A private cluster on a free port, run as `postgres` when we are root (PostgreSQL refuses
    to run as root)."""

    def __init__(self, root):
        self.dir = os.path.join(root, "pg")
        self.data = os.path.join(self.dir, "data")
        self.log = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self.as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []

    def _run(self, *args):
        subprocess.run(self.as_pg + list(args), check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)

    def init(self):
        os.makedirs(self.dir)
        if self.as_pg:
            shutil.chown(self.dir, "postgres", "postgres")
        self._run(f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "-A", "trust")
        self.start()
        self.psql("CREATE DATABASE gatehouse", db="postgres")

    def start(self):
        self._run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-l", self.log, "-w", "-t", "60", "-o",
                  f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 "
                  "-c max_connections=200", "start")

    def stop(self, mode):
        self._run(f"{PG_BIN}/pg_ctl", "-D", self.data, "-m", mode, "-w", "-t", "60", "stop")

    def ready(self):
        return subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p",
                               str(self.port)]).returncode == 0

    def psql(self, sql, db="gatehouse"):
        out = subprocess.run(["psql", "-X", "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                              "postgres", "-d", db, "-v", "ON_ERROR_STOP=1", "-At", "-F", "\t",
                              "-c", sql], check=True, capture_output=True, text=True).stdout
        return [line.split("\t") for line in out.splitlines() if line]

    def url(self, user="postgres", password=None):
        auth = f"{user}:{password}" if password else user
        return f"postgres://{auth}@127.0.0.1:{self.port}/gatehouse"


class Redis:
    """A private Redis with AOF (`appendfsync always`, as docs/operations.md recommends)."""

    def __init__(self, root):
        self.dir = os.path.join(root, "redis")
        os.makedirs(self.dir)
        self.port = free_port()
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        out = open(os.path.join(self.dir, f"redis-{self.starts}.log"), "w")
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=out, stderr=subprocess.STDOUT)
        wait_for("redis", self.ready, 30, 0.05)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def ready(self):
        return self.cli("PING") == "PONG"

    def cli(self, *args):
        r = subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                           text=True, timeout=5)
        return r.stdout.strip()

    def url(self):
        return f"redis://127.0.0.1:{self.port}"


# ---------------------------------------------------------------------------------------------
# Gatehouse processes


class Service:
    def __init__(self, name, argv, env, root, port):
        self.name, self.argv, self.env, self.root, self.port = name, argv, env, root, port
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        out = open(os.path.join(self.root, f"{self.name}-{self.starts}.log"), "w")
        self.proc = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout=120):
        def ready():
            if self.proc.poll() is not None:
                raise SystemExit(f"{self.name} exited with {self.proc.returncode}; see its log in "
                                 f"{self.root}")
            return http_get_status(self.port, "/readyz") == 200
        wait_for(f"{self.name} /readyz", ready, timeout)

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def clean_env():
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("GATEHOUSE_") and k not in ("DATABASE_URL", "REDIS_URL", "RUST_LOG")}
    env["RUST_BACKTRACE"] = "1"
    return env


# ---------------------------------------------------------------------------------------------
# The control API, as an org admin uses it


class Api:
    def __init__(self, port):
        self.port = port
        self.cookies = {}
        self.csrf = None

    def send(self, method, path, body=None, ok=(200, 201, 204)):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        headers = {"content-type": "application/json"}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if self.csrf:
            headers["x-csrf-token"] = self.csrf
        conn.request(method, "/api/v1" + path,
                     body=None if body is None else json.dumps(body), headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode()
        for name, value in resp.getheaders():
            if name.lower() == "set-cookie":
                k, _, v = value.split(";", 1)[0].partition("=")
                self.cookies[k.strip()] = v.strip()
        conn.close()
        if resp.status not in ok:
            raise RuntimeError(f"{method} {path}: {resp.status} {text}")
        return json.loads(text) if text else None

    def login(self, email, password):
        self.csrf = self.send("POST", "/session", {"email": email, "password": password})["csrf_token"]


def provision(api, pg, org, fixture_url):
    """A server on the fixture, `greet` approved and granted to a scope, an endpoint with high
    rate limits (checked, never reached), arguments recorded in the audit trail, two service
    tokens (valid) and one revoked token. Returns what the load needs."""
    if org != "demo":
        api.send("POST", "/orgs", {"slug": org, "name": org.title()})
    server = api.send("POST", f"/orgs/{org}/servers",
                      {"slug": "fx", "name": "Fixture", "url": fixture_url, "auth": {"kind": "none"}})
    server_id = server["server"]["id"]
    tools = api.send("GET", f"/orgs/{org}/servers/{server_id}/tools")
    greet = next(t for t in tools if t["name"] == "greet")
    api.send("POST", f"/orgs/{org}/tools/{greet['id']}/approve",
             {"definition_hash": greet["definition_hash"]})
    scope = f"{org}:greet"
    api.send("POST", f"/orgs/{org}/scopes", {"name": scope, "tool_ids": [greet["id"]]})
    limits = {"per_org": LIMIT, "per_subject": LIMIT}
    endpoints = api.send("GET", f"/orgs/{org}/endpoints")
    endpoint = next((e for e in endpoints if e["slug"] == "demo"), None)
    if endpoint is None:
        endpoint = api.send("POST", f"/orgs/{org}/endpoints",
                            {"slug": "main", "name": "Main", "rate_limits": limits,
                             "servers": [{"server_id": server_id}]})
    else:
        api.send("PUT", f"/orgs/{org}/endpoints/{endpoint['id']}/servers",
                 {"servers": [{"server_id": server_id}]})
        api.send("PATCH", f"/orgs/{org}/endpoints/{endpoint['id']}", {"rate_limits": limits})
    endpoint = api.send("GET", f"/orgs/{org}/endpoints/{endpoint['id']}")
    api.send("PATCH", f"/orgs/{org}/settings", {"log_tool_arguments": True})

    def token(name):
        return api.send("POST", f"/orgs/{org}/service-tokens",
                        {"name": name, "endpoint_id": endpoint["id"], "scopes": [scope]})
    valid = [token("chaos-a"), token("chaos-b")]
    revoked = token("chaos-revoked")
    api.send("DELETE", f"/orgs/{org}/service-tokens/{revoked['id']}")
    # The free plan stops at 10,000 calls a month: a run makes more. Plans are set by operators.
    pg.psql(f"UPDATE orgs SET plan_id = 'team' WHERE slug = '{org}'")
    path = "/" + endpoint["url"].split("/", 3)[3]
    return {"org": org, "path": path, "tokens": [t["secret"] for t in valid],
            "token_ids": [t["id"] for t in valid], "revoked": revoked["secret"]}


# ---------------------------------------------------------------------------------------------
# Load


def unsigned_jwt(org_path):
    enc = lambda obj: base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()  # noqa: E731
    now = int(time.time())
    return (enc({"alg": "none", "typ": "JWT"}) + "." +
            enc({"iss": "x", "aud": org_path, "sub": "attacker", "exp": now + 3600, "iat": now,
                 "scope": "demo:greet chaos:greet"}) + ".")


class Load:
    """Open-loop tool calls at a fixed rate, round robin over (dataplane, org, token kind).
    Every call carries a unique label as its argument, which the audit trail records."""

    def __init__(self, dataplanes, host, targets, rate_valid, rate_invalid, timeout):
        self.host, self.timeout = host, timeout
        self.rate_valid, self.rate_invalid = rate_valid, rate_invalid
        self.valid_slots = [(dp, t, "valid", tok) for dp in dataplanes for t in targets
                            for tok in t["tokens"]]
        other = {t["org"]: o for t in targets for o in targets if o is not t}
        self.invalid_slots = []
        for dp in dataplanes:
            for t in targets:
                forged = "ghs_" + t["tokens"][0].split("_")[1] + "_" + base64.urlsafe_b64encode(
                    os.urandom(24)).decode().rstrip("=")
                for kind, tok in (("none", None), ("garbage", "not-a-token"), ("forged", forged),
                                  ("revoked", t["revoked"]),
                                  ("other-org", other[t["org"]]["tokens"][0]),
                                  ("jwt-alg-none", unsigned_jwt(t["path"]))):
                    self.invalid_slots.append((dp, t, kind, tok))
        self.records = []
        self.lock = threading.Lock()
        self.local = threading.local()
        self.stop = threading.Event()
        self.seq = 0
        self.stale_closed = 0
        self.resent = 0

    def conn(self, port):
        """This thread's keep-alive connection to `port`. Like any HTTP client with a pool, a
        connection the server closed while it sat idle (the dataplane closes idle keep-alive
        connections after 5 s) is noticed before reuse and replaced."""
        conns = self.local.__dict__.setdefault("conns", {})
        conn = conns.get(port)
        if conn is None:
            conn = conns[port] = http.client.HTTPConnection("127.0.0.1", port, timeout=self.timeout)
        elif conn.sock is not None and select.select([conn.sock], [], [], 0)[0]:
            conn.close()
            with self.lock:
                self.stale_closed += 1
        # How long the connection sat unused (None: a new one), kept with each call: a call the
        # server closes without answering on a connection idle for about its 5 s keep-alive
        # crossed the server's close on the wire.
        last = self.local.__dict__.setdefault("last_used", {})
        idle = time.time() - last[port] if conn.sock is not None and port in last else None
        return conn, idle

    def send(self, conn, path, body, headers):
        """Sends one request. If writing it on a reused connection fails because the server had
        closed that connection (the race the check in conn() cannot close), the request never
        reached the server: it is sent once more on a new connection, and counted."""
        reused = conn.sock is not None
        try:
            conn.request("POST", path, body=body, headers=headers)
        except (BrokenPipeError, ConnectionResetError):
            conn.close()
            if not reused:
                raise
            with self.lock:
                self.resent += 1
            conn.request("POST", path, body=body, headers=headers)

    def call(self, dp, target, kind, token, label, t_sched):
        t_start = time.time()
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
            "name": TOOL, "arguments": {"name": label},
            "_meta": {"io.modelcontextprotocol/protocolVersion": PROTOCOL,
                      "io.modelcontextprotocol/clientInfo": {"name": "chaos", "version": "1"},
                      "io.modelcontextprotocol/clientCapabilities": {}}}})
        headers = {"host": self.host, "content-type": "application/json",
                   "accept": "application/json, text/event-stream",
                   "mcp-protocol-version": PROTOCOL, "mcp-method": "tools/call", "mcp-name": TOOL}
        if token:
            headers["authorization"] = f"Bearer {token}"
        status, served, error = None, False, None
        conn, idle = self.conn(dp)
        try:
            self.send(conn, target["path"], body, headers)
            resp = conn.getresponse()
            status = resp.status
            text = resp.read().decode(errors="replace")
            served = status == 200 and f"Hello, {label}!" in text and '"isError":true' not in text
            if not served and status == 200:
                error = text[:300]
        except Exception as e:  # noqa: BLE001 - any transport failure is a call not served
            error = f"{type(e).__name__}: {e}"
            conn.close()
        self.local.last_used[dp] = time.time()
        rec = {"label": label, "dp": dp, "org": target["org"], "kind": kind, "t_sched": t_sched,
               "t_start": t_start, "t_end": time.time(), "status": status, "served": served,
               "error": error, "conn_idle": idle}
        with self.lock:
            self.records.append(rec)
        return rec

    def label(self, kind):
        with self.lock:
            self.seq += 1
            return f"{'ok' if kind == 'valid' else 'bad'}-{self.seq}-{os.urandom(3).hex()}"

    def run(self, pool):
        """Schedules calls until stop() at rate_valid + rate_invalid per second."""
        t0 = time.time()
        i = j = 0
        while not self.stop.is_set():
            next_valid = t0 + i / self.rate_valid
            next_invalid = t0 + j / self.rate_invalid
            t = min(next_valid, next_invalid)
            delay = t - time.time()
            if delay > 0:
                time.sleep(delay)
            if t == next_valid:
                dp, target, kind, tok = self.valid_slots[i % len(self.valid_slots)]
                i += 1
            else:
                dp, target, kind, tok = self.invalid_slots[j % len(self.invalid_slots)]
                j += 1
            pool.submit(self.call, dp, target, kind, tok, self.label(kind), t)


# ---------------------------------------------------------------------------------------------
# The run


SCHEDULES = {
    # seconds after the load starts
    "full": {
        "load_secs": 540,
        "worker_kills": [20, 70, 120, 170, 220, 270, 320, 370, 420, 470],
        "redis": [(45, 10), (140, 60), (260, 10)],
        "postgres": [(330, 10, "fast"), (430, 10, "immediate")],
    },
    "quick": {
        "load_secs": 50,
        "worker_kills": [8, 30],
        "redis": [(15, 5)],
        "postgres": [(35, 5, "immediate")],
    },
}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gatehouse", required=True, help="the gatehouse binary")
    upstream = ap.add_mutually_exclusive_group(required=True)
    upstream.add_argument("--fixture", help="the mcp-fixture binary (started on a free port)")
    upstream.add_argument("--fixture-url", help="an MCP fixture already running at this URL")
    ap.add_argument("--quick", action="store_true", help="a short smoke run (about 2 minutes)")
    ap.add_argument("--rate", type=float, default=40, help="authorized calls per second in all")
    ap.add_argument("--invalid-rate", type=float, default=6, help="unauthorized calls per second")
    ap.add_argument("--dir", help="working directory (default: a new one under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the working directory")
    ap.add_argument("--report", help="also write the report as JSON to this file")
    args = ap.parse_args()
    schedule = SCHEDULES["quick" if args.quick else "full"]

    root = args.dir or tempfile.mkdtemp(prefix="gatehouse-chaos-")
    os.makedirs(root, exist_ok=True)
    os.chmod(root, 0o755)
    log(f"working directory {root}")
    services, redis, pg, fixture = [], None, None, None
    try:
        pg = Postgres(root)
        pg.init()
        redis = Redis(root)
        redis.start()
        log(f"PostgreSQL on {pg.port}, Redis on {redis.port}")

        fixture_url = args.fixture_url
        if args.fixture:
            fixture_port = free_port()
            fixture = subprocess.Popen([args.fixture, "--port", str(fixture_port)],
                                       stdout=subprocess.DEVNULL,
                                       stderr=open(os.path.join(root, "fixture.log"), "w"))
            fixture_url = f"http://127.0.0.1:{fixture_port}/mcp"
            wait_for("the fixture", lambda: socket.create_connection(
                ("127.0.0.1", fixture_port), timeout=1).close() is None, 30)

        # The platform's keys go to the control API only; the dataplanes hold the dataplane
        # secret alone (they refuse to start with the platform's keys).
        platform_secrets = {
            "GATEHOUSE_SECRETS__ENCRYPTION_KEYS": "chaos-1=" + base64.b64encode(os.urandom(32)).decode(),
            "GATEHOUSE_SECRETS__SIGNING_SECRET": base64.b64encode(os.urandom(48)).decode(),
        }
        dataplane_secret = {
            "GATEHOUSE_SECRETS__DATAPLANE_SECRET": base64.b64encode(os.urandom(48)).decode(),
        }
        api_port, dp_ports, worker_port = free_port(), [free_port(), free_port()], free_port()
        api_url = f"http://127.0.0.1:{api_port}"
        # Internal listeners: the control API's (snapshots and JWKS for the dataplanes) and each
        # dataplane's (metrics).
        api_internal_port, dp_internal_ports = free_port(), [free_port() for _ in dp_ports]
        public_host = f"127.0.0.1:{dp_ports[0]}"

        # Migrations, the services' role and the demo user, org and endpoint: `gatehouse up`
        # against the private cluster, stopped once it serves.
        up_dir = os.path.join(root, "up")
        env = clean_env() | platform_secrets | dataplane_secret | {
            "DATABASE_URL": pg.url(),
            "GATEHOUSE_LOCAL__DATA_DIR": up_dir,
            "GATEHOUSE_CONTROL_API__LISTEN": f"127.0.0.1:{free_port()}",
            "GATEHOUSE_CONTROL_API__INTERNAL_LISTEN": f"127.0.0.1:{free_port()}",
            "GATEHOUSE_DATAPLANE__LISTEN": f"127.0.0.1:{free_port()}",
            "GATEHOUSE_DATAPLANE__INTERNAL_LISTEN": f"127.0.0.1:{free_port()}",
            "GATEHOUSE_USAGE_WORKER__LISTEN": f"127.0.0.1:{free_port()}",
        }
        up_log = os.path.join(root, "up.log")
        up = subprocess.Popen([args.gatehouse, "up"], env=env, stdout=open(up_log, "w"),
                              stderr=subprocess.STDOUT)
        wait_for("gatehouse up", lambda: "Press Ctrl-C" in open(up_log).read()
                 or up.poll() is not None, 180)
        up.send_signal(signal.SIGTERM)
        up.wait(60)
        with open(os.path.join(up_dir, "demo-login.txt")) as f:
            email, password = f.read().split("\n")[:2]
        with open(os.path.join(up_dir, "service-password")) as f:
            service_url = pg.url("gatehouse_svc", f.read().strip())

        common = clean_env() | {
            "GATEHOUSE_MODE": "local",
            "GATEHOUSE_DATABASE__URL": service_url,
            "GATEHOUSE_REDIS__URL": redis.url(),
            "GATEHOUSE_CONTROL_API__PUBLIC_URL": api_url,
            "GATEHOUSE_DATAPLANE__CONTROL_API_URL": f"http://127.0.0.1:{api_internal_port}",
            "GATEHOUSE_DATAPLANE__PUBLIC_URL": f"http://{public_host}",
            "GATEHOUSE_EGRESS__ALLOW_HTTP": "true",
            "GATEHOUSE_EGRESS__ALLOW_PRIVATE_NETWORKS": "true",
            "GATEHOUSE_MAIL__FILE_DIR": os.path.join(root, "mail"),
            "GATEHOUSE_TELEMETRY__LOG_FORMAT": "json",
            "GATEHOUSE_SHUTDOWN__GRACE_PERIOD_SECS": "5",
        }
        control = Service("control-api", [args.gatehouse, "control-api"],
                          common | platform_secrets | dataplane_secret |
                          {"GATEHOUSE_CONTROL_API__LISTEN": f"127.0.0.1:{api_port}",
                                     "GATEHOUSE_CONTROL_API__INTERNAL_LISTEN":
                                         f"127.0.0.1:{api_internal_port}"},
                          root, api_port)
        dataplanes = [Service(f"dataplane-{n + 1}", [args.gatehouse, "dataplane"], common | dataplane_secret | {
            "GATEHOUSE_DATAPLANE__LISTEN": f"127.0.0.1:{port}",
            "GATEHOUSE_DATAPLANE__INTERNAL_LISTEN": f"127.0.0.1:{dp_internal_ports[n]}",
            "GATEHOUSE_DATAPLANE__SPOOL_DIR": os.path.join(root, f"dataplane-{n + 1}-spool"),
        }, root, port) for n, port in enumerate(dp_ports)]
        worker = Service("usage-worker", [args.gatehouse, "usage-worker"], common | {
            "GATEHOUSE_USAGE_WORKER__LISTEN": f"127.0.0.1:{worker_port}",
            "GATEHOUSE_DATAPLANE__SPOOL_DIR": os.path.join(root, "worker-spool"),
        }, root, worker_port)
        services = [control, *dataplanes, worker]
        control.start()
        control.wait_ready()

        api = Api(api_port)
        api.login(email, password)
        targets = [provision(api, pg, org, fixture_url) for org in ORGS]
        for s in services[1:]:
            s.start()
        for s in services[1:]:
            s.wait_ready()
        log("control API, two dataplanes and the usage-worker are ready")

        load = Load(dp_ports, public_host, targets, args.rate, args.invalid_rate, timeout=10)
        # Every dataplane serves every token before the clock starts.
        for dp in dp_ports:
            for t in targets:
                for tok in t["tokens"]:
                    wait_for("the dataplanes to know the tokens",
                             lambda: load.call(dp, t, "valid", tok, load.label("valid"),
                                               time.time())["served"], 60, 0.5)
        warmup = len(load.records)
        result = chaos(load, schedule, worker, redis, pg)
        records = load.records
        log(f"load done: {len(records)} calls ({warmup} before the clock started)")

        drained = drain(pg, redis, dataplanes, root)
        report = verify(records, result, targets, pg, redis, api, drained)
        report["machine"] = result["machine"]
        report["client"] = {"idle_connections_found_closed": load.stale_closed,
                            "requests_resent_after_write_failed": load.resent}
        with open(os.path.join(root, "calls.jsonl"), "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        report["dataplane_event_metrics"] = {
            d.name: event_metrics(internal) for d, internal in zip(dataplanes, dp_internal_ports)}
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, cwd=os.path.dirname(os.path.abspath(__file__)))
        report["setup"] = {"commit": commit.stdout.strip(), "gatehouse": args.gatehouse,
                           "rate_authorized": args.rate, "rate_unauthorized": args.invalid_rate,
                           "schedule": schedule, "dir": root}
        print_report(report)
        if args.report:
            with open(args.report, "w") as f:
                json.dump(report, f, indent=2)
        return 0 if report["all_targets_met"] else 1
    finally:
        for s in reversed(services):
            s.stop()
        if fixture:
            fixture.terminate()
        if redis and redis.proc:
            redis.proc.terminate()
        if pg:
            try:
                pg.stop("fast")
            except Exception:  # noqa: BLE001
                pass
        if not args.keep and not args.dir:
            shutil.rmtree(root, ignore_errors=True)
        elif args.keep:
            log(f"kept {root}")


def chaos(load, schedule, worker, redis, pg):
    """Runs the load for load_secs and the outages at their times; returns the outage windows:
    from the kill to the moment the killed service answers again."""
    actions = []
    for at in schedule["worker_kills"]:
        actions.append((at, "usage-worker", None))
    for at, down in schedule["redis"]:
        actions.append((at, "redis", down))
    for at, down, mode in schedule["postgres"]:
        actions.append((at, "postgres", (down, mode)))
    actions.sort(key=lambda a: a[0])
    windows = []
    pool = ThreadPoolExecutor(max_workers=48)
    driver = threading.Thread(target=load.run, args=(pool,), daemon=True)
    t0 = time.time()
    ticks = cpu_ticks()
    driver.start()
    threads = []

    def outage(at, kind, arg):
        time.sleep(max(0, t0 + at - time.time()))
        start = time.time()
        w = {"kind": kind, "start": start}
        if kind == "usage-worker":
            worker.kill9()
            time.sleep(2)
            worker.start()
            worker.wait_ready()
        elif kind == "redis":
            redis.kill9()
            time.sleep(arg)
            redis.start()
            w["down_secs"] = arg
        else:
            down, mode = arg
            pg.stop(mode)
            w["stopped"] = time.time()
            time.sleep(down)
            pg.start()
            w["mode"] = mode
            w["down_secs"] = down
        w["end"] = time.time()
        log(f"{kind} back after {w['end'] - start:.1f}s")
        windows.append(w)

    for at, kind, arg in actions:
        th = threading.Thread(target=outage, args=(at, kind, arg))
        th.start()
        threads.append(th)
    time.sleep(max(0, t0 + schedule["load_secs"] - time.time()))
    load.stop.set()
    driver.join()
    for th in threads:
        th.join()
    pool.shutdown(wait=True)
    return {"t0": t0, "t1": time.time(), "windows": sorted(windows, key=lambda w: w["start"]),
            "machine": machine_shares(ticks, cpu_ticks())}


def drain(pg, redis, dataplanes, root):
    """Waits until every event left the spools and the stream and the database stops growing."""
    def spooled():
        total = 0
        for dp in dataplanes:
            d = dp.env["GATEHOUSE_DATAPLANE__SPOOL_DIR"]
            for name in os.listdir(d) if os.path.isdir(d) else []:
                if name.endswith(".jsonl"):
                    total += os.path.getsize(os.path.join(d, name))
        return total
    start = time.time()
    last, stable_since = None, time.time()
    while time.time() - start < 300:
        backlog = redis.cli("XLEN", STREAM)
        pending = redis.cli("XPENDING", STREAM, "usage-workers").split("\n")[0]
        rows = pg.psql("SELECT count(*) FROM usage_events")[0][0]
        state = (spooled(), backlog, pending, rows)
        if state != last:
            last, stable_since = state, time.time()
        if state[0] == 0 and backlog == "0" and pending in ("0", "") and \
                time.time() - stable_since > 5:
            log(f"drained in {time.time() - start:.0f}s")
            return {"secs": round(time.time() - start, 1), "complete": True}
        time.sleep(1)
    log(f"not drained after 300s: spool bytes, stream length, pending, rows = {last}")
    return {"secs": 300, "complete": False, "state": list(map(str, last))}


def verify(records, result, targets, pg, redis, api, drained):
    rep = {"drain": drained}
    valid = [r for r in records if r["kind"] == "valid"]
    invalid = [r for r in records if r["kind"] != "valid"]
    t0, t1 = result["t0"], result["t1"]

    def share(calls):
        n = len(calls)
        s = sum(r["served"] for r in calls)
        return {"calls": n, "served": s, "pct": round(100 * s / n, 3) if n else None}

    # Calls served during each outage: calls scheduled between the kill and the moment the
    # service answered again.
    outages = []
    for w in result["windows"]:
        inside = [r for r in valid if w["start"] <= r["t_sched"] <= w["end"]]
        after = [r for r in valid if w["end"] < r["t_sched"] <= w["end"] + 10]
        lat = sorted(r["t_end"] - r["t_sched"] for r in inside)
        o = {"kind": w["kind"], "at_secs": round(w["start"] - t0, 1),
             "outage_secs": round(w["end"] - w["start"], 1), **share(inside),
             "next_10s": share(after),
             "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))]) if lat else None,
             "max_ms": round(1000 * lat[-1]) if lat else None,
             "failures": Counter(str(r["status"]) + " " + (r["error"] or "")[:80]
                                 for r in inside if not r["served"]).most_common(3)}
        outages.append(o)
    rep["outages"] = outages
    in_run = [r for r in valid if t0 <= r["t_sched"] <= t1]
    lat = sorted(r["t_end"] - r["t_sched"] for r in in_run)
    rep["unanswered"] = [{"at_secs": round(r["t_sched"] - t0, 2), "dataplane": r["dp"],
                          "after_ms": round(1000 * (r["t_end"] - r["t_start"])),
                          "connection_idle_secs": None if r["conn_idle"] is None
                          else round(r["conn_idle"], 2), "error": r["error"][:80]}
                         for r in records if r["status"] is None]
    rep["load"] = {"secs": round(t1 - t0), **share(in_run),
                   "p50_ms": round(1000 * lat[len(lat) // 2]),
                   "p99_ms": round(1000 * lat[int(0.99 * (len(lat) - 1))]),
                   "max_ms": round(1000 * lat[-1]),
                   "failures": Counter(str(r["status"]) + " " + (r["error"] or "")[:80]
                                       for r in in_run if not r["served"]).most_common(5)}
    redis_calls = [r for w in result["windows"] if w["kind"] == "redis"
                   for r in valid if w["start"] <= r["t_sched"] <= w["end"]]
    # Calls the dataplane answered without serving them (an error instead of the tool's answer),
    # as opposed to calls still unanswered when the client gave up.
    rep["redis_down"] = share(redis_calls) | {
        "answered_not_served": sum(r["status"] is not None and not r["served"] for r in redis_calls),
        "unanswered": sum(r["status"] is None for r in redis_calls)}

    # Events: every answered call (valid or refused for a reason the gateway records) is one
    # event; a call's argument label finds its audit entry.
    audit = pg.psql("SELECT o.slug, a.id, a.action, a.outcome, coalesce(a.actor_id, ''), "
                    "coalesce(a.details->'arguments'->>'name', '') FROM audit_events a "
                    "JOIN orgs o ON o.id = a.org_id WHERE a.source = 'data'")
    usage = pg.psql("SELECT o.slug, u.id, u.units, u.outcome FROM usage_events u "
                    "JOIN orgs o ON o.id = u.org_id")
    by_label = defaultdict(list)
    for org, eid, action, outcome, actor, label in audit:
        by_label[label].append((org, eid, action, outcome, actor))
    answered = [r for r in valid if r["status"] is not None]
    unanswered = [r for r in valid if r["status"] is None]
    lost = [r["label"] for r in answered if r["label"] not in by_label]
    duplicated = [lbl for lbl, evs in by_label.items() if len(evs) > 1]
    wrong_org = [r["label"] for r in answered if r["label"] in by_label
                 and any(e[0] != r["org"] for e in by_label[r["label"]])]
    known = {r["label"] for r in valid}
    unexplained = [lbl for lbl in by_label if lbl not in known]
    audit_ids = {eid for evs in by_label.values() for (_, eid, *_rest) in evs}
    usage_ids = [u[1] for u in usage]
    rep["events"] = {
        "sent": len(answered),
        "unanswered_calls": len(unanswered),
        "unanswered_with_event": sum(r["label"] in by_label for r in unanswered),
        "audit_entries": len(audit),
        "usage_events": len(usage),
        "lost": len(lost), "lost_examples": lost[:5],
        "duplicated": len(duplicated) + (len(usage_ids) - len(set(usage_ids))),
        "in_wrong_org": len(wrong_org),
        "audit_without_usage": len(audit_ids - set(usage_ids)),
        "usage_without_audit": len(set(usage_ids) - audit_ids),
        "unexplained_entries": len(unexplained), "unexplained_examples": unexplained[:5],
        "dead_letters": redis.cli("XLEN", STREAM + ":dead"),
    }

    # No request is authorized without a valid token.
    # The audit trail names a service token as `service_token:<id>`.
    actors_of = {t["org"]: {f"service_token:{i}" for i in t["token_ids"]} for t in targets}
    refused = [r for r in invalid if r["status"] in (401, 403)]
    bad_served = [r for r in invalid if r["served"] or (r["status"] is not None
                                                         and r["status"] not in (401, 403))]
    bad_in_audit = [lbl for lbl in by_label if lbl.startswith("bad-")]
    foreign = [e for evs in by_label.values() for e in evs if e[4] not in actors_of.get(e[0], ())]
    rep["unauthorized"] = {
        "sent": len(invalid), "refused_401_403": len(refused),
        "by_kind": dict(Counter(f"{r['kind']} {r['status']}" for r in invalid)),
        "not_refused": len(bad_served),
        "not_refused_examples": [(r["kind"], r["status"], (r["error"] or "")[:100])
                                 for r in bad_served[:5]],
        "recorded_as_calls": len(bad_in_audit),
        "calls_by_other_actors": len(foreign),
        "other_actor_examples": [e[4] for e in foreign[:5]],
    }

    # Usage totals against the raw events, per org.
    totals = []
    for (org,) in pg.psql("SELECT slug FROM orgs ORDER BY slug"):
        raw = pg.psql("SELECT count(*), coalesce(sum(units), 0) FROM usage_events u "
                      f"JOIN orgs o ON o.id = u.org_id WHERE o.slug = '{org}'")[0]
        roll = pg.psql("SELECT coalesce(sum(calls), 0), coalesce(sum(units), 0) FROM usage_rollups r "
                       f"JOIN orgs o ON o.id = r.org_id WHERE o.slug = '{org}'")[0]
        period = pg.psql("SELECT coalesce(sum(events), 0), coalesce(sum(calls), 0) "
                         "FROM usage_period_totals p "
                         f"JOIN orgs o ON o.id = p.org_id WHERE o.slug = '{org}'")[0]
        current = api.send("GET", f"/orgs/{org}/usage/current")
        totals.append({"org": org, "raw_events": int(raw[0]), "raw_units": int(raw[1]),
                       "rollup_calls": int(roll[0]), "rollup_units": int(roll[1]),
                       "period_events": int(period[0]), "period_calls": int(period[1]),
                       "api_current": current,
                       "equal": raw == roll and raw == period})
    rep["usage_totals"] = totals

    # Every org's audit chain.
    chains = []
    for (org,) in pg.psql("SELECT slug FROM orgs ORDER BY slug"):
        v = api.send("GET", f"/orgs/{org}/audit/verify")
        chains.append({"org": org, **v})
    rep["audit_chains"] = chains

    ev = rep["events"]
    ua = rep["unauthorized"]
    rep["targets"] = {
        "redis_down_served_pct>=99.9": rep["redis_down"]["pct"] is not None
        and rep["redis_down"]["pct"] >= 99.9,
        "events_lost==0": ev["lost"] == 0 and ev["audit_without_usage"] == 0
        and ev["usage_without_audit"] == 0,
        "events_duplicated==0": ev["duplicated"] == 0,
        "audit_chains_valid": all(c["valid"] for c in chains),
        "usage_totals_equal_raw_events": all(t["equal"] for t in totals),
        "no_unauthorized_call_served": ua["not_refused"] == 0 and ua["recorded_as_calls"] == 0
        and ua["calls_by_other_actors"] == 0 and ua["sent"] > 0,
        "drained": drained["complete"],
    }
    rep["all_targets_met"] = all(rep["targets"].values())
    return rep


def print_report(rep):
    print("\n== outages (authorized calls scheduled between the kill and the service answering again)")
    print(f"{'what':<14}{'at s':>7}{'down s':>8}{'calls':>8}{'served':>8}{'%':>9}"
          f"{'p99 ms':>8}{'max ms':>8}  next 10 s")
    for o in rep["outages"]:
        nxt = o["next_10s"]
        print(f"{o['kind']:<14}{o['at_secs']:>7}{o['outage_secs']:>8}{o['calls']:>8}{o['served']:>8}"
              f"{o['pct'] if o['pct'] is not None else '-':>9}{o['p99_ms'] or '-':>8}"
              f"{o['max_ms'] or '-':>8}  {nxt['served']}/{nxt['calls']}")
        for f in o["failures"]:
            print(f"{'':>14}not served: {f[1]} x {f[0]}")
    print(f"\nwhile Redis was down: {rep['redis_down']}")
    print(f"whole run: {rep['load']}")
    print("calls the client got no answer to (valid or not):")
    for u in rep["unanswered"]:
        print(f"  {u}")
    print(f"\n== events\n{json.dumps(rep['events'], indent=1)}")
    print(f"\n== calls without a valid token\n{json.dumps(rep['unauthorized'], indent=1)}")
    print("\n== usage totals against raw events")
    for t in rep["usage_totals"]:
        print(f"  {t['org']}: raw {t['raw_events']} events / {t['raw_units']} units; rollups "
              f"{t['rollup_calls']} / {t['rollup_units']}; period totals {t['period_events']} / "
              f"{t['period_calls']}; equal: {t['equal']}")
    print("\n== audit chains")
    for c in rep["audit_chains"]:
        print(f"  {c['org']}: {c}")
    print(f"\n== drain: {rep['drain']}")
    print(f"== machine over the load: {rep['machine']}")
    print(f"== client connections: {rep['client']}")
    print(f"== dataplane event counters: {json.dumps(rep['dataplane_event_metrics'])}")
    print("\n== targets")
    for k, v in rep["targets"].items():
        print(f"  {'met   ' if v else 'MISSED'} {k}")
    print(f"\nall targets met: {rep['all_targets_met']}")


if __name__ == "__main__":
    sys.exit(main())
