/*
 * graphql.h - the GraphQL envelope: POST {"query", "variables"} as JSON with
 * the bearer token, and decode {"data", "errors"} into data + errno.
 *
 * Errors are mapped once, here, so every caller agrees.  PrimeHub signals
 * them as follows (extensions.code where it has one, else the text):
 *   "Context creation failed: ..." (HTTP 500)      -> EACCES (token rejected)
 *   NOT_AUTH, "Not Authorised!"                    -> EACCES
 *   RESOURCE_NOT_FOUND                              -> ENOENT
 *   "Request failed with status code 404"           -> ENOENT (unknown group id)
 *   RESOURCE_CONFLICT                               -> EEXIST
 *   GRAPHQL_PARSE_FAILED / GRAPHQL_VALIDATION_FAILED / 400 variable errors
 *                                                   -> EPROTO (a bug in us or a
 *                                                      server of another version)
 *   API_UNAVAILABLE, INTERNAL_ERROR, other codes, non-JSON bodies, 5xx -> EIO
 *   a 3xx redirect (never followed)                 -> EIO
 * The message is the server's text, prefixed with what we were doing (and
 * never containing the token, even if the server quoted it).
 *
 * Ownership: gql_client borrows the http_client (the caller frees it after
 * gql_client_free).  *data_out is a cJSON tree owned by the caller
 * (cJSON_Delete).
 */
#ifndef PRIMEHUBFS_GRAPHQL_H
#define PRIMEHUBFS_GRAPHQL_H

#include <stddef.h>
#include <cjson/cJSON.h>
#include "primehubfs/error.h"
#include "primehubfs/http.h"

struct gql_client;

/* endpoint: the GraphQL URL; token: the API token (copied). */
int gql_client_new(struct http_client *http, const char *endpoint, const char *token,
                   struct gql_client **out, struct ph_err *err);
void gql_client_free(struct gql_client *c);

/*
 * Where a new token comes from when the server rejects the current one
 * ("Context creation failed: ..."): for example a token file the
 * administrator rewrote.  reload returns 0 with a malloc'd token in *token
 * (the client takes it, and clears and frees the old one), or a negative
 * errno when there is nothing new.  The request that was rejected is then
 * sent once more with the new token: a rejected token means the server ran
 * no resolver, so even a mutation is safe to resend.  Without a source
 * (the default) a rejected token is simply EACCES.
 */
typedef int (*gql_token_reload_fn)(void *arg, char **token);
void gql_client_set_token_source(struct gql_client *c, gql_token_reload_fn reload, void *arg);

/* The largest answer gql_execute_stream takes (-o max_tree_mb): a bound on
 * memory, not on the server.  Set before the client is shared; 0 gives the
 * default. */
#define GQL_DEFAULT_MAX_STREAM ((size_t)1024 << 20)
void gql_client_set_max_stream(struct gql_client *c, size_t bytes);
size_t gql_client_max_stream(const struct gql_client *c);

/* Called around every transfer to decide whether to abort (see http.h). */
void gql_client_set_abort(struct gql_client *c, http_abort_fn cb, void *arg);

/* The HTTP client, the endpoint and the auth header, for the REST log
 * endpoint that shares the token.  The header is a copy (the token can be
 * replaced meanwhile): free it with gql_free_auth_header, which clears it. */
struct http_client *gql_client_http(const struct gql_client *c);
const char *gql_client_endpoint(const struct gql_client *c);
char *gql_client_auth_header(struct gql_client *c); /* "Authorization: Bearer ..." */
void gql_free_auth_header(char *header);

/*
 * Send one query with its variables (borrowed, may be NULL).  On success
 * *data_out is the "data" object.  On a GraphQL error the return is the mapped
 * -errno and, when the response still had a "data" object (partial failure),
 * *data_out is set to it too so the caller can see what happened.
 * A transient failure (refused or broken connection, a proxy's 502/503/504
 * page, API_UNAVAILABLE) is retried with jittered backoff, all within one
 * request timeout.
 */
int gql_execute(struct gql_client *c, const char *document, const cJSON *variables,
                cJSON **data_out, struct ph_err *err);

/* The same for a mutation: sent once (again only after a token rejection,
 * when the server ran nothing).  When the answer was lost after the request
 * went out (timeout, reset, a proxy's or garbage answer), err->maybe_applied
 * is set: the caller must read back what the server holds, never resend. */
int gql_execute_mutation(struct gql_client *c, const char *document, const cJSON *variables,
                         cJSON **data_out, struct ph_err *err);

/*
 * A query whose answer is decoded as it arrives, never held whole: for the
 * tree, whose answer grows with the images (tens of MB at 10^5).  The
 * answer's "data" goes to the consumer as JSON events (json_pull.h; depth
 * counted from data, which is depth 0), everything else is judged as
 * gql_execute judges it: the same errnos, messages, retries and time
 * budget.  begin is called before every try (a retry starts afresh: drop
 * what the last one fed); event returns 0 or a negative errno (-ENOMEM)
 * that stops the transfer.  The consumer's result counts only when
 * gql_execute_stream returns 0: a GraphQL error (even with data, a partial
 * answer), a cut or malformed answer, or a transfer error is an error.
 * The answer may hold at most gql_client_max_stream bytes: past it, -EFBIG.
 * Strict JSON only: text cJSON would forgive (trailing
 * garbage, leading zeros) is "not a GraphQL answer" here.
 */
struct jp_event;
struct gql_stream {
	int (*begin)(void *arg);
	int (*event)(void *arg, const struct jp_event *ev);
	void *arg;
};
int gql_execute_stream(struct gql_client *c, const char *document, const cJSON *variables,
                       const struct gql_stream *st, struct ph_err *err);

/* Pure: decode an HTTP status + body as above.  Exposed for unit tests. */
int gql_decode_response(long http_status, const char *body, size_t len, cJSON **data_out,
                        struct ph_err *err);

/* Pure: the same as gql_execute_stream judges an answer, over a body fed to
 * st in pieces of `piece` bytes (0: whole).  For unit tests and the fuzzer. */
int gql_decode_response_stream(long http_status, const char *body, size_t len, size_t piece,
                               const struct gql_stream *st, struct ph_err *err);

/* Pure: the request body {"query": doc, "variables": vars}; malloc'd string. */
char *gql_encode_request(const char *document, const cJSON *variables);

#endif
