"""Runs localstripe on 127.0.0.1:PORT for ferry's tests.

localstripe's own entry point listens on every interface and saves its
store to /tmp/localstripe.pickle after each write; this launcher binds the
loopback address only and keeps the store in memory, so parallel test runs
do not share state.
"""

import socket
import sys

from aiohttp import web
from localstripe import resources, server


def main() -> None:
    port = int(sys.argv[1])
    resources.store.dump_to_disk = lambda: None
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    web.run_app(server.app, sock=listener, print=None)


if __name__ == "__main__":
    main()
