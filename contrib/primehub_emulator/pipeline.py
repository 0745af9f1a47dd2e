"""The GraphQL request pipeline of Apollo Server 2 (apollo-server-core 2.26),
from decoded request parameters to an HTTP status and body.

Order, status codes and bodies follow runHttpQuery / requestPipeline:
variables and query checks (plain-text 400s), parse (400
GRAPHQL_PARSE_FAILED), validation (400 GRAPHQL_VALIDATION_FAILED), operation
selection, the GET-only-queries rule (405), variable coercion (400), then
execution (200 with data and errors).  Every error is rebuilt by the console's
formatError as exactly ``{"message", "extensions": {"code"}}``.

Execution uses executor.py (graphql-js semantics, fast); only documents that
use introspection go through graphql-core's executor.

Speed: parsed+validated documents are cached by their text, and query
responses are cached by (document, operation, variables, user) for as long as
the store's version does not change, so a repeated listing of 10,000 images
costs one dictionary lookup while any mutation or build transition makes the
next answer fresh.  The real server has no such cache: a cached answer keeps
the costs.Meter of the execution that made it, and a request answered from
the cache is metered (and so charged) as that execution was.
"""

import json
import logging
import threading

from graphql import execute, parse, validate
from graphql.error import GraphQLError
from graphql.error.syntax_error import GraphQLSyntaxError
from graphql.language import ast

from . import executor, jscompat
from .costs import Meter
from .resolvers import RequestContext
from .store import ApiError

# graphql-core logs every resolver exception with a traceback; resolver
# errors are part of normal operation here (they are the API's answers).
logging.getLogger("graphql").addHandler(logging.NullHandler())
logging.getLogger("graphql").propagate = False

DOC_CACHE_SIZE = 256
RESPONSE_CACHE_SIZE = 16


class Response(object):
    __slots__ = ("status", "content_type", "body", "headers")

    def __init__(self, status, body, content_type="application/json", headers=None):
        self.status = status
        self.body = body if isinstance(body, bytes) else body.encode("utf-8")
        self.content_type = content_type
        self.headers = headers or {}


def _reject_constant(name):
    raise ValueError("%s is not JSON" % name)


def loads_strict(text):
    """JSON.parse: no NaN/Infinity (Python's json accepts them)."""
    return json.loads(text, parse_constant=_reject_constant)


def json_bytes(value):
    """Compact JSON as JSON.stringify writes it, plus Apollo's newline."""
    return (json.dumps(value, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def error_body(message, code):
    return {"message": message, "extensions": {"code": code}}


def plain(status, text, headers=None):
    return Response(status, text, "text/plain; charset=utf-8", headers)


def errors_response(status, errors):
    return Response(status, json_bytes({"errors": errors}))


def format_error(error):
    """console formatError: Boom/ApolloError code, else Apollo's default."""
    original = getattr(error, "original_error", None)
    if isinstance(original, ApiError):
        return error_body(original.message, original.code)
    if original is not None and not isinstance(original, GraphQLError):
        return error_body(str(original), "INTERNAL_SERVER_ERROR")
    message = getattr(error, "message", None) or str(error)
    return error_body(message, "INTERNAL_SERVER_ERROR")


class _Document(object):
    __slots__ = ("document", "errors", "operations", "fragments", "introspection")

    def __init__(self, document, errors):
        self.document = document
        self.errors = errors
        self.introspection = bool(document) and executor.uses_introspection(document)
        self.operations = [d for d in document.definitions
                           if isinstance(d, ast.OperationDefinition)] if document else []
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, ast.FragmentDefinition)} if document else {}

    def operation(self, name):
        """graphql-js getOperationAST; None when ambiguous or unknown."""
        if name is None:
            return self.operations[0] if len(self.operations) == 1 else None
        for op in self.operations:
            if op.name is not None and op.name.value == name:
                return op
        return None

    def root_fields(self, operation):
        names = []
        seen_fragments = set()

        def walk(selection_set):
            for selection in selection_set.selections:
                if isinstance(selection, ast.Field):
                    names.append(selection.name.value)
                elif isinstance(selection, ast.InlineFragment):
                    walk(selection.selection_set)
                elif isinstance(selection, ast.FragmentSpread):
                    fragment = self.fragments.get(selection.name.value)
                    if fragment is not None and fragment.name.value not in seen_fragments:
                        seen_fragments.add(fragment.name.value)
                        walk(fragment.selection_set)

        walk(operation.selection_set)
        return names


class GraphQLService(object):
    def __init__(self, store, schema):
        self.store = store
        self.schema = schema
        self._docs = {}
        self._docs_lock = threading.Lock()
        self._responses = {}

    # -------------------------------------------------------- documents

    def document(self, query):
        """Parse + validate, cached by text.  Returns a _Document whose
        ``errors`` is None, ("parse", [msg]) or ("validation", [msgs])."""
        with self._docs_lock:
            doc = self._docs.get(query)
        if doc is not None:
            return doc
        try:
            document = parse(query)
        except GraphQLSyntaxError as exc:
            doc = _Document(None, ("parse", [jscompat.reword_syntax_error(exc)]))
        else:
            try:
                found = validate(self.schema, document, jscompat.VALIDATION_RULES)
            except Exception:  # graphql-core can trip over type-system definitions
                found = [GraphQLError("The document is not executable.")]
            if found:
                messages = [jscompat.reword_validation_message(e.message, self.schema)
                            for e in found]
                doc = _Document(document, ("validation", messages))
            else:
                doc = _Document(document, None)
        with self._docs_lock:
            if len(self._docs) >= DOC_CACHE_SIZE:
                self._docs.clear()
            self._docs[query] = doc
        return doc

    def root_fields(self, query, operation_name):
        """Root field names of the operation a request would run (for /-/stats)."""
        if not isinstance(query, str) or not query:
            return []
        doc = self.document(query)
        if doc.document is None:
            return []
        op = doc.operation(operation_name if isinstance(operation_name, str) else None)
        return doc.root_fields(op) if op is not None else []

    # ---------------------------------------------------------- request

    def handle(self, method, params, user, meter=None):
        """``params``: the decoded body (POST) or query string (GET).
        ``meter`` (costs.Meter) counts what the execution asks of the real
        server's back ends; the items of a batch share one."""
        if meter is None:
            meter = Meter()
        variables = params.get("variables")
        extensions = params.get("extensions")
        if isinstance(extensions, str) and extensions != "":
            try:
                loads_strict(extensions)
            except ValueError:
                return plain(400, "Extensions are invalid JSON.")
        query = params.get("query")
        if query is not None and not isinstance(query, str):
            return plain(400, "GraphQL queries must be strings.")
        if isinstance(variables, str) and variables != "":
            try:
                variables = loads_strict(variables)
            except ValueError:
                return plain(400, "Variables are invalid JSON.")
        if not isinstance(variables, dict):
            variables = {}
        operation_name = params.get("operationName")
        if not isinstance(operation_name, str) or operation_name == "":
            operation_name = None
        if not query:
            return plain(400, "Must provide query string.")

        doc = self.document(query)
        if doc.errors is not None:
            kind, messages = doc.errors
            code = "GRAPHQL_PARSE_FAILED" if kind == "parse" else "GRAPHQL_VALIDATION_FAILED"
            return errors_response(400, [error_body(m, code) for m in messages])

        operation = doc.operation(operation_name)
        if operation is None:
            if operation_name is None:
                message = "Must provide operation name if query contains multiple operations."
            else:
                message = 'Unknown operation named "%s".' % operation_name
            return errors_response(400, [error_body(message, "INTERNAL_SERVER_ERROR")])
        if method == "GET" and operation.operation != "query":
            return plain(405, "GET supports only query operation", {"Allow": "POST"})

        coerced, messages = jscompat.coerce_variable_values(self.schema, operation, variables)
        if messages:
            return errors_response(400, [error_body(m, "INTERNAL_SERVER_ERROR")
                                         for m in messages])

        cache_key = None
        # A meter that already counted (a later item of a batch) has memoised
        # calls a cached answer's meter knows nothing of: no cache then.
        if operation.operation == "query" and meter.fresh():
            cache_key = (query, operation_name, user["id"],
                         json.dumps(variables, sort_keys=True, default=str))
        with self.store.lock:
            self.store.tick()
            version = self.store.version
            if cache_key is not None:
                hit = self._responses.get(cache_key)
                if hit is not None and hit[0] == version:
                    meter.load(hit[2])
                    return hit[1]
            context = RequestContext(self.store, user, coerced, meter)
            if doc.introspection:
                result = execute(self.schema, doc.document, context_value=context,
                                 variable_values=coerced, operation_name=operation_name)
                if getattr(result, "invalid", False):
                    return errors_response(400, [format_error(e) for e in result.errors or []])
                data = result.data
                errors = [format_error(e) for e in result.errors or []]
            else:
                data, errors = executor.execute(self.schema, operation, doc.fragments,
                                                context, coerced)
            body = {}
            if errors:
                body["errors"] = errors
            body["data"] = data
            response = Response(200, json_bytes(body))
            if cache_key is not None and self.store.version == version:
                if len(self._responses) >= RESPONSE_CACHE_SIZE:
                    self._responses.clear()
                self._responses[cache_key] = (version, response, meter.copy())
            return response
