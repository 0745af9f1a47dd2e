/*
 * test_graphql.c - the GraphQL envelope without a network: every error
 * shape PrimeHub gives (token, authorisation, not found, conflict, refused
 * request, server errors) must come out as the right errno with the
 * server's text, a redirect must be refused with the reason, and garbage
 * must never crash the decoder.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/graphql.h"
#include "primehubfs/json_pull.h"
#include "unit.h"

/* A stream consumer that rebuilds data as a cJSON tree from its events. */
struct rebuild {
	cJSON *root;
	cJSON *stack[64];
	int n;
	char key[256];
	int begins; /* calls of begin */
};

static int rb_begin(void *arg)
{
	struct rebuild *r = arg;

	cJSON_Delete(r->root);
	r->root = NULL;
	r->n = 0;
	r->begins++;
	return 0;
}

static int rb_event(void *arg, const struct jp_event *ev)
{
	struct rebuild *r = arg;
	cJSON *item = NULL, *parent = r->n ? r->stack[r->n - 1] : NULL;

	CHECK(ev->depth ==
	          (unsigned)r->n - (ev->type == JP_OBJECT_END || ev->type == JP_ARRAY_END) ||
	      ev->type == JP_KEY);
	switch (ev->type) {
	case JP_KEY:
		snprintf(r->key, sizeof(r->key), "%s", ev->str);
		return 0;
	case JP_OBJECT_END:
	case JP_ARRAY_END:
		r->n--;
		return 0;
	case JP_OBJECT_BEGIN:
		item = cJSON_CreateObject();
		break;
	case JP_ARRAY_BEGIN:
		item = cJSON_CreateArray();
		break;
	case JP_STRING:
		item = cJSON_CreateString(ev->str);
		break;
	case JP_NUMBER:
		item = cJSON_CreateNumber(strtod(ev->str, NULL));
		break;
	case JP_TRUE:
	case JP_FALSE:
		item = cJSON_CreateBool(ev->type == JP_TRUE);
		break;
	default:
		item = cJSON_CreateNull();
		break;
	}
	if (!parent)
		r->root = item;
	else if (cJSON_IsObject(parent))
		cJSON_AddItemToObject(parent, r->key, item);
	else
		cJSON_AddItemToArray(parent, item);
	if ((ev->type == JP_OBJECT_BEGIN || ev->type == JP_ARRAY_BEGIN) && r->n < 64)
		r->stack[r->n++] = item;
	return 0;
}

static int stream_mismatches;

/* Decode body with status; return the errno, leave the message in *err.
 * The same body decoded as a stream (whole, byte by byte, in pieces of 3)
 * must give the same errno and message, and on success the same data. */
static int decode(long status, const char *body, cJSON **data, struct ph_err *err)
{
	static const size_t pieces[] = {0, 1, 3};
	cJSON *mine = NULL;
	int ret;

	ph_err_clear(err);
	ret = gql_decode_response(status, body, strlen(body), &mine, err);
	for (size_t i = 0; i < sizeof(pieces) / sizeof(pieces[0]); i++) {
		struct rebuild r = {0};
		struct gql_stream st = {.begin = rb_begin, .event = rb_event, .arg = &r};
		struct ph_err e2 = {0};
		int r2 =
		    gql_decode_response_stream(status, body, strlen(body), pieces[i], &st, &e2);

		if (r2 != ret || (ret < 0 && strcmp(e2.msg, err->msg) != 0) ||
		    (ret == 0 && !cJSON_Compare(r.root, mine, true)) || r.begins != 1) {
			fprintf(stderr, "stream decode of %s (pieces of %zu): %d %s, not %d %s\n",
			        body, pieces[i], r2, e2.msg, ret, err->msg);
			stream_mismatches++;
		}
		cJSON_Delete(r.root);
	}
	if (data)
		*data = mine;
	else
		cJSON_Delete(mine);
	return ret;
}

#define AUTH_ERR(msg)                                                                              \
	"{\"errors\":[{\"message\":\"" msg                                                         \
	"\",\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}}]}"

static void test_auth(void)
{
	struct ph_err err;
	cJSON *data = (cJSON *)1;

	/* PrimeHub answers a bad token with HTTP 500 whose message starts
	 * "Context creation failed:". */
	CHECK_INT(decode(500, AUTH_ERR("Context creation failed: Invalid API Token"), &data, &err),
	          -EACCES);
	CHECK_STR(err.msg, "token rejected: Invalid API Token (it expired or was revoked: make a "
	                   "new one in PrimeHub)");
	CHECK_INT(err.errnum, EACCES);
	CHECK(data == NULL);

	CHECK_INT(
	    decode(500, AUTH_ERR("Context creation failed: request not authorized"), &data, &err),
	    -EACCES);
	CHECK_STR(err.msg, "token rejected: request not authorized");

	/* Whatever the status, the prefix decides. */
	CHECK_INT(decode(200, AUTH_ERR("Context creation failed: Invalid API Token"), &data, &err),
	          -EACCES);

	CHECK_INT(decode(200,
	                 "{\"errors\":[{\"message\":\"token expired\",\"extensions\":{\"code\":"
	                 "\"REFRESH_TOKEN_EXPIRED\",\"loginUrl\":\"https://x/login\"}}]}",
	                 &data, &err),
	          -EACCES);
	CHECK_CONTAINS(err.msg, "token rejected");
}

static void test_not_authorised(void)
{
	struct ph_err err;
	cJSON *data = NULL;

	/* Resolver check, non-admin mutation. */
	CHECK_INT(decode(200,
	                 "{\"data\":null,\"errors\":[{\"message\":\"Not authorise\","
	                 "\"extensions\":{\"code\":\"NOT_AUTH\"}}]}",
	                 &data, &err),
	          -EACCES);
	CHECK_CONTAINS(err.msg, "Not authorise");
	CHECK_CONTAINS(err.msg, "NOT_AUTH");
	CHECK(data == NULL);

	/* graphql-shield: only the message says it, with a partial data object. */
	CHECK_INT(decode(200,
	                 "{\"data\":{\"groups\":null},\"errors\":[{\"message\":\"Not Authorised!\","
	                 "\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}}]}",
	                 &data, &err),
	          -EACCES);
	CHECK_CONTAINS(err.msg, "Not Authorised!");
	CHECK_CONTAINS(err.msg, "realm-admin");
	CHECK(cJSON_IsObject(data));
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(data, "groups")));
	cJSON_Delete(data);
}

static void test_not_found(void)
{
	struct ph_err err;
	cJSON *data = NULL;

	/* v3 text. */
	CHECK_INT(decode(200,
	                 "{\"data\":{\"updateImage\":null},\"errors\":[{\"message\":"
	                 "\"images.primehub.io \\\"nope\\\" not found\",\"extensions\":{\"code\":"
	                 "\"RESOURCE_NOT_FOUND\"}}]}",
	                 &data, &err),
	          -ENOENT);
	CHECK_CONTAINS(err.msg, "images.primehub.io \"nope\" not found");
	CHECK(cJSON_IsObject(data));
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(data, "updateImage")));
	cJSON_Delete(data);

	/* v4 text: only the code says "not found". */
	CHECK_INT(
	    decode(200,
	           "{\"data\":{\"deleteImage\":null},\"errors\":[{\"message\":"
	           "\"HTTP request failed\",\"extensions\":{\"code\":\"RESOURCE_NOT_FOUND\"}}]}",
	           &data, &err),
	    -ENOENT);
	CHECK_CONTAINS(err.msg, "HTTP request failed");
	cJSON_Delete(data);

	/* An unknown group id: the message is the only signal, code is generic. */
	CHECK_INT(decode(200,
	                 "{\"data\":null,\"errors\":[{\"message\":\"Request failed with status "
	                 "code 404\",\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}}]}",
	                 &data, &err),
	          -ENOENT);
	CHECK_CONTAINS(err.msg, "group id does not exist");
	CHECK_CONTAINS(err.msg, "Request failed with status code 404");
	CHECK(data == NULL);
}

static void test_conflict(void)
{
	struct ph_err err;
	cJSON *data = NULL;

	CHECK_INT(decode(200,
	                 "{\"data\":null,\"errors\":[{\"message\":\"Resource already exist\","
	                 "\"extensions\":{\"code\":\"RESOURCE_CONFLICT\"}}]}",
	                 &data, &err),
	          -EEXIST);
	CHECK_CONTAINS(err.msg, "Resource already exist");
	CHECK(data == NULL);
}

static void test_refused_requests(void)
{
	struct ph_err err;
	cJSON *data = NULL;

	CHECK_INT(
	    decode(400,
	           "{\"errors\":[{\"message\":\"Cannot query field \\\"foo\\\" on type "
	           "\\\"Image\\\".\",\"extensions\":{\"code\":\"GRAPHQL_VALIDATION_FAILED\"}}]}",
	           &data, &err),
	    -EPROTO);
	CHECK_CONTAINS(err.msg, "Cannot query field \"foo\" on type \"Image\".");
	CHECK_CONTAINS(err.msg, "GRAPHQL_VALIDATION_FAILED");

	CHECK_INT(decode(400,
	                 "{\"errors\":[{\"message\":\"Syntax Error: Expected Name, found }\","
	                 "\"extensions\":{\"code\":\"GRAPHQL_PARSE_FAILED\"}}]}",
	                 &data, &err),
	          -EPROTO);
	CHECK_CONTAINS(err.msg, "Syntax Error");

	/* A bad variable: 400 with a code that depends on the Apollo version. */
	CHECK_INT(
	    decode(400,
	           "{\"errors\":[{\"message\":\"Variable \\\"$data\\\" got invalid value "
	           "{\\\"imageSpec\\\":{}}; Field \\\"imageSpec\\\" is not defined by type "
	           "ImageUpdateInput.\",\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}}]}",
	           &data, &err),
	    -EPROTO);
	CHECK_CONTAINS(err.msg, "Field \"imageSpec\" is not defined by type ImageUpdateInput.");
	CHECK(data == NULL);

	/* Plain-text bodies from the HTTP layer in front of Apollo. */
	CHECK_INT(decode(400, "Must provide query string.", &data, &err), -EIO);
	CHECK_STR(err.msg, "HTTP 400 from server: Must provide query string.");
	CHECK_INT(decode(400, "Variables are invalid JSON.", &data, &err), -EIO);
	CHECK_STR(err.msg, "HTTP 400 from server: Variables are invalid JSON.");
	CHECK_INT(decode(405, "GET supports only query operation", &data, &err), -EIO);
	CHECK_STR(err.msg, "HTTP 405 from server: GET supports only query operation");
	CHECK(data == NULL);
}

static void test_server_errors(void)
{
	struct ph_err err;
	cJSON *data = NULL;

	CHECK_INT(decode(200,
	                 "{\"data\":{\"rebuildImage\":null},\"errors\":[{\"message\":\"failed to "
	                 "rebuild image\",\"extensions\":{\"code\":\"INTERNAL_ERROR\"}}]}",
	                 &data, &err),
	          -EIO);
	CHECK_CONTAINS(err.msg, "failed to rebuild image");
	CHECK_CONTAINS(err.msg, "INTERNAL_ERROR");
	/* Partial failure: the data object still comes back (a mutation may
	 * have applied part of its change). */
	CHECK(cJSON_IsObject(data));
	cJSON_Delete(data);

	CHECK_INT(decode(200,
	                 "{\"data\":null,\"errors\":[{\"message\":\"An internal server error "
	                 "occurred\",\"extensions\":{\"code\":\"API_UNAVAILABLE\"}}]}",
	                 &data, &err),
	          -EIO);
	CHECK_CONTAINS(err.msg, "API_UNAVAILABLE");

	CHECK_INT(decode(200,
	                 "{\"data\":null,\"errors\":[{\"message\":\"Cannot return null for "
	                 "non-nullable field Query.secret.\",\"extensions\":{\"code\":"
	                 "\"INTERNAL_SERVER_ERROR\"}}]}",
	                 &data, &err),
	          -EIO);
	CHECK_CONTAINS(err.msg, "Cannot return null for non-nullable field Query.secret.");

	/* Two errors: errno of the first, both messages. */
	CHECK_INT(
	    decode(200,
	           "{\"data\":{\"a\":null,\"b\":null},\"errors\":[{\"message\":\"Not "
	           "Authorised!\",\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}},"
	           "{\"message\":\"second one\",\"extensions\":{\"code\":\"INTERNAL_ERROR\"}}]}",
	           &data, &err),
	    -EACCES);
	CHECK_CONTAINS(err.msg, "and 1 more error: second one");
	cJSON_Delete(data);

	/* A 500 with JSON but no errors. */
	CHECK_INT(decode(500, "{\"data\":null}", &data, &err), -EIO);
	CHECK_CONTAINS(err.msg, "HTTP 500 from server");
}

static void test_garbage(void)
{
	struct ph_err err;
	cJSON *data = NULL;
	char big[400];

	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	memcpy(big, "<html>\n<body>Bad Gateway", 24);
	CHECK_INT(decode(502, big, &data, &err), -EIO);
	CHECK_CONTAINS(err.msg, "HTTP 502 from server: <html> <body>Bad Gateway");
	CHECK(strlen(err.msg) < 160); /* only the first 100 characters */
	CHECK_CONTAINS(err.msg, "...");

	/* Quoted bodies are valid UTF-8 on one line, whatever came in. */
	CHECK_INT(decode(200, "<html>\x00\xff\xfe caf\xc3\xa9 \xe2\x82", &data, &err), -EIO);
	CHECK_STR(err.msg, "HTTP 200 from server: <html>");
	CHECK_INT(gql_decode_response(200, "<p>\x00\xff\xfe caf\xc3\xa9 \xe2\x82", 15, &data, &err),
	          -EIO);
	CHECK_STR(err.msg, "HTTP 200 from server: <p> ?? caf\xc3\xa9 ??");

	/* A multi-byte character across the 100-byte limit is cut before it,
	 * not copied past the limit. */
	{
		char cut[200];

		memset(cut, 'a', 99);
		strcpy(cut + 99, "\xe6\x97\xa5 and more");
		CHECK_INT(decode(502, cut, &data, &err), -EIO);
		CHECK(strstr(err.msg, "\xe6") == NULL);
		CHECK_CONTAINS(err.msg, "aaa...");
	}

	/* A redirect is refused with where it pointed (through the client:
	 * the status alone says so here). */
	CHECK_INT(decode(307, "", &data, &err), -EIO);
	CHECK_CONTAINS(err.msg, "PrimeHub answered HTTP 307 redirecting to (no Location)");
	CHECK_CONTAINS(err.msg, "does not follow redirects");
	CHECK_INT(decode(301, "{\"data\":{}}", &data, &err), -EIO);
	CHECK(data == NULL);

	CHECK_INT(decode(200, "", &data, &err), -EIO);
	CHECK_STR(err.msg, "HTTP 200 from server: (empty answer)");
	CHECK_INT(gql_decode_response(200, NULL, 0, &data, &err), -EIO);

	CHECK_INT(decode(200, "[1,2]", &data, &err), -EIO);
	CHECK_INT(decode(200, "\"data\"", &data, &err), -EIO);
	CHECK_INT(decode(200, "{\"data\":", &data, &err), -EIO);
	CHECK_INT(decode(200, "{}", &data, &err), -EPROTO);
	CHECK_INT(decode(200, "{\"data\":[]}", &data, &err), -EPROTO);
	CHECK_INT(decode(200, "{\"data\":{},\"errors\":{}}", &data, &err), -EPROTO);
	CHECK(data == NULL);
	CHECK_INT(decode(200, "{\"errors\":[1]}", &data, &err), -EIO);
	CHECK_CONTAINS(err.msg, "(no message)");
	CHECK_INT(decode(200, "{\"errors\":[{\"message\":7,\"extensions\":[]}]}", &data, &err),
	          -EIO);
	CHECK_INT(decode(200, "{\"errors\":[{\"extensions\":{\"code\":5}}]}", &data, &err), -EIO);
	CHECK_INT(decode(200, "{\"errors\":[null,null]}", &data, &err), -EIO);

	/* The body is a buffer with a length, not a C string. */
	CHECK_INT(gql_decode_response(200, "{\"data\":{}}garbage", 11, &data, &err), 0);
	cJSON_Delete(data);
	data = NULL;

	/* Random bytes and every truncation of a real answer: no crash, no leak. */
	{
		const char *real = "{\"data\":{\"updateImage\":null},\"errors\":[{\"message\":"
		                   "\"HTTP request failed\",\"extensions\":{\"code\":"
		                   "\"RESOURCE_NOT_FOUND\"}}]}";
		char buf[256];
		unsigned seed = 12345;
		int wrong = 0;

		for (size_t n = 0; n <= strlen(real); n++) {
			int r = gql_decode_response(200, real, n, &data, &err);

			cJSON_Delete(data);
			data = NULL;
			if (r >= 0)
				wrong++;
		}
		for (int i = 0; i < 20000; i++) {
			size_t n = (size_t)(i % (int)sizeof(buf));

			for (size_t k = 0; k < n; k++) {
				seed = seed * 1103515245u + 12345u;
				buf[k] = "{}[]\":,0tnfaelsru\\ x"[(seed >> 16) % 20];
			}
			(void)gql_decode_response(i % 3 ? 200 : 500, buf, n, &data, &err);
			cJSON_Delete(data);
			data = NULL;
		}
		CHECK_INT(wrong, 0); /* every truncation is an error */
		/* The streaming decoder too, whole and byte by byte. */
		wrong = 0;
		for (size_t n = 0; n <= strlen(real); n++)
			for (size_t piece = 0; piece < 2; piece++) {
				struct rebuild r = {0};
				struct gql_stream st = {
				    .begin = rb_begin, .event = rb_event, .arg = &r};

				if (gql_decode_response_stream(200, real, n, piece, &st, &err) >= 0)
					wrong++;
				cJSON_Delete(r.root);
			}
		CHECK_INT(wrong, 0);
		for (int i = 0; i < 20000; i++) {
			size_t n = (size_t)(i % (int)sizeof(buf));
			struct rebuild r = {0};
			struct gql_stream st = {.begin = rb_begin, .event = rb_event, .arg = &r};
			int ret;

			for (size_t k = 0; k < n; k++) {
				seed = seed * 1103515245u + 12345u;
				buf[k] = "{}[]\":,0tnfaelsru\\ x"[(seed >> 16) % 20];
			}
			ret = gql_decode_response_stream(i % 3 ? 200 : 500, buf, n, (size_t)i % 4,
			                                 &st, &err);
			if (ret != 0 && ret != -EIO && ret != -EPROTO && ret != -EACCES)
				wrong++;
			cJSON_Delete(r.root);
		}
		CHECK_INT(wrong, 0);
	}
}

static void test_success(void)
{
	struct ph_err err;
	cJSON *data = NULL;
	const cJSON *me;

	CHECK_INT(decode(200, "{\"data\":{\"me\":{\"username\":\"phadmin\",\"isAdmin\":true}}}",
	                 &data, &err),
	          0);
	me = cJSON_GetObjectItemCaseSensitive(data, "me");
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(me, "username")),
	          "phadmin");
	cJSON_Delete(data);

	/* An empty errors list is no error. */
	CHECK_INT(decode(200, "{\"data\":{\"image\":null},\"errors\":[]}", &data, &err), 0);
	CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(data, "image")));
	cJSON_Delete(data);

	/* data_out may be NULL. */
	CHECK_INT(decode(200, "{\"data\":{}}", NULL, &err), 0);
	CHECK_INT(gql_decode_response(200, "{\"data\":{}}", 11, NULL, NULL), 0);
}

static void test_encode(void)
{
	const char *doc = "query Q($where: ImageWhereUniqueInput!) {\n  image(where: $where) { "
	                  "id }\n}\n# \"quoted\" \\ \t";
	cJSON *vars = cJSON_Parse("{\"where\":{\"id\":\"tf-2\"}}");
	char *text = gql_encode_request(doc, vars);
	cJSON *back = cJSON_Parse(text);
	const cJSON *v;

	CHECK(back != NULL);
	CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(back, "query")), doc);
	v = cJSON_GetObjectItemCaseSensitive(back, "variables");
	CHECK(cJSON_Compare(v, vars, true));
	CHECK_INT(cJSON_GetArraySize(back), 2); /* no operationName: one operation per doc */
	CHECK(strchr(text, '\n') == NULL);      /* compact: the tree query goes out often */
	free(text);
	cJSON_Delete(back);
	cJSON_Delete(vars);

	text = gql_encode_request("query PrimehubfsWhoAmI { me { username isAdmin } }", NULL);
	CHECK_STR(text, "{\"query\":\"query PrimehubfsWhoAmI { me { username isAdmin } }\","
	                "\"variables\":{}}");
	free(text);
}

static void test_client(void)
{
	struct gql_client *c = NULL;
	struct ph_err err;

	char *header;

	CHECK_INT(gql_client_new(NULL, "http://h/api/graphql", "tok-1\n", &c, &err), 0);
	header = gql_client_auth_header(c);
	CHECK_STR(header, "Authorization: Bearer tok-1");
	gql_free_auth_header(header);
	gql_client_free(c);

	ph_err_clear(&err);
	CHECK_INT(gql_client_new(NULL, "http://h/api/graphql", "tok\r\nX-Evil: 1", &c, &err),
	          -EINVAL);
	CHECK(c == NULL);
	CHECK_CONTAINS(err.msg, "token");
	CHECK_INT(gql_client_new(NULL, "http://h/api/graphql", " \n", &c, &err), -EINVAL);
	CHECK_INT(gql_client_new(NULL, "", "tok", &c, &err), -EINVAL);
	CHECK_INT(gql_client_new(NULL, "http://h/api/graphql", NULL, &c, &err), -EINVAL);
}

int main(void)
{
	test_auth();
	test_not_authorised();
	test_not_found();
	test_conflict();
	test_refused_requests();
	test_server_errors();
	test_garbage();
	test_success();
	test_encode();
	test_client();
	CHECK_INT(stream_mismatches, 0);
	UNIT_DONE();
}
