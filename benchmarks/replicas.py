"""Server replicas behind the shipped HAProxy configuration, on loopback: for tests and benchmarks.

``deploy/compose/haproxy.cfg`` is written for Docker Compose (replicas found through Docker's
DNS, fixed ports).  :func:`loopback_haproxy_config` turns it into the same proxy for
processes on 127.0.0.1: the binds and the server lines change, and the health-check interval
when asked (tests want a replica's state noticed in a fraction of a second); every other
directive (balancing, checks, timeouts, retries, the per-replica metrics route) is the file's.
"""
from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[1]
HAPROXY_CFG = ROOT / "deploy" / "compose" / "haproxy.cfg"
#: The replicas' server names in the shipped file: funasr1, funasr2, ... (server-template funasr N).
SERVER_PREFIX = "funasr"


def haproxy_binary() -> Optional[str]:
    return shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)


def loopback_haproxy_config(frontend_port: int, stats_port: int, server_ports: List[int],
                            check_inter: Optional[str] = None, text: Optional[str] = None) -> str:
    """The shipped configuration with its replicas at ``127.0.0.1:<server_ports>`` (funasr1 first)."""
    text = HAPROXY_CFG.read_text("utf-8") if text is None else text
    n = len(server_ports)
    text = text.replace("    bind :10096\n", f"    bind 127.0.0.1:{frontend_port}\n")
    text = text.replace("    bind :8404\n", f"    bind 127.0.0.1:{stats_port}\n")
    servers = "".join(f"    server {SERVER_PREFIX}{i} 127.0.0.1:{port}\n" for i, port in enumerate(server_ports, 1))
    text, count = re.subn(r"^    server-template \S+ \d+ \S+.*\n", servers, text, flags=re.MULTILINE)
    assert count >= 1, "no server-template line in the configuration"
    # The per-replica metrics route names each replica: keep those that exist.
    text = re.sub(r"^    use-server " + SERVER_PREFIX + r"(\d+) .*\n",
                  lambda m: m.group(0) if int(m.group(1)) <= n else "", text, flags=re.MULTILINE)
    text = re.sub(r"-m int 1:\d+", f"-m int 1:{n}", text)
    text = re.sub(r"^resolvers docker\n(    .*\n)*", "", text, flags=re.MULTILINE)  # no Docker DNS here
    if check_inter is not None:
        text, count = re.subn(r"\binter \S+", f"inter {check_inter}", text)
        assert count, "no health-check interval in the configuration"
    return text


def _http_status(url: str) -> int:
    try:
        with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(url, timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


@contextlib.contextmanager
def running_haproxy(config: str, stats_port: int, timeout: float = 20) -> Iterator[subprocess.Popen]:
    """HAProxy in the foreground on ``config``; yields once its stats page answers; stopped after."""
    binary = haproxy_binary()
    if binary is None:
        raise RuntimeError("haproxy is not installed (Debian: apt-get install haproxy)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "haproxy.cfg"
        path.write_text(config, "utf-8")
        check = subprocess.run([binary, "-c", "-q", "-f", str(path)], capture_output=True, text=True, check=False)
        if check.returncode:
            raise RuntimeError(f"haproxy refused the configuration:\n{check.stdout}{check.stderr}")
        log = open(Path(tmp) / "haproxy.log", "w")
        proc = subprocess.Popen([binary, "-db", "-f", str(path)], cwd=tmp, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + timeout
            while _http_status(f"http://127.0.0.1:{stats_port}/stats") != 200:
                if proc.poll() is not None or time.time() > deadline:
                    log.flush()
                    raise RuntimeError(f"haproxy did not start:\n{(Path(tmp) / 'haproxy.log').read_text()}")
                time.sleep(0.05)
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()


def haproxy_servers(stats_port: int, backend: str = "funasr") -> Dict[str, Dict[str, float]]:
    """HAProxy's Prometheus view of each server of ``backend``: name → {metric: value}
    (``status`` 1 when up, ``sessions_total``, ``current_sessions``, ...)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
        f"http://127.0.0.1:{stats_port}/metrics", timeout=5
    ) as r:
        text = r.read().decode()
    servers: Dict[str, Dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("proxy") != backend or "server" not in sample.labels:
                continue
            name = sample.name.removeprefix("haproxy_server_")
            if name == "status":  # one sample per state; keep whether it is UP
                if sample.labels.get("state") == "UP":
                    servers.setdefault(sample.labels["server"], {})["status"] = sample.value
                continue
            servers.setdefault(sample.labels["server"], {})[name] = sample.value
    return servers


def wait_for_servers(stats_port: int, up: Dict[str, bool], timeout: float = 20) -> None:
    """Wait until HAProxy sees each named server up (True) or down (False)."""
    deadline = time.time() + timeout
    while True:
        seen = haproxy_servers(stats_port)
        if all((seen.get(name, {}).get("status", 0) == 1) == want for name, want in up.items()):
            return
        if time.time() > deadline:
            raise RuntimeError(f"haproxy's servers are not as expected {up}: {seen}")
        time.sleep(0.05)
