"""A small GraphQL executor with graphql-js 14 semantics, for speed.

graphql-core 2's executor spends about 2 microseconds of bookkeeping per
field (promises, ResolveInfo objects, argument coercion), which makes a full
listing of 10,000 images take about 0.3 s.  The emulator's speed is part of
what the benchmark measures, so documents are executed here instead: fields
are collected once per selection set, fields without a resolver are plain
dictionary reads, and only root fields and the few relation fields call
resolvers.

What it implements is the execution half of the GraphQL spec as graphql-js 14
does it: field collection with aliases, fragments, inline fragments,
@skip/@include; resolvers; completion of non-null, list, leaf and object
values; null propagation to the nearest nullable parent with one error per
failure, in execution order; serial root fields that stop at the first failing
non-null root field.  Introspection (``__schema``/``__type``) is left to
graphql-core (see pipeline.py); ``__typename`` is handled here.

Documents reaching this module have passed validation, so field definitions
and argument types are known to exist.
"""

from graphql.error import GraphQLError
from graphql.language import ast
from graphql.type import (
    GraphQLEnumType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)

from .store import ApiError


class _Bubble(Exception):
    """A null (or error) reached a non-null position: propagate upwards."""

    def __init__(self, error):
        Exception.__init__(self)
        self.error = error


class Info(object):
    """The part of graphql-core's ResolveInfo the resolvers use."""

    __slots__ = ("context", "parent_type", "field_name", "field_asts")

    def __init__(self, context, parent_type, field_name, field_asts):
        self.context = context
        self.parent_type = parent_type
        self.field_name = field_name
        self.field_asts = field_asts


def format_exception(exc):
    """console formatError for an exception raised while resolving."""
    if isinstance(exc, ApiError):
        return {"message": exc.message, "extensions": {"code": exc.code}}
    if isinstance(exc, GraphQLError):
        return {"message": exc.message, "extensions": {"code": "INTERNAL_SERVER_ERROR"}}
    return {"message": str(exc), "extensions": {"code": "INTERNAL_SERVER_ERROR"}}


def uses_introspection(document):
    """True if the document selects __schema or __type anywhere."""
    stack = [d.selection_set for d in document.definitions
             if getattr(d, "selection_set", None) is not None]
    while stack:
        selection_set = stack.pop()
        for selection in selection_set.selections:
            if isinstance(selection, ast.Field) and selection.name.value in ("__schema", "__type"):
                return True
            if getattr(selection, "selection_set", None) is not None:
                stack.append(selection.selection_set)
    return False


def _serialize_leaf(type_, value):
    """graphql-js serialize for the scalars and enums of this schema."""
    if isinstance(type_, GraphQLEnumType):
        for enum_value in type_.values:
            if enum_value.value == value:
                return enum_value.name
        raise GraphQLError('Expected a value of type "%s" but received: %s'
                           % (type_.name, value))
    name = type_.name
    if name == "String" or name == "ID":
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (int, float)):
            return str(value)
        raise GraphQLError("%s cannot represent value: %r" % (name, value))
    if name == "Boolean":
        return bool(value)
    if name == "Int":
        if isinstance(value, bool):
            return int(value)
        if isinstance(value, (int, float)) and value == int(value):
            return int(value)
        raise GraphQLError("Int cannot represent non-integer value: %r" % (value,))
    if name == "Float":
        return float(value)
    return value  # JSON


def _fast_type(field_def):
    """(python type, nullable) for String/ID/Boolean leaves read as-is."""
    if field_def is None:
        return None
    type_ = field_def.type
    nullable = not isinstance(type_, GraphQLNonNull)
    if not nullable:
        type_ = type_.of_type
    if isinstance(type_, GraphQLScalarType):
        if type_.name in ("String", "ID"):
            return (str, nullable)
        if type_.name == "Boolean":
            return (bool, nullable)
    return None


class Execution(object):
    def __init__(self, schema, fragments, context, variables):
        self.schema = schema
        self.fragments = fragments
        self.context = context
        self.variables = variables
        self.errors = []
        self._collected = {}

    # ------------------------------------------------------- collection

    def _include(self, node):
        for directive in node.directives or ():
            name = directive.name.value
            if name not in ("skip", "include"):
                continue
            value = None
            for argument in directive.arguments or ():
                if argument.name.value == "if":
                    if isinstance(argument.value, ast.Variable):
                        value = self.variables.get(argument.value.name.value)
                    elif isinstance(argument.value, ast.BooleanValue):
                        value = argument.value.value
            if name == "skip" and value is True:
                return False
            if name == "include" and value is not True:
                return False
        return True

    def _collect_into(self, type_, selection_set, fields, visited):
        for selection in selection_set.selections:
            if not self._include(selection):
                continue
            if isinstance(selection, ast.Field):
                key = selection.alias.value if selection.alias else selection.name.value
                fields.setdefault(key, []).append(selection)
            elif isinstance(selection, ast.InlineFragment):
                condition = selection.type_condition
                if condition is None or condition.name.value == type_.name:
                    self._collect_into(type_, selection.selection_set, fields, visited)
            elif isinstance(selection, ast.FragmentSpread):
                name = selection.name.value
                if name in visited:
                    continue
                visited.add(name)
                fragment = self.fragments.get(name)
                if fragment is not None and fragment.type_condition.name.value == type_.name:
                    self._collect_into(type_, fragment.selection_set, fields, visited)

    def collect(self, type_, nodes):
        """Fields of ``type_`` selected by the selection sets of ``nodes``
        (memoised: every image in a list shares one collection)."""
        key = (type_.name, tuple(id(n) for n in nodes))
        fields = self._collected.get(key)
        if fields is None:
            fields = {}
            visited = set()
            for node in nodes:
                if node.selection_set is not None:
                    self._collect_into(type_, node.selection_set, fields, visited)
            plan = []
            for response_key, field_nodes in fields.items():
                field_name = field_nodes[0].name.value
                field_def = None if field_name == "__typename" else type_.fields[field_name]
                plan.append((response_key, field_name, field_def, field_nodes,
                             _fast_type(field_def)))
            fields = plan
            self._collected[key] = fields
        return fields

    # -------------------------------------------------------- execution

    def execute_fields(self, type_, source, plan):
        result = {}
        is_dict = isinstance(source, dict)
        for response_key, field_name, field_def, field_nodes, fast_type in plan:
            if field_def is None:
                result[response_key] = type_.name
                continue
            resolver = field_def.resolver
            if resolver is None and is_dict and fast_type is not None:
                # Plain leaf read (most fields): no completion machinery needed
                # unless the value is null for a non-null field or needs coercion.
                value = source.get(field_name)
                if type(value) is fast_type[0] or (value is None and fast_type[1]):
                    result[response_key] = value
                    continue
            return_type = field_def.type
            try:
                if resolver is not None:
                    value = resolver(source, Info(self.context, type_, field_name, field_nodes))
                elif is_dict:
                    value = source.get(field_name)
                else:
                    value = getattr(source, field_name, None)
            except _Bubble:
                raise
            except Exception as exc:  # resolver errors are API answers
                error = format_exception(exc)
                if isinstance(return_type, GraphQLNonNull):
                    raise _Bubble(error)
                self.errors.append(error)
                result[response_key] = None
                continue
            result[response_key] = self.complete_catching(
                return_type, field_nodes, value, type_, field_name)
        return result

    def complete_catching(self, return_type, field_nodes, value, parent_type, field_name):
        try:
            return self.complete(return_type, field_nodes, value, parent_type, field_name)
        except _Bubble as bubble:
            if isinstance(return_type, GraphQLNonNull):
                raise
            self.errors.append(bubble.error)
            return None

    def complete(self, return_type, field_nodes, value, parent_type, field_name):
        if isinstance(return_type, GraphQLNonNull):
            completed = self.complete(return_type.of_type, field_nodes, value,
                                      parent_type, field_name)
            if completed is None:
                raise _Bubble({
                    "message": "Cannot return null for non-nullable field %s.%s."
                               % (parent_type.name, field_name),
                    "extensions": {"code": "INTERNAL_SERVER_ERROR"}})
            return completed
        if value is None:
            return None
        if isinstance(return_type, GraphQLList):
            item_type = return_type.of_type
            if isinstance(item_type, GraphQLObjectType):
                plan = self.collect(item_type, field_nodes)
                out = []
                for item in value:
                    if item is None:
                        out.append(None)
                        continue
                    try:
                        out.append(self.execute_fields(item_type, item, plan))
                    except _Bubble as bubble:
                        self.errors.append(bubble.error)
                        out.append(None)
                return out
            return [self.complete_catching(item_type, field_nodes, item, parent_type, field_name)
                    for item in value]
        if isinstance(return_type, (GraphQLScalarType, GraphQLEnumType)):
            try:
                return _serialize_leaf(return_type, value)
            except GraphQLError as exc:
                raise _Bubble(format_exception(exc))
        return self.execute_fields(return_type, value, self.collect(return_type, field_nodes))


def execute(schema, operation, fragments, context, variables):
    """Run ``operation``.  Returns (data or None, [formatted errors])."""
    root_type = schema.get_mutation_type() if operation.operation == "mutation" \
        else schema.get_query_type()
    run = Execution(schema, fragments, context, variables)
    try:
        plan = run.collect(root_type, [operation])
        data = run.execute_fields(root_type, None, plan)
    except _Bubble as bubble:
        run.errors.append(bubble.error)
        data = None
    return data, run.errors
