"""The sandbox's stream pacing watches the client's socket with poll(), not select():
a sandbox serving a thousand open streams (bench.capacity) holds descriptors past
select()'s limit of 1024."""

from __future__ import annotations

import os
import resource
import socket
import threading

from sandbox.provider_stream import wait_for_close

HIGH_FD = 1500  # past FD_SETSIZE (1024)


def socket_at_high_fd() -> tuple[socket.socket, socket.socket]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft <= HIGH_FD:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    ours, peer = socket.socketpair()
    os.dup2(ours.fileno(), HIGH_FD)
    ours.close()
    return socket.socket(fileno=HIGH_FD), peer


def test_a_quiet_client_on_a_high_descriptor_is_waited_for():
    sock, peer = socket_at_high_fd()
    try:
        assert sock.fileno() > 1024
        assert wait_for_close(sock, 0.2) is False
    finally:
        sock.close()
        peer.close()


def test_a_client_closing_on_a_high_descriptor_is_noticed():
    sock, peer = socket_at_high_fd()
    try:
        threading.Timer(0.1, peer.close).start()
        assert wait_for_close(sock, 10.0) is True
    finally:
        sock.close()
