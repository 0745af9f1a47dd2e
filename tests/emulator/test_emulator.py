"""Tests of contrib/primehub-emulator against the PrimeHub API contract
(docs/primehub-facts.md).  They pin the quirks a client depends on, so that a client
test passing against the emulator means something against PrimeHub.

Run: /usr/bin/python3 -m pytest tests/emulator -q
"""
import json
import os
import signal
import socket
import subprocess
import time
import urllib.parse

import pytest

from emulator_harness import ADMIN_TOKEN, EMULATOR, USER_TOKEN

GROUP_1 = "71ac1e32-65fa-4e8e-a735-ba282e3149b1"
GROUP_2 = "0fdaea59-705a-4546-8d13-2d52511342b0"
GROUP_3 = "dc6a0f50-2679-4d6b-b819-8da1b2e1b0f9"
PHUSERS = "ccdd52b8-db16-46ce-8a06-70343c79e82a"
EVERYONE = "15839617-c0d6-4c3b-8b7e-da3da47409ff"

# ------------------------------------------------ the official CLI's documents (section 6)

IMAGE_FULL = ("id name displayName description type url urlForGpu useImagePullSecret global "
              "groups { id name displayName } isReady imageSpec { baseImage pullSecret "
              "packages { apt conda pip } } jobStatus { phase } logEndpoint")
IMAGE_INFO = ("fragment ImageInfo on Image { id displayName description url urlForGpu name type "
              "groupName useImagePullSecret logEndpoint isReady spec global jobStatus { phase } "
              "imageSpec { baseImage pullSecret packages { apt conda pip } } }")

LIST = ("query ImagesQuery($page: Int, $where: ImageWhereInput, $orderBy: ImageOrderByInput) {\n"
        "  imagesConnection(page: $page, orderBy: $orderBy, where: $where, mode: SYSTEM_ONLY) {\n"
        "    edges { cursor node { id name displayName description type isReady } }\n"
        "    pageInfo { currentPage totalPage }\n  }\n}")
GET = ("query ImageQuery($where: ImageWhereUniqueInput!) { image(where: $where) { %s } }"
       % IMAGE_FULL)
CREATE = ("mutation CreateImageMutation($data: ImageCreateInput!) "
          "{ createImage(data: $data) { id } }")
UPDATE = ("mutation UpdateImageMutation($data: ImageUpdateInput!, $where: ImageWhereUniqueInput!) "
          "{ updateImage(data: $data, where: $where) { %s } }" % IMAGE_FULL)
DELETE = ("mutation DeleteImageMutation($where: ImageWhereUniqueInput!) "
          "{ deleteImage(where: $where) { id } }")
LIST_GROUPS = ("query ImageQuery($where: ImageWhereUniqueInput!) "
               "{ image(where: $where) { id global groups { id name displayName } } }")
GROUP = "query Group($where: GroupWhereUniqueInput!) { group(where: $where) { id } }"
ADD_GROUP = ("mutation UpdateImageMutation($data: ImageUpdateInput!, "
             "$where: ImageWhereUniqueInput!) { updateImage(data: $data, where: $where) "
             "{ id global groups { id name displayName } } }")
SECRETS = ("query GetSecrets($page: Int) { secretsConnection(page: $page) "
           "{ edges { cursor node { id ...SecretParts } } } }\n"
           "fragment SecretParts on Secret { id name displayName type registryHost username }")
USER_SECRETS = "{ secrets(where: { ifDockerConfigJson: true }) { id name type } }"
ME = "query { me { id username firstName lastName email isAdmin } }"
EVERYONE_LOOKUP = "query { me { groups { id name } } }"
GROUPS = ("query GroupsConnection($page: Int, $orderBy: GroupOrderByInput, "
          "$where: GroupWhereInput) { group: groupsConnection(page: $page, orderBy: $orderBy, "
          "where: $where) { edges { cursor node { ...GroupBasicInfo } } "
          "pageInfo { currentPage totalPage } } }\n"
          "fragment GroupBasicInfo on Group { id displayName name admins quotaCpu quotaGpu "
          "quotaMemory projectQuotaCpu projectQuotaGpu projectQuotaMemory sharedVolumeCapacity }")
CONNECT_IMAGE = ("mutation UpdateImageMutation($data: ImageUpdateInput!, "
                 "$where: ImageWhereUniqueInput!) { updateImage(data: $data, where: $where) "
                 "{ id groups { id name displayName } ...ImageInfo } }\n" + IMAGE_INFO)
UI_LIST = "query { images(mode: SYSTEM_ONLY) { id ...ImageInfo } }\n" + IMAGE_INFO
UI_REBUILD = ("mutation RebuildImage($data: ImageSpecUpdateInput!, $where: ImageWhereUniqueInput!) "
              "{ rebuildImage(data: $data, where: $where) { id ...ImageInfo } }\n" + IMAGE_INFO)
FULL_LIST = "{ images(mode: SYSTEM_ONLY) { %s } }" % IMAGE_FULL
CANCEL = ("mutation Cancel($where: ImageWhereUniqueInput!) "
          "{ cancelImageBuild(where: $where) { id imageSpec { cancel } jobStatus { phase } } }")
REBUILD = ("mutation Rebuild($data: ImageSpecUpdateInput!, $where: ImageWhereUniqueInput!) "
           "{ rebuildImage(data: $data, where: $where) { id imageSpec { baseImage pullSecret "
           "packages { apt conda pip } cancel updateTime } jobStatus { phase } } }")

SAMPLE_IDS = ["base-notebook", "pytorch-1", "tf-1", "tf-2"]


def where(image_id):
    return {"where": {"id": image_id}}


def create(emu, data, selection="id"):
    return emu.gql("mutation C($data: ImageCreateInput!) { createImage(data: $data) { %s } }"
                   % selection, {"data": data})


def update(emu, image_id, data, selection=IMAGE_FULL):
    return emu.gql("mutation U($data: ImageUpdateInput!, $where: ImageWhereUniqueInput!) "
                   "{ updateImage(data: $data, where: $where) { %s } }" % selection,
                   {"data": data, "where": {"id": image_id}})


def get(emu, image_id, selection=IMAGE_FULL):
    return emu.ok("query G($where: ImageWhereUniqueInput!) { image(where: $where) { %s } }"
                  % selection, where(image_id))["image"]


def only_error(reply):
    assert reply.errors and len(reply.errors) == 1, reply
    error = reply.errors[0]
    assert set(error) == {"message", "extensions"} and set(error["extensions"]) == {"code"}, error
    return error["message"], error["extensions"]["code"]


# ----------------------------------------------------------------- process


def test_prints_endpoint_first_and_shuts_down_cleanly(emu):
    assert emu.endpoint.startswith("http://127.0.0.1:") and emu.endpoint.endswith("/api/graphql")
    assert emu.control("shutdown", {}) == {"shutdown": True}
    assert emu.wait(10) == 0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_exits_cleanly_on_signal(emu, sig):
    emu.proc.send_signal(sig)
    assert emu.wait(10) == 0


def test_starts_fast_and_lists_10000_images_quickly(start_emulator):
    emu = start_emulator("--images", "10000")
    assert emu.startup_seconds < 3.0
    began = time.monotonic()
    reply = emu.gql(FULL_LIST)
    elapsed = time.monotonic() - began
    images = reply.data["images"]
    assert len(images) == 10004 and not reply.errors
    assert elapsed < 2.0, elapsed
    synthetic = [i for i in images if i["id"].startswith("synthetic-")]
    assert synthetic[0]["url"] == "registry.example.com/team/image-00001:v1"
    assert {i["type"] for i in synthetic} == {"cpu", "gpu", "both"}
    linked = [i for i in synthetic if i["groups"]]
    assert 3000 < len(linked) < 3600
    assert any(i["global"] for i in synthetic) and all(i["useImagePullSecret"] is None
                                                        for i in synthetic)
    # The answer follows the state: a change shows up in the next listing.
    update(emu, "synthetic-00002", {"description": "changed"})
    again = {i["id"]: i for i in emu.gql(FULL_LIST).data["images"]}
    assert again["synthetic-00002"]["description"] == "changed"


# -------------------------------------------------------------------- auth


def test_missing_authorization_is_http_500(emu):
    reply = emu.gql(ME, token=None)
    assert reply.status == 500
    assert reply.json == {"errors": [{"message": "Context creation failed: request not authorized",
                                      "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}


def test_wrong_token_is_http_500(emu):
    reply = emu.gql(ME, token="not-the-token")
    assert reply.status == 500
    assert reply.json == {"errors": [{"message": "Context creation failed: Invalid API Token",
                                      "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]}


def test_auth_header_name_is_case_insensitive_and_needs_bearer(emu):
    body = json.dumps({"query": ME}).encode()
    reply = emu.request("POST", "/api/graphql", body, {"authorization": "Bearer " + ADMIN_TOKEN,
                                                       "Content-Type": "application/json"})
    assert reply.status == 200 and reply.data["me"]["username"] == "phadmin"
    reply = emu.request("POST", "/api/graphql", body, {"Authorization": "Token " + ADMIN_TOKEN,
                                                       "Content-Type": "application/json"})
    assert reply.status == 500
    assert only_error(reply)[0] == "Context creation failed: request not authorized"


# ------------------------------------------------------------------ bodies


def test_form_body_as_the_cli_posts_it(emu):
    reply = emu.gql(GET, where("tf-2"), form=True)
    assert reply.status == 200 and not reply.errors
    image = reply.data["image"]
    assert image["url"] == "infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a"
    assert image["urlForGpu"] == ("infuseai/docker-stacks:tensorflow-notebook-v2-5-0-63fdf50a"
                                  "-gpu-cuda-11")


def test_json_body_with_variables_as_a_string(emu):
    body = json.dumps({"query": GET, "variables": json.dumps(where("tf-1"))}).encode()
    reply = emu.request("POST", "/api/graphql", body,
                        {"Authorization": "Bearer " + ADMIN_TOKEN,
                         "Content-Type": "application/json"})
    assert reply.status == 200 and reply.data["image"]["id"] == "tf-1"


def test_invalid_variables_string_is_plain_400(emu):
    body = json.dumps({"query": GET, "variables": "{nope"}).encode()
    reply = emu.request("POST", "/api/graphql", body,
                        {"Authorization": "Bearer " + ADMIN_TOKEN,
                         "Content-Type": "application/json"})
    assert reply.status == 400 and reply.text == "Variables are invalid JSON."


def test_missing_query_is_plain_400(emu):
    body = json.dumps({"variables": {}}).encode()
    reply = emu.request("POST", "/api/graphql", body,
                        {"Authorization": "Bearer " + ADMIN_TOKEN,
                         "Content-Type": "application/json"})
    assert reply.status == 400 and reply.text == "Must provide query string."
    assert reply.json is None


def test_get_runs_queries_but_not_mutations(emu):
    auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
    qs = urllib.parse.urlencode({"query": GET, "variables": json.dumps(where("tf-2"))})
    reply = emu.request("GET", "/api/graphql?" + qs, None, auth)
    assert reply.status == 200 and reply.data["image"]["id"] == "tf-2"
    qs = urllib.parse.urlencode({"query": DELETE, "variables": json.dumps(where("tf-2"))})
    reply = emu.request("GET", "/api/graphql?" + qs, None, auth)
    assert reply.status == 405 and reply.text == "GET supports only query operation"
    assert get(emu, "tf-2", "id") == {"id": "tf-2"}


# ------------------------------------------------------- GraphQL-level errors


def test_syntax_error_is_400_parse_failed(emu):
    reply = emu.gql("{ images { id ")
    assert reply.status == 400 and reply.data is None
    message, code = only_error(reply)
    assert code == "GRAPHQL_PARSE_FAILED"
    assert message == "Syntax Error: Expected Name, found <EOF>"


def test_unknown_field_is_400_validation_failed(emu):
    reply = emu.gql("{ images(mode: SYSTEM_ONLY) { id foo } }")
    assert reply.status == 400
    assert reply.json == {"errors": [{"message": 'Cannot query field "foo" on type "Image".',
                                      "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]}
    reply = emu.gql("{ images(mode: SYSTEM_ONLY) { id nme } }")
    assert only_error(reply)[0] == 'Cannot query field "nme" on type "Image". Did you mean "name"?'
    reply = emu.gql("{ images(pge: 1) { id } }")
    assert only_error(reply) == ('Unknown argument "pge" on field "images" of type "Query". '
                                 'Did you mean "page"?', "GRAPHQL_VALIDATION_FAILED")


def test_image_spec_in_update_is_a_variable_error(emu):
    reply = update(emu, "tf-2", {"imageSpec": {"baseImage": "x"}})
    assert reply.status == 400 and "data" not in reply.json
    assert only_error(reply) == (
        'Variable "$data" got invalid value { imageSpec: { baseImage: "x" } }; '
        'Field "imageSpec" is not defined by type ImageUpdateInput.', "INTERNAL_SERVER_ERROR")
    assert emu.image_state("tf-2")["spec"].get("imageSpec") is None


def test_other_variable_errors(emu):
    reply = emu.gql(GET, {})
    assert reply.status == 400
    assert only_error(reply)[0] == ('Variable "$where" of required type '
                                    '"ImageWhereUniqueInput!" was not provided.')
    reply = emu.gql(LIST, {"page": "2"})
    assert only_error(reply)[0] == ('Variable "$page" got invalid value "2"; Expected type Int. '
                                    'Int cannot represent non-integer value: "2"')
    reply = create(emu, {"name": "x", "imageSpec": {"packages": {"pip": 5}}})
    assert only_error(reply)[0] == (
        'Variable "$data" got invalid value { name: "x", imageSpec: { packages: [Object] } }; '
        "Expected type String. String cannot represent a non string value: 5")
    reply = emu.gql("query Q($m: QueryImageMode) { images(mode: $m) { id } }", {"m": "SYSTEM"})
    assert only_error(reply)[0] == ('Variable "$m" got invalid value "SYSTEM"; Expected type '
                                    "QueryImageMode. Did you mean SYSTEM_ONLY?")
    reply = create(emu, {"displayName": "no name"})
    assert reply.status == 400
    assert only_error(reply)[0] == ('Variable "$data" got invalid value { displayName: "no name" }; '
                                    'Field value.name of required type String! was not provided.')


def test_multiple_operations_need_an_operation_name(emu):
    doc = ME + "\nquery Other { me { id } }"
    reply = emu.gql("query A { me { id } } query B { me { username } }")
    assert reply.status == 400
    assert only_error(reply)[0] == ("Must provide operation name if query contains multiple "
                                    "operations.")
    reply = emu.gql("query A { me { id } } query B { me { username } }", operation_name="B")
    assert reply.status == 200 and reply.data == {"me": {"username": "phadmin"}}
    assert emu.gql(doc).status == 400


# ---------------------------------------------------------------- listing


def test_system_only_listing_of_the_sample_images(emu):
    images = emu.ok(FULL_LIST)["images"]
    assert [i["id"] for i in images] == SAMPLE_IDS
    base = images[0]
    assert base == {
        "id": "base-notebook", "name": "base-notebook", "displayName": "base-notebook",
        "description": "base notebook", "type": "both",
        "url": "infuseai/docker-stacks:base-notebook-63fdf50a",
        "urlForGpu": "infuseai/docker-stacks:base-notebook-63fdf50a-gpu",
        "useImagePullSecret": None, "global": False,
        "groups": [{"id": GROUP_1, "name": "example-group-1", "displayName": "Example Group 1"},
                   {"id": GROUP_2, "name": "example-group-2", "displayName": "Example Group 2"}],
        "isReady": True, "imageSpec": None, "jobStatus": None,
        "logEndpoint": emu.base + "/api/logs/images/base-notebook/job",
    }
    assert [i["global"] for i in images] == [False, True, True, True]


def test_modes_split_system_and_group_images(emu):
    assert create(emu, {"name": "team-image", "groupName": "phusers"}).status == 200
    system = [i["id"] for i in emu.ok(FULL_LIST)["images"]]
    group = [i["id"] for i in emu.ok("{ images(mode: GROUP_ONLY) { id } }")["images"]]
    every = [i["id"] for i in emu.ok("{ images { id } }")["images"]]
    assert "team-image" not in system and group == ["team-image"]
    assert every == sorted(SAMPLE_IDS + ["team-image"])


def test_paging_as_the_cli_loops_it(start_emulator):
    emu = start_emulator("--images", "25")
    seen = []
    page = 1
    while True:
        conn = emu.ok(LIST, {"page": page}, form=True)["imagesConnection"]
        assert conn["pageInfo"] == {"currentPage": page, "totalPage": 3}
        if not conn["edges"]:
            break
        assert len(conn["edges"]) == (10 if page < 3 else 9)
        seen += [e["node"]["id"] for e in conn["edges"]]
        assert all(e["cursor"] == e["node"]["id"] for e in conn["edges"])
        page += 1
    assert page == 4 and len(seen) == 29 and seen == sorted(seen)


def test_paging_edge_cases(emu):
    reply = emu.gql("{ imagesConnection(page: 1, mode: SYSTEM_ONLY) "
                    "{ edges { cursor } pageInfo { currentPage hasNextPage } } }")
    assert reply.status == 200 and reply.data is None
    assert only_error(reply) == ("Cannot return null for non-nullable field PageInfo.hasNextPage.",
                                 "INTERNAL_SERVER_ERROR")
    info = emu.ok("{ imagesConnection(mode: SYSTEM_ONLY) { pageInfo { currentPage totalPage "
                  "hasNextPage hasPreviousPage startCursor endCursor } } }")
    assert info["imagesConnection"]["pageInfo"] == {
        "currentPage": None, "totalPage": None, "hasNextPage": False, "hasPreviousPage": False,
        "startCursor": "base-notebook", "endCursor": "tf-2"}
    empty = emu.ok('{ imagesConnection(page: 1, where: {name_contains: "zzz"}) '
                   '{ edges { cursor } pageInfo { currentPage totalPage } } }')
    assert empty["imagesConnection"] == {"edges": [],
                                         "pageInfo": {"currentPage": 1, "totalPage": 1}}
    cursor = emu.ok('{ imagesConnection(first: 2, after: "base-notebook") { edges { cursor } '
                    'pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }')
    assert cursor["imagesConnection"] == {
        "edges": [{"cursor": "pytorch-1"}, {"cursor": "tf-1"}],
        "pageInfo": {"hasNextPage": True, "hasPreviousPage": True, "startCursor": "pytorch-1",
                     "endCursor": "tf-1"}}
    assert [i["id"] for i in emu.ok("{ images(page: 2) { id } }")["images"]] == []


def test_filters_and_order(emu):
    def ids(args):
        return [i["id"] for i in emu.ok("{ images(mode: SYSTEM_ONLY, %s) { id } }" % args)["images"]]

    assert ids('where: {search: "TENSORFLOW"}') == ["tf-1", "tf-2"]
    assert ids('where: {displayName_contains: "tensorflow"}') == []
    assert ids('where: {displayName_contains: "TensorFlow 2"}') == ["tf-2"]
    assert ids('where: {_or: [{name_contains: "tf-2"}]}') == SAMPLE_IDS  # one condition: ignored
    assert ids('where: {_or: [{name_contains: "tf-2"}, {name_contains: "base"}]}') == \
        ["tf-2", "base-notebook"]
    assert ids('where: {id: "tf-1"}') == ["tf-1"]
    assert ids('orderBy: {name: "desc"}') == list(reversed(SAMPLE_IDS))
    reply = emu.gql('{ images(orderBy: {name: "down"}) { id } }')
    assert reply.status == 200 and reply.data is None
    assert only_error(reply) == ("order value (down) not valid. Should be 'asc' or 'desc'",
                                 "INTERNAL_SERVER_ERROR")


# ------------------------------------------------------------------ create


def test_create_name_only_reads_back_with_defaults(emu):
    assert create(emu, {"name": "x"}).data == {"createImage": {"id": "x"}}
    image = get(emu, "x", IMAGE_FULL + " spec")
    assert image["displayName"] == "x" and image["description"] is None
    assert image["type"] == "both" and image["url"] is None and image["urlForGpu"] is None
    assert image["useImagePullSecret"] == "" and image["global"] is False
    assert image["groups"] == [] and image["isReady"] is False
    assert image["spec"] == {"type": "both", "displayName": "x", "pullSecret": ""}
    assert "img:x" in emu.state()["roles"]


@pytest.mark.parametrize("data, url_for_gpu", [
    ({"type": "both", "url": "test"}, "test"),
    ({"type": "both", "url": "test", "urlForGpu": "gpu"}, "gpu"),
    ({"type": "cpu", "url": "test"}, "test"),
    ({"type": "cpu", "url": "test", "urlForGpu": "ignored"}, "test"),
    ({"type": "gpu", "url": "gpu"}, "gpu"),
    ({"type": "", "url": "u"}, "u"),
])
def test_create_url_rules(emu, data, url_for_gpu):
    reply = create(emu, dict(data, name="img"), "id type url urlForGpu isReady")
    created = reply.data["createImage"]
    assert created["urlForGpu"] == url_for_gpu and created["url"] == data["url"]
    assert created["type"] == (data["type"] or "both") and created["isReady"] is True


def test_create_type_is_not_checked(emu):
    assert create(emu, {"name": "odd", "type": "tpu", "url": "u", "urlForGpu": "g"},
                  "type urlForGpu").data["createImage"] == {"type": "tpu", "urlForGpu": "u"}


def test_create_custom_image(emu):
    data = {"name": "my-custom-image", "type": "both", "global": True,
            "imageSpec": {"baseImage": "jupyter/base-notebook", "packages": {"pip": ["pytest"]}}}
    reply = emu.gql(CREATE, {"data": data}, form=True)
    assert reply.data == {"createImage": {"id": "my-custom-image"}}
    image = get(emu, "my-custom-image", IMAGE_FULL + " imageSpec { cancel updateTime }")
    assert image["url"] is None and image["urlForGpu"] is None
    assert image["useImagePullSecret"] == "" and image["global"] is True and image["groups"] == []
    assert image["isReady"] is False
    spec = image["imageSpec"]
    assert spec["baseImage"] == "jupyter/base-notebook" and spec["pullSecret"] is None
    assert spec["packages"] == {"apt": [], "conda": [], "pip": ["pytest"]}
    assert spec["cancel"] is False
    assert len(spec["updateTime"]) == 24 and spec["updateTime"].endswith(".000Z")
    assert image["jobStatus"] == {"phase": "Pending"}
    stored = emu.image_state("my-custom-image")["spec"]["imageSpec"]
    assert stored["packages"] == {"pip": ["pytest"]} and stored["cancel"] is False


def test_create_custom_image_response_has_no_job_yet(emu):
    data = {"name": "c", "imageSpec": {"baseImage": "jupyter/base-notebook:foo",
                                       "packages": {"apt": ["curl"], "pip": []}}}
    created = create(emu, data, "imageSpec { baseImage pullSecret cancel packages "
                                "{ apt pip conda } } url isReady jobStatus { phase }")
    assert created.data["createImage"] == {
        "imageSpec": {"baseImage": "jupyter/base-notebook:foo", "pullSecret": None,
                      "cancel": False, "packages": {"apt": ["curl"], "pip": [], "conda": []}},
        "url": None, "isReady": False, "jobStatus": None}


def test_create_without_base_image_is_rejected_by_kubernetes(emu):
    reply = create(emu, {"name": "nobase", "imageSpec": {"packages": {"pip": ["x"]}}})
    assert reply.status == 200 and reply.data is None
    message, code = only_error(reply)
    assert message == ('Image.primehub.io "nobase" is invalid: '
                       'spec.imageSpec.baseImage: Required value')
    assert code == "INTERNAL_SERVER_ERROR"


def test_duplicate_name_is_resource_conflict(emu):
    reply = create(emu, {"name": "tf-2"})
    assert reply.status == 200 and reply.json == {"errors": [{
        "message": "Resource already exist", "extensions": {"code": "RESOURCE_CONFLICT"}}],
        "data": None}


def test_invalid_name_leaves_an_orphan_role(emu):
    reply = create(emu, {"name": "Bad_Name"})
    assert reply.status == 200 and reply.data is None
    assert only_error(reply) == (
        'Image.primehub.io "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
        "regex used for validation is "
        "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')",
        "INTERNAL_SERVER_ERROR")
    state = emu.state()
    assert "Bad_Name" not in state["images"] and "img:Bad_Name" in state["roles"]
    assert only_error(create(emu, {"name": "Bad_Name"})) == ("Resource already exist",
                                                             "RESOURCE_CONFLICT")


def test_v4_error_texts(start_emulator):
    emu = start_emulator("--errors", "v4")
    assert only_error(create(emu, {"name": "Bad_Name"})) == ("HTTP request failed",
                                                             "INTERNAL_SERVER_ERROR")
    reply = update(emu, "nope", {"description": "x"})
    assert reply.data == {"updateImage": None}
    assert only_error(reply) == ("HTTP request failed", "RESOURCE_NOT_FOUND")


def test_create_with_unknown_group_keeps_the_image(emu):
    data = {"name": "half", "global": True,
            "groups": {"connect": [{"id": GROUP_3}, {"id": "no-such-group"}]}}
    reply = create(emu, data)
    assert reply.status == 200 and reply.data is None
    assert only_error(reply) == ("Request failed with status code 404", "INTERNAL_SERVER_ERROR")
    state = emu.image_state("half")
    assert state["global"] is True and state["groups"] == [GROUP_3]


# ------------------------------------------------------------------ update


def _make(emu, name, data):
    reply = create(emu, dict(data, name=name))
    assert reply.status == 200 and not reply.errors, reply


def test_update_url_rules_console_table(emu):
    _make(emu, "both1", {"type": "both", "url": "test"})
    after = update(emu, "both1", {"url": "test2"}).data["updateImage"]
    assert (after["url"], after["urlForGpu"]) == ("test2", "test2")
    after = update(emu, "both1", {"urlForGpu": None}).data["updateImage"]
    assert (after["url"], after["urlForGpu"]) == ("test2", "test2")
    after = update(emu, "both1", {"type": "gpu"}).data["updateImage"]
    assert (after["type"], after["urlForGpu"]) == ("gpu", "test2")

    _make(emu, "gpu1", {"type": "gpu", "url": "gpu-url"})
    after = update(emu, "gpu1", {"url": "gpu-url2"}).data["updateImage"]
    assert (after["url"], after["urlForGpu"]) == ("gpu-url2", "gpu-url2")
    after = update(emu, "gpu1", {"type": "both", "url": "url-for-cpu",
                                 "urlForGpu": "url-for-gpu"}).data["updateImage"]
    assert (after["type"], after["url"], after["urlForGpu"]) == ("both", "url-for-cpu",
                                                                 "url-for-gpu")

    _make(emu, "cpu1", {"type": "cpu", "url": "cpu-url2"})
    after = update(emu, "cpu1", {"type": "both"}).data["updateImage"]
    assert (after["type"], after["urlForGpu"]) == ("both", "cpu-url2")


def test_update_url_on_both_overwrites_url_for_gpu_unless_sent(emu):
    after = update(emu, "tf-2", {"url": "new", "urlForGpu": "new-gpu"}).data["updateImage"]
    assert (after["url"], after["urlForGpu"]) == ("new", "new-gpu")
    after = update(emu, "tf-2", {"url": "newer"}).data["updateImage"]
    assert (after["url"], after["urlForGpu"]) == ("newer", "newer")


def test_update_is_a_merge_patch(emu):
    after = update(emu, "tf-2", {"displayName": None, "type": None, "description": "d",
                                 "name": "ignored"}).data["updateImage"]
    assert after["displayName"] == "tf-2" and after["type"] is None
    assert after["description"] == "d" and after["id"] == "tf-2"
    spec = emu.image_state("tf-2")["spec"]
    assert "displayName" not in spec and "type" not in spec
    after = update(emu, "tf-2", {"type": ""}).data["updateImage"]
    assert after["type"] == ""


def test_pull_secret_is_cleared_unless_resent(emu):
    _make(emu, "ps", {"useImagePullSecret": "image-my-image-registry"})
    assert get(emu, "ps", "useImagePullSecret") == {"useImagePullSecret": "image-my-image-registry"}
    after = update(emu, "ps", {"description": "x"}).data["updateImage"]
    assert after["useImagePullSecret"] is None
    assert "pullSecret" not in emu.image_state("ps")["spec"]
    after = update(emu, "ps", {"useImagePullSecret": "s2"}).data["updateImage"]
    assert after["useImagePullSecret"] == "s2"
    after = update(emu, "ps", {"useImagePullSecret": None}).data["updateImage"]
    assert after["useImagePullSecret"] is None
    _make(emu, "fresh", {})
    assert get(emu, "fresh", "useImagePullSecret") == {"useImagePullSecret": ""}
    update(emu, "fresh", {"global": True})
    assert get(emu, "fresh", "useImagePullSecret") == {"useImagePullSecret": None}


def test_group_name_is_cleared_unless_resent(emu):
    _make(emu, "team", {"groupName": "phusers"})
    update(emu, "team", {"description": "x", "groupName": "phusers"})
    assert get(emu, "team", "groupName") == {"groupName": "phusers"}
    update(emu, "team", {"description": "y"})
    assert get(emu, "team", "groupName") == {"groupName": None}
    assert "team" in [i["id"] for i in emu.ok(FULL_LIST)["images"]]


def test_update_missing_image_is_not_found(emu):
    reply = update(emu, "nope", {"description": "x"})
    assert reply.status == 200 and reply.data == {"updateImage": None}
    assert only_error(reply) == ('images.primehub.io "nope" not found', "RESOURCE_NOT_FOUND")


def test_add_and_remove_group_as_the_cli_does(emu):
    assert emu.ok(GROUP, {"where": {"id": GROUP_3}}, form=True) == {"group": {"id": GROUP_3}}
    data = emu.ok(ADD_GROUP, {"where": {"id": "tf-2"},
                              "data": {"groups": {"connect": [{"id": GROUP_3}]}}}, form=True)
    assert data["updateImage"]["groups"] == [
        {"id": GROUP_3, "name": "example-group-3", "displayName": "Example Group 3"}]
    # Connecting twice is harmless; so is disconnecting what is not connected.
    emu.ok(ADD_GROUP, {"where": {"id": "tf-2"}, "data": {"groups": {"connect": [{"id": GROUP_3}]}}})
    data = emu.ok(ADD_GROUP, {"where": {"id": "base-notebook"},
                              "data": {"groups": {"disconnect": [{"id": GROUP_1}, {"id": GROUP_3}]}}},
                  form=True)
    assert [g["id"] for g in data["updateImage"]["groups"]] == [GROUP_2]
    listed = emu.ok(LIST_GROUPS, where("tf-2"), form=True)["image"]
    assert listed["global"] is True and [g["id"] for g in listed["groups"]] == [GROUP_3]
    # Both pull secret and group edits went through updateImage: the pull
    # secret of tf-2 (null) stays null; its urls are untouched.
    assert get(emu, "tf-2", "url")["url"].endswith("v2-5-0-63fdf50a")


def test_connect_then_disconnect_in_one_update(emu):
    data = emu.ok(CONNECT_IMAGE, {"data": {"groups": {"connect": [{"id": GROUP_3}],
                                                      "disconnect": [{"id": GROUP_3}]}},
                                  "where": {"id": "tf-1"}})
    assert data["updateImage"]["groups"] == []


def test_unknown_group_fails_after_the_patch(emu):
    reply = update(emu, "tf-1", {"description": "patched", "useImagePullSecret": "keep",
                                 "groups": {"connect": [{"id": "missing-group"}]}})
    assert reply.status == 200 and reply.data == {"updateImage": None}
    assert only_error(reply) == ("Request failed with status code 404", "INTERNAL_SERVER_ERROR")
    spec = emu.image_state("tf-1")["spec"]
    assert spec["description"] == "patched" and spec["pullSecret"] == "keep"


def test_global_through_the_everyone_group(emu):
    update(emu, "base-notebook", {"global": True})
    state = emu.image_state("base-notebook")
    assert state["global"] is True and state["groups"] == [GROUP_1, GROUP_2]
    update(emu, "base-notebook", {"global": False})
    assert emu.image_state("base-notebook")["global"] is False
    update(emu, "base-notebook", {"groups": {"connect": [{"id": EVERYONE}]}})
    image = get(emu, "base-notebook", "global groups { id }")
    assert image["global"] is True and EVERYONE not in [g["id"] for g in image["groups"]]


# ------------------------------------------------------------------ delete


def test_delete_returns_unlinked_image_and_recreate_starts_clean(emu):
    reply = emu.gql("mutation D($where: ImageWhereUniqueInput!) { deleteImage(where: $where) "
                    "{ id url global groups { id } } }", where("base-notebook"))
    assert reply.data == {"deleteImage": {"id": "base-notebook",
                                          "url": "infuseai/docker-stacks:base-notebook-63fdf50a",
                                          "global": False, "groups": []}}
    assert emu.ok(GET, where("base-notebook")) == {"image": None}
    state = emu.state()
    assert "base-notebook" not in state["images"] and "img:base-notebook" not in state["roles"]
    _make(emu, "base-notebook", {"url": "again"})
    image = get(emu, "base-notebook", "global groups { id }")
    assert image == {"global": False, "groups": []}


def test_delete_missing_is_not_found(emu):
    reply = emu.gql(DELETE, where("ghost"), form=True)
    assert reply.data == {"deleteImage": None}
    assert only_error(reply) == ('images.primehub.io "ghost" not found', "RESOURCE_NOT_FOUND")


# ------------------------------------------------- groups, secrets, me


def test_lookups_missing(emu):
    reply = emu.gql(GET, where("nope"))
    assert reply.status == 200 and reply.json == {"data": {"image": None}}
    reply = emu.gql('{ secret(where: {id: "nope"}) { id } }')
    assert reply.status == 200 and reply.data is None
    assert only_error(reply) == ("Cannot return null for non-nullable field Query.secret.",
                                 "INTERNAL_SERVER_ERROR")
    assert emu.ok(GROUP, {"where": {"id": "nope"}}) == {"group": None}


def test_groups_hide_everyone_but_group_by_id_does_not(emu):
    names = [g["name"] for g in emu.ok("{ groups { id name } }")["groups"]]
    assert names == ["example-group-1", "example-group-2", "example-group-3", "phusers"]
    assert emu.ok('{ group(where: {id: "%s"}) { name displayName } }' % EVERYONE) == \
        {"group": {"name": "everyone", "displayName": None}}
    assert emu.ok('{ groups(where: {name_contains: "group-2"}) { id } }') == \
        {"groups": [{"id": GROUP_2}]}


def test_display_name_contains_quirk(emu):
    assert emu.ok('{ groups(where: {displayName_contains: "Example"}) { id } }') == {"groups": []}
    found = emu.ok('{ groups(where: {displayName_contains: "Example"}, orderBy: {name: "asc"}) '
                   '{ id } }')["groups"]
    assert [g["id"] for g in found] == [GROUP_1, GROUP_2, GROUP_3]


def test_me_and_everyone_lookup(emu):
    assert emu.ok(ME, form=True) == {"me": {
        "id": "a7db12dc-04fa-419c-9cd7-af768575a871", "username": "phadmin", "firstName": None,
        "lastName": None, "email": "dev+phadmin@infuseai.io", "isAdmin": True}}
    groups = emu.ok(EVERYONE_LOOKUP, form=True)["me"]["groups"]
    assert {"id": EVERYONE, "name": "everyone"} in groups
    effective = emu.ok("{ me { effectiveGroups { name } } }")["me"]["effectiveGroups"]
    assert "everyone" not in [g["name"] for g in effective]


def test_secrets(emu):
    edges = emu.ok(SECRETS, {}, form=True)["secretsConnection"]["edges"]
    assert [e["node"] for e in edges] == [
        {"id": "gitsync-secret-dataset-secret", "name": "dataset-secret",
         "displayName": "dataset-secret", "type": "opaque", "registryHost": None, "username": None},
        {"id": "image-my-image-registry", "name": "my-image-registry",
         "displayName": "my-image-registry", "type": "kubernetes",
         "registryHost": "registry.gitlab.com", "username": "nobody"}]
    assert emu.ok(USER_SECRETS)["secrets"] == [
        {"id": "image-my-image-registry", "name": "my-image-registry", "type": "kubernetes"}]


# ------------------------------------------------------------- builds


def _custom(emu, name, base="jupyter/base-notebook", packages=None):
    _make(emu, name, {"imageSpec": {"baseImage": base,
                                    "packages": packages or {"pip": ["pytest"]}}})


def _phase(emu, name):
    return (get(emu, name, "jobStatus { phase }")["jobStatus"] or {}).get("phase")


def test_build_timeline_and_logs(emu):
    _custom(emu, "built", packages={"apt": ["curl"], "pip": ["pytest", "numpy"]})
    auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
    path = "/api/logs/images/built/job?follow=false"
    assert _phase(emu, "built") == "Pending"
    reply = emu.request("GET", path, None, auth)
    assert reply.status == 200 and reply.text == ""
    assert reply.headers["Content-Type"].startswith("text/plain")
    emu.advance(5)
    assert _phase(emu, "built") == "Running"
    running = emu.request("GET", path, None, auth).text
    assert running.startswith("Step 1/4 : FROM jupyter/base-notebook\n")
    assert "Successfully built" not in running
    emu.advance(25)
    image = get(emu, "built", "jobStatus { phase image } url urlForGpu isReady")
    assert image["jobStatus"]["phase"] == "Succeeded"
    assert image["jobStatus"]["image"].startswith("registry.primehub.local/")
    assert image["url"] == image["urlForGpu"] == image["jobStatus"]["image"]
    assert image["isReady"] is True
    done = emu.request("GET", path, None, auth).text
    assert "Setting up curl ..." in done and "Successfully built" in done
    tail = emu.request("GET", path + "&tailLines=2", None, auth).text
    assert tail.splitlines() == done.splitlines()[-2:]


def test_failed_build(emu):
    _custom(emu, "broken", base="registry.example.com/fail:latest")
    emu.advance(31)
    image = get(emu, "broken", "jobStatus { phase } url isReady")
    assert image == {"jobStatus": {"phase": "Failed"}, "url": None, "isReady": False}
    text = emu.request("GET", "/api/logs/images/broken/job?follow=false", None,
                       {"Authorization": "Bearer " + ADMIN_TOKEN}).text
    assert "ERROR" in text


def test_cancel_build(emu):
    _custom(emu, "stopme")
    emu.advance(6)
    reply = emu.gql(CANCEL, where("stopme"))
    assert reply.data["cancelImageBuild"]["imageSpec"]["cancel"] is True
    assert reply.data["cancelImageBuild"]["jobStatus"] == {"phase": "Running"}  # read before
    assert _phase(emu, "stopme") == "Cancelled"
    emu.advance(60)
    assert _phase(emu, "stopme") == "Cancelled"
    assert emu.image_state("stopme")["spec"]["imageSpec"]["cancel"] is True
    reply = emu.gql(CANCEL, where("tf-2"))
    assert reply.data == {"cancelImageBuild": None}
    assert only_error(reply) == ("failed to cancel image build", "INTERNAL_ERROR")


def test_rebuild_merges_package_lists_and_restarts(emu):
    _custom(emu, "rb", packages={"apt": ["curl"], "pip": ["pytest"]})
    emu.advance(40)
    assert _phase(emu, "rb") == "Succeeded"
    reply = emu.gql(REBUILD, {"where": {"id": "rb"},
                              "data": {"baseImage": "jupyter/base-notebook",
                                       "packages": {"pip": ["numpy"]}}})
    spec = reply.data["rebuildImage"]["imageSpec"]
    assert spec["packages"] == {"apt": [], "conda": [], "pip": ["numpy"]}  # response: []
    assert spec["cancel"] is False and spec["updateTime"].endswith(".000Z")
    stored = emu.image_state("rb")["spec"]["imageSpec"]
    assert stored["packages"] == {"apt": ["curl"], "pip": ["numpy"]}  # stored: merged
    assert _phase(emu, "rb") == "Pending"
    emu.advance(30)
    assert _phase(emu, "rb") == "Succeeded"


def test_rebuild_plain_image_and_missing(emu):
    reply = emu.gql(UI_REBUILD, {"where": {"id": "tf-1"},
                                 "data": {"baseImage": "ubuntu:22.04"}})
    assert reply.status == 200 and not reply.errors
    assert reply.data["rebuildImage"]["imageSpec"]["baseImage"] == "ubuntu:22.04"
    assert _phase(emu, "tf-1") == "Pending"
    reply = emu.gql(REBUILD, {"where": {"id": "ghost"}, "data": {"baseImage": "x"}})
    assert reply.data == {"rebuildImage": None}
    assert only_error(reply) == ("failed to rebuild image", "INTERNAL_ERROR")


def test_log_endpoint_errors(emu):
    auth = {"Authorization": "Bearer " + ADMIN_TOKEN, "Accept": "application/json"}
    reply = emu.request("GET", "/api/logs/images/tf-2/job?follow=false", None, auth)
    assert reply.status == 400 and reply.json["code"] == "RESOURCE_NOT_FOUND"
    reply = emu.request("GET", "/api/logs/images/ghost/job?follow=false", None, auth)
    assert reply.status == 400
    assert reply.json == {"code": "RESOURCE_NOT_FOUND",
                          "message": 'images.primehub.io "ghost" not found'}
    reply = emu.request("GET", "/api/logs/images/tf-2/job", None, {"Accept": "*/*"})
    assert reply.status == 403 and reply.headers["Content-Type"].startswith("text/html")
    reply = emu.request("GET", "/api/logs/images/tf-2/job", None, {"Accept": "application/json"})
    assert reply.status == 403
    assert reply.json == {"code": "INTERNAL_ERROR", "message": "request not authorized"}
    reply = emu.request("GET", "/api/logs/images/tf-2/job", None,
                        {"Authorization": "Bearer wrong", "Accept": "application/json"})
    assert reply.status == 500 and reply.json["message"] == "Invalid API Token"
    reply = emu.request("GET", "/api/logs/images/tf-2/job", None,
                        {"Authorization": "Bearer " + USER_TOKEN, "Accept": "application/json"})
    assert reply.status == 403


# ------------------------------------------------------------------ stats


def test_stats_count_requests_operations_connections_and_logs(emu):
    emu.reset_stats()
    conn = emu.connection()
    headers = {"Authorization": "Bearer " + ADMIN_TOKEN, "Content-Type": "application/json"}
    for body in ({"query": "{ a: images { id } b: images { id } me { id } }"},
                 {"query": "{ nope }"},
                 {"query": UPDATE, "variables": {"where": {"id": "tf-2"},
                                                 "data": {"description": "x"}}}):
        conn.request("POST", "/api/graphql", json.dumps(body), headers)
        response = conn.getresponse()
        response.read()
    conn.request("GET", "/api/logs/images/tf-2/job?follow=false", headers=headers)
    conn.getresponse().read()
    conn.close()
    emu.gql(ME, token=None)  # refused, still counted
    stats = emu.stats()
    assert stats["total"] == 4 and stats["logs"] == 1
    assert stats["operations"] == {"images": 2, "me": 2, "nope": 1, "updateImage": 1}
    # Four requests on one keep-alive connection count once; urllib opens a
    # connection per request (the refused one, and this stats request).
    assert stats["connections"] == 3
    assert emu.reset_stats() == {"total": 0, "operations": {}, "connections": 0, "logs": 0}


# -------------------------------------------------------------- persistence


def test_state_file_survives_restart(start_emulator, tmp_path):
    path = str(tmp_path / "state.json")
    first = start_emulator("--state", path)
    _make(first, "kept", {"url": "u", "global": True})
    update(first, "tf-2", {"description": "edited"})
    first.control("shutdown", {})
    assert first.wait(10) == 0
    assert json.load(open(path))["images"]["kept"]["spec"]["url"] == "u"
    assert [p for p in os.listdir(str(tmp_path)) if p != "state.json"] == []
    second = start_emulator("--state", path)
    image = get(second, "kept", "url global")
    assert image == {"url": "u", "global": True}
    assert get(second, "tf-2", "description") == {"description": "edited"}


def test_state_endpoint_shape(emu):
    state = emu.state()
    assert set(state) >= {"images", "groups", "secrets", "roles"}
    assert state["images"]["base-notebook"] == {
        "spec": {"description": "base notebook", "displayName": "base-notebook", "type": "both",
                 "url": "infuseai/docker-stacks:base-notebook-63fdf50a",
                 "urlForGpu": "infuseai/docker-stacks:base-notebook-63fdf50a-gpu"},
        "status": None, "groups": [GROUP_1, GROUP_2], "global": False}
    assert EVERYONE in [g["id"] for g in state["groups"]]


# ------------------------------------------------------- latency and faults


def test_latency(emu):
    assert emu.control("latency", {"ms": 300}) == {"ms": 300}
    began = time.monotonic()
    emu.ok(ME)
    assert time.monotonic() - began >= 0.3
    began = time.monotonic()
    emu.stats()
    assert time.monotonic() - began < 0.3  # control endpoints are never delayed
    emu.control("latency", {"ms": 0})


def test_latency_option(start_emulator):
    emu = start_emulator("--latency-ms", "200")
    began = time.monotonic()
    emu.ok(ME)
    assert time.monotonic() - began >= 0.2


def test_faults(emu):
    emu.control("faults", {"mode": "http500", "count": 1})
    reply = emu.gql(ME)
    assert reply.status == 500 and reply.json is None
    assert emu.gql(ME).status == 200

    emu.control("faults", {"mode": "api_unavailable", "count": 1})
    reply = emu.gql(FULL_LIST)
    assert reply.status == 200 and reply.json == {"errors": [{
        "message": "An internal server error occurred",
        "extensions": {"code": "API_UNAVAILABLE"}}], "data": None}

    emu.control("faults", {"mode": "garbage"})
    assert emu.gql(ME).json is None and emu.gql(ME).status == 200
    assert emu.stats()["total"] >= 5  # faults do not touch /-/
    emu.control("faults", {"mode": "none"})
    assert emu.gql(ME).status == 200


def test_hang_fault_makes_clients_time_out(emu):
    emu.control("faults", {"mode": "hang", "seconds": 3, "count": 1})
    began = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError, OSError)):
        emu.gql(ME, timeout=0.5)
    assert time.monotonic() - began < 2
    assert emu.gql(ME).status == 200


# ------------------------------------------------------------ normal user


def test_non_admin_user(emu):
    me = emu.ok(ME, token=USER_TOKEN)["me"]
    assert me["username"] == "phuser" and me["isAdmin"] is False
    assert [i["id"] for i in emu.ok(FULL_LIST, token=USER_TOKEN)["images"]] == SAMPLE_IDS
    reply = emu.gql("{ groups { id } }", token=USER_TOKEN)
    assert reply.data is None
    assert only_error(reply) == ("Not Authorised!", "INTERNAL_SERVER_ERROR")
    reply = emu.gql(GROUP, {"where": {"id": GROUP_1}}, token=USER_TOKEN)
    assert reply.data == {"group": None} and only_error(reply)[0] == "Not Authorised!"
    assert emu.ok(GROUP, {"where": {"id": PHUSERS}}, token=USER_TOKEN) == {"group": {"id": PHUSERS}}
    reply = emu.gql(CREATE, {"data": {"name": "mine"}}, token=USER_TOKEN)
    assert reply.data is None and only_error(reply) == ("Not authorise", "NOT_AUTH")
    reply = emu.gql(UPDATE, {"where": {"id": "tf-2"}, "data": {"description": "x"}},
                    token=USER_TOKEN)
    assert reply.data == {"updateImage": None} and only_error(reply)[1] == "NOT_AUTH"
    reply = emu.gql(DELETE, where("tf-2"), token=USER_TOKEN)
    assert reply.data == {"deleteImage": None} and only_error(reply)[1] == "NOT_AUTH"
    assert "mine" not in emu.state()["images"] and "img:mine" not in emu.state()["roles"]


# -------------------------------------------------------- CLI documents


def test_all_cli_documents_execute(emu):
    """Every document of section 6, with the variables the CLI sends."""
    ok = emu.ok
    ok(LIST, {"page": 1}, form=True)
    ok(GET, where("tf-2"), form=True)
    config = {"name": "my-first-image", "displayName": "Learning how to create an image from SDK",
              "description": "base-notebook with python 3.7", "type": "both",
              "url": "infuseai/docker-stacks:base-notebook-63fdf50a",
              "urlForGpu": "infuseai/docker-stacks:base-notebook-63fdf50a-gpu", "global": True}
    assert ok(CREATE, {"data": config}, form=True) == {"createImage": {"id": "my-first-image"}}
    listed = ok(LIST, {"page": 1}, form=True)["imagesConnection"]["edges"]
    mine = [e["node"] for e in listed if e["node"]["id"] == "my-first-image"][0]
    assert (mine["type"], mine["isReady"]) == ("both", True)
    ok(UPDATE, {"where": {"id": "my-first-image"},
                "data": {"description": "updated",
                         "urlForGpu": "infuseai/docker-stacks:base-notebook-63fdf50a-gpu"}},
       form=True)
    ok(LIST_GROUPS, where("base-notebook"), form=True)
    ok(GROUP, {"where": {"id": GROUP_3}}, form=True)
    ok(ADD_GROUP, {"where": {"id": "my-first-image"},
                   "data": {"groups": {"connect": [{"id": GROUP_3}]}}}, form=True)
    ok(ADD_GROUP, {"where": {"id": "my-first-image"},
                   "data": {"groups": {"disconnect": [{"id": GROUP_3}]}}}, form=True)
    ok(SECRETS, {}, form=True)
    ok(SECRETS, {"page": 1}, form=True)
    ok(USER_SECRETS, {}, form=True, token=USER_TOKEN)
    ok(ME, {}, form=True)
    ok(EVERYONE_LOOKUP, {}, form=True)
    page = 1
    while ok(GROUPS, {"orderBy": {}, "where": {}, "page": page}, form=True)["group"]["edges"]:
        page += 1
    assert page == 2
    ok(CONNECT_IMAGE, {"data": {"groups": {"connect": [{"id": GROUP_1}], "disconnect": []}},
                       "where": {"id": "my-first-image"}}, form=True)
    ok(CONNECT_IMAGE, {"data": {"groups": {"connect": [], "disconnect": [{"id": GROUP_1}]}},
                       "where": {"id": "my-first-image"}}, form=True)
    forced = {"name": "group-made", "global": False, "groups": {"connect": [{"id": GROUP_2}]}}
    ok(CREATE, {"data": forced}, form=True)
    ok(UI_LIST)
    ok(DELETE, where("my-first-image"), form=True)
    assert ok(GET, where("my-first-image")) == {"image": None}


def test_null_literals_are_accepted(emu):
    data = emu.ok('mutation { updateImage(where: {id: "tf-2"}, '
                  'data: {description: null, useImagePullSecret: null}) { description } }')
    assert data == {"updateImage": {"description": None}}
    assert "description" not in emu.image_state("tf-2")["spec"]


def test_emulator_script_runs_with_the_system_python():
    with open(EMULATOR) as fh:
        assert fh.readline().strip() == "#!/usr/bin/python3"
    assert os.access(EMULATOR, os.X_OK)
    out = subprocess.run([EMULATOR, "--help"], stdout=subprocess.PIPE, timeout=30)
    assert out.returncode == 0 and b"--clock" in out.stdout


def test_http_layer_answers(emu):
    auth = {"Authorization": "Bearer " + ADMIN_TOKEN}
    reply = emu.request("POST", "/api/graphql", b"{not json", {"Content-Type": "application/json"})
    assert reply.status == 400 and reply.json["code"] == "INTERNAL_ERROR"  # before auth
    reply = emu.request("POST", "/api/graphql", b"query=x", dict(auth, **{
        "Content-Type": "text/plain"}))
    assert reply.status == 500
    assert reply.text == "POST body missing. Did you forget use body-parser middleware?"
    reply = emu.request("PUT", "/api/graphql", b"{}", dict(auth, **{
        "Content-Type": "application/json"}))
    assert reply.status == 405 and reply.text == "Apollo Server supports only GET/POST requests."
    reply = emu.request("GET", "/api/graphql", None, auth)
    assert reply.status == 400 and reply.text == "GET query missing."
    assert emu.request("GET", "/nowhere", None, auth).status == 404


def test_introspection_goes_through_graphql_core(emu):
    data = emu.ok('{ __type(name: "ImageUpdateInput") { inputFields { name } } '
                  'images(first: 1) { __typename id } }')
    names = [f["name"] for f in data["__type"]["inputFields"]]
    assert "imageSpec" not in names and "useImagePullSecret" in names
    assert data["images"] == [{"__typename": "Image", "id": "base-notebook"}]


def test_real_clock_follows_wall_time(start_emulator):
    emu = start_emulator("--clock", "real")
    _custom(emu, "live")
    assert _phase(emu, "live") == "Pending"
    reply = emu.control("clock/advance", {"seconds": 10})
    assert reply["mode"] == "real" and reply["clock"] > time.time() + 5
    assert _phase(emu, "live") == "Running"
