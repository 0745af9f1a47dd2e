"""The emulator's server-cost model (contrib/primehub_emulator/costs.py):
the Keycloak calls and Kubernetes reads the real PrimeHub server would make
for a request, the time charged for them (and really taken), GET /-/stats'
"backend", the "cost" of /-/requests entries, POST /-/touch-all and --groups.

Counting does not depend on the model being on, so most tests run with
``--cost-model off`` or a small ``--cost-scale``; the wall-clock tests use
the real scale.
"""
import json
import threading
import time

import pytest

from emulator_harness import ADMIN_TOKEN

pytestmark = pytest.mark.timeout(60)

EVERYONE = "15839617-c0d6-4c3b-8b7e-da3da47409ff"

SYSTEM_IDS = "{ images(mode: SYSTEM_ONLY) { id } }"
IDS = "{ images { id } }"
GLOBAL = "{ images { id global } }"
MEMBERSHIP = "{ images { id groups { id } } }"
MEMBERSHIP_GLOBAL = "{ images { id global groups { id } } }"
GROUP_IMAGES = "{ groups { id images { id } } }"
ONE_IMAGE_GROUPS = "query O($id: ID!) { image(where: {id: $id}) { id groups { id } } }"
TWICE = "{ a: images { id groups { id } } b: images { id groups { id } } }"


def backend(emu):
    return emu.stats()["backend"]


def cost_of(emu, query, variables=None):
    """Run ``query`` alone after a stats reset: (backend object, reply, wall s)."""
    emu.reset_stats()
    began = time.monotonic()
    reply = emu.gql(query, variables, timeout=60)
    wall = time.monotonic() - began
    assert reply.status == 200 and not reply.errors, reply
    return backend(emu), reply, wall


def calls(emu, query, variables=None):
    b, _, _ = cost_of(emu, query, variables)
    return b["keycloak_calls"], b["kubernetes_reads"]


def membership(emu):
    """From /-/state: the groups other than everyone, each image's groups,
    and which images are linked to one of those groups."""
    state = emu.state()
    groups = [g["id"] for g in state["groups"] if g["id"] != EVERYONE]
    image_groups = {name: img["groups"] for name, img in state["images"].items()}
    return groups, image_groups


# ------------------------------------------------------------- the counts


def test_keycloak_calls_per_query_shape_at_20_images_5_groups(start_emulator):
    emu = start_emulator("--images", "20", "--groups", "5", "--cost-model", "off")
    groups, image_groups = membership(emu)
    g = len(groups)  # 4 sample groups (everyone aside) + 5 synthetic
    assert g == 9
    linked_groups = {gid for ids in image_groups.values() for gid in ids}
    linked_images = {name for name, ids in image_groups.items() if ids}

    # Listing costs one Kubernetes list and no Keycloak call.
    assert calls(emu, SYSTEM_IDS) == (0, 1)
    assert calls(emu, IDS) == (0, 1)
    # global: the everyone group's role mappings, once per request.
    assert calls(emu, GLOBAL) == (1, 1)
    # groups: groups.find, the mappings of every group (everyone aside), and
    # groups.findOne of every group some image is in; once per request.
    assert calls(emu, MEMBERSHIP) == (1 + g + len(linked_groups), 1) == (17, 1)
    assert calls(emu, MEMBERSHIP_GLOBAL) == (18, 1)
    # Group.images: groups.find, findOne and the mappings of each group, and
    # one Kubernetes read per image linked to a group.
    assert calls(emu, GROUP_IMAGES) == (1 + 2 * g, len(linked_images)) == (19, 19)
    # One image's groups still reads every group's mappings: 1 + G + its groups.
    mine = image_groups["synthetic-00001"]
    assert calls(emu, ONE_IMAGE_GROUPS, {"id": "synthetic-00001"}) == \
        (1 + g + len(mine), 1) == (11, 1)
    assert calls(emu, ONE_IMAGE_GROUPS, {"id": "tf-1"}) == (1 + g, 1)
    assert calls(emu, '{ image(where: {id: "tf-1"}) { id name } }') == (0, 1)
    assert calls(emu, '{ image(where: {id: "no-such"}) { id } }') == (0, 1)
    assert calls(emu, "{ groups { id } }") == (1 + g, 0)
    assert calls(emu, "{ me { id } }") == (1, 0)
    assert calls(emu, "{ secrets { id } }") == (0, 1)


def test_counts_at_2000_images_100_groups(start_emulator):
    emu = start_emulator("--images", "2000", "--groups", "100", "--cost-model", "off")
    groups, image_groups = membership(emu)
    g = len(groups)
    assert g == 104
    linked_groups = {gid for ids in image_groups.values() for gid in ids}
    assert len(linked_groups) == 102  # the synthetic ones and example-group-1, -2
    assert calls(emu, SYSTEM_IDS) == (0, 1)
    assert calls(emu, GLOBAL) == (1, 1)
    assert calls(emu, MEMBERSHIP) == (207, 1)
    linked_images = {name for name, ids in image_groups.items() if ids}
    assert calls(emu, GROUP_IMAGES) == (209, len(linked_images))
    assert calls(emu, ONE_IMAGE_GROUPS, {"id": "synthetic-00001"}) == \
        (1 + g + len(image_groups["synthetic-00001"]), 1)


def test_calls_are_memoised_within_a_request_not_across(start_emulator):
    emu = start_emulator("--images", "20", "--groups", "5", "--cost-model", "off")
    one = calls(emu, MEMBERSHIP)
    # Two lists in one document: two Kubernetes lists, the Keycloak calls once.
    assert calls(emu, TWICE) == (one[0], 2)
    # A batch shares one context, so one memo.
    emu.reset_stats()
    body = json.dumps([{"query": MEMBERSHIP}, {"query": MEMBERSHIP_GLOBAL}]).encode()
    reply = emu.request("POST", "/api/graphql", body,
                        {"Content-Type": "application/json",
                         "Authorization": "Bearer " + ADMIN_TOKEN})
    assert reply.status == 200 and len(reply.json) == 2
    assert (backend(emu)["keycloak_calls"], backend(emu)["kubernetes_reads"]) == \
        (one[0] + 1, 2)
    # The next request pays again, also when the emulator answers it from its
    # own response cache (the real server has none).
    emu.reset_stats()
    for _ in range(3):
        emu.ok(MEMBERSHIP)
    b = backend(emu)
    assert (b["keycloak_calls"], b["kubernetes_reads"]) == (3 * one[0], 3)
    assert b["by_op"]["images"]["requests"] == 3


def test_mutations_count_what_they_read(start_emulator):
    emu = start_emulator("--images", "5", "--groups", "3", "--cost-model", "off")
    group_id = membership(emu)[0][0]
    update = ("mutation U($id: ID!, $data: ImageUpdateInput!) "
              "{ updateImage(where: {id: $id}, data: $data) { id } }")
    assert calls(emu, update, {"id": "tf-1", "data": {"description": "x"}}) == (1, 1)
    assert calls(emu, update, {"id": "tf-1", "data": {"global": False}}) == (2, 1)
    assert calls(emu, update, {"id": "tf-1", "data": {
        "groups": {"connect": [{"id": group_id}], "disconnect": []}}}) == (2, 1)
    create = "mutation C($data: ImageCreateInput!) { createImage(data: $data) { id } }"
    assert calls(emu, create, {"data": {"name": "new-one", "url": "a/b:c", "global": True,
                                        "groups": {"connect": [{"id": group_id}]}}}) == (4, 0)
    assert calls(emu, 'mutation { deleteImage(where: {id: "new-one"}) { id } }') == (1, 1)


# ------------------------------------------------------------------- time


def test_charged_time_grows_with_images_times_groups(start_emulator):
    scale = 0.01
    small = start_emulator("--images", "200", "--groups", "20", "--cost-scale", str(scale))
    big = start_emulator("--images", "2000", "--groups", "100", "--cost-scale", str(scale))

    def charged(emu, query):
        return cost_of(emu, query)[0]["charged_ms"] / scale  # unscaled ms

    small_ids, small_groups = charged(small, SYSTEM_IDS), charged(small, MEMBERSHIP)
    big_ids, big_groups = charged(big, SYSTEM_IDS), charged(big, MEMBERSHIP)
    # Names cost little and grow with the images only...
    assert 60 < big_ids < 100 and big_ids < 10 * small_ids
    # ... while groups grow with images x groups: 10 x the images and 4.3 x
    # the groups (104 / 24) cost over 30 x as much.
    assert big_groups > 30 * small_groups
    assert 2600 < big_groups < 3300
    assert big_groups > 25 * big_ids
    # global costs one call, not one per image and group.
    assert charged(big, GLOBAL) < 2 * big_ids
    # One image's groups: every group's mappings, but one image to match.
    one = charged(big, '{ image(where: {id: "synthetic-00007"}) { id groups { id } } }')
    assert 15 < one < 45


def test_wall_time_includes_the_charge_one_request_at_a_time(start_emulator):
    emu = start_emulator("--images", "200", "--groups", "20")  # the real scale
    b, _, wall = cost_of(emu, MEMBERSHIP)
    charged = b["charged_ms"] / 1000.0
    assert charged > 0.06  # about 90 ms
    assert wall >= charged
    # Answered from the emulator's response cache, it still takes the time.
    b, _, wall = cost_of(emu, MEMBERSHIP)
    assert wall >= b["charged_ms"] / 1000.0 > 0.06
    # Listing names is cheap in comparison.
    b, _, _ = cost_of(emu, SYSTEM_IDS)
    assert b["charged_ms"] < charged * 1000 / 4
    # The real server is one process: charges do not overlap.
    emu.reset_stats()
    replies = []

    def one():
        replies.append(emu.gql(MEMBERSHIP, timeout=60))

    threads = [threading.Thread(target=one) for _ in range(3)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wall = time.monotonic() - began
    assert len(replies) == 3 and all(r.status == 200 and not r.errors for r in replies)
    assert wall >= 3 * charged * 0.99


def test_cost_model_off_counts_but_charges_nothing(start_emulator):
    emu = start_emulator("--images", "2000", "--groups", "100", "--cost-model", "off")
    b, _, wall = cost_of(emu, MEMBERSHIP)
    assert b["keycloak_calls"] == 207 and b["charged_ms"] == 0
    assert wall < 2.0  # the model would charge about 3 s
    assert emu.requests()[-1]["cost"] == {"keycloak_calls": 207, "kubernetes_reads": 1,
                                          "charged_ms": 0}


def test_cost_options_are_checked(start_emulator):
    for bad in (["--cost-model", "maybe"], ["--cost-scale", "-1"], ["--cost-scale", "nan"],
                ["--groups", "-2"]):
        with pytest.raises(RuntimeError):
            start_emulator(*bad, startup_timeout=10)


# ------------------------------------------------- /-/stats and /-/requests


def test_stats_backend_by_op_requests_cost_and_reset(start_emulator):
    emu = start_emulator("--images", "20", "--groups", "5", "--cost-scale", "0.5")
    assert backend(emu) == {"keycloak_calls": 0, "kubernetes_reads": 0, "charged_ms": 0,
                            "by_op": {}}
    stats = emu.stats()
    assert set(stats) == {"total", "operations", "connections", "logs", "backend"}
    emu.ok("{ images { id groups { id } } groups { id } }")
    emu.ok(IDS)
    emu.gql("{ nope }")  # fails validation: nothing runs, nothing is charged
    b = backend(emu)
    # images { groups }: 17 calls; then groups: groups.find memoised, and
    # findOne of the 2 of its 9 groups that no image is in.
    assert b["keycloak_calls"] == 19
    assert b["kubernetes_reads"] == 2
    assert set(b["by_op"]) == {"images", "groups"}
    images, groups = b["by_op"]["images"], b["by_op"]["groups"]
    assert images["requests"] == 2 and groups["requests"] == 1
    assert images["keycloak_calls"] + groups["keycloak_calls"] == b["keycloak_calls"]
    assert (images["keycloak_calls"], groups["keycloak_calls"]) == (17, 2)
    assert images["charged_ms"] + groups["charged_ms"] == pytest.approx(b["charged_ms"],
                                                                       abs=0.01)
    assert all(set(op) == {"requests", "keycloak_calls", "kubernetes_reads", "charged_ms"}
               for op in b["by_op"].values())

    recorded = emu.requests()
    assert [r["cost"]["keycloak_calls"] for r in recorded] == [b["keycloak_calls"], 0, 0]
    assert [r["cost"]["kubernetes_reads"] for r in recorded] == [1, 1, 0]
    assert recorded[2]["cost"]["charged_ms"] == 0
    assert sum(r["cost"]["charged_ms"] for r in recorded) == pytest.approx(b["charged_ms"],
                                                                          abs=0.01)
    # faulted requests and the log endpoint cost nothing
    emu.fault("http503", count=1)
    assert emu.gql(MEMBERSHIP).status == 503
    assert emu.requests()[-1]["cost"] == {"keycloak_calls": 0, "kubernetes_reads": 0,
                                          "charged_ms": 0}

    assert emu.reset_stats() == {"total": 0, "operations": {}, "connections": 0, "logs": 0}
    assert backend(emu) == {"keycloak_calls": 0, "kubernetes_reads": 0, "charged_ms": 0,
                            "by_op": {}}
    assert emu.requests() == []


# ------------------------------------------------------------- /-/touch-all


def test_touch_all_changes_every_image(start_emulator):
    emu = start_emulator("--images", "30", "--cost-scale", "0.1")
    listing = "{ images { id description displayName } }"
    before = {i["id"]: i for i in emu.ok(listing)["images"]}
    assert len(before) == 34
    emu.ok(listing)  # now in the emulator's response cache

    assert emu.control("touch-all", {"field": "description", "suffix": " [t1]"}) == \
        {"changed": 34}
    after = {i["id"]: i for i in emu.ok(listing)["images"]}
    assert set(after) == set(before)
    for image_id, image in after.items():
        assert image["description"] == (before[image_id]["description"] or "") + " [t1]"
        assert image["displayName"] == before[image_id]["displayName"]
    assert emu.image_state("synthetic-00007")["spec"]["description"] == " [t1]"

    # defaults: the description, a counter as suffix
    assert emu.control("touch-all", {}) == {"changed": 34}
    tf1 = emu.ok('{ image(where: {id: "tf-1"}) { description } }')["image"]
    assert tf1["description"] == "TensorFlow 1.15.4 (Python 3.7) [t1] (touch 2)"

    assert emu.control("touch-all", {"field": "displayName", "suffix": "!"}) == {"changed": 34}
    names = {i["id"]: i["displayName"] for i in emu.ok(listing)["images"]}
    assert names["synthetic-00011"] == "!"  # an empty displayName was stored there
    assert names["tf-1"] == "TensorFlow 1.15.4 (Python 3.7)!"

    # nothing to change, nothing changed
    assert emu.control("touch-all", {"suffix": ""}) == {"changed": 0}
    # it is not a GraphQL request
    assert emu.stats()["total"] == 5
    for bad in ({"field": "url"}, {"suffix": 3}):
        reply = emu.request("POST", "/-/touch-all", json.dumps(bad).encode(),
                            {"Content-Type": "application/json"})
        assert reply.status == 400 and "error" in reply.json


def test_touch_all_is_saved_in_the_state_file(start_emulator, tmp_path):
    path = str(tmp_path / "state.json")
    emu = start_emulator("--images", "3", "--state", path)
    assert emu.control("touch-all", {"suffix": " (saved)"}) == {"changed": 7}
    emu.stop()
    again = start_emulator("--state", path)
    descriptions = [i["description"] for i in again.ok(IDS.replace("id", "id description"))
                    ["images"]]
    assert all(d.endswith(" (saved)") for d in descriptions)


# ------------------------------------------------------------------ --groups


def test_groups_option_seeds_groups_and_memberships(start_emulator):
    emu = start_emulator("--images", "200", "--groups", "20", "--cost-model", "off")
    groups = emu.ok("{ groups { id name displayName } }")["groups"]
    synthetic = [g for g in groups if g["name"].startswith("synthetic-group-")]
    assert len(synthetic) == 20 and len(groups) == 24
    assert synthetic[0] == {"id": "5e0a0000-0000-4000-8000-000000000001",
                            "name": "synthetic-group-001", "displayName": "Synthetic Group 1"}
    images = emu.ok(MEMBERSHIP)["images"]
    synthetic_ids = {g["id"] for g in synthetic}
    per_image = [len([g for g in i["groups"] if g["id"] in synthetic_ids])
                 for i in images if i["id"].startswith("synthetic-")]
    assert len(per_image) == 200 and set(per_image) == {0, 1, 2, 3}
    assert 200 < sum(per_image) < 400
    # every synthetic group has images
    linked = {g["id"] for i in images for g in i["groups"]}
    assert synthetic_ids <= linked
    # deterministic: another emulator with the same options holds the same
    other = start_emulator("--images", "200", "--groups", "20", "--cost-model", "off")
    assert other.state()["images"] == emu.state()["images"]
    # without --groups the seed is what it was
    plain = start_emulator("--images", "200", "--cost-model", "off")
    assert len(plain.ok("{ groups { id } }")["groups"]) == 4
