"""Initial state: the sample data of the official SDK's documentation, plus synthetic
admin images for scale tests.

Everything here is deterministic so that two emulators started with the same
``--images N`` and ``--groups G`` hold byte-identical state (tests and benchmarks compare runs).
The state layout is the one ``store.Store`` persists: raw stored image specs
(as Kubernetes would hold them: null fields pruned, keys sorted), Keycloak
roles as ``role name -> [group ids]``, groups, secrets and users.
"""

EVERYONE_GROUP_ID = "15839617-c0d6-4c3b-8b7e-da3da47409ff"
GROUP_1 = "71ac1e32-65fa-4e8e-a735-ba282e3149b1"
GROUP_2 = "0fdaea59-705a-4546-8d13-2d52511342b0"
GROUP_3 = "dc6a0f50-2679-4d6b-b819-8da1b2e1b0f9"
PHUSERS = "ccdd52b8-db16-46ce-8a06-70343c79e82a"

ADMIN_USER_ID = "a7db12dc-04fa-419c-9cd7-af768575a871"
PLAIN_USER_ID = "5d4c2f7e-9b1a-4c3e-8f6d-2a1b0c9d8e7f"

ROLE_PREFIX = "img:"


def _group(gid, name, display_name, members, **extra):
    """A group as the emulator keeps it: already in the console's transformed
    shape (the Keycloak attribute encoding is not observable through the API)."""
    group = {
        "id": gid,
        "name": name,
        "displayName": display_name,
        "admins": [],
        "quotaCpu": None,
        "quotaGpu": None,
        "quotaMemory": None,
        "userVolumeCapacity": None,
        "projectQuotaCpu": None,
        "projectQuotaGpu": None,
        "projectQuotaMemory": None,
        "enabledSharedVolume": False,
        "sharedVolumeCapacity": None,
        "homeSymlink": None,
        "launchGroupOnly": None,
        "enabledDeployment": None,
        "maxDeploy": None,
        "jobDefaultActiveDeadlineSeconds": None,
        "members": list(members),
    }
    group.update(extra)
    return group


def sample_groups():
    """Keycloak returns top-level groups sorted by name; so do we."""
    both = [ADMIN_USER_ID, PLAIN_USER_ID]
    groups = [
        _group(GROUP_1, "example-group-1", "Example Group 1", [ADMIN_USER_ID],
               quotaCpu=4.0, quotaGpu=1, quotaMemory=8.0, projectQuotaCpu=8.0,
               projectQuotaGpu=2, projectQuotaMemory=16.0, sharedVolumeCapacity=None),
        _group(GROUP_2, "example-group-2", "Example Group 2", [ADMIN_USER_ID],
               quotaCpu=2.0, quotaGpu=0, quotaMemory=4.0),
        _group(GROUP_3, "example-group-3", "Example Group 3", []),
        _group(EVERYONE_GROUP_ID, "everyone", None, both),
        _group(PHUSERS, "phusers", "primehub users", both, admins=["phadmin"],
               quotaCpu=None, quotaGpu=None, projectQuotaCpu=None,
               sharedVolumeCapacity=None),
    ]
    return sorted(groups, key=lambda g: g["name"])


def sample_users():
    return [
        {"id": ADMIN_USER_ID, "username": "phadmin", "email": "dev+phadmin@infuseai.io",
         "firstName": None, "lastName": None, "isAdmin": True, "enabled": True},
        {"id": PLAIN_USER_ID, "username": "phuser", "email": "dev+phuser@infuseai.io",
         "firstName": None, "lastName": None, "isAdmin": False, "enabled": True},
    ]


def sample_secrets():
    """Kubernetes list order is by object name (= id)."""
    return sorted([
        {"id": "image-my-image-registry", "name": "my-image-registry",
         "displayName": "my-image-registry", "type": "kubernetes",
         "registryHost": "registry.gitlab.com", "username": "nobody",
         "password": "******", "secret": None},
        {"id": "gitsync-secret-dataset-secret", "name": "dataset-secret",
         "displayName": "dataset-secret", "type": "opaque", "registryHost": None,
         "username": None, "password": None, "secret": "******"},
    ], key=lambda s: s["id"])


def _spec(display_name, description, type_, url, url_for_gpu):
    spec = {"displayName": display_name, "type": type_, "url": url, "urlForGpu": url_for_gpu}
    if description is not None:
        spec["description"] = description
    return dict(sorted(spec.items()))


def sample_images():
    """(name, spec, group ids, global) for the four documented images.

    useImagePullSecret is null for all four (docs/CLI/images.md shows None),
    so no pullSecret key is stored."""
    repo = "infuseai/docker-stacks:"
    return [
        ("base-notebook",
         _spec("base-notebook", "base notebook", "both", repo + "base-notebook-63fdf50a",
               repo + "base-notebook-63fdf50a-gpu"),
         [GROUP_1, GROUP_2], False),
        ("pytorch-1",
         _spec("PyTorch 1.8.0 (Python 3.7)", "PyTorch 1.8.0 (Python 3.7)", "both",
               repo + "pytorch-notebook-v1-8-0-63fdf50a",
               repo + "pytorch-notebook-v1-8-0-63fdf50a-gpu-cuda-11"),
         [], True),
        ("tf-1",
         _spec("TensorFlow 1.15.4 (Python 3.7)", "TensorFlow 1.15.4 (Python 3.7)", "both",
               repo + "tensorflow-notebook-v1-15-4-63fdf50a",
               repo + "tensorflow-notebook-v1-15-4-63fdf50a-gpu-cuda-10"),
         [], True),
        ("tf-2",
         _spec("TensorFlow 2.5.0 (Python 3.7)", "TensorFlow 2.5.0 (Python 3.7)", "both",
               repo + "tensorflow-notebook-v2-5-0-63fdf50a",
               repo + "tensorflow-notebook-v2-5-0-63fdf50a-gpu-cuda-11"),
         [], True),
    ]


_ADJECTIVES = ["Base", "Data Science", "Deep Learning", "Minimal", "R", "Spark", "Vision", "NLP"]
_TYPES = ["cpu", "gpu", "both"]


def synthetic_images(count):
    """``count`` deterministic admin images named synthetic-00001, ...

    Varied on purpose: type cycles cpu/gpu/both; a few have no description or
    an empty displayName (which reads back as the name); about a third are
    connected to one or two sample groups; every fifth is global; none has a
    pull secret (useImagePullSecret null)."""
    out = []
    for i in range(1, count + 1):
        name = "synthetic-%05d" % i
        type_ = _TYPES[i % 3]
        url = "registry.example.com/team/image-%05d:v1" % i
        gpu = url if type_ != "both" else "registry.example.com/team/image-%05d:v1-gpu" % i
        if i % 11 == 0:
            display = ""
        else:
            display = "%s image %d" % (_ADJECTIVES[i % len(_ADJECTIVES)], i)
        description = None if i % 7 == 0 else "synthetic %s image number %d" % (type_, i)
        spec = _spec(display, description, type_, url, gpu)
        if i % 3 == 0:
            groups = [GROUP_1] if i % 2 else [GROUP_1, GROUP_2]
        else:
            groups = []
        out.append((name, spec, groups, i % 5 == 0))
    return out


_MASK64 = (1 << 64) - 1


def _mix(value):
    """A 64-bit integer hash (splitmix64): the same pseudo-random
    choices on every Python version, unlike the random module's methods."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def synthetic_group_id(index):
    return "5e0a0000-0000-4000-8000-%012d" % index


def synthetic_groups(count):
    """``count`` groups synthetic-group-001, ... (no members, no admins), for
    scale tests of group membership (``--groups N``)."""
    width = max(3, len(str(count)))
    return [_group(synthetic_group_id(i), "synthetic-group-%0*d" % (width, i),
                   "Synthetic Group %d" % i, [])
            for i in range(1, count + 1)]


def synthetic_memberships(image_index, group_count):
    """The synthetic groups (1-based indexes) synthetic image ``image_index``
    is connected to: a deterministic pseudo-random subset of 0 to 3 of them
    (1.5 on average), in increasing order."""
    if group_count <= 0:
        return []
    want = min(_mix(image_index) % 4, group_count)
    chosen = set()
    attempt = 0
    while len(chosen) < want:
        attempt += 1
        chosen.add(1 + _mix(image_index * 1000003 + attempt) % group_count)
    return sorted(chosen)


def initial_state(synthetic_count=0, synthetic_group_count=0):
    """The whole seeded state in the persisted layout of store.Store.

    With ``synthetic_group_count`` > 0 there are that many more groups, and
    every synthetic image is also connected to 0-3 of them (its links to the
    sample groups stay as they are)."""
    images = {}
    roles = {}
    rows = [(name, spec, group_ids, is_global, [])
            for name, spec, group_ids, is_global in sample_images()]
    rows += [(name, spec, group_ids, is_global,
              synthetic_memberships(index, synthetic_group_count))
             for index, (name, spec, group_ids, is_global)
             in enumerate(synthetic_images(synthetic_count), 1)]
    for name, spec, group_ids, is_global, extra_groups in rows:
        images[name] = {"spec": spec, "status": None}
        linked = list(group_ids)
        if is_global:
            linked.append(EVERYONE_GROUP_ID)
        linked += [synthetic_group_id(g) for g in extra_groups]
        roles[ROLE_PREFIX + name] = linked
    groups = sorted(sample_groups() + synthetic_groups(synthetic_group_count),
                    key=lambda g: g["name"])
    return {
        "format": 1,
        "images": images,
        "roles": roles,
        "groups": groups,
        "secrets": sample_secrets(),
        "users": sample_users(),
        "builds": {},
    }
