/*
 * http.h - the network layer: libcurl with keep-alive, bounded time, and an
 * abort hook.  Knows nothing of GraphQL or FUSE.
 *
 * Thread-safety: one http_client is shared by all threads.  It keeps a small
 * pool of curl easy handles (each keeps its live connections, so requests
 * reuse TCP/TLS connections instead of opening one per request) plus a curl
 * share handle for DNS and TLS sessions.  No lock is held while a transfer
 * runs.
 *
 * Every transfer is bounded: CURLOPT_CONNECTTIMEOUT_MS, CURLOPT_TIMEOUT_MS,
 * CURLOPT_LOW_SPEED_LIMIT/TIME, CURLOPT_NOSIGNAL, and a progress callback that
 * calls the request's abort_cb (the FUSE layer passes "was this request
 * interrupted?") so a Ctrl-C on a blocked `cat` ends the transfer.
 *
 * Ownership: http_client_new allocates, http_client_free frees.  A response's
 * body and content_type are malloc'd and freed by http_response_free.
 */
#ifndef PRIMEHUBFS_HTTP_H
#define PRIMEHUBFS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include "primehubfs/error.h"

struct http_client;

struct http_options {
	long connect_timeout_ms; /* default 5000 when 0 */
	long timeout_ms;         /* whole transfer; default 15000 when 0 */
	const char *ca_file;     /* NULL: system default */
	bool insecure;           /* skip TLS verification (testing only) */
	const char *user_agent;  /* NULL: "primehubfs/VERSION" */
};

typedef int (*http_abort_fn)(void *arg); /* nonzero: abort the transfer now */

/*
 * Where an answer's body goes when it is not kept: each piece as libcurl
 * delivers it, in order, with the HTTP status (known before the first
 * byte).  Returns 0, or a negative errno with a reason in *err to stop the
 * transfer; http_perform then fails with that errno and reason.  A transfer
 * that fails later (a reset, a timeout) has fed a part of the body: the
 * consumer throws it away.  Nothing of the body is kept by http.c.
 */
struct http_sink {
	int (*write)(void *arg, long status, const char *buf, size_t len, struct ph_err *err);
	void *arg;
};

struct http_request {
	const char *method; /* "GET" or "POST" */
	const char *url;
	const char *const *headers; /* NULL-terminated "Name: value" list, may be NULL */
	const char *body;           /* POST body, may be NULL */
	size_t body_len;
	size_t max_body; /* refuse (EFBIG) a response larger than this; 0: 64 MiB */
	/* NULL: the body is kept in resp->body.  Otherwise it goes to the sink
	 * as it arrives, resp->body is "" and resp->len the bytes received. */
	const struct http_sink *sink;
	long timeout_ms; /* this transfer's whole time; 0: the client's timeout */
	/* At most once: the request changes something (a mutation), so it gets
	 * a connection of its own.  libcurl silently resends a request whose
	 * reused keep-alive connection died before any answer byte, and the
	 * server may have run the first copy before the connection died. */
	bool once;
	http_abort_fn abort_cb; /* may be NULL */
	void *abort_arg;
};

struct http_response {
	long status; /* HTTP status code */
	char *body;  /* NUL-terminated for convenience; len excludes the NUL */
	size_t len;
	char *content_type; /* may be NULL */
	char *location;     /* a redirect's target (never followed), may be NULL */
};

/* What a client has done since it was made (the mount's .status).  Bytes
 * are those of request and answer bodies as libcurl moved them, partial
 * ones included; headers are not counted. */
struct http_stats {
	unsigned long long requests; /* http_perform calls that reached curl */
	unsigned long long failures; /* of those: no HTTP answer (transport errors) */
	unsigned long long bytes_sent;
	unsigned long long bytes_received;
};

int http_client_new(const struct http_options *opts, struct http_client **out, struct ph_err *err);
void http_client_free(struct http_client *c);
/* The whole-transfer timeout the client was made with. */
long http_client_timeout_ms(const struct http_client *c);
/* A consistent-enough copy of the counters (each read atomically). */
void http_client_stats(struct http_client *c, struct http_stats *out);

/*
 * Perform one request.  Returns 0 when an HTTP response arrived (whatever its
 * status: GraphQL errors come with 200, 400 and 500).  Redirects are never
 * followed: the token goes to the URL asked for and nowhere else, and a 3xx
 * answer comes back as it is, with its Location in resp->location.  Errors:
 *   -ETIMEDOUT  connect or total timeout, or too slow
 *   -EINTR      abort_cb asked to stop
 *   -EHOSTUNREACH / -ECONNREFUSED  the server cannot be reached
 *   -ECONNRESET the connection broke, or the answer stopped half-way
 *   -EFBIG      response over max_body
 *   the sink's errno when the sink stopped the transfer
 *   -EIO        any other transport or TLS failure
 * err gets a line such as "cannot connect to 127.0.0.1:8080: Connection refused".
 *
 * Sent or not: on a failure after bytes of the request went out (a timeout
 * while waiting for the answer, a reset or EOF mid-answer, a truncated body)
 * err->maybe_applied is set: the server may have acted on it.  It stays
 * false when nothing was sent (-ECONNREFUSED, a resolve failure, a connect
 * timeout, -EINTR before connecting), so such a request is safe to resend.
 */
int http_perform(struct http_client *c, const struct http_request *req, struct http_response *resp,
                 struct ph_err *err);
void http_response_free(struct http_response *resp);

#endif
