"""What a request would cost the real PrimeHub GraphQL server: its calls to
Keycloak and reads from Kubernetes, and the time it would spend.

The console's graphql-server (primehub-console, packages/graphql-server)
answers from two back ends.  Images are Kubernetes custom resources; which
groups an image belongs to is a Keycloak fact (the image's realm role
``img:<name>`` is mapped to the groups).  So:

* ``images``, ``imagesConnection``, ``groupImagesConnection``: one Kubernetes
  list of every image; every image is mapped, whatever the mode, filter or
  page (crd.ts ``listQuery``).
* ``image(where)``: one Kubernetes get.
* ``Image.global``: the everyone group's role mappings (one Keycloak call),
  then a search of them for the image.
* ``Image.groups`` (crd.ts ``typeResolver``), for each image: the list of
  groups (``groups.find``), the role mappings of every group but everyone
  (``listRealmRoleMappings``, one call per group), a search of each group's
  mappings for the image's role, and ``groups.findOne`` for each group that
  has it.
* ``groups``: ``groups.find`` and ``groups.findOne`` per group returned
  (group.ts); ``Group.images``: the group's role mappings, then one
  Kubernetes get per image role found (crd.ts ``queryByGroup``).

The Keycloak client of a request memoises ``groups.find``,
``listRealmRoleMappings`` and ``groups.findOne`` by group, and image gets
are memoised too (cache/index.ts, app.ts ``onContext``), all for the life of
one request only.  So resolving ``groups`` on 2,000 images with 100 groups
costs about 200 Keycloak calls, not 200,000, but still 200,000 searches of a
group's mappings: that, not the calls, is where the time goes.  The Meter
below counts the same way, per HTTP request (a batch shares one context).

Time (``charged_ms``) is a linear model fitted to measurements of the
console's server code against back ends that answer at once, 2,000 images
and 100 groups (see README.md):

    BASE_MS per request that runs
  + PER_IMAGE_US per image the server maps (listed, got, or returned)
  + PER_KEYCLOAK_CALL_MS per Keycloak call
  + PER_KUBERNETES_READ_MS per Kubernetes read
  + PER_PAIR_US per (image, group) pair matched: an image searched for in a
    group's role mappings (``groups``: one pair per group; ``global``: one)

Writes to the back ends (creating a role, patching an image) are counted
neither as calls nor as reads: only what the mutation reads is.
"""

import copy

from .seed import EVERYONE_GROUP_ID, ROLE_PREFIX

BASE_MS = 2.0
PER_IMAGE_US = 38.0
PER_KEYCLOAK_CALL_MS = 0.2
PER_KUBERNETES_READ_MS = 1.4
PER_PAIR_US = 14.0


def model_ms(keycloak_calls, kubernetes_reads, images, pairs, base=1.0):
    """The unscaled time of the given work (``base``: how many BASE_MS)."""
    return (BASE_MS * base + PER_IMAGE_US * images / 1000.0
            + PER_KEYCLOAK_CALL_MS * keycloak_calls
            + PER_KUBERNETES_READ_MS * kubernetes_reads + PER_PAIR_US * pairs / 1000.0)


class CostModel(object):
    """``--cost-model on|off`` and ``--cost-scale``: what is charged (and
    slept).  Off charges nothing; the Meter still counts."""

    def __init__(self, enabled=True, scale=1.0):
        self.enabled = enabled
        self.scale = scale

    def charges(self, meter):
        """(charged ms of the request, {root field: charged ms})."""
        if not self.enabled or not meter.executed:
            return 0.0, {name: 0.0 for name in meter.by_root}
        factor = self.scale
        roots = meter.by_root
        total = model_ms(meter.keycloak_calls, meter.kubernetes_reads, meter.images,
                         meter.pairs) * factor
        share = 1.0 / len(roots) if roots else 0.0
        by_root = {name: model_ms(c[0], c[1], c[2], c[3], base=share) * factor
                   for name, c in roots.items()}
        return total, by_root


class Meter(object):
    """The back-end work of one HTTP request, memoised as the console's
    per-request caches memoise it.  Work is attributed to the root field
    being resolved (``by_root``: name -> [keycloak calls, kubernetes reads,
    images mapped, pairs matched])."""

    def __init__(self):
        self.keycloak_calls = 0
        self.kubernetes_reads = 0
        self.images = 0
        self.pairs = 0
        self.executed = False
        self.by_root = {}
        self._current = None
        self._groups_listed = False
        self._mappings = set()
        self._all_mappings = None  # count of groups once all were read
        self._found = set()
        self._images_got = set()

    # ------------------------------------------------------------ plumbing

    def fresh(self):
        return not self.executed

    def copy(self):
        return copy.deepcopy(self)

    def load(self, other):
        """Take over another meter's counts and memo (a cached answer)."""
        self.__dict__.update(copy.deepcopy(other.__dict__))

    def root(self, name):
        self.executed = True
        self._current = name
        self.by_root.setdefault(name, [0, 0, 0, 0])

    def _add(self, calls=0, reads=0, images=0, pairs=0):
        self.keycloak_calls += calls
        self.kubernetes_reads += reads
        self.images += images
        self.pairs += pairs
        row = self.by_root.get(self._current)
        if row is not None:
            row[0] += calls
            row[1] += reads
            row[2] += images
            row[3] += pairs

    def summary(self):
        return {"keycloak_calls": self.keycloak_calls,
                "kubernetes_reads": self.kubernetes_reads}

    # ------------------------------------------------- Keycloak, memoised

    def groups_find(self):
        if not self._groups_listed:
            self._groups_listed = True
            self._add(calls=1)

    def role_mappings(self, group_id):
        if group_id not in self._mappings:
            self._mappings.add(group_id)
            self._add(calls=1)

    def group_find_one(self, group_id):
        if group_id not in self._found:
            self._found.add(group_id)
            self._add(calls=1)

    def keycloak(self, calls=1):
        """Calls nothing memoises."""
        self._add(calls=calls)

    # ----------------------------------------------------------- Kubernetes

    def kubernetes(self, reads=1):
        self._add(reads=reads)

    def image_get(self, name):
        """context.getImage: memoised by name."""
        if name not in self._images_got:
            self._images_got.add(name)
            self._add(reads=1)

    def mapped(self, images=1):
        self._add(images=images)

    # ------------------------------------------------------ what resolvers do

    def list_images(self, store):
        """images / imagesConnection / groupImagesConnection: list all, map all."""
        self._add(reads=1, images=len(store.images))

    def get_image(self, found):
        self._add(reads=1, images=1 if found else 0)

    def image_global(self):
        self.role_mappings(EVERYONE_GROUP_ID)
        self._add(pairs=1)

    def image_groups(self, store, groups):
        """Image.groups of one image that turned out to be in ``groups``."""
        self.groups_find()
        if self._all_mappings is None:
            ids = [g["id"] for g in store.groups if g["id"] != EVERYONE_GROUP_ID]
            for group_id in ids:
                self.role_mappings(group_id)
            self._all_mappings = len(ids)
        self._add(pairs=self._all_mappings)
        for group in groups:
            self.group_find_one(group["id"])

    def groups_listed(self, store, returned, where, order):
        """groups / groupsConnection (group.ts ``listQuery`` and ``query``)."""
        where = where if isinstance(where, dict) else {}
        if where.get("id"):
            self.group_find_one(where["id"])
            return
        self.groups_find()
        if order or where.get("search"):
            ids = [g["id"] for g in store.groups if g["id"] != EVERYONE_GROUP_ID]
        else:
            ids = [g["id"] for g in returned]
        for group_id in ids:
            self.group_find_one(group_id)

    def group_images(self, store, group_id, rows):
        """Group.images / groupImages: the group's mappings, a get per image
        role mapped to it, the rows kept by the mode mapped."""
        self.role_mappings(group_id)
        for role, linked in store.roles.items():
            if group_id in linked and role.startswith(ROLE_PREFIX):
                self.image_get(role[len(ROLE_PREFIX):])
        self._add(images=len(rows))

    def image_mutation(self, field, data):
        """Keycloak calls and Kubernetes reads of an image mutation (the
        writes are not counted).  ``data``: its input, as given."""
        data = data if isinstance(data, dict) else {}
        links = 0
        relation = data.get("groups")
        if isinstance(relation, dict):
            for key in ("connect", "disconnect") if field == "updateImage" else ("connect",):
                if isinstance(relation.get(key), list):
                    links += len(relation[key])
        if field == "createImage":
            # roles.create, roles.findOneByName, then a mapping per link
            self._add(calls=2 + (1 if data.get("global") else 0) + links)
        elif field == "updateImage":
            # the image is read; roles.findOneByName; a mapping change per link
            self._add(calls=1 + (1 if "global" in data else 0) + links, reads=1)
        elif field == "deleteImage":
            self._add(calls=1, reads=1)  # roles.delByName; the image is read
        else:  # rebuildImage, cancelImageBuild: the image is read, then patched
            self._add(reads=1)
