"""Fetching images with skopeo's image proxy (``skopeo experimental-image-proxy``), as ostree-ext does.

The proxy speaks JSON over a SOCK_SEQPACKET socket pair and hands each manifest, config and blob
over as a pipe (SCM_RIGHTS), so a pull fetches exactly the blobs asked for: the manifest and the
config for ``upgrade --check``, the layers not already in the repository for a pull. skopeo reads
registries.conf(5), policy.json and auth.json as every containers tool does.
"""

from __future__ import annotations

import array
import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from apt_ostree.core.imgref import ImageRef
from apt_ostree.core.oci import Config, Manifest
from apt_ostree.errors import ImageError
from apt_ostree.run import Process, reap, spawn

MAX_MESSAGE = 32 * 1024


@dataclass(frozen=True)
class Fetched:
    manifest: Manifest
    manifest_bytes: bytes
    manifest_digest: str
    config: Config
    config_bytes: bytes


class Proxy:
    """One skopeo image proxy process; use as a context manager."""

    def __init__(self) -> None:
        self._sock, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc: Process = spawn(
                skopeo_argv("experimental-image-proxy", "--sockfd", str(child.fileno())), pass_fds=[child.fileno()],
                env=containers_env())
        except FileNotFoundError:
            self._sock.close()
            raise ImageError("skopeo is not installed", hint="apt install skopeo") from None
        finally:
            child.close()
        self._call("Initialize")

    def __enter__(self) -> Proxy:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        with contextlib.suppress(OSError, ImageError):
            self._call("Shutdown")
        self._sock.close()
        reap(self._proc)

    def _stderr(self) -> str:
        if self._proc.poll() is None or self._proc.stderr is None:
            return ""
        return self._proc.stderr.read().decode("utf-8", "replace").strip()

    def _call(self, method: str, *args: Any) -> tuple[Any, int | None, int]:
        """(value, pipe fd or None, pipe id) of one request."""
        try:
            self._sock.send(json.dumps({"method": method, "args": list(args)}).encode())
            fds = array.array("i")
            data, ancdata, _flags, _addr = self._sock.recvmsg(MAX_MESSAGE, socket.CMSG_SPACE(fds.itemsize))
        except OSError as e:
            raise ImageError(f"skopeo's image proxy failed ({method}): {e.strerror}",
                             hint=self._stderr() or None) from None
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload[:len(payload) - len(payload) % fds.itemsize])
        if not data:
            raise ImageError(f"skopeo's image proxy exited ({method})", hint=self._stderr() or None)
        reply = json.loads(data)
        if not reply.get("success"):
            for fd in fds:
                os.close(fd)
            raise ImageError(str(reply.get("error") or f"{method} failed").splitlines()[0])
        return reply.get("value"), (fds[0] if fds else None), int(reply.get("pipeid") or 0)

    @contextlib.contextmanager
    def _pipe(self, method: str, *args: Any) -> Iterator[tuple[Any, BinaryIO]]:
        """The pipe of a request, read by the caller while FinishPipe runs beside it: the proxy closes
        its end, and reports a failed copy or a wrong digest, only there."""
        value, fd, pipeid = self._call(method, *args)
        if fd is None:
            raise ImageError(f"skopeo's image proxy sent no data for {method}")
        errors: list[BaseException] = []

        def finish() -> None:
            try:
                self._call("FinishPipe", pipeid)
            except BaseException as e:  # (re-raised in the caller's thread)
                errors.append(e)
        finisher = threading.Thread(target=finish, daemon=True)
        finisher.start()
        try:
            with os.fdopen(fd, "rb") as f:
                yield value, f
        finally:
            finisher.join()
        if errors:
            raise errors[0]

    def _read(self, method: str, *args: Any) -> tuple[Any, bytes]:
        with self._pipe(method, *args) as (value, f):
            return value, f.read()

    # ----------------------------------------------------------- images
    def open(self, image: ImageRef) -> int:
        try:
            value, _, _ = self._call("OpenImage", str(image))
        except ImageError as e:
            raise ImageError(f"cannot open image {image}: {e.message}", hint=e.hint) from None
        return int(value)

    def fetch(self, image: ImageRef) -> tuple[int, Fetched]:
        """Open ``image`` and fetch its manifest and config (nothing else)."""
        handle = self.open(image)
        digest, manifest_bytes = self._read("GetManifest", handle)
        _, config_bytes = self._read("GetFullConfig", handle)
        manifest = Manifest.parse(manifest_bytes, str(image))
        return handle, Fetched(manifest, manifest_bytes, str(digest), Config.parse(config_bytes, str(image)),
                               config_bytes)

    @contextlib.contextmanager
    def blob(self, handle: int, digest: str, size: int) -> Iterator[BinaryIO]:
        """A layer blob as it is stored (compressed); skopeo checks its digest at the end."""
        with self._pipe("GetBlob", handle, digest, size) as (_value, f):
            yield f


def skopeo_argv(*args: str) -> list[str]:
    """skopeo with ``args``; $CONTAINERS_REGISTRIES_CONF as its --registries-conf (skopeo 1.9 reads only
    the flag, podman and later skopeo the variable too)."""
    conf = os.environ.get("CONTAINERS_REGISTRIES_CONF")
    return ["skopeo", *(["--registries-conf", conf] if conf else []), *args]


def containers_env() -> dict[str, str]:
    """The containers configuration variables a caller set (registries.conf, auth.json, policy)."""
    keys = ("CONTAINERS_REGISTRIES_CONF", "REGISTRY_AUTH_FILE", "CONTAINERS_POLICY_JSON", "XDG_RUNTIME_DIR",
            "DOCKER_CONFIG")
    return {k: os.environ[k] for k in keys if k in os.environ}
