#!/usr/bin/python3
"""One guest connection to a server on the host: QEMU's ``guestfwd=tcp:IP:PORT-cmd:relay.py HOST_PORT``
starts this for each connection the guest opens (a ``tcp:`` chardev instead would be one connection,
made once when QEMU starts: HTTP clients that open several would hang). stdin/stdout are the guest's
side; the other is a TCP connection to 127.0.0.1:HOST_PORT."""

from __future__ import annotations

import os
import selectors
import socket
import sys


def main(port: int) -> int:
    server = socket.create_connection(("127.0.0.1", port))
    sel = selectors.DefaultSelector()
    sel.register(0, selectors.EVENT_READ, "guest")
    sel.register(server, selectors.EVENT_READ, "server")
    open_ends = 2
    while open_ends:
        for key, _ in sel.select():
            if key.data == "guest":
                data = os.read(0, 65536)
                if not data:
                    server.shutdown(socket.SHUT_WR)
                    sel.unregister(0)
                    open_ends -= 1
                else:
                    server.sendall(data)
            else:
                data = server.recv(65536)
                if not data:
                    sel.unregister(server)
                    open_ends -= 1
                    os.close(1)
                else:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(1, view):]
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
