"""Emulated PrimeHub server state and the semantics of every operation on it.

What PrimeHub keeps in two back ends is kept here in one place:

* Kubernetes: one ``Image`` custom resource per image (``spec`` exactly as
  stored: fields that were null are pruned, keys sorted as the API server
  re-encodes them; ``status.jobCondition`` written by the builder), and the
  build jobs.
* Keycloak: groups (the hidden *everyone* group included), users, and one realm
  role ``img:<name>`` per image whose group mappings are the image's groups.

The methods reproduce the console's resolvers step by step, including their
order of side effects, because a client only sees that order through partial
failures (a group id that does not exist after the create already happened,
the orphan role a rejected create leaves behind, ...).  JavaScript truthiness,
``undefined`` versus ``null`` and lodash semantics are spelled out where the
console's behaviour depends on them.

Thread safety: every public method takes ``self.lock`` (re-entrant); the
GraphQL layer also holds it for the whole execution of a document, so one
response always reflects one state.
"""

import copy
import json
import math
import os
import re
import tempfile
import threading
import uuid

from . import builds as buildlib
from .seed import EVERYONE_GROUP_ID, ROLE_PREFIX, _group, initial_state


class ApiError(Exception):
    """An error as the console's formatError emits it: message + code."""

    def __init__(self, message, code="INTERNAL_SERVER_ERROR"):
        Exception.__init__(self, message)
        self.message = message
        self.code = code


class _Undefined(object):
    """JavaScript ``undefined`` (an absent key), as opposed to ``null``."""

    def __repr__(self):
        return "undefined"

    def __bool__(self):
        return False


UNDEF = _Undefined()

NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
RFC1123_TEXT = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                "characters, '-' or '.', and must start and end with an alphanumeric "
                "character (e.g. 'example.com', regex used for validation is "
                "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")

PAGE_SIZE = 10


# ------------------------------------------------------------- JS helpers


def truthy(value):
    """JavaScript truthiness for the JSON-ish values that occur here."""
    if value is UNDEF or value is None or value is False:
        return False
    if isinstance(value, str):
        return value != ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value != 0 and not (isinstance(value, float) and math.isnan(value))
    return True


def is_empty(value):
    """lodash isEmpty for the values that occur here."""
    if value is UNDEF or value is None:
        return True
    if isinstance(value, (str, list, dict)):
        return len(value) == 0
    return True  # numbers and booleans are "empty" to lodash


def js_string(value):
    """String(value) as JavaScript would coerce it in ``"x".includes(value)``."""
    if value is None:
        return "null"
    if value is UNDEF:
        return "undefined"
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


def js_slice(rows, start, end):
    """Array.prototype.slice with JavaScript's negative-index rules."""
    n = len(rows)
    start = max(n + start, 0) if start < 0 else min(start, n)
    end = max(n + end, 0) if end < 0 else min(end, n)
    return rows[start:end] if end > start else []


def sorted_keys(value):
    """The API server re-encodes objects with sorted keys (Go maps)."""
    if isinstance(value, dict):
        return {k: sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sorted_keys(v) for v in value]
    return value


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: null deletes, objects merge, rest replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is UNDEF:
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            result[key] = merge_patch(result.get(key), value)
        else:
            result[key] = copy.deepcopy(value)
    return result


def prune_nulls(value):
    """Kubernetes drops null (and, here, undefined) fields of a structural CRD."""
    if isinstance(value, dict):
        return {k: prune_nulls(v) for k, v in value.items() if v is not None and v is not UNDEF}
    if isinstance(value, list):
        return [prune_nulls(v) for v in value]
    return value


# ------------------------------------------------------ filter / paginate


def _order_key(value, none_is_undefined):
    """lodash compareAscending: values < null < undefined."""
    if value is UNDEF or (value is None and none_is_undefined):
        return (2, 0)
    if value is None:
        return (1, 0)
    return (0, value)


def js_filter(rows, where, order, search_fields=None, none_is_undefined=True):
    """console src/resolvers/utils.ts ``filter`` (rows are dicts).

    Quirks kept: keys are applied in input-type field order; ``id: null``
    matches nothing; ``X_contains: null`` looks for the text "null"; ``search``
    is ignored inside ``_or`` (no search fields are passed down) and when
    empty; ``_or`` needs two or more conditions and returns the union in
    condition order, so it can reorder rows."""
    if not is_empty(where):
        for field, value in where.items():
            if field == "id":
                rows = [r for r in rows if r.get("id", UNDEF) == value and value is not None]
            elif field == "search":
                if not search_fields or not truthy(value):
                    continue
                needle = value.lower()
                rows = [r for r in rows if any(
                    isinstance(r.get(f), str) and r.get(f) and needle in r.get(f).lower()
                    for f in search_fields)]
            elif "_contains" in field:
                name = field.replace("_contains", "", 1)
                needle = js_string(value)
                rows = [r for r in rows
                        if isinstance(r.get(name), str) and r.get(name) and needle in r.get(name)]
            elif "_or" in field:
                conditions = value
                if conditions and len(conditions) > 1:
                    seen = set()
                    union = []
                    for condition in conditions:
                        for row in js_filter(rows, condition, None, None, none_is_undefined):
                            if id(row) not in seen:
                                seen.add(id(row))
                                union.append(row)
                    rows = union
    if not is_empty(order):
        key = next(iter(order))
        direction = order[key]
        if direction not in ("asc", "desc"):
            raise ApiError("order value (%s) not valid. Should be 'asc' or 'desc'"
                           % js_string(direction))
        rows = sorted(rows, key=lambda r: _order_key(r.get(key, UNDEF), none_is_undefined),
                      reverse=(direction == "desc"))
    return rows


def extract_pagination(args):
    return {k: args[k] for k in ("last", "first", "before", "after", "page") if k in args}


def numbered_paginate(rows, page):
    if not rows:
        return {"totalPage": 1, "currentPage": 1, "rows": rows}
    total = int(math.ceil(len(rows) / float(PAGE_SIZE)))
    offset = ((page if page is not None else 0) - 1) * PAGE_SIZE  # JS: (null - 1) * 10
    return {"totalPage": total, "currentPage": page,
            "rows": js_slice(rows, offset, offset + PAGE_SIZE)}


def _js_int(value):
    return 0 if value is None else int(value)


def cursor_paginate(rows, pagination):
    if not pagination:
        return rows
    if "before" in pagination:
        before = pagination["before"]
        out = []
        for row in rows:
            if row["id"] == before:
                break
            out.append(row)
        rows = out
    if "after" in pagination:
        after = pagination["after"]
        out = []
        for row in reversed(rows):
            if row["id"] == after:
                break
            out.append(row)
        rows = list(reversed(out))
    if "first" in pagination:
        n = max(_js_int(pagination["first"]), 0)
        rows = rows[:n]
    if "last" in pagination:
        n = max(_js_int(pagination["last"]), 0)
        rows = rows[len(rows) - n:] if n else []
    return rows


def paginate(rows, pagination):
    if "page" in pagination:
        return numbered_paginate(rows, pagination["page"])["rows"]
    return cursor_paginate(rows, pagination)


def to_relay(rows, pagination):
    """Connection object.  With ``page`` only currentPage/totalPage are set, so
    selecting hasNextPage/hasPreviousPage then fails as non-null."""
    if "page" in pagination:
        result = numbered_paginate(rows, pagination["page"])
        return {"edges": [{"cursor": r["id"], "node": r} for r in result["rows"]],
                "pageInfo": {"totalPage": result["totalPage"],
                             "currentPage": result["currentPage"]}}
    if not pagination:
        return {"edges": [{"cursor": r["id"], "node": r} for r in rows],
                "pageInfo": {"hasNextPage": False, "hasPreviousPage": False,
                             "startCursor": rows[0]["id"] if rows else None,
                             "endCursor": rows[-1]["id"] if rows else None}}
    paged = cursor_paginate(rows, pagination)
    return {"edges": [{"cursor": r["id"], "node": r} for r in paged],
            "pageInfo": {
                "hasNextPage": bool(rows) and bool(paged) and paged[-1]["id"] != rows[-1]["id"],
                "hasPreviousPage": bool(rows) and bool(paged) and paged[0]["id"] != rows[0]["id"],
                "startCursor": paged[0]["id"] if paged else None,
                "endCursor": paged[-1]["id"] if paged else None}}


# ------------------------------------------------------------------ store


class Store(object):
    """The emulated server.  See the module docstring."""

    def __init__(self, base_url, errors="v3", clock=None, state_file=None,
                 synthetic_images=0, synthetic_groups=0):
        self.lock = threading.RLock()
        self.base_url = base_url.rstrip("/")
        self.errors = errors
        self.clock = clock or buildlib.Clock("real")
        self.state_file = state_file
        self.version = 0
        self.touches = 0
        state = None
        if state_file and os.path.exists(state_file):
            try:
                with open(state_file, "r", encoding="utf-8") as fh:
                    state = json.load(fh)
                if not isinstance(state, dict) or state.get("format") != 1:
                    raise ValueError("not a primehub-emulator state file")
            except ValueError as exc:
                raise SystemExit("primehub-emulator: cannot load state %s: %s"
                                 % (state_file, exc))
            self.clock.restore(state.get("clock"))
        if state is None:
            state = initial_state(synthetic_images, synthetic_groups)
        self._load(state)
        if state_file and not os.path.exists(state_file):
            self.save()

    # ---------------------------------------------------------- persistence

    def _load(self, state):
        self.images = {name: {"spec": img["spec"], "status": img.get("status")}
                       for name, img in state["images"].items()}
        self.roles = {name: list(groups) for name, groups in state["roles"].items()}
        self.groups = sorted(state["groups"], key=lambda g: g["name"])
        self.secrets = list(state["secrets"])
        self.users = list(state["users"])
        self.jobs = dict(state.get("builds") or {})
        self.active_jobs = {n for n, j in self.jobs.items() if j["phase"] not in buildlib.TERMINAL}
        self._sorted_names = None
        self._mapped = {}
        self._group_views = {}

    def snapshot(self):
        """The persisted layout (also what /-/state is built from)."""
        with self.lock:
            return {
                "format": 1,
                "clock": self.clock.now(),
                "images": self.images,
                "roles": self.roles,
                "groups": self.groups,
                "secrets": self.secrets,
                "users": self.users,
                "builds": self.jobs,
            }

    def save(self):
        """Write the state file atomically (temp file + rename)."""
        if not self.state_file:
            return
        with self.lock:
            data = json.dumps(self.snapshot(), ensure_ascii=False, separators=(",", ":"))
        directory = os.path.dirname(os.path.abspath(self.state_file))
        fd, tmp = tempfile.mkstemp(prefix=".primehub-emulator-", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.state_file)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def _changed(self, *names):
        """Record a state change: caches, version (for the response cache), file."""
        for name in names:
            self._mapped.pop(name, None)
        self._sorted_names = None if names else self._sorted_names
        self.version += 1

    def commit(self):
        self.save()

    def set_graphql_host(self, base_url):
        """PrimeHub's GRAPHQL_HOST: the base every ``logEndpoint`` is built
        from (it need not be this server: a proxy, another host)."""
        with self.lock:
            self.base_url = base_url.rstrip("/")
            self._mapped = {}
            self.version += 1

    def inject_images(self, images):
        """Store images as a broken or hostile server would hold them: no
        name rule, no schema, ``spec`` kept as given, no groups, no build."""
        with self.lock:
            for image in images:
                name = image["name"]
                self.images[name] = {"spec": copy.deepcopy(image.get("spec") or {}),
                                     "status": None}
                self.roles[ROLE_PREFIX + name] = []
                self.jobs.pop(name, None)
                self.active_jobs.discard(name)
                self._changed(name)
            self.commit()

    def add_group(self, name, display_name=None):
        """A group made in Keycloak (PrimeHub's admin UI): a new id, no
        members, no images.  Returns it, or None when the name is taken."""
        with self.lock:
            if self.group_by_name(name):
                return None
            group = _group(str(uuid.uuid4()), name, display_name, [])
            self.groups = sorted(self.groups + [group], key=lambda g: g["name"])
            self._group_views.pop(group["id"], None)
            self.commit()
            return group

    TOUCH_FIELDS = ("description", "displayName")

    def touch_all(self, field="description", suffix=None):
        """Change every image at once, as ``updateImage(data: {FIELD: old +
        suffix})`` on each would (a merge patch of that spec field; nothing
        else moves: PrimeHub sets ``imageSpec.updateTime`` only on create and
        rebuild).  ``suffix`` defaults to " (touch N)", N counting the calls.
        Returns how many images changed (none for an empty suffix)."""
        with self.lock:
            self.touches += 1
            if suffix is None:
                suffix = " (touch %d)" % self.touches
            changed = []
            for name in self.sorted_names() if suffix else ():
                img = self.images[name]
                old = img["spec"].get(field)
                value = (old if isinstance(old, str) else "") + suffix
                img["spec"] = sorted_keys(merge_patch(img["spec"], {field: value}))
                changed.append(name)
            if changed:
                self._changed(*changed)
                self.commit()
            return len(changed)

    # ------------------------------------------------------------- views

    def state_view(self):
        """GET /-/state: what the server holds, for tests to check."""
        with self.lock:
            self.tick()
            everyone = EVERYONE_GROUP_ID
            images = {}
            for name in self.sorted_names():
                img = self.images[name]
                linked = self.roles.get(ROLE_PREFIX + name) or []
                images[name] = {
                    "spec": img["spec"],
                    "status": img["status"]["jobCondition"] if img["status"] else None,
                    "groups": [g["id"] for g in self.groups
                               if g["id"] != everyone and g["id"] in linked],
                    "global": everyone in linked,
                }
            return {
                "images": images,
                "groups": self.groups,
                "secrets": self.secrets,
                "roles": list(self.roles),
                "clock": self.clock.now(),
            }

    def sorted_names(self):
        """Kubernetes list order: by object name."""
        if self._sorted_names is None:
            self._sorted_names = sorted(self.images)
        return self._sorted_names

    def logical_error(self, name):
        if self.errors == "v4":
            return "HTTP request failed"
        return 'images.primehub.io "%s" not found' % name

    def _not_found(self, name):
        return ApiError(self.logical_error(name), "RESOURCE_NOT_FOUND")

    def map_image(self, name, spec, status):
        """console ``mapping()`` of an Image resource (global/groups are
        resolved separately, from the roles, when selected)."""
        spec_view = dict(spec)
        image_spec = None
        if spec.get("imageSpec") is not None:
            image_spec = dict(spec["imageSpec"])
            if image_spec.get("packages") is not None:
                stored = image_spec["packages"]
                filled = {"apt": [], "pip": [], "conda": []}
                for key in filled:
                    if truthy(stored.get(key, UNDEF)):
                        filled[key] = stored[key]
                # imageSpecMapping() rewrites the object in place, so the raw
                # ``spec`` field shows the filled packages too.
                image_spec["packages"] = filled
            spec_view["imageSpec"] = image_spec
        condition = None
        if status:
            condition = status.get("jobCondition")
        return {
            "id": name,
            "name": name,
            "displayName": spec.get("displayName") if truthy(spec.get("displayName")) else name,
            "description": spec.get("description"),
            "type": spec.get("type"),
            "url": spec.get("url"),
            "urlForGpu": spec.get("urlForGpu"),
            "useImagePullSecret": spec.get("pullSecret"),
            "groupName": spec.get("groupName"),
            "spec": spec_view,
            "isReady": truthy(spec.get("url")),
            "imageSpec": image_spec,
            "logEndpoint": "%s/api/logs/images/%s/job" % (self.base_url, name),
            "jobStatus": condition,
        }

    def mapped(self, name):
        """Cached mapping of the stored image (read-only for callers)."""
        view = self._mapped.get(name)
        if view is None:
            img = self.images[name]
            view = self.map_image(name, img["spec"], img["status"])
            self._mapped[name] = view
        return view

    def group_view(self, group):
        view = self._group_views.get(group["id"])
        if view is None:
            view = {k: v for k, v in group.items() if k not in ("admins", "members")}
            view["admins"] = ",".join(group.get("admins") or [])
            view["mlflow"] = {"trackingUri": None, "uiUrl": None,
                              "trackingEnvs": [], "artifactEnvs": []}
            view["writable"] = None
            view["deploymentsUsage"] = 0
            self._group_views[group["id"]] = view
        return view

    def group_by_id(self, group_id):
        for group in self.groups:
            if group["id"] == group_id:
                return group
        return None

    def group_by_name(self, name):
        for group in self.groups:
            if group["name"] == name:
                return group
        return None

    def user_view(self, user):
        return dict(user)

    def user_by_id(self, user_id):
        for user in self.users:
            if user["id"] == user_id:
                return user
        return None

    def is_group_admin(self, username, group_name):
        group = self.group_by_name(group_name) if group_name else None
        return bool(group) and username in (group.get("admins") or [])

    def is_group_member(self, user_id, group_id):
        group = self.group_by_id(group_id)
        return bool(group) and user_id in (group.get("members") or [])

    # ----------------------------------------------------------- queries

    def image_global(self, name):
        return EVERYONE_GROUP_ID in (self.roles.get(ROLE_PREFIX + name) or ())

    def image_groups(self, name):
        linked = self.roles.get(ROLE_PREFIX + name)
        if not linked:
            return []
        return [self.group_view(g) for g in self.groups
                if g["id"] != EVERYONE_GROUP_ID and g["id"] in linked]

    def get_image(self, name):
        with self.lock:
            if not isinstance(name, str) or name not in self.images:
                return None
            return self.mapped(name)

    def list_images(self, mode, where, order):
        """Mapped rows in list order, then the mode filter, then ``filter``."""
        with self.lock:
            rows = [self.mapped(n) for n in self.sorted_names()]
            if mode == "SYSTEM_ONLY":
                rows = [r for r in rows if is_empty(r["groupName"])]
            elif mode == "GROUP_ONLY":
                rows = [r for r in rows if not is_empty(r["groupName"])]
            if is_empty(where) and is_empty(order):
                return rows
            return js_filter(rows, where, order,
                             ["name", "displayName", "description", "type"])

    def group_images(self, group_id, mode):
        """Group.images: the images whose role is mapped to this group, in
        role order, by mode."""
        with self.lock:
            out = []
            for role, linked in self.roles.items():
                if group_id not in linked or not role.startswith(ROLE_PREFIX):
                    continue
                name = role[len(ROLE_PREFIX):]
                if name not in self.images:
                    continue
                view = self.mapped(name)
                is_group_image = truthy(view["groupName"])
                if mode == "SYSTEM_ONLY" and is_group_image:
                    continue
                if mode == "GROUP_ONLY" and not is_group_image:
                    continue
                out.append(view)
            return out

    def list_groups(self, where, order):
        """console group.ts ``listQuery``.

        ``where.id`` short-cuts to a single lookup that can return the
        everyone group and ignores the other filters.  Otherwise everyone is
        hidden and, unless ``orderBy`` or ``search`` is given, filters run on
        raw Keycloak groups that have no displayName, so
        ``displayName_contains`` matches nothing."""
        with self.lock:
            id_where = where.get("id") if isinstance(where, dict) else None
            if truthy(id_where):
                group = self.group_by_id(id_where)
                return [self.group_view(group)] if group else []
            groups = [g for g in self.groups if g["id"] != EVERYONE_GROUP_ID]
            search = where.get("search", UNDEF) if isinstance(where, dict) else UNDEF
            if is_empty(order) and is_empty(search):
                raw = [{"id": g["id"], "name": g["name"], "path": "/" + g["name"],
                        "subGroups": []} for g in groups]
                kept = {r["id"] for r in js_filter(raw, where, order, ["name", "displayName"])}
                return [self.group_view(g) for g in groups if g["id"] in kept]
            views = [self.group_view(g) for g in groups]
            return js_filter(views, where, order, ["name", "displayName"],
                             none_is_undefined=False)

    def get_group(self, group_id):
        with self.lock:
            group = self.group_by_id(group_id)
            return self.group_view(group) if group else None

    def group_members(self, group_id):
        with self.lock:
            group = self.group_by_id(group_id)
            if not group:
                return []
            return [self.user_view(u) for u in self.users if u["id"] in group["members"]]

    def user_groups(self, user_id, effective):
        with self.lock:
            return [self.group_view(g) for g in self.groups
                    if user_id in g.get("members", [])
                    and not (effective and g["id"] == EVERYONE_GROUP_ID)]

    def list_secrets(self, where, order):
        """console secret.ts: ``ifDockerConfigJson`` keeps registry secrets;
        ``search`` looks at name only (the console misspells displayName)."""
        with self.lock:
            docker_only = isinstance(where, dict) and truthy(where.get("ifDockerConfigJson"))
            rows = [dict(s) for s in self.secrets
                    if not docker_only or s["type"] == "kubernetes"]
            return js_filter(rows, where, order, ["name", "dispalyName"],
                             none_is_undefined=False)

    def get_secret(self, secret_id):
        with self.lock:
            for secret in self.secrets:
                if secret["id"] == secret_id:
                    return dict(secret)
            return None

    # ------------------------------------------------------- authorisation

    def _authorise(self, data, user):
        """console image.ts ``adminAuthorization``."""
        if user["isAdmin"]:
            return
        if data and truthy(data.get("groupName", UNDEF)) and \
                self.is_group_admin(user["username"], data.get("groupName")):
            return
        raise ApiError("Not authorise", "NOT_AUTH")

    # --------------------------------------------------------- kubernetes

    def _k8s_validate(self, name, spec):
        """What the API server enforces on an Image: the name and the CRD's
        structural schema (baseImage required, list items strings)."""
        causes = []
        if name == "":
            causes.append("metadata.name: Required value: name or generateName is required")
        else:
            quoted = json.dumps(name, ensure_ascii=False)
            if len(name) > 253:
                causes.append("metadata.name: Invalid value: %s: must be no more than 253 "
                              "characters" % quoted)
            if not NAME_RE.match(name):
                causes.append("metadata.name: Invalid value: %s: %s" % (quoted, RFC1123_TEXT))
        image_spec = spec.get("imageSpec")
        if isinstance(image_spec, dict):
            if image_spec.get("baseImage") is None:
                causes.append("spec.imageSpec.baseImage: Required value")
            packages = image_spec.get("packages")
            if isinstance(packages, dict):
                for key in ("apt", "conda", "pip"):
                    for index, item in enumerate(packages.get(key) or []):
                        if not isinstance(item, str):
                            path = "spec.imageSpec.packages.%s[%d]" % (key, index)
                            causes.append('%s: Invalid value: "null": %s in body must be of '
                                          'type string: "null"' % (path, path))
        if not causes:
            return None
        detail = causes[0] if len(causes) == 1 else "[" + ", ".join(causes) + "]"
        return 'Image.primehub.io %s is invalid: %s' % (json.dumps(name, ensure_ascii=False),
                                                         detail)

    # ---------------------------------------------------------- keycloak

    def _map_role(self, role, group_id):
        """addRealmRoleMappings: 404 for a group that does not exist."""
        if self.group_by_id(group_id) is None:
            return False
        linked = self.roles.setdefault(role, [])
        if group_id not in linked:
            linked.append(group_id)
        return True

    def _unmap_role(self, role, group_id):
        if self.group_by_id(group_id) is None:
            return False
        linked = self.roles.get(role)
        if linked and group_id in linked:
            linked.remove(group_id)
        return True

    def _mutate_relation(self, role, resource, allow_disconnect):
        """console utils.ts ``mutateRelation``: all connects in parallel, then
        all disconnects; the first 404 fails the call after the others ran."""
        if is_empty(resource):
            return
        connect = resource.get("connect")
        if not is_empty(connect) and isinstance(connect, list):
            results = [self._map_role(role, where["id"]) for where in connect]
            if not all(results):
                raise ApiError("Request failed with status code 404")
        disconnect = resource.get("disconnect")
        if allow_disconnect and not is_empty(disconnect) and isinstance(disconnect, list):
            results = [self._unmap_role(role, where["id"]) for where in disconnect]
            if not all(results):
                raise ApiError("Request failed with status code 404")

    # --------------------------------------------------------- mutations

    def create_image(self, data, user):
        """console crd.ts ``create`` + image.ts ``createMapping``/``onCreate``."""
        with self.lock:
            try:
                return self._create_image(data, user)
            finally:
                self.commit()

    def _create_image(self, data, user):
        name = data.get("name")
        get = data.get
        image_type = get("type") if truthy(get("type", UNDEF)) else "both"
        url = get("url", UNDEF)
        if image_type == "both":
            url_for_gpu = get("urlForGpu") if truthy(get("urlForGpu", UNDEF)) else url
        else:
            url_for_gpu = url
        spec = {
            "displayName": get("displayName") if truthy(get("displayName", UNDEF)) else name,
            "description": get("description", UNDEF),
            "type": image_type,
            "url": url,
            "urlForGpu": url_for_gpu,
            "pullSecret": "" if get("useImagePullSecret") is None else get("useImagePullSecret"),
            "groupName": get("groupName"),
        }
        if get("imageSpec") is not None:
            spec["imageSpec"] = copy.deepcopy(get("imageSpec"))

        self._authorise(data, user)

        role = ROLE_PREFIX + name
        if role in self.roles:
            raise ApiError("Resource already exist", "RESOURCE_CONFLICT")
        self.roles[role] = []
        self._changed()

        stored = sorted_keys(prune_nulls(spec))
        invalid = self._k8s_validate(name, stored)
        if invalid:
            raise ApiError(invalid if self.errors == "v3" else "HTTP request failed")
        if name in self.images:
            raise ApiError('images.primehub.io "%s" already exists' % name
                           if self.errors == "v3" else "HTTP request failed")
        self.images[name] = {"spec": stored, "status": None}
        self.jobs.pop(name, None)
        self.active_jobs.discard(name)
        self._changed(name)

        # onCreate: everyone first, then the groups, then the build trigger.
        if truthy(get("global", UNDEF)):
            self._map_role(role, EVERYONE_GROUP_ID)
            self._changed()
        try:
            self._mutate_relation(role, get("groups"), allow_disconnect=False)
        finally:
            self._changed()
        response_spec = stored
        if "imageSpec" in stored:
            now = self.clock.now()
            stored["imageSpec"]["cancel"] = False
            stored["imageSpec"]["updateTime"] = buildlib.iso_time(self.clock.stamp())
            stored["imageSpec"] = sorted_keys(stored["imageSpec"])
            response_spec = copy.deepcopy(stored)
            self._start_build(name, now)
        return self.map_image(name, response_spec, None)

    def update_image(self, name, data, user):
        """console crd.ts ``update`` + image.ts ``updateMapping``/``customUpdate``/
        ``onUpdate``: a JSON merge patch of spec, then the relations."""
        with self.lock:
            try:
                return self._update_image(name, data, user)
            finally:
                self.commit()

    def _update_image(self, name, data, user):
        role = ROLE_PREFIX + name
        self._authorise(data, user)
        if name not in self.images:
            raise self._not_found(name)
        row = self.images[name]["spec"]
        get = data.get

        u = get("url", UNDEF)
        g = get("urlForGpu", UNDEF)
        t = get("type", UNDEF)
        mapping_type = t if truthy(t) else "both"
        big_g = (g if truthy(g) else u) if mapping_type == "both" else u
        if t is not UNDEF and t is not None:
            url_in = u if truthy(u) else row.get("url", UNDEF)
            gpu_in = big_g if truthy(big_g) else row.get("urlForGpu", UNDEF)
            new_url = url_in
            new_gpu = (gpu_in if truthy(gpu_in) else url_in) if t == "both" else url_in
        else:
            new_url = row.get("url", UNDEF) if is_empty(u) else u
            if row.get("type", UNDEF) != "both":
                new_gpu = new_url
            else:
                new_gpu = row.get("urlForGpu", UNDEF) if is_empty(big_g) else big_g

        patch = {
            "displayName": get("displayName", UNDEF),
            "description": get("description", UNDEF),
            "type": t,
            "url": new_url,
            "urlForGpu": new_gpu,
            "pullSecret": get("useImagePullSecret"),
            "groupName": get("groupName"),
        }
        patched = sorted_keys(merge_patch(row, patch))
        self.images[name]["spec"] = patched
        self._changed(name)
        response_spec = copy.deepcopy(patched)
        response_status = copy.deepcopy(self.images[name]["status"])

        if role not in self.roles:
            # The console reads the role first and dereferences it here.
            raise ApiError("Cannot read property 'id' of undefined")
        if "global" in data:
            if truthy(data["global"]):
                self._map_role(role, EVERYONE_GROUP_ID)
            else:
                self._unmap_role(role, EVERYONE_GROUP_ID)
            self._changed()
        try:
            self._mutate_relation(role, get("groups"), allow_disconnect=True)
        finally:
            self._changed()
        return self.map_image(name, response_spec, response_status)

    def delete_image(self, name, user):
        """console crd.ts ``destroy``: read, authorise against the stored
        groupName, delete the role (and so every link), delete the object."""
        with self.lock:
            try:
                if name not in self.images:
                    raise self._not_found(name)
                img = self.images[name]
                self._authorise(img["spec"], user)
                role = ROLE_PREFIX + name
                if role not in self.roles:
                    raise ApiError("Request failed with status code 404")
                del self.roles[role]
                self._changed()
                del self.images[name]
                self.jobs.pop(name, None)
                self.active_jobs.discard(name)
                self._changed(name)
                return self.map_image(name, img["spec"], img["status"])
            finally:
                self.commit()

    def rebuild_image(self, name, data):
        """console image.ts ``rebuildImage``.

        The response carries ``data`` as the new imageSpec (package lists left
        out show as []), while the merge patch the server fires without
        waiting keeps stored lists that ``data`` left out.  A patch that the API
        server would reject (no baseImage) is lost silently."""
        with self.lock:
            try:
                if name not in self.images:
                    raise ApiError("failed to rebuild image", "INTERNAL_ERROR")
                img = self.images[name]
                now = self.clock.now()
                new_spec = copy.deepcopy(data)
                new_spec["cancel"] = False
                new_spec["updateTime"] = buildlib.iso_time(self.clock.stamp())
                response_spec = copy.deepcopy(img["spec"])
                response_spec["imageSpec"] = new_spec
                response = self.map_image(name, response_spec, copy.deepcopy(img["status"]))
                patched = sorted_keys(merge_patch(img["spec"], {"imageSpec": new_spec}))
                if self._k8s_validate(name, patched) is None:
                    img["spec"] = patched
                    self._changed(name)
                    self._start_build(name, now)
                return response
            finally:
                self.commit()

    def cancel_image_build(self, name):
        """console image.ts ``cancelImageBuild``: cancel=true; plain images fail
        (the resolver dereferences the missing imageSpec)."""
        with self.lock:
            try:
                img = self.images.get(name)
                if img is None or img["spec"].get("imageSpec") is None:
                    raise ApiError("failed to cancel image build", "INTERNAL_ERROR")
                response_spec = copy.deepcopy(img["spec"])
                response_spec["imageSpec"]["cancel"] = True
                response = self.map_image(name, response_spec, copy.deepcopy(img["status"]))
                img["spec"] = sorted_keys(response_spec)
                self._changed(name)
                job = self.jobs.get(name)
                if job is not None:
                    self.tick()
                    if job["phase"] not in buildlib.TERMINAL:
                        job["phase"] = "Cancelled"
                        job["end"] = self.clock.now()
                        self.active_jobs.discard(name)
                        img["status"] = {"jobCondition": buildlib.job_condition(job)}
                        # primehub-controller deletes a cancelled build's
                        # job, and its log with it: the log endpoint then
                        # answers 400 as for an image that never built.
                        self.jobs.pop(name, None)
                        self._changed(name)
                return response
            finally:
                self.commit()

    # ------------------------------------------------------------ builds

    def _start_build(self, name, now):
        spec = self.images[name]["spec"]
        stamp = spec["imageSpec"].get("updateTime") or ""
        old = self.jobs.get(name)
        if old is not None and stamp <= old.get("updateTime", ""):
            # primehub-controller rebuilds only for an updateTime strictly
            # later than its job's; updateTime has second precision, so a
            # rebuild in the same second is ignored: the spec shows the new
            # imageSpec while the job built the old one.
            return
        job = buildlib.new_job(name, spec["imageSpec"], now)
        job["updateTime"] = stamp
        self.jobs[name] = job
        self.active_jobs.add(name)
        self.images[name]["status"] = {"jobCondition": buildlib.job_condition(job)}
        self._changed(name)

    def tick(self):
        """Let the builder catch up with the clock.  Called before every
        request is answered; cheap when no build is running."""
        if not self.active_jobs:
            return False
        with self.lock:
            now = self.clock.now()
            changed = False
            for name in sorted(self.active_jobs):
                job = self.jobs[name]
                phase = buildlib.phase_at(job, now)
                if phase == job["phase"]:
                    continue
                job["phase"] = phase
                if phase in buildlib.TERMINAL:
                    job["end"] = job["start"] + buildlib.DONE_SECONDS
                    self.active_jobs.discard(name)
                img = self.images.get(name)
                if img is not None:
                    img["status"] = {"jobCondition": buildlib.job_condition(job)}
                    if phase == "Succeeded":
                        img["spec"] = sorted_keys(merge_patch(
                            img["spec"], {"url": job["image"], "urlForGpu": job["image"],
                                          "pullSecret": buildlib.PUSH_SECRET}))
                self._changed(name)
                changed = True
            if changed:
                self.commit()
            return changed

    def advance_clock(self, seconds):
        with self.lock:
            self.clock.advance(seconds)
            self.tick()
            self.version += 1
            self.commit()
            return self.clock.now()

    def build_log(self, name):
        """(job or None, log text) for the log endpoint."""
        with self.lock:
            self.tick()
            job = self.jobs.get(name)
            if job is None:
                return None, None
            return job, buildlib.log_text(job, name, self.clock.now())
