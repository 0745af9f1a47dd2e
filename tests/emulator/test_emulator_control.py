"""The test-control endpoints added for reliability and security tests:
/-/requests, /-/tokens, /-/config (and --graphql-host), /-/inject, and https
(--tls-cert/--tls-key), each checked from a raw client.
"""
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import urllib.error
import urllib.request

import pytest

from emulator_harness import ADMIN_TOKEN, USER_TOKEN, make_self_signed_cert

ME = "{ me { id username isAdmin } }"
IMAGES = "{ images { id name displayName description logEndpoint } }"
IMAGE = "query I($id: ID!) { image(where: {id: $id}) { id name displayName spec logEndpoint } }"


def post(emu, query, variables=None, token=ADMIN_TOKEN, conn=None):
    conn = conn or emu.connection(timeout=10)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    conn.request("POST", "/api/graphql", json.dumps({"query": query,
                                                     "variables": variables or {}}), headers)
    response = conn.getresponse()
    return response.status, json.loads(response.read())


def log_request(emu, image_id, token):
    conn = emu.connection(timeout=10)
    headers = {"Authorization": "Bearer " + token} if token else {}
    conn.request("GET", "/api/logs/images/%s/job?follow=false" % image_id, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


# -------------------------------------------------------------- /-/requests


def test_requests_records_method_path_ops_auth_and_fault(emu):
    assert emu.requests() == []
    post(emu, ME)
    post(emu, "{ me { id } images { id } }", token=None)
    emu.fault("http503", count=1, only=["images"])
    post_status = emu.gql("{ images { id } }").status
    assert post_status == 503
    log_request(emu, "tf-1", ADMIN_TOKEN)
    emu.request("GET", "/api/graphql?query=%7B%20me%20%7B%20id%20%7D%20%7D")
    recorded = emu.requests()
    # Each entry also carries its "cost" (back-end calls, charged time):
    # tests/emulator/test_costs.py checks those.
    assert all(set(r.pop("cost")) == {"keycloak_calls", "kubernetes_reads", "charged_ms"}
               for r in recorded)
    assert recorded == [
        {"method": "POST", "path": "/api/graphql", "ops": ["me"], "auth": True, "fault": None},
        {"method": "POST", "path": "/api/graphql", "ops": ["me", "images"], "auth": False,
         "fault": None},
        {"method": "POST", "path": "/api/graphql", "ops": ["images"], "auth": True,
         "fault": "http503"},
        {"method": "GET", "path": "/api/logs/images/tf-1/job", "ops": [], "auth": True,
         "fault": None},
        {"method": "GET", "path": "/api/graphql", "ops": ["me"], "auth": False, "fault": None},
    ]
    emu.stats()  # control requests are not recorded
    assert len(emu.requests()) == 5
    emu.reset_stats()
    assert emu.requests() == []


def test_requests_keeps_the_last_500(emu):
    conn = emu.connection()
    for i in range(510):
        conn.request("GET", "/api/graphql?query=%%7B%%20n%d%%3A%%20me%%20%%7B%%20id%%20%%7D%%20%%7D"
                     % i)
        conn.getresponse().read()
    recorded = emu.requests()
    assert len(recorded) == 500
    assert recorded[0]["ops"] == ["me"]
    assert emu.stats()["total"] == 510


# ---------------------------------------------------------------- /-/tokens


def test_revoked_token_gets_invalid_api_token(emu):
    assert post(emu, ME)[0] == 200
    assert emu.tokens(revoke=ADMIN_TOKEN) == {"tokens": 1}
    status, answer = post(emu, ME)
    assert status == 500
    assert answer == {"errors": [{"message": "Context creation failed: Invalid API Token",
                                  "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}
    status, text = log_request(emu, "tf-1", ADMIN_TOKEN)
    assert status == 500 and json.loads(text) == {"code": "INTERNAL_ERROR",
                                                  "message": "Invalid API Token"}
    # The other token is untouched; the revoked one can come back.
    assert post(emu, ME, token=USER_TOKEN)[1]["data"]["me"]["username"] == "phuser"
    emu.tokens(add={"token": ADMIN_TOKEN, "user": "phadmin"})
    assert post(emu, ME)[1]["data"]["me"]["isAdmin"] is True


def test_added_token_acts_as_its_user(emu):
    emu.tokens(add={"token": "rotated-admin", "user": "phadmin"})
    emu.tokens(add={"token": "second-user", "user": "phuser"})
    assert post(emu, ME, token="rotated-admin")[1]["data"]["me"]["username"] == "phadmin"
    assert post(emu, ME, token="second-user")[1]["data"]["me"]["isAdmin"] is False
    emu.tokens(revoke=ADMIN_TOKEN, add={"token": "third", "user": "phadmin"})
    assert post(emu, ME)[0] == 500
    assert post(emu, ME, token="third")[0] == 200


def test_token_requests_are_validated(emu):
    for payload in ({}, {"add": {"token": "t", "user": "nobody"}}, {"add": {"user": "phadmin"}},
                    {"add": "t"}, {"revoke": 5}):
        reply = emu.request("POST", "/-/tokens", json.dumps(payload).encode(),
                            {"Content-Type": "application/json"})
        assert reply.status == 400, payload
    assert post(emu, ME)[0] == 200


# ---------------------------------------------------------------- /-/config


def test_graphql_host_builds_every_log_endpoint(emu):
    assert emu.config() == {"graphqlHost": emu.base}
    status, answer = post(emu, IMAGES)
    assert answer["data"]["images"][0]["logEndpoint"].startswith(emu.base + "/api/logs/images/")
    assert emu.config(graphqlHost="http://127.0.0.1:9/") == {"graphqlHost": "http://127.0.0.1:9"}
    status, answer = post(emu, IMAGES)  # the cached answer is not reused
    assert {i["logEndpoint"] for i in answer["data"]["images"]} == {
        "http://127.0.0.1:9/api/logs/images/%s/job" % i["id"] for i in answer["data"]["images"]}
    reply = emu.request("POST", "/-/config", b'{"graphqlHost": 5}',
                        {"Content-Type": "application/json"})
    assert reply.status == 400


def test_graphql_host_option(start_emulator):
    emu = start_emulator("--graphql-host", "https://primehub.example.com")
    assert emu.config() == {"graphqlHost": "https://primehub.example.com"}
    status, answer = post(emu, IMAGE, {"id": "tf-1"})
    assert answer["data"]["image"]["logEndpoint"] == \
        "https://primehub.example.com/api/logs/images/tf-1/job"


# ---------------------------------------------------------------- /-/inject


HOSTILE = ["a/b", "..", "../../etc", "new\nline", "\x1b[31mred", "rtl\u202eexe", "x" * 300,
           "UPPER case", "-leading"]


def test_inject_stores_names_no_rule_allows(emu):
    answer = emu.inject([{"name": n, "spec": {"displayName": "d", "url": "u"}} for n in HOSTILE])
    assert answer == {"injected": HOSTILE}
    status, listed = post(emu, IMAGES)
    ids = [i["id"] for i in listed["data"]["images"]]
    for name in HOSTILE:
        assert name in ids
    state = emu.state()["images"]
    assert state["a/b"] == {"spec": {"displayName": "d", "url": "u"}, "status": None,
                            "groups": [], "global": False}
    # The same name through the API is refused: inject bypasses the rules.
    reply = emu.gql("mutation C($data: ImageCreateInput!) { createImage(data: $data) { id } }",
                    {"data": {"name": "c/d"}})
    assert reply.errors and "c/d" not in emu.state()["images"]


def test_inject_keeps_spec_as_given(emu):
    spec = {"displayName": 5, "description": ["not", "a", "string"], "type": "nonsense",
            "unknown": {"deep": [[[1]]]}}
    emu.inject([{"name": "odd", "spec": spec}, {"name": "empty"}])
    assert emu.state()["images"]["odd"]["spec"] == spec
    assert emu.state()["images"]["empty"]["spec"] == {}
    status, answer = post(emu, IMAGE, {"id": "odd"})
    assert status == 200 and answer["data"]["image"]["spec"]["unknown"] == {"deep": [[[1]]]}


def test_inject_is_validated_and_persisted(start_emulator, tmp_path):
    state = tmp_path / "state.json"
    emu = start_emulator("--state", str(state))
    for payload in ({}, {"images": "x"}, {"images": [{"spec": {}}]},
                    {"images": [{"name": "x", "spec": []}]},
                    {"images": [{"name": "\udcff", "spec": {}}]}):
        reply = emu.request("POST", "/-/inject", json.dumps(payload).encode(),
                            {"Content-Type": "application/json"})
        assert reply.status == 400, payload
    assert post(emu, IMAGES)[0] == 200  # nothing of the refused requests was stored
    emu.inject([{"name": "../saved", "spec": {"url": "u"}}])
    assert json.loads(state.read_text())["images"]["../saved"]["spec"] == {"url": "u"}


# ------------------------------------------------------------------- https


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    return make_self_signed_cert(str(tmp_path_factory.mktemp("tls")))


def test_https_with_the_self_signed_cert(start_emulator, cert):
    emu = start_emulator(tls=cert)
    assert emu.endpoint.startswith("https://127.0.0.1:") and emu.base.startswith("https://")
    status, answer = post(emu, ME)
    assert status == 200 and answer["data"]["me"]["username"] == "phadmin"
    # logEndpoint follows the scheme; the log endpoint is served over TLS too.
    status, answer = post(emu, IMAGE, {"id": "tf-1"})
    assert answer["data"]["image"]["logEndpoint"] == emu.base + "/api/logs/images/tf-1/job"
    assert log_request(emu, "tf-1", ADMIN_TOKEN)[0] == 400  # no build job: a Koa error
    # The harness's control calls work over https; so do faults.
    emu.fault("truncated", count=1)
    with pytest.raises(http.client.IncompleteRead):
        post(emu, ME)
    assert emu.requests()[-1]["fault"] == "truncated"


def test_https_refused_without_the_cert(start_emulator, cert):
    emu = start_emulator(tls=cert)
    with pytest.raises(urllib.error.URLError) as caught:
        urllib.request.urlopen(emu.endpoint, timeout=10)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)
    # By name (localhost is in the certificate) with the cert trusted: accepted.
    host, port = emu.address()
    context = ssl.create_default_context(cafile=cert[0])
    conn = http.client.HTTPSConnection("localhost", port, timeout=10, context=context)
    conn.request("GET", "/api/graphql?query=%7Bme%7Bid%7D%7D",
                 headers={"Authorization": "Bearer " + ADMIN_TOKEN})
    assert conn.getresponse().status == 200
    # Plain http to the https port gets no HTTP answer.
    sock = socket.create_connection((host, port), timeout=10)
    sock.sendall(b"GET /api/graphql HTTP/1.1\r\nHost: x\r\n\r\n")
    try:
        reply = sock.recv(100)
    except ConnectionResetError:
        reply = b""
    sock.close()
    assert not reply.startswith(b"HTTP/1.1 200")
    # The emulator is still serving after the failed handshakes.
    assert post(emu, ME)[0] == 200


def curl(emu, cert):
    curl_path = shutil.which("curl")
    assert curl_path, "the curl command is needed (Debian package curl)"
    return subprocess.run([curl_path, "-sS", "--max-time", "10", "--cacert", cert,
                           "-H", "Authorization: Bearer " + ADMIN_TOKEN,
                           "-H", "Content-Type: application/json",
                           "-d", '{"query": "{ me { id } }"}', emu.endpoint],
                          capture_output=True, text=True, timeout=30)


def test_https_faults_as_libcurl_sees_them(start_emulator, cert):
    """Python's ssl module reports an RST under TLS as a plain EOF; curl
    (libcurl, as primehubfs uses it) shows what really happened."""
    emu = start_emulator(tls=cert)
    assert curl(emu, cert[0]).returncode == 0
    for mode, code, text in (("reset", 56, "Connection reset by peer"),
                             ("reset_mid_body", 56, "Connection reset by peer"),
                             ("truncated", 18, "transfer closed with"),
                             ("apply_then_reset", 56, "Connection reset by peer")):
        emu.fault(mode, count=1)
        result = curl(emu, cert[0])
        assert (result.returncode, text in result.stderr) == (code, True), (mode, result)


def test_tls_options_are_checked(start_emulator, cert, tmp_path):
    with pytest.raises(RuntimeError):
        start_emulator("--tls-cert", cert[0])
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(RuntimeError):
        start_emulator("--tls-cert", missing, "--tls-key", missing)


def test_add_group_is_listed_connectable_and_unique(emu):
    made = emu.add_group("made-in-ui", "Made in the UI")
    listed = emu.gql("query { groups { id name displayName } }").data["groups"]
    assert {"id": made["id"], "name": "made-in-ui", "displayName": "Made in the UI"} in listed
    assert [g["name"] for g in listed] == sorted(g["name"] for g in listed)
    reply = emu.gql("mutation U($data: ImageUpdateInput!, $where: ImageWhereUniqueInput!) "
                    "{ updateImage(data: $data, where: $where) { groups { name } } }",
                    {"where": {"id": "tf-1"}, "data": {"groups": {"connect": [{"id": made["id"]}]}}})
    assert not reply.errors and reply.data["updateImage"]["groups"] == [{"name": "made-in-ui"}]
    again = emu.request("POST", "/-/groups", json.dumps({"name": "made-in-ui"}).encode(),
                        {"Content-Type": "application/json"})
    assert again.status == 409
    bad = emu.request("POST", "/-/groups", json.dumps({"name": 3}).encode(),
                      {"Content-Type": "application/json"})
    assert bad.status == 400
