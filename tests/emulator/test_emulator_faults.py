"""Fault injection (POST /-/faults), checked on the wire with raw clients
(http.client, sockets) so each test proves what a client really receives:
an RST is ConnectionResetError, a short body is IncompleteRead, a withheld
answer is a timeout, and for the modes that run the request the change is in
the emulator's state although the client never saw the answer.
"""
import http.client
import json
import socket
import threading
import time

import pytest

from emulator_harness import ADMIN_TOKEN

ME = "{ me { id username } }"
LIST = "{ images { id } }"
UPDATE = ("mutation U($data: ImageUpdateInput!, $where: ImageWhereUniqueInput!) "
          "{ updateImage(data: $data, where: $where) { id description } }")
DELETE = ("mutation D($where: ImageWhereUniqueInput!) { deleteImage(where: $where) { id } }")
LOG_PATH = "/api/logs/images/tf-1/job?follow=false"
AUTH = {"Authorization": "Bearer " + ADMIN_TOKEN}


def body(query, variables=None):
    return json.dumps({"query": query, "variables": variables or {}})


def update_body(description, image="tf-1"):
    return body(UPDATE, {"data": {"description": description}, "where": {"id": image}})


def post(emu, payload, timeout=5, conn=None):
    """POST a GraphQL body on a raw connection; returns (response, data)
    or raises whatever the client library raises."""
    conn = conn or emu.connection(timeout=timeout)
    conn.request("POST", "/api/graphql", payload,
                 dict(AUTH, **{"Content-Type": "application/json"}))
    response = conn.getresponse()
    return response, response.read()


def description(emu, image="tf-1"):
    return emu.image_state(image)["spec"].get("description")


def raw_exchange(emu, payload, timeout=5):
    """Send one request on a bare socket; return (bytes received, how it ended)."""
    host, port = emu.address()
    sock = socket.create_connection((host, port), timeout=timeout)
    data = payload.encode()
    sock.sendall(("POST /api/graphql HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
                  % (ADMIN_TOKEN, len(data))).encode() + data)
    received = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return received, "eof"
            received += chunk
    except ConnectionResetError:
        return received, "reset"
    except socket.timeout:
        return received, "timeout"
    finally:
        sock.close()


# ------------------------------------------------ answers instead of the request


@pytest.mark.parametrize("mode,status,title", [
    ("http502", 502, "502 Bad Gateway"),
    ("http503", 503, "503 Service Temporarily Unavailable"),
    ("http504", 504, "504 Gateway Time-out"),
])
def test_proxy_error_pages_apply_nothing(emu, mode, status, title):
    emu.fault(mode, count=1)
    response, data = post(emu, update_body("proxy"))
    assert response.status == status
    assert response.getheader("Content-Type") == "text/html"
    assert b"<title>%s</title>" % title.encode() in data and b"nginx" in data
    assert description(emu) != "proxy"
    response, data = post(emu, body(ME))  # count=1: the next one passes
    assert response.status == 200 and json.loads(data)["data"]["me"]["username"] == "phadmin"


def test_html200_is_a_login_page(emu):
    emu.fault("html200", count=1)
    response, data = post(emu, update_body("login"))
    assert response.status == 200
    assert response.getheader("Content-Type").startswith("text/html")
    assert data.startswith(b"<!DOCTYPE html>") and b"password" in data
    assert description(emu) != "login"


def test_http500_and_garbage_apply_nothing(emu):
    emu.fault("http500", count=1)
    response, data = post(emu, update_body("five hundred"))
    assert response.status == 500 and data == b"Internal Server Error"
    emu.fault("garbage", count=1)
    response, data = post(emu, update_body("garbage"))
    assert response.status == 200
    with pytest.raises(ValueError):
        json.loads(data)
    assert description(emu) not in ("five hundred", "garbage")


def test_reset_is_a_tcp_rst_and_applies_nothing(emu):
    emu.fault("reset", count=1)
    with pytest.raises(ConnectionResetError):
        post(emu, update_body("reset"))
    assert description(emu) != "reset"
    assert emu.requests()[-1]["fault"] == "reset"
    emu.fault("reset", count=1)
    received, end = raw_exchange(emu, body(ME))
    assert (received, end) == (b"", "reset")


def test_redirect(emu):
    emu.fault("redirect", count=1, location="http://127.0.0.1:9/api/graphql")
    response, _ = post(emu, update_body("redirected"))
    assert response.status == 307
    assert response.getheader("Location") == "http://127.0.0.1:9/api/graphql"
    emu.fault("redirect", count=1, status=301, location="https://elsewhere.invalid/")
    response, _ = post(emu, body(ME))
    assert response.status == 301 and response.getheader("Location") == "https://elsewhere.invalid/"
    assert description(emu) != "redirected"


def test_body_mode_sends_hostile_answers(emu):
    emu.fault("body", count=1, body='{"data": {"images": [[[[', status=200)
    response, data = post(emu, update_body("hostile"))
    assert response.status == 200 and response.getheader("Content-Type") == "application/json"
    assert data == b'{"data": {"images": [[[['
    # A lone surrogate stands for a raw byte: invalid UTF-8 on the wire.
    emu.fault("body", count=1, body='{"data":"\udcff\udcfe"}', status=201,
              content_type="text/plain")
    response, data = post(emu, body(ME))
    assert response.status == 201 and response.getheader("Content-Type") == "text/plain"
    assert data == b'{"data":"\xff\xfe"}'
    emu.fault("body", count=1, body_base64="AAEC/w==")
    assert post(emu, body(ME))[1] == b"\x00\x01\x02\xff"
    assert description(emu) != "hostile"


def test_hang_holds_then_answers_normally(emu):
    emu.fault("hang", count=1, seconds=1)
    began = time.monotonic()
    response, data = post(emu, update_body("after hang"))
    assert time.monotonic() - began >= 1
    assert response.status == 200 and json.loads(data)["data"]["updateImage"]["id"] == "tf-1"
    assert description(emu) == "after hang"


# ------------------------------------------- run the request, then damage the answer


def test_truncated_applies_and_gives_incomplete_read(emu):
    emu.fault("truncated", count=1)
    with pytest.raises(http.client.IncompleteRead) as caught:
        post(emu, update_body("truncated"))
    assert caught.value.expected > 0 and len(caught.value.partial) > 0
    assert description(emu) == "truncated"
    # On the wire: full headers with the real length, half the body, FIN.
    emu.fault("truncated", count=1)
    received, end = raw_exchange(emu, body(ME))
    head, _, rest = received.partition(b"\r\n\r\n")
    length = int([line.split(b":")[1] for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length")][0])
    assert end == "eof" and head.startswith(b"HTTP/1.1 200") and len(rest) == length // 2


def test_reset_mid_body_applies_and_resets_after_headers(emu):
    emu.fault("reset_mid_body", count=1)
    conn = emu.connection(timeout=5)
    conn.request("POST", "/api/graphql", update_body("mid body"),
                 dict(AUTH, **{"Content-Type": "application/json"}))
    response = conn.getresponse()  # the headers arrive
    assert response.status == 200
    with pytest.raises((ConnectionResetError, http.client.IncompleteRead)):
        response.read()
    assert description(emu) == "mid body"
    emu.fault("reset_mid_body", count=1)
    received, end = raw_exchange(emu, body(ME))
    assert end == "reset" and received.startswith(b"HTTP/1.1 200")
    assert received.endswith(b"\r\n\r\n") or b"\r\n\r\n{" in received


def test_drip_sends_one_byte_per_interval(emu):
    emu.fault("drip", count=1, seconds=0.05)
    began = time.monotonic()
    response, data = post(emu, body(DELETE, {"where": {"id": "tf-2"}}), timeout=10)
    elapsed = time.monotonic() - began
    assert response.status == 200 and json.loads(data)["data"]["deleteImage"]["id"] == "tf-2"
    assert elapsed >= 0.05 * (len(data) - 1) * 0.9, (elapsed, len(data))
    assert emu.image_state("tf-2") is None  # applied
    # A client with a short read timeout gets the first byte and then stalls.
    emu.fault("drip", count=1, seconds=2)
    received, end = raw_exchange(emu, body(ME), timeout=0.5)
    assert end == "timeout" and received.startswith(b"HTTP/1.1 200")
    head, _, rest = received.partition(b"\r\n\r\n")
    assert len(rest) == 1


def test_apply_then_hang_applies_and_sends_nothing(emu):
    emu.fault("apply_then_hang", count=1, seconds=2)
    began = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        post(emu, update_body("applied, unanswered"), timeout=1)
    assert time.monotonic() - began < 1.9
    assert description(emu) == "applied, unanswered"  # while the client still waits
    # After the hold the connection closes without a byte of answer.
    emu.fault("apply_then_hang", count=1, seconds=0.5)
    received, end = raw_exchange(emu, update_body("second"), timeout=5)
    assert (received, end) == (b"", "eof")
    assert description(emu) == "second"


def test_apply_then_reset(emu):
    emu.fault("apply_then_reset", count=1)
    with pytest.raises(ConnectionResetError):
        post(emu, update_body("applied, reset"))
    assert description(emu) == "applied, reset"


def test_apply_modes_save_the_state_file(start_emulator, tmp_path):
    state = tmp_path / "state.json"
    emu = start_emulator("--state", str(state))
    emu.fault("apply_then_reset", count=1)
    with pytest.raises(ConnectionResetError):
        post(emu, update_body("saved before the reset"))
    saved = json.loads(state.read_text())
    assert saved["images"]["tf-1"]["spec"]["description"] == "saved before the reset"


def test_close_keepalive_closes_after_each_response(emu):
    emu.fault("close_keepalive")
    emu.reset_stats()
    conn = emu.connection()
    for _ in range(3):
        response, data = post(emu, body(ME), conn=conn)
        assert response.status == 200 and response.getheader("Connection") == "close"
        assert json.loads(data)["data"]["me"]["username"] == "phadmin"
    # http.client reconnected each time (the control call is one more).
    assert emu.stats()["connections"] == 3 + 1
    received, end = raw_exchange(emu, body(ME))
    assert end == "eof" and received.startswith(b"HTTP/1.1 200")
    emu.fault("none")
    emu.reset_stats()
    conn = emu.connection()
    for _ in range(3):
        post(emu, body(ME), conn=conn)
    assert emu.stats()["connections"] == 1 + 1


# -------------------------------------------------------------------- only


def test_only_restricts_by_root_field_and_does_not_consume_count(emu):
    emu.fault("http500", count=1, only=["updateImage"])
    for _ in range(3):
        assert post(emu, body(ME))[0].status == 200
        assert post(emu, body(LIST))[0].status == 200
    assert emu.control("faults")["count"] == 1  # untouched requests consumed nothing
    assert post(emu, update_body("refused"))[0].status == 500
    assert description(emu) != "refused"
    assert post(emu, update_body("accepted"))[0].status == 200
    assert description(emu) == "accepted"
    faults = [(r["ops"], r["fault"]) for r in emu.requests()]
    assert faults[-2:] == [(["updateImage"], "http500"), (["updateImage"], None)]
    assert faults[:6] == [(["me"], None), (["images"], None)] * 3


def test_only_matches_any_root_field_of_a_document(emu):
    emu.fault("http503", only=["image"])
    response, _ = post(emu, body('{ me { id } image(where: {id: "tf-1"}) { id } }'))
    assert response.status == 503
    assert post(emu, body(ME))[0].status == 200
    emu.fault("none")
    assert post(emu, body('{ image(where: {id: "tf-1"}) { id } }'))[0].status == 200


def test_only_and_unparsable_documents(emu):
    # A document that does not parse has no root fields: ``only`` skips it...
    emu.fault("http500", count=1, only=["me"])
    response, data = post(emu, body("{ me { id"))
    assert response.status == 400 and b"GRAPHQL_PARSE_FAILED" in data
    assert emu.requests()[-1]["ops"] == []
    # ...and a fault without ``only`` takes it.
    emu.fault("http500", count=1)
    assert post(emu, body("{ me { id"))[0].status == 500


def test_log_endpoint_faults(emu):
    conn = emu.connection(timeout=5)
    conn.request("GET", LOG_PATH, headers=AUTH)
    normal = conn.getresponse()
    normal_body = normal.read()
    assert normal.status == 400 and normal_body  # tf-1 has no build job
    # only: ["logs"] touches the log endpoint, not GraphQL.
    emu.fault("truncated", count=1, only=["logs"])
    assert post(emu, body(ME))[0].status == 200
    conn = emu.connection(timeout=5)
    conn.request("GET", LOG_PATH, headers=AUTH)
    with pytest.raises(http.client.IncompleteRead):
        conn.getresponse().read()
    emu.fault("http502", count=1, only=["logs"])
    conn = emu.connection(timeout=5)
    conn.request("GET", LOG_PATH, headers=AUTH)
    response = conn.getresponse()
    assert response.status == 502 and b"nginx" in response.read()
    # GraphQL-only faults leave the log endpoint alone.
    emu.fault("reset", count=1, only=["me"])
    conn = emu.connection(timeout=5)
    conn.request("GET", LOG_PATH, headers=AUTH)
    assert conn.getresponse().read() == normal_body
    logs = [r for r in emu.requests() if r["path"].startswith("/api/logs/")]
    assert [r["fault"] for r in logs] == [None, "truncated", "http502", None]
    assert all(r["ops"] == [] and r["auth"] for r in logs)


def test_fault_requests_are_validated(emu):
    for payload in ({"mode": "nonsense"}, {"mode": "http500", "count": "1"},
                    {"mode": "http500", "count": 0},
                    {"mode": "hang", "seconds": "3"}, {"mode": "hang", "seconds": -1},
                    {"mode": "http500", "only": "me"}, {"mode": "redirect"},
                    {"mode": "body", "status": 1000}, {"mode": "body", "body": 5},
                    {"mode": "body", "body_base64": "not base64!"}):
        reply = emu.request("POST", "/-/faults", json.dumps(payload).encode(),
                            {"Content-Type": "application/json"})
        assert reply.status == 400, payload
    assert emu.control("faults")["mode"] == "none"
    view = emu.fault("drip", count=2, seconds=1, only=["me", "logs"])
    assert view == {"mode": "drip", "count": 2, "seconds": 1.0, "only": ["logs", "me"]}
    assert emu.fault("none") == {"mode": "none", "count": None, "seconds": 0.0, "only": None}


# ------------------------------------------------- stopping ends every hold


@pytest.mark.parametrize("mode", ["hang", "drip", "apply_then_hang"])
def test_stop_ends_holds_at_once(emu, mode):
    emu.fault(mode, seconds=300)
    results = []

    def client():
        results.append(raw_exchange(emu, body(ME), timeout=30))

    thread = threading.Thread(target=client, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(r["fault"] for r in emu.requests()):
        time.sleep(0.05)
    assert emu.requests()[-1]["fault"] == mode
    began = time.monotonic()
    emu.stop()
    assert time.monotonic() - began < 5
    assert emu.proc.returncode == 0
    thread.join(10)
    assert not thread.is_alive()
