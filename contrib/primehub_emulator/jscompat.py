"""graphql-js 14.7 behaviour on top of graphql-core 2.3.2.

PrimeHub runs Apollo Server 2 with graphql-js 14.7.  graphql-core 2 parses and
validates the same language, but it words many errors differently and it
coerces variables and literal arguments by older rules (for example it drops an
explicit ``null`` literal and accepts ``5`` for a String).  A client that is
tested against this emulator must meet PrimeHub's texts and PrimeHub's
absent-versus-null distinctions, so this module re-implements the few pieces of
graphql-js whose observable behaviour matters:

* variable coercion with graphql-js 14.7 messages (``Variable "$data" got
  invalid value { ... }; Field "imageSpec" is not defined by type
  ImageUpdateInput.``);
* argument values with graphql-js semantics (explicit ``null`` kept, a
  variable that was not provided leaves the argument absent);
* the ValuesOfCorrectType and ExecutableDefinitions validation rules;
* rewording of graphql-core validation and syntax messages to graphql-js 14.7.
"""

import json
import math
import re

from graphql.error import GraphQLError
from graphql.language import ast
from graphql.language.printer import print_ast
from graphql.type import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLList,
    GraphQLNonNull,
    GraphQLScalarType,
)
from graphql.utils.type_from_ast import type_from_ast
from graphql.validation.rules import specified_rules
from graphql.validation.rules.arguments_of_correct_type import ArgumentsOfCorrectType
from graphql.validation.rules.base import ValidationRule
from graphql.validation.rules.default_values_of_correct_type import (
    DefaultValuesOfCorrectType,
)

INVALID = object()  # graphql-js "undefined": no value at all (not null)


# ------------------------------------------------------------ null literals
#
# graphql-core 2.3.2 predates the ``null`` literal: it rejects ``page: null``
# as a syntax error, which graphql-js 14 accepts.  Teach its parser, visitor
# and printer a NullValue node; everything downstream that graphql-core does
# with an unknown value node is harmless (its value_from_ast yields None, and
# the resolvers read arguments through argument_values() below anyway).


class NullValue(ast.Value):
    __slots__ = ("loc",)
    _fields = ()

    def __init__(self, loc=None):
        self.loc = loc

    def __eq__(self, other):
        return isinstance(other, NullValue)

    def __repr__(self):
        return "NullValue()"

    def __copy__(self):
        return type(self)(self.loc)

    def __hash__(self):
        return id(self)


def _install_null_literal():
    from graphql.language import parser as gql_parser
    from graphql.language import printer as gql_printer
    from graphql.language import visitor_meta
    from graphql.language.lexer import TokenKind

    if getattr(ast, "NullValue", None) is NullValue:
        return
    ast.NullValue = NullValue
    visitor_meta.QUERY_DOCUMENT_KEYS[NullValue] = ()
    visitor_meta.AST_KIND_TO_TYPE["NullValue"] = NullValue
    gql_printer.PrintingVisitor._leave_handlers[NullValue] = lambda self, node, *a: "null"
    original = gql_parser.parse_value_literal

    def parse_value_literal(parser, is_const):
        token = parser.token
        if token.kind == TokenKind.NAME and token.value == "null":
            gql_parser.advance(parser)
            return NullValue(loc=gql_parser.loc(parser, token.start))
        return original(parser, is_const)

    gql_parser.parse_value_literal = parse_value_literal


_install_null_literal()

MAX_INT = 2147483647
MIN_INT = -2147483648


# ------------------------------------------------------------------ inspect


def js_number(value):
    """String(number) as JavaScript prints it (1.0 -> "1")."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value == int(value) and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def js_json_string(value):
    return json.dumps(value, ensure_ascii=False)


def inspect(value, _seen=()):
    """graphql-js 14.7 ``inspect``: depth-limited, JS-flavoured repr."""
    if value is None:
        return "null"
    if isinstance(value, str):
        return js_json_string(value)
    if isinstance(value, (bool, int, float)):
        return js_number(value)
    if isinstance(value, (list, tuple)):
        if not value:
            return "[]"
        if len(_seen) + 1 > 2:  # seenValues includes this array
            return "[Array]"
        seen = _seen + (id(value),)
        shown = [inspect(v, seen) for v in value[:10]]
        rest = len(value) - 10
        if rest == 1:
            shown.append("... 1 more item")
        elif rest > 1:
            shown.append("... %d more items" % rest)
        return "[" + ", ".join(shown) + "]"
    if isinstance(value, dict):
        if not value:
            return "{}"
        if len(_seen) + 1 > 2:  # seenValues includes this object
            return "[Object]"
        seen = _seen + (id(value),)
        return "{ " + ", ".join("%s: %s" % (k, inspect(v, seen)) for k, v in value.items()) + " }"
    if isinstance(value, (GraphQLList, GraphQLNonNull, GraphQLScalarType,
                          GraphQLEnumType, GraphQLInputObjectType)):
        return str(value)
    return str(value)


# ------------------------------------------------------------- suggestions


def lexical_distance(a_str, b_str):
    """graphql-js 14.7 lexicalDistance (case-insensitive Damerau-Levenshtein)."""
    if a_str == b_str:
        return 0
    a = a_str.lower()
    b = b_str.lower()
    if a == b:
        return 1
    d = [[i] + [0] * len(b) for i in range(len(a) + 1)]
    for j in range(1, len(b) + 1):
        d[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                d[i][j] = min(d[i][j], d[i - 2][j - 2] + cost)
    return d[len(a)][len(b)]


def suggestion_list(inp, options):
    by_distance = {}
    input_threshold = len(inp) / 2
    for option in options:
        distance = lexical_distance(inp, option)
        threshold = max(input_threshold, len(option) / 2, 1)
        if distance <= threshold:
            by_distance[option] = distance
    return sorted(by_distance, key=lambda k: by_distance[k])


def did_you_mean(suggestions, sub_message=None):
    """graphql-js 14.7 didYouMean (leading space included, '' if none)."""
    message = " Did you mean "
    if sub_message:
        message += sub_message + " "
    if not suggestions:
        return ""
    if len(suggestions) == 1:
        return message + suggestions[0] + "?"
    if len(suggestions) == 2:
        return message + suggestions[0] + " or " + suggestions[1] + "?"
    selected = list(suggestions[:5])
    last = selected.pop()
    return message + ", ".join(selected) + ", or " + last + "?"


def _quoted(names):
    return ['"%s"' % n for n in names]


# ------------------------------------------------------- variable coercion


class _Path(object):
    __slots__ = ("prev", "key")

    def __init__(self, prev, key):
        self.prev = prev
        self.key = key


def _print_path(path):
    out = ""
    while path is not None:
        out = ("." + path.key if isinstance(path.key, str) else "[%d]" % path.key) + out
        path = path.prev
    return "value" + out if out else ""


def _coercion_error(message, path, sub_message=None):
    path_str = _print_path(path)
    if path_str:
        message += " at " + path_str
    message += ("." + sub_message) if sub_message else "."
    return message


def _parse_scalar_value(type_, value):
    """parseValue of the built-in scalars (graphql-js 14.7) and JSON.

    Returns the coerced value or raises TypeError with graphql-js's text."""
    name = type_.name
    if name == "Int":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and (not math.isfinite(value) or value != int(value))):
            raise TypeError("Int cannot represent non-integer value: %s" % inspect(value))
        if value > MAX_INT or value < MIN_INT:
            raise TypeError("Int cannot represent non 32-bit signed integer value: %s" % inspect(value))
        return int(value)
    if name == "Float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (
                isinstance(value, float) and not math.isfinite(value)):
            raise TypeError("Float cannot represent non numeric value: %s" % inspect(value))
        return value
    if name == "String":
        if not isinstance(value, str):
            raise TypeError("String cannot represent a non string value: %s" % inspect(value))
        return value
    if name == "Boolean":
        if not isinstance(value, bool):
            raise TypeError("Boolean cannot represent a non boolean value: %s" % inspect(value))
        return value
    if name == "ID":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, float) and math.isfinite(value) and value == int(value):
            return str(int(value))
        raise TypeError("ID cannot represent value: %s" % inspect(value))
    return value  # JSON: anything goes


def coerce_value(value, type_, path=None):
    """graphql-js 14.7 coerceValue.  Returns (value, [error messages])."""
    if isinstance(type_, GraphQLNonNull):
        if value is None:
            return INVALID, [_coercion_error(
                "Expected non-nullable type %s not to be null" % type_, path)]
        return coerce_value(value, type_.of_type, path)
    if value is None:
        return None, []
    if isinstance(type_, GraphQLScalarType):
        try:
            return _parse_scalar_value(type_, value), []
        except TypeError as exc:
            return INVALID, [_coercion_error("Expected type %s" % type_.name, path, " " + str(exc))]
    if isinstance(type_, GraphQLEnumType):
        if isinstance(value, str):
            for enum_value in type_.values:
                if enum_value.name == value:
                    return enum_value.value, []
        text = inspect(value) if not isinstance(value, str) else value
        suggestions = suggestion_list(text, [v.name for v in type_.values])
        return INVALID, [_coercion_error("Expected type %s" % type_.name, path,
                                         did_you_mean(suggestions))]
    if isinstance(type_, GraphQLList):
        item_type = type_.of_type
        if isinstance(value, list):
            errors = []
            out = []
            for index, item in enumerate(value):
                coerced, item_errors = coerce_value(item, item_type, _Path(path, index))
                if item_errors:
                    errors.extend(item_errors)
                elif not errors:
                    out.append(coerced)
            return (INVALID, errors) if errors else (out, [])
        coerced, item_errors = coerce_value(value, item_type)
        return (INVALID, item_errors) if item_errors else ([coerced], [])
    if isinstance(type_, GraphQLInputObjectType):
        if not isinstance(value, (dict, list)):
            return INVALID, [_coercion_error("Expected type %s to be an object" % type_.name, path)]
        if isinstance(value, list):  # JS arrays are objects: their keys are "0", "1", ...
            value = {str(i): v for i, v in enumerate(value)}
        errors = []
        out = {}
        fields = type_.fields
        for field_name, field in fields.items():
            if field_name not in value:
                if field.default_value is not None:
                    out[field_name] = field.default_value
                elif isinstance(field.type, GraphQLNonNull):
                    errors.append(_coercion_error(
                        "Field %s of required type %s was not provided"
                        % (_print_path(_Path(path, field_name)), field.type), None))
            else:
                coerced, field_errors = coerce_value(value[field_name], field.type,
                                                     _Path(path, field_name))
                if field_errors:
                    errors.extend(field_errors)
                elif not errors:
                    out[field_name] = coerced
        for field_name in value:
            if field_name not in fields:
                suggestions = suggestion_list(field_name, list(fields))
                errors.append(_coercion_error(
                    'Field "%s" is not defined by type %s' % (field_name, type_.name),
                    path, did_you_mean(suggestions)))
        return (INVALID, errors) if errors else (out, [])
    raise TypeError("unexpected input type %r" % (type_,))


def coerce_variable_values(schema, operation, inputs):
    """graphql-js 14.7 getVariableValues.  Returns (values, [messages]).

    ``values`` keeps graphql-js's distinction: a variable that was not provided
    is absent, one provided as null is present with None."""
    if not isinstance(inputs, dict):
        inputs = {}
    errors = []
    values = {}
    for definition in operation.variable_definitions or []:
        name = definition.variable.name.value
        var_type = type_from_ast(schema, definition.type)
        if var_type is None:
            errors.append('Variable "$%s" expected value of type "%s" which cannot be used '
                          "as an input type." % (name, print_ast(definition.type)))
            continue
        has_value = name in inputs
        value = inputs.get(name)
        if not has_value and definition.default_value is not None:
            default = value_from_ast(definition.default_value, var_type, None)
            if default is not INVALID:
                values[name] = default
        elif (not has_value or value is None) and isinstance(var_type, GraphQLNonNull):
            if has_value:
                errors.append('Variable "$%s" of non-null type "%s" must not be null.'
                              % (name, var_type))
            else:
                errors.append('Variable "$%s" of required type "%s" was not provided.'
                              % (name, var_type))
        elif has_value:
            if value is None:
                values[name] = None
            else:
                coerced, coercion_errors = coerce_value(value, var_type)
                if coercion_errors:
                    for message in coercion_errors:
                        errors.append('Variable "$%s" got invalid value %s; %s'
                                      % (name, inspect(value), message))
                else:
                    values[name] = coerced
    return values, errors


# ----------------------------------------------------- literal arguments


def _is_missing_variable(node, variables):
    return isinstance(node, ast.Variable) and (
        variables is None or node.name.value not in variables)


def _parse_scalar_literal(type_, node, variables):
    name = type_.name
    if name == "Int":
        if isinstance(node, ast.IntValue):
            num = int(node.value)
            if MIN_INT <= num <= MAX_INT:
                return num
        return INVALID
    if name == "Float":
        if isinstance(node, (ast.IntValue, ast.FloatValue)):
            return float(node.value)
        return INVALID
    if name == "String":
        return node.value if isinstance(node, ast.StringValue) else INVALID
    if name == "Boolean":
        return node.value if isinstance(node, ast.BooleanValue) else INVALID
    if name == "ID":
        if isinstance(node, (ast.StringValue, ast.IntValue)):
            return node.value
        return INVALID
    return json_literal(node, variables)


def json_literal(node, variables=None):
    """graphql-type-json parseLiteral: any literal as plain data."""
    if isinstance(node, (ast.StringValue, ast.BooleanValue)):
        return node.value
    if isinstance(node, ast.IntValue):
        return int(node.value)
    if isinstance(node, ast.FloatValue):
        return float(node.value)
    if isinstance(node, ast.ObjectValue):
        return {f.name.value: json_literal(f.value, variables) for f in node.fields}
    if isinstance(node, ast.ListValue):
        return [json_literal(v, variables) for v in node.values]
    if isinstance(node, ast.Variable):
        return (variables or {}).get(node.name.value)
    if isinstance(node, ast.EnumValue):
        return node.value
    return None


def value_from_ast(node, type_, variables):
    """graphql-js 14.7 valueFromAST; INVALID where graphql-js gives undefined."""
    if node is None:
        return INVALID
    if isinstance(type_, GraphQLNonNull):
        if isinstance(node, ast.NullValue):
            return INVALID
        return value_from_ast(node, type_.of_type, variables)
    if isinstance(node, ast.NullValue):
        return None
    if isinstance(node, ast.Variable):
        name = node.name.value
        if variables is None or name not in variables:
            return INVALID
        value = variables[name]
        if value is None and isinstance(type_, GraphQLNonNull):
            return INVALID
        return value
    if isinstance(type_, GraphQLList):
        item_type = type_.of_type
        if isinstance(node, ast.ListValue):
            out = []
            for item in node.values:
                if _is_missing_variable(item, variables):
                    if isinstance(item_type, GraphQLNonNull):
                        return INVALID
                    out.append(None)
                else:
                    value = value_from_ast(item, item_type, variables)
                    if value is INVALID:
                        return INVALID
                    out.append(value)
            return out
        value = value_from_ast(node, item_type, variables)
        return INVALID if value is INVALID else [value]
    if isinstance(type_, GraphQLInputObjectType):
        if not isinstance(node, ast.ObjectValue):
            return INVALID
        out = {}
        by_name = {f.name.value: f for f in node.fields}
        for field_name, field in type_.fields.items():
            field_node = by_name.get(field_name)
            if field_node is None or _is_missing_variable(field_node.value, variables):
                if field.default_value is not None:
                    out[field_name] = field.default_value
                elif isinstance(field.type, GraphQLNonNull):
                    return INVALID
                continue
            value = value_from_ast(field_node.value, field.type, variables)
            if value is INVALID:
                return INVALID
            out[field_name] = value
        return out
    if isinstance(type_, GraphQLEnumType):
        if not isinstance(node, ast.EnumValue):
            return INVALID
        for enum_value in type_.values:
            if enum_value.name == node.value:
                return enum_value.value
        return INVALID
    return _parse_scalar_literal(type_, node, variables)


def argument_values(field_def, field_node, variables):
    """graphql-js 14.7 getArgumentValues.

    Raises GraphQLError with graphql-js's text when an argument is unusable."""
    result = {}
    given = {a.name.value: a for a in (field_node.arguments or [])}
    for name, arg_def in field_def.args.items():
        arg_type = arg_def.type
        node = given.get(name)
        if node is None:
            if arg_def.default_value is not None:
                result[name] = arg_def.default_value
            elif isinstance(arg_type, GraphQLNonNull):
                raise GraphQLError('Argument "%s" of required type "%s" was not provided.'
                                   % (name, arg_type))
            continue
        value_node = node.value
        if isinstance(value_node, ast.Variable):
            var_name = value_node.name.value
            has_value = variables is not None and var_name in variables
            is_null = has_value and variables[var_name] is None
            if not has_value and arg_def.default_value is not None:
                result[name] = arg_def.default_value
            elif (not has_value or is_null) and isinstance(arg_type, GraphQLNonNull):
                if is_null:
                    raise GraphQLError('Argument "%s" of non-null type "%s" must not be null.'
                                       % (name, arg_type))
                raise GraphQLError(
                    'Argument "%s" of required type "%s" was provided the variable "$%s" '
                    "which was not provided a runtime value." % (name, arg_type, var_name))
            elif has_value:
                result[name] = variables[var_name]
            continue
        value = value_from_ast(value_node, arg_type, variables)
        if value is INVALID:
            raise GraphQLError('Argument "%s" has invalid value %s.' % (name, print_ast(value_node)))
        result[name] = value
    return result


# ------------------------------------------------------- validation rules


def _named(type_):
    while isinstance(type_, (GraphQLList, GraphQLNonNull)):
        type_ = type_.of_type
    return type_


def _nullable(type_):
    return type_.of_type if isinstance(type_, GraphQLNonNull) else type_


def _bad_value(type_str, value_str, message=None):
    return "Expected type %s, found %s" % (type_str, value_str) + (
        "; " + message if message else ".")


def _bad_enum_value(type_str, value_str, suggestions):
    return "Expected type %s, found %s." % (type_str, value_str) + did_you_mean(
        suggestions, "the enum value")


def literal_errors(node, location_type):
    """The messages graphql-js 14.7's ValuesOfCorrectType reports for a literal
    at a position of ``location_type``, in document order."""
    errors = []
    _check_literal(node, location_type, errors)
    return errors


def _check_scalar(node, location_type, errors):
    if location_type is None:
        return
    type_ = _named(location_type)
    if isinstance(type_, GraphQLEnumType):
        suggestions = suggestion_list(print_ast(node), [v.name for v in type_.values])
        errors.append(_bad_enum_value(str(location_type), print_ast(node), suggestions))
        return
    if not isinstance(type_, GraphQLScalarType):
        errors.append(_bad_value(str(location_type), print_ast(node)))
        return
    if _parse_scalar_literal(type_, node, None) is INVALID:
        errors.append(_bad_value(str(location_type), print_ast(node)))


def _check_literal(node, location_type, errors):
    if isinstance(node, ast.Variable) or location_type is None:
        return
    if isinstance(node, ast.NullValue):
        if isinstance(location_type, GraphQLNonNull):
            errors.append(_bad_value(str(location_type), "null"))
        return
    if isinstance(node, ast.ListValue):
        list_type = _nullable(location_type)
        if not isinstance(list_type, GraphQLList):
            _check_scalar(node, location_type, errors)
            return
        for item in node.values:
            _check_literal(item, list_type.of_type, errors)
        return
    if isinstance(node, ast.ObjectValue):
        type_ = _named(location_type)
        if not isinstance(type_, GraphQLInputObjectType):
            _check_scalar(node, location_type, errors)
            return
        given = {f.name.value for f in node.fields}
        for field_name, field in type_.fields.items():
            if field_name not in given and isinstance(field.type, GraphQLNonNull) \
                    and field.default_value is None:
                errors.append("Field %s.%s of required type %s was not provided."
                              % (type_.name, field_name, field.type))
        for field_node in node.fields:
            field = type_.fields.get(field_node.name.value)
            if field is None:
                suggestions = suggestion_list(field_node.name.value, list(type_.fields))
                errors.append('Field "%s" is not defined by type %s.'
                              % (field_node.name.value, type_.name) + did_you_mean(suggestions))
                continue
            _check_literal(field_node.value, field.type, errors)
        return
    if isinstance(node, ast.EnumValue):
        type_ = _named(location_type)
        if not isinstance(type_, GraphQLEnumType):
            _check_scalar(node, location_type, errors)
        elif node.value not in [v.name for v in type_.values]:
            suggestions = suggestion_list(print_ast(node), [v.name for v in type_.values])
            errors.append(_bad_enum_value(type_.name, print_ast(node), suggestions))
        return
    _check_scalar(node, location_type, errors)


class ValuesOfCorrectType(ValidationRule):
    """graphql-js 14.7 ValuesOfCorrectType (argument literals and defaults)."""

    def enter_Argument(self, node, key, parent, path, ancestors):
        arg_def = self.context.get_argument()
        if arg_def:
            for message in literal_errors(node.value, arg_def.type):
                self.context.report_error(GraphQLError(message, [node.value]))
        return False

    def enter_VariableDefinition(self, node, key, parent, path, ancestors):
        var_type = self.context.get_input_type()
        if var_type is not None and node.default_value is not None:
            for message in literal_errors(node.default_value, var_type):
                self.context.report_error(GraphQLError(message, [node.default_value]))
        return False


class ExecutableDefinitions(ValidationRule):
    """graphql-js 14.7 ExecutableDefinitions: no type-system definitions."""

    def enter_Document(self, node, key, parent, path, ancestors):
        for definition in node.definitions:
            if not isinstance(definition, (ast.OperationDefinition, ast.FragmentDefinition)):
                if isinstance(definition, ast.SchemaDefinition):
                    name = "schema"
                else:
                    inner = getattr(definition, "definition", definition)
                    name = '"%s"' % inner.name.value
                self.context.report_error(GraphQLError(
                    "The %s definition is not executable." % name, [definition]))
        return False


VALIDATION_RULES = [ExecutableDefinitions] + [
    rule for rule in specified_rules
    if rule not in (ArgumentsOfCorrectType, DefaultValuesOfCorrectType)
] + [ValuesOfCorrectType]


# ------------------------------------------------------- message rewording


_FIELD_RE = re.compile(r'^Cannot query field "(.+?)" on type "(.+?)"\.')
_ARG_RE = re.compile(r'^Unknown argument "(.+?)" on field "(.+?)" of type "(.+?)"\.')
_TYPE_RE = re.compile(r'^Unknown type "(.+?)"\.')
_REQUIRED_RE = re.compile(
    r'^(Field|Directive) "(.+?)" argument "(.+?)" of type "(.+?)" is required but not provided\.$')
_NO_SUB_RE = re.compile(r'^Field "(.+?)" of type "(.+?)" must not have a sub selection\.$')
_NEED_SUB_RE = re.compile(r'^Field "(.+?)" of type "(.+?)" must have a sub selection\.$')
_VAR_POS_RE = re.compile(r'^Variable "\$?(.+?)" of type "(.+?)" used in position expecting type "(.+?)"\.$')
_DIRECTIVE_RE = re.compile(r'^Directive "(.+?)" may not be used on "?(.+?)"?\.$')


def reword_validation_message(message, schema):
    """Turn a graphql-core 2 validation message into graphql-js 14.7 text."""
    m = _FIELD_RE.match(message)
    if m:
        field_name, type_name = m.groups()
        type_ = schema.get_type(type_name)
        names = list(getattr(type_, "fields", {}) or {})
        return 'Cannot query field "%s" on type "%s".' % (field_name, type_name) + did_you_mean(
            _quoted(suggestion_list(field_name, names)))
    m = _ARG_RE.match(message)
    if m:
        arg_name, field_name, type_name = m.groups()
        type_ = schema.get_type(type_name)
        field = (getattr(type_, "fields", {}) or {}).get(field_name)
        names = list(field.args) if field is not None else []
        return 'Unknown argument "%s" on field "%s" of type "%s".' % (
            arg_name, field_name, type_name) + did_you_mean(
                _quoted(suggestion_list(arg_name, names)))
    m = _TYPE_RE.match(message)
    if m:
        type_name = m.group(1)
        names = list(schema.get_type_map())
        return 'Unknown type "%s".' % type_name + did_you_mean(
            _quoted(suggestion_list(type_name, names)))
    m = _REQUIRED_RE.match(message)
    if m:
        kind, name, arg, type_ = m.groups()
        if kind == "Directive":
            name = "@" + name.lstrip("@")
        return '%s "%s" argument "%s" of type "%s" is required, but it was not provided.' % (
            kind, name, arg, type_)
    m = _NO_SUB_RE.match(message)
    if m:
        return 'Field "%s" must not have a selection since type "%s" has no subfields.' % m.groups()
    m = _NEED_SUB_RE.match(message)
    if m:
        field_name, type_ = m.groups()
        return ('Field "%s" of type "%s" must have a selection of subfields. '
                'Did you mean "%s { ... }"?' % (field_name, type_, field_name))
    m = _VAR_POS_RE.match(message)
    if m:
        return 'Variable "$%s" of type "%s" used in position expecting type "%s".' % m.groups()
    m = _DIRECTIVE_RE.match(message)
    if m:
        return 'Directive "%s" may not be used on %s.' % m.groups()
    return message


_SYNTAX_RE = re.compile(r"^Syntax Error .*? \(\d+:\d+\) (.*?)\n\n", re.S)


def reword_syntax_error(exc):
    """graphql-core 'Syntax Error GraphQL request (1:3) X\\n\\n...' ->
    graphql-js 'Syntax Error: X'."""
    message = str(getattr(exc, "message", None) or exc)
    m = _SYNTAX_RE.match(message)
    description = m.group(1) if m else message
    description = re.sub(r"\bEOF\b", "<EOF>", description)
    m = re.match(r"^Unexpected character (.*)\.$", description)
    if m:
        description = "Cannot parse the unexpected character %s." % m.group(1)
    if description == "Unterminated string":
        description = "Unterminated string."
    return "Syntax Error: " + description
