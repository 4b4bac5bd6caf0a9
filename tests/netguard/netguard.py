"""Refuse every network connection that leaves this machine, and record the attempt.

Installed in the test process by the pytest plugin and in every Python subprocess the tests start
(through sitecustomize.py on PYTHONPATH). What it sees: Python's TCP/UDP `connect`/`connect_ex`,
UDP `sendto`/`sendmsg` to an address, and name lookups (`getaddrinfo`, `gethostbyname`,
`gethostbyname_ex`, `gethostbyaddr`). What it cannot see (a C library's own sockets, programs that
are not Python) is cut off by the network namespace `run-offline` puts the suite in, where only
loopback exists.
"""

from __future__ import annotations

import ipaddress
import os
import socket

LOG_ENV = "VISEM_NETGUARD_LOG"
_LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", ""}
_installed = False


def _is_local(host) -> bool:
    if host is None:
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    host = host.strip("[]").split("%")[0]
    if host.lower() in _LOCAL_NAMES:
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified


def _record(what: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        import sys
        import traceback

        # Name the program and the caller, so an attempt can be traced to the code that made it.
        caller = " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno}" for f in traceback.extract_stack()[-6:-2])
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {' '.join(sys.argv[:3])}: {what} via {caller}\n")


def install() -> None:
    global _installed
    if _installed:
        return
    _installed = True
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    real_sendto, real_sendmsg = socket.socket.sendto, socket.socket.sendmsg
    real_getaddrinfo = socket.getaddrinfo
    real_lookups = {n: getattr(socket, n) for n in ("gethostbyname", "gethostbyname_ex", "gethostbyaddr")}

    def _check(sock, address):
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address[0]):
            _record(f"connect {address!r}")
            raise ConnectionRefusedError(f"netguard: connection to {address!r} refused (tests run offline)")

    def connect(self, address):
        _check(self, address)
        return real_connect(self, address)

    def connect_ex(self, address):
        _check(self, address)
        return real_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host):
            _record(f"resolve {host!r}")
            raise socket.gaierror(socket.EAI_NONAME, f"netguard: lookup of {host!r} refused (tests run offline)")
        return real_getaddrinfo(host, *args, **kwargs)

    def sendto(self, data, *args):
        address = args[-1]  # sendto(data, address) or sendto(data, flags, address)
        _check(self, address)
        return real_sendto(self, data, *args)

    def sendmsg(self, buffers, ancdata=(), flags=0, address=None):
        if address is not None:
            _check(self, address)
            return real_sendmsg(self, buffers, ancdata, flags, address)
        return real_sendmsg(self, buffers, ancdata, flags)

    def lookup(name):
        real = real_lookups[name]

        def guarded(host, *args, **kwargs):
            if not _is_local(host):
                _record(f"resolve {host!r}")
                raise socket.gaierror(socket.EAI_NONAME, f"netguard: lookup of {host!r} refused (tests run offline)")
            return real(host, *args, **kwargs)

        return guarded

    socket.socket.connect = connect
    socket.socket.connect_ex = connect_ex
    socket.socket.sendto = sendto
    socket.socket.sendmsg = sendmsg
    socket.getaddrinfo = getaddrinfo
    for name in real_lookups:
        setattr(socket, name, lookup(name))
