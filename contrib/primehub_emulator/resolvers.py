"""Field resolvers, the graphql-shield rules, and schema construction.

Resolvers are thin: they read arguments with graphql-js semantics (see
jscompat.argument_values: explicit null kept, unprovided variables absent,
which the console's resolvers can tell apart) and call the Store, which holds
all PrimeHub semantics.  The shield runs first on every root field, as
graphql-shield does in the console (src/middlewares/auth.ts).
"""

import os

from graphql import build_ast_schema, parse

from . import jscompat
from .costs import Meter
from .store import ApiError, extract_pagination, paginate, to_relay

SCHEMA_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schema.graphql")


class RequestContext(object):
    """Per-request context: who is asking, the request's variables (as
    graphql-js coerced them) and the meter of what the real server's back
    ends would be asked (costs.py)."""

    def __init__(self, store, user, variables, meter=None):
        self.store = store
        self.user = user
        self.variables = variables
        self.meter = meter if meter is not None else Meter()


def _args(info):
    field_def = info.parent_type.fields[info.field_name]
    return jscompat.argument_values(field_def, info.field_asts[0], info.context.variables)


# ------------------------------------------------------------------ shield

# Root fields a normal (non-admin) user may reach; everything else is admin
# only ('*': isAdmin).  ``group`` has its own rule below.
USER_QUERY_FIELDS = {"me", "image", "images", "imagesConnection", "secret", "secrets",
                     "groupImagesConnection"}
USER_MUTATION_FIELDS = {"createImage", "updateImage", "deleteImage", "rebuildImage",
                        "cancelImageBuild"}


def _shield(info, args):
    user = info.context.user
    if user["isAdmin"]:
        return
    name = info.field_name
    if name in USER_QUERY_FIELDS or name in USER_MUTATION_FIELDS:
        return
    if name == "group":
        store = info.context.store
        where = args.get("where") or {}
        group = store.group_by_id(where.get("id"))
        if group and (user["id"] in group.get("members", [])
                      or user["username"] in group.get("admins", [])):
            return
    raise ApiError("Not Authorised!", "INTERNAL_SERVER_ERROR")


def root(fn):
    """Wrap a root resolver: graphql-js arguments, then the shield."""

    def resolve(_root, info, **_ignored):
        info.context.meter.root(info.field_name)
        args = _args(info)
        _shield(info, args)
        return fn(info.context, args)

    resolve.__name__ = fn.__name__
    return resolve


def _where_id(args):
    where = args.get("where") or {}
    return where.get("id")


# ------------------------------------------------------------------ Query


@root
def resolve_me(ctx, args):
    ctx.meter.keycloak()  # users.findOne
    return ctx.store.user_view(ctx.user)


@root
def resolve_group(ctx, args):
    # graphql-shield's or() runs every rule: the membership rules ask too.
    ctx.meter.keycloak()
    ctx.meter.group_find_one(_where_id(args))
    return ctx.store.get_group(_where_id(args))


def _group_rows(ctx, args):
    return ctx.store.list_groups(args.get("where"), args.get("orderBy"))


@root
def resolve_groups(ctx, args):
    rows = paginate(_group_rows(ctx, args), extract_pagination(args))
    ctx.meter.groups_listed(ctx.store, rows, args.get("where"), args.get("orderBy"))
    return rows


@root
def resolve_groups_connection(ctx, args):
    rows = _group_rows(ctx, args)
    connection = to_relay(rows, extract_pagination(args))
    ctx.meter.groups_listed(ctx.store, [e["node"] for e in connection["edges"]],
                            args.get("where"), args.get("orderBy"))
    return connection


@root
def resolve_image(ctx, args):
    # Any failure (not found included) is swallowed into null.
    image = ctx.store.get_image(_where_id(args))
    ctx.meter.get_image(image is not None)
    return image


def _image_rows(ctx, args, mode=None):
    if mode is None:
        mode = args.get("mode", "ALL")
    ctx.meter.list_images(ctx.store)
    return ctx.store.list_images(mode, args.get("where"), args.get("orderBy"))


@root
def resolve_images(ctx, args):
    return paginate(_image_rows(ctx, args), extract_pagination(args))


@root
def resolve_images_connection(ctx, args):
    return to_relay(_image_rows(ctx, args), extract_pagination(args))


@root
def resolve_group_images_connection(ctx, args):
    where = args.get("where")
    if where is None:
        raise ApiError("Cannot read property 'groupName_contains' of %s"
                       % ("null" if "where" in args else "undefined"))
    group_name = where.get("groupName_contains")
    if not group_name:
        raise ApiError("Not authorise", "NOT_AUTH")
    user = ctx.user
    if not user["isAdmin"] and not ctx.store.is_group_admin(user["username"], group_name):
        raise ApiError("Not authorise", "NOT_AUTH")
    ctx.meter.list_images(ctx.store)
    rows = ctx.store.list_images("GROUP_ONLY", where, args.get("orderBy"))
    return to_relay(rows, extract_pagination(args))


@root
def resolve_secret(ctx, args):
    # Declared Secret!: a missing id becomes the non-null error.
    ctx.meter.kubernetes()
    return ctx.store.get_secret(_where_id(args))


@root
def resolve_secrets(ctx, args):
    ctx.meter.kubernetes()
    rows = ctx.store.list_secrets(args.get("where"), args.get("orderBy"))
    return paginate(rows, extract_pagination(args))


@root
def resolve_secrets_connection(ctx, args):
    ctx.meter.kubernetes()
    rows = ctx.store.list_secrets(args.get("where"), args.get("orderBy"))
    return to_relay(rows, extract_pagination(args))


# --------------------------------------------------------------- Mutation


def _mutation(ctx, field, args, run):
    """Count the mutation's back-end work (also when it fails), then map
    the image it answers with."""
    ctx.meter.image_mutation(field, args.get("data"))
    image = run()
    if image is not None:
        ctx.meter.mapped()
    return image


@root
def resolve_create_image(ctx, args):
    return _mutation(ctx, "createImage", args,
                     lambda: ctx.store.create_image(args["data"], ctx.user))


@root
def resolve_update_image(ctx, args):
    return _mutation(ctx, "updateImage", args,
                     lambda: ctx.store.update_image(_where_id(args), args["data"], ctx.user))


@root
def resolve_delete_image(ctx, args):
    return _mutation(ctx, "deleteImage", args,
                     lambda: ctx.store.delete_image(_where_id(args), ctx.user))


@root
def resolve_rebuild_image(ctx, args):
    return _mutation(ctx, "rebuildImage", args,
                     lambda: ctx.store.rebuild_image(_where_id(args), args["data"]))


@root
def resolve_cancel_image_build(ctx, args):
    return _mutation(ctx, "cancelImageBuild", args,
                     lambda: ctx.store.cancel_image_build(_where_id(args)))


# ------------------------------------------------------------ type fields


def resolve_image_global(image, info, **_):
    """Resolved from the roles after the operation, so a deleted image
    reads back global false."""
    info.context.meter.image_global()
    return info.context.store.image_global(image["id"])


def resolve_image_groups(image, info, **_):
    ctx = info.context
    groups = ctx.store.image_groups(image["id"])
    ctx.meter.image_groups(ctx.store, groups)
    return groups


def resolve_group_users(group, info, **_):
    info.context.meter.keycloak()  # groups.listMembers
    return info.context.store.group_members(group["id"])


def resolve_group_images(group, info, **_):
    ctx = info.context
    args = _args(info)
    rows = ctx.store.group_images(group["id"], args.get("mode", "ALL"))
    ctx.meter.group_images(ctx.store, group["id"], rows)
    return rows


def resolve_group_group_images(group, info, **_):
    ctx = info.context
    rows = ctx.store.group_images(group["id"], "GROUP_ONLY")
    ctx.meter.group_images(ctx.store, group["id"], rows)
    return rows


def _user_groups(info, user, effective):
    # measured: the user's groups (two Keycloak calls) and a Kubernetes read
    info.context.meter.keycloak(2)
    info.context.meter.kubernetes()
    return info.context.store.user_groups(user["id"], effective=effective)


def resolve_user_groups(user, info, **_):
    return _user_groups(info, user, False)


def resolve_user_effective_groups(user, info, **_):
    return _user_groups(info, user, True)


RESOLVERS = {
    "Query": {
        "me": resolve_me,
        "group": resolve_group,
        "groups": resolve_groups,
        "groupsConnection": resolve_groups_connection,
        "image": resolve_image,
        "images": resolve_images,
        "imagesConnection": resolve_images_connection,
        "groupImagesConnection": resolve_group_images_connection,
        "secret": resolve_secret,
        "secrets": resolve_secrets,
        "secretsConnection": resolve_secrets_connection,
    },
    "Mutation": {
        "createImage": resolve_create_image,
        "updateImage": resolve_update_image,
        "deleteImage": resolve_delete_image,
        "rebuildImage": resolve_rebuild_image,
        "cancelImageBuild": resolve_cancel_image_build,
    },
    "Image": {
        "global": resolve_image_global,
        "groups": resolve_image_groups,
    },
    "Group": {
        "users": resolve_group_users,
        "images": resolve_group_images,
        "groupImages": resolve_group_group_images,
    },
    "User": {
        "groups": resolve_user_groups,
        "effectiveGroups": resolve_user_effective_groups,
    },
}


def _identity(value):
    return value


def build_schema():
    """Parse schema.graphql once and attach the resolvers.

    graphql-core 2 builds custom scalars whose serialize() returns None; the
    JSON scalar (graphql-type-json in the console) passes values through."""
    with open(SCHEMA_PATH, "r", encoding="utf-8") as fh:
        schema = build_ast_schema(parse(fh.read()))
    json_type = schema.get_type("JSON")
    json_type.serialize = _identity
    json_type.parse_value = _identity
    json_type.parse_literal = jscompat.json_literal
    for type_name, fields in RESOLVERS.items():
        type_ = schema.get_type(type_name)
        for field_name, resolver in fields.items():
            type_.fields[field_name].resolver = resolver
    return schema
