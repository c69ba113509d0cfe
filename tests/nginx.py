"""Debian's nginx serving a directory on 127.0.0.1 with docs/fleet-nginx.conf (the configuration the docs
give for `compose publish`'s archive repository), its access log one "URI BYTES" line a request."""

from __future__ import annotations

import contextlib
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.vm.qemu import free_port

SERVER_CONF = Path(__file__).resolve().parents[1] / "docs/fleet-nginx.conf"


@dataclass
class Nginx:
    root: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[str, int]]:
        """(URI, bytes sent) of each request since the last :meth:`forget`."""
        return [(uri, int(n)) for uri, n in (line.split() for line in self.log.read_text().splitlines() if line)]

    def bytes_sent(self) -> int:
        return sum(n for _, n in self.requests())

    def forget(self) -> None:
        self.log.write_text("")  # (nginx appends: O_APPEND)


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
    except urllib.error.HTTPError:
        return True  # (a 404 before the first publish: nginx answers)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def serving(root: Path, work: Path) -> Iterator[Nginx]:
    """nginx (workers as root: pytest's directories are root's alone; a real server's repository is
    world-readable) serving ``root`` until the block ends; its files in ``work``."""
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = work / "requests.log"
    server = SERVER_CONF.read_text().replace("listen 80;", f"listen 127.0.0.1:{port};") \
        .replace("/srv/ostree/repo", str(root))
    temp = " ".join(f"{k}_temp_path {work}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = work / "nginx.conf"
    conf.write_text(f"daemon off;\nuser root;\npid {work}/nginx.pid;\nerror_log {work}/error.log;\n"
                    f"events {{ worker_connections 64; }}\nhttp {{\n"
                    f"  log_format sent '$request_uri $body_bytes_sent';\n  access_log {log} sent;\n"
                    f"  {temp}\n{server}\n}}\n")
    log.touch()
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(work)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while not _answers(f"http://127.0.0.1:{port}/config"):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.2)
        server_ = Nginx(root, port, log)
        server_.forget()
        yield server_
    finally:
        proc.terminate()
        proc.wait(timeout=20)
