"""Per-client limits (issue #9): connections per client IP and a request
rate per client IP, both configurable; over the rate, 429 with Retry-After;
other clients keep being served."""

import socket
import time


def test_request_rate_limit(node_factory):
    node = node_factory(extra_args=["--http-rate-limit", "5",
                                    "--http-rate-burst", "3"])
    codes = [node.get("/v1/kv/x").status_code for _ in range(8)]
    # The harness's own start-up requests may have used part of the
    # burst: at most 3 pass, and the rest are refused.
    assert codes.count(404) <= 3 and codes[-4:] == [429] * 4, codes
    r = node.get("/v1/kv/x")
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    assert "Too many requests from 127.0.0.1" in r.text
    time.sleep(1.1)   # 5 tokens a second come back
    assert node.get("/v1/kv/x").status_code == 404


def test_connections_per_client(node_factory):
    node = node_factory(extra_args=["--http-max-conns-per-client", "4"])
    port = int(node.url.rsplit(":", 1)[1])
    node.http.close()   # the harness's keep-alive connection counts too
    time.sleep(0.2)
    socks = [socket.create_connection(("127.0.0.1", port), timeout=3)
             for _ in range(6)]
    answered = 0
    try:
        for s in socks:
            try:
                s.sendall(b"GET /v1/status/leader HTTP/1.1\r\n"
                          b"Host: x\r\n\r\n")
                answered += s.recv(64).startswith(b"HTTP/1.1 200")
            except OSError:
                pass   # refused: closed by the server
    finally:
        for s in socks:
            s.close()
    assert answered == 4, answered
    # Once they are closed, the client is served again.
    assert node.get("/v1/status/leader").status_code == 200
