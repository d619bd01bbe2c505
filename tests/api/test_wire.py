"""How answers go out on the socket (``api/wire.py``): a JSON answer's head and body in one
segment, streams and HEAD answers head first, as a plain socket client reads them."""

from __future__ import annotations

import json
import socket
import struct

_WAIT = 30  # seconds before a read that never completes fails the test (not a timing check)


def _connect(server) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=_WAIT)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _completion_request(server, app_id: str, *, sse: bool = False, key: str | None = None) -> bytes:
    body = json.dumps({"input": {"prompt": "hello"}}).encode()
    stream = "X-DashScope-SSE: enable\r\n" if sse else ""
    return (
        f"POST /api/v1/apps/{app_id}/completion HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {key or server.key()}\r\nContent-Type: application/json\r\n{stream}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _data_segments_received(sock: socket.socket) -> int:
    """Linux's count of data-carrying TCP segments this socket received (``tcpi_data_segs_in``)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("<I", info, 152)[0])


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, length = _head_and_length(data)
    while len(data) < len(head) + 4 + length:
        data += sock.recv(65536)
    return data


def _head_and_length(data: bytes) -> tuple[bytes, int]:
    head, _, _ = data.partition(b"\r\n\r\n")
    lengths = [line for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
    return head, int(lengths[0].split(b":")[1])


def test_a_json_answer_and_an_error_each_arrive_in_one_segment(server):
    app_id = server.app()
    with _connect(server) as sock:
        for key, status in ((None, 200), ("sk-not-a-key", 401)):  # on one keep-alive connection
            before = _data_segments_received(sock)
            sock.sendall(_completion_request(server, app_id, key=key))
            data = _read_answer(sock)
            assert _data_segments_received(sock) - before == 1  # head and body in one write
            head, length = _head_and_length(data)
            assert head.startswith(f"HTTP/1.1 {status} ".encode())
            assert json.loads(data[len(head) + 4:])["request_id"]


def test_a_stream_sends_its_head_before_its_events(server):
    app_id = server.app()
    with _connect(server) as sock:
        sock.sendall(_completion_request(server, app_id, sse=True))
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head = data.partition(b"\r\n\r\n")[0].lower()
        assert b"transfer-encoding: chunked" in head and b"text/event-stream" in head
        while not data.endswith(b"0\r\n\r\n"):
            data += sock.recv(65536)
        assert b'"finish_reason":"stop"' in data


def test_a_head_request_gets_its_head_and_the_connection_stays_usable(server):
    with _connect(server) as sock:
        sock.sendall(b"HEAD /console HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 ") and data.endswith(b"\r\n\r\n")  # no body
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = sock.recv(65536)
        head, length = _head_and_length(data)
        assert head.startswith(b"HTTP/1.1 200 ") and json.loads(data[len(head) + 4:][:length]) == {"status": "ok"}
