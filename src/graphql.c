/*
 * graphql.c - the GraphQL envelope over http.c (see graphql.h).
 *
 * Every error the server can give is turned into an errno here, once, by the
 * table in graphql.h, so primehub.c and the FUSE layer never look at error
 * text.  The decision uses extensions.code; the message text is used only
 * where it is the sole signal (primehub-api.md §8.1: "Context creation
 * failed:" for a rejected token, "Not Authorised!" from graphql-shield, and
 * "Request failed with status code 404" for an unknown group id).
 *
 * Nothing is logged here: the reason goes back in struct ph_err and the
 * caller decides what to log.
 */
#include "primehubfs/graphql.h"
#include "net_private.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AUTH_PREFIX  "Authorization: Bearer "
#define TOKEN_PREFIX "Context creation failed:"

struct gql_client {
	struct http_client *http; /* borrowed */
	char *endpoint;           /* owned */
	char *auth_header;        /* owned: "Authorization: Bearer <token>" */
	http_abort_fn abort_cb;
	void *abort_arg;
	gql_token_reload_fn token_reload; /* may be NULL */
	void *token_reload_arg;
};

int gql_client_new(struct http_client *http, const char *endpoint, const char *token,
                   struct gql_client **out, struct ph_err *err)
{
	struct gql_client *c;
	size_t tlen;

	*out = NULL;
	if (!endpoint || !*endpoint)
		return ph_err_set(err, EINVAL, NULL, "no PrimeHub GraphQL endpoint given");
	if (!token || !*token)
		return ph_err_set(err, EINVAL, NULL, "no PrimeHub API token given");
	/* A token read from a file often ends in a newline; anything else that
	 * is not printable would let the token forge more header lines. */
	tlen = strlen(token);
	while (tlen && (token[tlen - 1] == '\n' || token[tlen - 1] == '\r' ||
	                token[tlen - 1] == ' ' || token[tlen - 1] == '\t'))
		tlen--;
	if (!tlen)
		return ph_err_set(err, EINVAL, NULL, "no PrimeHub API token given");
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)token[i] < 0x21 || token[i] == 0x7f)
			return ph_err_set(err, EINVAL, NULL,
			                  "the API token contains a space or control character");

	c = calloc(1, sizeof(*c));
	if (!c)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	c->http = http;
	c->endpoint = strdup(endpoint);
	c->auth_header = malloc(sizeof(AUTH_PREFIX) + tlen);
	if (!c->endpoint || !c->auth_header) {
		gql_client_free(c);
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	}
	memcpy(c->auth_header, AUTH_PREFIX, sizeof(AUTH_PREFIX) - 1);
	memcpy(c->auth_header + sizeof(AUTH_PREFIX) - 1, token, tlen);
	c->auth_header[sizeof(AUTH_PREFIX) - 1 + tlen] = '\0';
	*out = c;
	return 0;
}

void gql_client_free(struct gql_client *c)
{
	if (!c)
		return;
	free(c->endpoint);
	if (c->auth_header) /* the token should not linger in freed memory */
		memset(c->auth_header, 0, strlen(c->auth_header));
	free(c->auth_header);
	free(c);
}

/* Set once, before the client is shared: the callback itself runs on the
 * thread doing the transfer, so it should read per-request state such as
 * fuse_interrupted(). */
void gql_client_set_abort(struct gql_client *c, http_abort_fn cb, void *arg)
{
	c->abort_cb = cb;
	c->abort_arg = arg;
}

void gql_client_set_token_source(struct gql_client *c, gql_token_reload_fn reload, void *arg)
{
	c->token_reload = reload;
	c->token_reload_arg = arg;
}

void gql_client_abort_hook(const struct gql_client *c, http_abort_fn *cb, void **arg)
{
	*cb = c->abort_cb;
	*arg = c->abort_arg;
}

struct http_client *gql_client_http(const struct gql_client *c)
{
	return c->http;
}

const char *gql_client_auth_header(const struct gql_client *c)
{
	return c->auth_header;
}

char *gql_encode_request(const char *document, const cJSON *variables)
{
	cJSON *root = cJSON_CreateObject();
	cJSON *vars;
	char *text = NULL;

	if (!root)
		return NULL;
	vars = variables ? cJSON_Duplicate(variables, true) : cJSON_CreateObject();
	if (!vars) {
		cJSON_Delete(root);
		return NULL;
	}
	if (!cJSON_AddStringToObject(root, "query", document ? document : "")) {
		cJSON_Delete(vars);
		cJSON_Delete(root);
		return NULL;
	}
	if (cJSON_AddItemToObject(root, "variables", vars)) /* root owns vars now */
		text = cJSON_PrintUnformatted(root);
	else
		cJSON_Delete(vars);
	cJSON_Delete(root);
	return text;
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n)
{
	size_t k;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		k = 2;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		k = 3;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		k = 4;
	else
		return 0;
	if (k > n)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	return k;
}

/*
 * The first NET_SNIPPET_MAX bytes of a body, for a message: one line (control
 * characters become spaces) of valid UTF-8 (a bad byte becomes '?'), because
 * it ends up in the log and in .error files that tools read as text.
 */
void net_snippet(const char *body, size_t len, char *out, size_t outsz)
{
	const unsigned char *p = (const unsigned char *)body;
	size_t i = 0, n = 0;

	if (!body || !len) {
		snprintf(out, outsz, "(empty answer)");
		return;
	}
	while (i < len && i < NET_SNIPPET_MAX && n + 8 < outsz) {
		size_t k = utf8_len(p + i, len - i);

		if (k == 0) {
			out[n++] = '?';
			i++;
		} else if (k == 1) {
			out[n++] = (p[i] < 0x20 || p[i] == 0x7f) ? ' ' : (char)p[i];
			i++;
		} else {
			memcpy(out + n, p + i, k);
			n += k;
			i += k;
		}
	}
	if (i < len && n + 4 <= outsz) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

static const char *json_str(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsString(v) && v->valuestring ? v->valuestring : NULL;
}

static bool str_is(const char *s, const char *lit)
{
	return s && strcmp(s, lit) == 0;
}

/* One error object -> errno and a message; endpoint may be NULL. */
static int map_error(long status, const cJSON *e, const char *endpoint, char *msg, size_t msgsz)
{
	const char *text = cJSON_IsObject(e) ? json_str(e, "message") : NULL;
	const char *code = NULL;
	char codebuf[80] = "";

	if (cJSON_IsObject(e))
		code = json_str(cJSON_GetObjectItemCaseSensitive(e, "extensions"), "code");
	if (!text)
		text = "(no message)";
	if (code)
		snprintf(codebuf, sizeof(codebuf), " (%s)", code);

	/* §8.1: the only sign of a bad or missing token is this prefix. */
	if (strncmp(text, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) == 0) {
		const char *rest = text + sizeof(TOKEN_PREFIX) - 1;

		while (*rest == ' ')
			rest++;
		snprintf(msg, msgsz, "token rejected%s%s: %s", endpoint ? " by " : "",
		         endpoint ? endpoint : "", rest);
		return -EACCES;
	}
	if (str_is(code, "REFRESH_TOKEN_EXPIRED") || str_is(code, "ACCESS_TOKEN_EXPIRED")) {
		snprintf(msg, msgsz, "token rejected%s%s: %s%s", endpoint ? " by " : "",
		         endpoint ? endpoint : "", text, codebuf);
		return -EACCES;
	}
	/* NOT_AUTH from the image resolvers; "Not Authorised!" from the shield,
	 * whose code is only INTERNAL_SERVER_ERROR. */
	if (str_is(code, "NOT_AUTH") || str_is(text, "Not Authorised!")) {
		snprintf(msg, msgsz,
		         "permission denied: %s%s (admin images need the realm-admin role)", text,
		         codebuf);
		return -EACCES;
	}
	if (str_is(code, "RESOURCE_NOT_FOUND")) {
		/* v3 says `images.primehub.io "x" not found`, v4 only "HTTP request
		 * failed": the code is what counts (§3.7). */
		snprintf(msg, msgsz, "not found: %s%s", text, codebuf);
		return -ENOENT;
	}
	if (str_is(text, "Request failed with status code 404")) {
		snprintf(msg, msgsz,
		         "a group id does not exist: %s%s; the rest of the change may already be "
		         "applied",
		         text, codebuf);
		return -ENOENT;
	}
	if (str_is(code, "RESOURCE_CONFLICT")) {
		snprintf(msg, msgsz, "name already taken: %s%s", text, codebuf);
		return -EEXIST;
	}
	/* A 400 with JSON errors is Apollo refusing the request itself: a syntax,
	 * validation or variable error, whatever code that Apollo version picks. */
	if (str_is(code, "GRAPHQL_PARSE_FAILED") || str_is(code, "GRAPHQL_VALIDATION_FAILED") ||
	    str_is(code, "BAD_USER_INPUT") || status == 400) {
		snprintf(msg, msgsz,
		         "server refused the request (a primehubfs bug or an unsupported server "
		         "version): %s%s",
		         text, codebuf);
		return -EPROTO;
	}
	snprintf(msg, msgsz, "server error: %s%s", text, codebuf);
	return -EIO;
}

static int map_errors(long status, const cJSON *errors, const char *endpoint, struct ph_err *err)
{
	const cJSON *first = errors->child, *second = first ? first->next : NULL;
	char msg[sizeof(err->msg)];
	int nerr = cJSON_GetArraySize(errors);
	int ret = map_error(status, first, endpoint, msg, sizeof(msg));

	if (second) {
		const char *t2 = cJSON_IsObject(second) ? json_str(second, "message") : NULL;

		ph_err_set(err, ret, NULL, "%s (and %d more error%s: %s)", msg, nerr - 1,
		           nerr > 2 ? "s" : "", t2 ? t2 : "(no message)");
		return ret;
	}
	return ph_err_set(err, ret, NULL, "%s", msg);
}

static int decode(long status, const char *body, size_t len, const char *endpoint, cJSON **data_out,
                  struct ph_err *err)
{
	const cJSON *errors;
	cJSON *root, *data;
	bool partial = false;
	int ret = 0;

	if (data_out)
		*data_out = NULL;
	root = body ? cJSON_ParseWithLength(body, len) : NULL;
	if (!cJSON_IsObject(root)) {
		/* §8.2: plain-text 400/405, a proxy's HTML 502, garbage. */
		char snip[NET_SNIPPET_MAX + 16];

		cJSON_Delete(root);
		net_snippet(body, len, snip, sizeof(snip));
		return ph_err_set(err, EIO, NULL, "HTTP %ld from server: %s", status, snip);
	}
	errors = cJSON_GetObjectItemCaseSensitive(root, "errors");
	data = cJSON_GetObjectItemCaseSensitive(root, "data");

	if (cJSON_IsArray(errors) && errors->child) {
		ret = map_errors(status, errors, endpoint, err);
		partial = true;
	} else if (errors && !cJSON_IsNull(errors) && !cJSON_IsArray(errors)) {
		ret = ph_err_set(err, EPROTO, NULL,
		                 "unexpected answer from server: errors is not a list");
	} else if (status < 200 || status > 299) {
		char snip[NET_SNIPPET_MAX + 16];

		net_snippet(body, len, snip, sizeof(snip));
		ret = ph_err_set(err, EIO, NULL, "HTTP %ld from server: %s", status, snip);
	} else if (!cJSON_IsObject(data)) {
		ret = ph_err_set(err, EPROTO, NULL,
		                 "unexpected answer from server: no data and no errors");
	}
	/* On success, and on a partial failure that still has data, the caller
	 * gets the data object (§8.10: read what did happen). */
	if (data_out && (ret == 0 || partial) && cJSON_IsObject(data)) {
		cJSON_DetachItemViaPointer(root, data);
		*data_out = data;
	}
	cJSON_Delete(root);
	return ret;
}

int gql_decode_response(long http_status, const char *body, size_t len, cJSON **data_out,
                        struct ph_err *err)
{
	return decode(http_status, body, len, NULL, data_out, err);
}

int gql_execute(struct gql_client *c, const char *document, const cJSON *variables,
                cJSON **data_out, struct ph_err *err)
{
	const char *headers[] = {"Content-Type: application/json", "Accept: application/json",
	                         c->auth_header, NULL};
	struct http_response resp;
	struct http_request req = {
	    .method = "POST",
	    .url = c->endpoint,
	    .headers = headers,
	    .abort_cb = c->abort_cb,
	    .abort_arg = c->abort_arg,
	};
	char *body;
	int ret;

	if (data_out)
		*data_out = NULL;
	body = gql_encode_request(document, variables);
	if (!body)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	req.body = body;
	req.body_len = strlen(body);
	ret = http_perform(c->http, &req, &resp, err);
	free(body);
	if (ret < 0)
		return ret;
	ret = decode(resp.status, resp.body, resp.len, c->endpoint, data_out, err);
	http_response_free(&resp);
	return ret;
}
