/*
 * graphql.c - the GraphQL envelope over http.c (see graphql.h).
 *
 * Every error the server can give is turned into an errno here, once, by the
 * table in graphql.h, so primehub.c and the FUSE layer never look at error
 * text.  The decision uses extensions.code; the message text is used only
 * where it is the sole signal (PrimeHub answers a missing or rejected token
 * with HTTP 500 "Context creation failed: ...", graphql-shield refuses with
 * "Not Authorised!", and an unknown group id gives "Request failed with
 * status code 404").
 *
 * Queries change nothing, so a transient failure (refused or broken
 * connection, a proxy's 502/503/504, a plain-text 500, API_UNAVAILABLE) is
 * retried with backoff inside ONE time budget, the request timeout.  A
 * mutation is sent once: when its answer is lost it may still have been
 * applied, which the caller finds out by reading the image back.  It is sent
 * again only when the server certainly ran nothing: the connection was
 * refused before a byte went out, or the server rejected the token (it
 * answers that before any resolver runs).
 *
 * The token: the client keeps one "Authorization: Bearer" header under a
 * mutex; every request sends its own copy, so a thread that swaps in a new
 * token never frees a header another thread is sending.  Copies are cleared
 * before they are freed, and the token never appears in an error message
 * (a server that echoes it back has it cut out).
 *
 * Nothing is logged here: the reason goes back in struct ph_err and the
 * caller decides what to log.
 */
#include "primehubfs/graphql.h"
#include "net_private.h"
#include "primehubfs/json_pull.h"
#include "primehubfs/log.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define AUTH_PREFIX  "Authorization: Bearer "
#define TOKEN_PREFIX "Context creation failed:"

/* Query retries: the first after about RETRY_FIRST_MS, doubling, jittered,
 * as long as the time budget (the request timeout) lasts. */
#define RETRY_FIRST_MS 100
#define RETRY_MAX_MS   2000
#define QUERY_TRIES    4 /* the first and three more */

struct gql_client {
	struct http_client *http; /* borrowed */
	char *endpoint;           /* owned */
	long timeout_ms;          /* the budget of one operation, retries included */
	pthread_mutex_t token_lock;
	char *auth_header; /* owned, under token_lock: "Authorization: Bearer <token>";
	                    * requests send a copy, so a new token can replace it */
	http_abort_fn abort_cb;
	void *abort_arg;
	size_t max_stream;                /* the largest streamed answer */
	gql_token_reload_fn token_reload; /* may be NULL */
	void *token_reload_arg;
};

/* "Authorization: Bearer <token>" for a token, or NULL: -EINVAL (reason in
 * err) for an empty token or one with spaces or control characters, which
 * would let it forge more header lines. */
static char *auth_header_for(const char *token, struct ph_err *err)
{
	size_t tlen;
	char *h;

	if (!token || !*token) {
		ph_err_set(err, EINVAL, NULL, "no PrimeHub API token given");
		return NULL;
	}
	/* A token read from a file often ends in a newline. */
	tlen = strlen(token);
	while (tlen && (token[tlen - 1] == '\n' || token[tlen - 1] == '\r' ||
	                token[tlen - 1] == ' ' || token[tlen - 1] == '\t'))
		tlen--;
	if (!tlen) {
		ph_err_set(err, EINVAL, NULL, "no PrimeHub API token given");
		return NULL;
	}
	for (size_t i = 0; i < tlen; i++)
		if ((unsigned char)token[i] < 0x21 || token[i] == 0x7f) {
			ph_err_set(err, EINVAL, NULL,
			           "the API token contains a space or control character");
			return NULL;
		}
	h = malloc(sizeof(AUTH_PREFIX) + tlen);
	if (!h) {
		ph_err_set(err, ENOMEM, NULL, "out of memory");
		return NULL;
	}
	memcpy(h, AUTH_PREFIX, sizeof(AUTH_PREFIX) - 1);
	memcpy(h + sizeof(AUTH_PREFIX) - 1, token, tlen);
	h[sizeof(AUTH_PREFIX) - 1 + tlen] = '\0';
	return h;
}

/* Secrets must not linger in freed memory (a core dump, a later leak). */
static void free_secret(char *s)
{
	if (s)
		explicit_bzero(s, strlen(s));
	free(s);
}

int gql_client_new(struct http_client *http, const char *endpoint, const char *token,
                   struct gql_client **out, struct ph_err *err)
{
	struct gql_client *c;
	char *header;

	*out = NULL;
	if (!endpoint || !*endpoint)
		return ph_err_set(err, EINVAL, NULL, "no PrimeHub GraphQL endpoint given");
	header = auth_header_for(token, err);
	if (!header)
		return -(err && err->errnum ? err->errnum : EINVAL);
	c = calloc(1, sizeof(*c));
	if (!c) {
		free_secret(header);
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	}
	pthread_mutex_init(&c->token_lock, NULL);
	c->http = http;
	c->auth_header = header;
	c->timeout_ms = http ? http_client_timeout_ms(http) : 15000;
	c->max_stream = GQL_DEFAULT_MAX_STREAM;
	c->endpoint = strdup(endpoint);
	if (!c->endpoint) {
		gql_client_free(c);
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	}
	*out = c;
	return 0;
}

void gql_client_free(struct gql_client *c)
{
	if (!c)
		return;
	free(c->endpoint);
	free_secret(c->auth_header);
	pthread_mutex_destroy(&c->token_lock);
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

void gql_client_set_max_stream(struct gql_client *c, size_t bytes)
{
	c->max_stream = bytes ? bytes : GQL_DEFAULT_MAX_STREAM;
}

size_t gql_client_max_stream(const struct gql_client *c)
{
	return c->max_stream;
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

char *gql_client_auth_header(struct gql_client *c)
{
	char *h;

	pthread_mutex_lock(&c->token_lock);
	h = strdup(c->auth_header);
	pthread_mutex_unlock(&c->token_lock);
	return h;
}

void gql_free_auth_header(char *header)
{
	free_secret(header);
}

const char *gql_client_endpoint(const struct gql_client *c)
{
	return c->endpoint;
}

/* Ask the token source for a new token after the server rejected `used`
 * (the header that request sent).  True when the client now holds a
 * different token, so the request is worth sending once more. */
static bool token_changed_since(struct gql_client *c, const char *used)
{
	bool changed;

	pthread_mutex_lock(&c->token_lock);
	changed = strcmp(used, c->auth_header) != 0;
	pthread_mutex_unlock(&c->token_lock);
	return changed;
}

static bool reload_token(struct gql_client *c, const char *used)
{
	char *token = NULL, *header;
	bool changed = false;

	if (!c->token_reload)
		return false;
	/* Another thread, rejected at the same time, may have swapped in the
	 * new token already (the source then says "nothing new"). */
	if (token_changed_since(c, used))
		return true;
	if (c->token_reload(c->token_reload_arg, &token) < 0 || !token) {
		free_secret(token);
		return token_changed_since(c, used);
	}
	header = auth_header_for(token, NULL);
	free_secret(token);
	if (!header)
		return false;
	pthread_mutex_lock(&c->token_lock);
	if (strcmp(header, c->auth_header) != 0) {
		free_secret(c->auth_header);
		c->auth_header = header;
		header = NULL;
		changed = true;
	} else if (strcmp(used, c->auth_header) != 0) {
		changed = true; /* another thread already swapped it in */
	}
	pthread_mutex_unlock(&c->token_lock);
	free_secret(header);
	return changed;
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
			if (i + k > NET_SNIPPET_MAX)
				break; /* a character past the limit: cut before it */
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

/* What decode learnt beyond the errno. */
struct verdict {
	bool token_rejected; /* "Context creation failed": no resolver ran */
	bool transient;      /* worth asking again (for a query) */
	bool maybe_applied;  /* no real answer: a mutation may have been applied */
};

/* One error object -> errno and a message; endpoint may be NULL. */
static int map_error(long status, const cJSON *e, const char *endpoint, char *msg, size_t msgsz,
                     struct verdict *v)
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

	/* PrimeHub answers a missing, expired or revoked token with HTTP 500
	 * and a message starting "Context creation failed:", before any
	 * resolver runs; that prefix is the only sign. */
	if (strncmp(text, TOKEN_PREFIX, sizeof(TOKEN_PREFIX) - 1) == 0) {
		const char *rest = text + sizeof(TOKEN_PREFIX) - 1;

		while (*rest == ' ')
			rest++;
		snprintf(msg, msgsz, "token rejected%s%s: %s%s", endpoint ? " by " : "",
		         endpoint ? endpoint : "", rest,
		         strstr(rest, "Invalid API Token")
		             ? " (it expired or was revoked: make a new one in PrimeHub)"
		             : "");
		v->token_rejected = true;
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
		 * failed": the code is what counts. */
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
	/* Kubernetes behind the server is down: a query may work a moment
	 * later. */
	if (str_is(code, "API_UNAVAILABLE"))
		v->transient = true;
	snprintf(msg, msgsz, "server error: %s%s", text, codebuf);
	return -EIO;
}

static int map_errors(long status, const cJSON *errors, const char *endpoint, struct ph_err *err,
                      struct verdict *v)
{
	const cJSON *first = errors->child, *second = first ? first->next : NULL;
	char msg[sizeof(err->msg)];
	int nerr = cJSON_GetArraySize(errors);
	int ret = map_error(status, first, endpoint, msg, sizeof(msg), v);

	if (second) {
		const char *t2 = cJSON_IsObject(second) ? json_str(second, "message") : NULL;

		ph_err_set(err, ret, NULL, "%s (and %d more error%s: %s)", msg, nerr - 1,
		           nerr > 2 ? "s" : "", t2 ? t2 : "(no message)");
		return ret;
	}
	return ph_err_set(err, ret, NULL, "%s", msg);
}

/* The verdict on an answer, from what was found in it: whether the body
 * was a JSON object, its "errors" member (may be NULL), whether its "data"
 * was an object, and the body's start (for a snippet: head[0..head_len),
 * at least NET_SNIPPET_MAX + 8 bytes of it when the body is longer).  Used
 * for a body kept whole (decode) and for one decoded as it arrived. */
static int judge(long status, const char *location, const char *endpoint, bool object,
                 const cJSON *errors, bool data_object, const char *head, size_t head_len,
                 struct ph_err *err, struct verdict *v, bool *partial)
{
	char snip[NET_SNIPPET_MAX + 16];

	*partial = false;
	if (status >= 300 && status <= 399) {
		char where[160];

		net_snippet(location, location ? strlen(location) : 0, where, sizeof(where));
		return ph_err_set(
		    err, EIO, NULL,
		    "PrimeHub answered HTTP %ld redirecting to %s; primehubfs does not "
		    "follow redirects (the token goes to the endpoint only): use the "
		    "final URL as the endpoint",
		    status, location ? where : "(no Location)");
	}
	if (!object) {
		/* Plain-text 400/405 from the HTTP layer, a proxy's HTML 502,
		 * garbage.  Not PrimeHub's own answer: a mutation may or may not
		 * have run behind it, and a query may work when asked again
		 * (not a 4xx: that is the request itself). */
		net_snippet(head, head_len, snip, sizeof(snip));
		v->maybe_applied = status < 400 || status >= 500;
		v->transient = status >= 500;
		return ph_err_set(err, EIO, NULL, "HTTP %ld from server: %s", status, snip);
	}
	if (cJSON_IsArray(errors) && errors->child) {
		*partial = true;
		return map_errors(status, errors, endpoint, err, v);
	}
	if (errors && !cJSON_IsNull(errors) && !cJSON_IsArray(errors))
		return ph_err_set(err, EPROTO, NULL,
		                  "unexpected answer from server: errors is not a list");
	if (status < 200 || status > 299) {
		/* JSON, but not a GraphQL answer: a proxy or gateway spoke. */
		net_snippet(head, head_len, snip, sizeof(snip));
		v->maybe_applied = status >= 500;
		v->transient = status >= 500;
		return ph_err_set(err, EIO, NULL, "HTTP %ld from server: %s", status, snip);
	}
	if (!data_object)
		return ph_err_set(err, EPROTO, NULL,
		                  "unexpected answer from server: no data and no errors");
	return 0;
}

static int decode(long status, const char *body, size_t len, const char *endpoint,
                  const char *location, cJSON **data_out, struct ph_err *err, struct verdict *v)
{
	cJSON *root = NULL, *data = NULL;
	const cJSON *errors = NULL;
	bool partial;
	int ret;

	if (data_out)
		*data_out = NULL;
	if (!(status >= 300 && status <= 399) && body)
		root = cJSON_ParseWithLength(body, len);
	if (cJSON_IsObject(root)) {
		errors = cJSON_GetObjectItemCaseSensitive(root, "errors");
		data = cJSON_GetObjectItemCaseSensitive(root, "data");
	}
	ret = judge(status, location, endpoint, cJSON_IsObject(root), errors, cJSON_IsObject(data),
	            body, len, err, v, &partial);
	/* On success, and on a partial failure that still has data, the caller
	 * gets the data object: a mutation that failed half-way may have
	 * applied part of the change, and the data says which part. */
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
	struct verdict v = {0};

	return decode(http_status, body, len, NULL, NULL, data_out, err, &v);
}

/* ---- an answer decoded as it arrives ---- */

#define STREAM_MAX_DEPTH 64                     /* the tree needs 8; an error's extensions a few */
#define STREAM_HEAD      (NET_SNIPPET_MAX + 28) /* the body's start, for a snippet */

enum env_place { ENV_TOP, ENV_KEYS, ENV_DATA, ENV_ERRORS, ENV_SKIP, ENV_END };

/* The envelope {"data": ..., "errors": [...]} read from JSON events: data's
 * events go to the stream's consumer, errors (small) become a cJSON tree
 * for map_errors, everything else is passed over.  The first of duplicate
 * keys counts, as with cJSON. */
struct envelope {
	const struct gql_stream *st;
	struct jp_parser p;
	long status;
	char head[STREAM_HEAD];
	size_t head_len;
	bool not_json; /* the body is not (strict) JSON: only its head counts */
	bool object;   /* the body is a JSON object */
	bool data_seen, data_object, errors_seen;
	enum env_place place;
	int key; /* 0: other, 1: data, 2: errors (the value that comes next) */
	unsigned skip;
	/* errors, built as they come */
	cJSON *errors;
	cJSON *stack[STREAM_MAX_DEPTH];
	unsigned nstack;
	char *ekey; /* the key of the next member of an errors object */
};

static void env_clear(struct envelope *e)
{
	jp_clear(&e->p);
	cJSON_Delete(e->errors);
	free(e->ekey);
}

/* Add one event of the errors value to the tree being built; -ENOMEM. */
static int env_error_event(struct envelope *e, const struct jp_event *ev)
{
	cJSON *item = NULL, *parent = e->nstack ? e->stack[e->nstack - 1] : NULL;

	switch (ev->type) {
	case JP_KEY:
		free(e->ekey);
		e->ekey = strdup(ev->str);
		return e->ekey ? 0 : -ENOMEM;
	case JP_OBJECT_END:
	case JP_ARRAY_END:
		e->nstack--;
		if (!e->nstack)
			e->place = ENV_KEYS;
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
	if (!item)
		return -ENOMEM;
	if (!parent) {
		e->errors = item;
	} else if (cJSON_IsObject(parent)
	               ? !cJSON_AddItemToObject(parent, e->ekey ? e->ekey : "", item)
	               : !cJSON_AddItemToArray(parent, item)) {
		cJSON_Delete(item);
		return -ENOMEM;
	}
	if (ev->type == JP_OBJECT_BEGIN || ev->type == JP_ARRAY_BEGIN)
		e->stack[e->nstack++] = item; /* bounded: the parser's depth limit */
	else if (!parent)
		e->place = ENV_KEYS;
	return 0;
}

/* One event of the body; 0 or a negative errno that stops the transfer. */
static int env_event(struct envelope *e, const struct jp_event *ev)
{
	bool begin = ev->type == JP_OBJECT_BEGIN || ev->type == JP_ARRAY_BEGIN;
	bool end = ev->type == JP_OBJECT_END || ev->type == JP_ARRAY_END;
	struct jp_event rel;

	switch (e->place) {
	case ENV_TOP:
		e->object = ev->type == JP_OBJECT_BEGIN;
		e->place = e->object ? ENV_KEYS : ENV_END;
		return 0;
	case ENV_KEYS:
		if (ev->type == JP_OBJECT_END) {
			e->place = ENV_END;
			return 0;
		}
		if (ev->type == JP_KEY) {
			/* strcmp, as cJSON does: a key is cut at a \u0000. */
			e->key = strcmp(ev->str, "data") == 0 && !e->data_seen       ? 1
			         : strcmp(ev->str, "errors") == 0 && !e->errors_seen ? 2
			                                                             : 0;
			return 0;
		}
		if (e->key == 1) {
			e->data_seen = true;
			e->data_object = ev->type == JP_OBJECT_BEGIN;
			if (e->data_object) {
				e->place = ENV_DATA;
				break; /* the consumer sees data's first event */
			}
			/* data null or not an object: nothing for the consumer */
		} else if (e->key == 2) {
			e->errors_seen = true;
			e->place = ENV_ERRORS;
			return env_error_event(e, ev);
		}
		if (begin) {
			e->skip = 1;
			e->place = ENV_SKIP;
		}
		return 0;
	case ENV_SKIP:
		e->skip += begin;
		e->skip -= end;
		if (!e->skip)
			e->place = ENV_KEYS;
		return 0;
	case ENV_ERRORS:
		return env_error_event(e, ev);
	case ENV_DATA:
		if (end && ev->depth == 1)
			e->place = ENV_KEYS;
		break;
	case ENV_END:
		return 0;
	}
	/* data's events, as if data were the whole text */
	rel = *ev;
	rel.depth = ev->depth - 1;
	return e->st->event(e->st->arg, &rel);
}

static int env_write(void *arg, long status, const char *buf, size_t len, struct ph_err *err)
{
	struct envelope *e = arg;
	struct jp_event ev;
	int r, ret = 0;

	e->status = status;
	if (e->head_len < sizeof(e->head)) {
		size_t n =
		    sizeof(e->head) - e->head_len < len ? sizeof(e->head) - e->head_len : len;

		memcpy(e->head + e->head_len, buf, n);
		e->head_len += n;
	}
	/* A redirect's body is not read; a body that is not JSON is quoted
	 * from its head only. */
	if ((status >= 300 && status <= 399) || e->not_json)
		return 0;
	jp_feed(&e->p, buf, len);
	while (ret == 0 && (r = jp_next(&e->p, &ev)) == JP_EVENT)
		ret = env_event(e, &ev);
	if (ret < 0)
		return ph_err_set(err, -ret, NULL, "%s",
		                  ret == -ENOMEM ? "out of memory reading the answer"
		                                 : "the answer's consumer stopped");
	if (r == JP_ERROR)
		e->not_json = true;
	return 0;
}

/* The verdict on an answer that went through env_write. */
static int env_finish(struct envelope *e, const struct http_response *resp, const char *endpoint,
                      struct ph_err *err, struct verdict *v)
{
	struct jp_event ev;
	bool partial;
	int r, ret = 0;

	e->status = resp->status;
	if (!e->not_json && !(e->status >= 300 && e->status <= 399)) {
		jp_finish(&e->p);
		while (ret == 0 && (r = jp_next(&e->p, &ev)) == JP_EVENT)
			ret = env_event(e, &ev);
		if (ret < 0)
			return ph_err_set(err, -ret, NULL, "out of memory reading the answer");
		if (r == JP_ERROR)
			e->not_json = true;
	}
	return judge(e->status, resp->location, endpoint, e->object && !e->not_json, e->errors,
	             e->data_object, e->head, e->head_len, err, v, &partial);
}

int gql_decode_response_stream(long http_status, const char *body, size_t len, size_t piece,
                               const struct gql_stream *st, struct ph_err *err)
{
	struct envelope env = {.st = st};
	struct http_response resp = {.status = http_status};
	struct verdict v = {0};
	int ret = st->begin(st->arg);

	if (ret < 0)
		return ph_err_set(err, -ret, NULL, "out of memory");
	jp_init(&env.p, STREAM_MAX_DEPTH, 0, JP_RAW_BYTES);
	for (size_t at = 0; ret == 0 && at < len;) {
		size_t n = piece && piece < len - at ? piece : len - at;

		ret = env_write(&env, http_status, body + at, n, err);
		at += n;
	}
	if (ret == 0)
		ret = env_finish(&env, &resp, NULL, err, &v);
	env_clear(&env);
	return ret;
}

static long long mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Cut every copy of the token out of msg (a server may quote the
 * Authorization header back in an error). */
static void redact_token(char *msg, const char *token)
{
	static const char mask[] = "(token)";
	size_t tlen = strlen(token);
	char *p;

	if (tlen < 4)
		return; /* too short to be a real token; a cut would mangle words */
	while ((p = strstr(msg, token)) != NULL) {
		size_t rest = strlen(p + tlen);

		if (tlen >= sizeof(mask) - 1) {
			memcpy(p, mask, sizeof(mask) - 1);
			memmove(p + sizeof(mask) - 1, p + tlen, rest + 1);
		} else {
			memset(p, '*', tlen); /* never grows the message */
		}
	}
}

/* "PrimehubfsTree": the operation's name from its document ("query NAME"
 * or "mutation NAME"), for the debug log; "(unnamed)" otherwise. */
static void operation_name(const char *document, char *out, size_t size)
{
	const char *p = document;
	size_t n;

	p += strspn(p, " \t\n");
	if (strncmp(p, "query", 5) == 0)
		p += 5;
	else if (strncmp(p, "mutation", 8) == 0)
		p += 8;
	p += strspn(p, " \t\n");
	n = strspn(p, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_");
	if (n == 0 || n >= size)
		snprintf(out, size, "(unnamed)");
	else
		snprintf(out, size, "%.*s", (int)n, p);
}

/* One POST with the current token.  *used gets the header it sent (the
 * caller frees it with gql_free_auth_header).  At debug level, one log line:
 * the operation, the outcome, the time and the sizes; never the token, the
 * variables or the answer's content. */
static int send_once(struct gql_client *c, const char *op, const char *body, bool mutation,
                     long timeout_ms, const struct gql_stream *st, char **used, cJSON **data_out,
                     struct ph_err *err, struct verdict *v)
{
	struct envelope env = {.st = st};
	struct http_sink sink = {.write = env_write, .arg = &env};
	long long start = mono_ms();
	const char *headers[] = {"Content-Type: application/json", "Accept: application/json", NULL,
	                         NULL};
	struct http_response resp;
	struct http_request req = {
	    .method = "POST",
	    .url = c->endpoint,
	    .headers = headers,
	    .body = body,
	    .body_len = strlen(body),
	    .timeout_ms = timeout_ms,
	    .once = mutation,
	    .abort_cb = c->abort_cb,
	    .abort_arg = c->abort_arg,
	    .sink = st ? &sink : NULL,
	    .max_body = st ? c->max_stream : 0,
	};
	int ret;

	memset(v, 0, sizeof(*v));
	*used = gql_client_auth_header(c);
	if (!*used)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	headers[2] = *used;
	if (st) {
		/* Every try starts afresh: what a broken one fed is dropped. */
		ret = st->begin(st->arg);
		if (ret < 0)
			return ph_err_set(err, -ret, NULL, "out of memory");
		jp_init(&env.p, STREAM_MAX_DEPTH, 0, JP_RAW_BYTES);
	}
	ret = http_perform(c->http, &req, &resp, err);
	if (log_enabled(LOG_LVL_DEBUG)) {
		if (ret < 0)
			log_debug("graphql %s %s: no answer (%s) after %lld ms, sent %zu bytes",
			          mutation ? "mutation" : "query", op,
			          strerrorname_np(-ret) ? strerrorname_np(-ret) : "error",
			          mono_ms() - start, req.body_len);
		else
			log_debug(
			    "graphql %s %s: HTTP %ld in %lld ms, sent %zu bytes, received %zu "
			    "bytes",
			    mutation ? "mutation" : "query", op, resp.status, mono_ms() - start,
			    req.body_len, resp.len);
	}
	if (ret < 0) {
		/* A refused connection or one that broke before an answer
		 * may well work on a second try. */
		v->transient = ret == -ECONNREFUSED || ret == -ECONNRESET;
		v->maybe_applied = err && err->maybe_applied;
		if (st)
			env_clear(&env);
		return ret;
	}
	if (st) {
		ret = env_finish(&env, &resp, c->endpoint, err, v);
		env_clear(&env);
	} else {
		ret = decode(resp.status, resp.body, resp.len, c->endpoint, resp.location, data_out,
		             err, v);
	}
	http_response_free(&resp);
	if (ret < 0 && err)
		redact_token(err->msg, *used + sizeof(AUTH_PREFIX) - 1);
	return ret;
}

/* Sleep ms, in slices, unless the request is abandoned; false if it was. */
static bool pause_unless_aborted(struct gql_client *c, long ms)
{
	for (long slept = 0; slept < ms; slept += 50) {
		if (c->abort_cb && c->abort_cb(c->abort_arg))
			return false;
		nanosleep(&(struct timespec){0, (ms - slept < 50 ? ms - slept : 50) * 1000000L},
		          NULL);
	}
	return !(c->abort_cb && c->abort_cb(c->abort_arg));
}

/* Whether a failed request may be sent again: a query after any passing
 * failure, a mutation only when not a byte of it reached the server. */
static bool retryable(bool mutation, int ret, const struct verdict *v)
{
	if (!v->transient)
		return false;
	return !mutation || (ret == -ECONNREFUSED && !v->maybe_applied);
}

static int execute(struct gql_client *c, const char *document, const cJSON *variables,
                   bool mutation, const struct gql_stream *st, cJSON **data_out, struct ph_err *err)
{
	long long deadline = mono_ms() + c->timeout_ms;
	long delay = RETRY_FIRST_MS;
	bool token_retried = false, maybe = false;
	unsigned seed = (unsigned)mono_ms();
	int tries = 0;
	char *body, op[64];
	int ret;

	if (data_out)
		*data_out = NULL;
	operation_name(document, op, sizeof(op));
	body = gql_encode_request(document, variables);
	if (!body)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	for (;;) {
		long long left = deadline - mono_ms();
		struct verdict v;
		char *used = NULL;

		ret = send_once(c, op, body, mutation, left > 0 ? (long)left : 1, st, &used,
		                data_out, err, &v);
		if (ret == -EACCES && v.token_rejected && !token_retried && used &&
		    reload_token(c, used)) {
			/* The server ran nothing (context creation failed), so
			 * even a mutation is safe to send again, once. */
			token_retried = true;
			gql_free_auth_header(used);
			cJSON_Delete(data_out ? *data_out : NULL);
			if (data_out)
				*data_out = NULL;
			continue;
		}
		gql_free_auth_header(used);
		maybe = v.maybe_applied;
		if (ret == 0 || !retryable(mutation, ret, &v) || ++tries >= QUERY_TRIES)
			break;
		/* A failure that may pass: again, after a pause of the doubling
		 * delay +-20% (so clients that failed together do not return
		 * together), if the one budget allows. */
		seed = seed * 1103515245u + 12345u;
		{
			long pause =
			    delay - delay / 5 + (long)((seed >> 8) % (unsigned)(delay / 5 * 2 + 1));

			if (mono_ms() + pause + 50 >= deadline)
				break;
			if (!pause_unless_aborted(c, pause)) {
				ret = ph_err_set(err, EINTR, NULL, "request to %s interrupted",
				                 c->endpoint);
				maybe = false; /* only a request nothing of which was sent waits */
				break;
			}
		}
		cJSON_Delete(data_out ? *data_out : NULL);
		if (data_out)
			*data_out = NULL;
		delay = delay * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : delay * 2;
	}
	/* Set last, as ph_err_set starts afresh.  Only a mutation's caller has
	 * anything to re-read. */
	if (err)
		err->maybe_applied = ret < 0 && mutation && maybe;
	free(body);
	return ret;
}

int gql_execute(struct gql_client *c, const char *document, const cJSON *variables,
                cJSON **data_out, struct ph_err *err)
{
	return execute(c, document, variables, false, NULL, data_out, err);
}

int gql_execute_mutation(struct gql_client *c, const char *document, const cJSON *variables,
                         cJSON **data_out, struct ph_err *err)
{
	return execute(c, document, variables, true, NULL, data_out, err);
}

int gql_execute_stream(struct gql_client *c, const char *document, const cJSON *variables,
                       const struct gql_stream *st, struct ph_err *err)
{
	return execute(c, document, variables, false, st, NULL, err);
}
