/*
 * http.c - libcurl behind a pool of easy handles (see http.h).
 *
 * Why a pool: a curl easy handle keeps the connections it opened alive
 * between transfers, so handing the same few handles around makes every
 * request after the first reuse a TCP (and TLS) connection instead of paying
 * a handshake each time.  The pool is a LIFO stack, so a lone caller always
 * gets the handle it used last, whose connection is the warmest.
 *
 * Why the pool never blocks: when every pooled handle is busy a fresh one is
 * made; when a handle comes back to a full stack it is cleaned up.  Waiting
 * for a handle would chain one slow request to every other thread, which is
 * exactly the kind of hang a FUSE daemon must avoid: every worker thread
 * would end up queued behind the slowest request.
 *
 * The pool mutex guards only the stack; it is never held during a transfer.
 * DNS answers and TLS sessions are shared between handles through a CURLSH
 * whose lock callbacks use one mutex per data kind.
 *
 * libcurl's global state is initialised once per process (pthread_once) and
 * never torn down: curl_global_cleanup is not safe while any other thread or
 * library may still use libcurl, and the process exit frees it anyway.  So
 * http_client_new may be called any number of times (tests do), from any
 * thread.
 */
#include "primehubfs/http.h"
#include "primehubfs/image.h" /* ph_strdup_opt */

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#define HTTP_POOL_MAX           16 /* idle handles kept for reuse */
#define HTTP_DEFAULT_CONNECT_MS 5000L
#define HTTP_DEFAULT_TIMEOUT_MS 15000L
#define HTTP_DEFAULT_MAX_BODY   ((size_t)64 << 20) /* 64 MiB */
#define HTTP_LOW_SPEED_TIME_S   10L                /* < 1 byte/s for this long: give up */

#ifndef PRIMEHUBFS_VERSION
#define PRIMEHUBFS_VERSION "dev"
#endif

struct http_client {
	pthread_mutex_t pool_lock;
	CURL *idle[HTTP_POOL_MAX]; /* LIFO stack of handles nobody is using */
	size_t nidle;

	CURLSH *share;
	pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];

	long connect_timeout_ms;
	long timeout_ms;
	char *ca_file; /* owned, may be NULL */
	bool insecure;
	char *user_agent; /* owned */
	/* Counters for .status, updated with __atomic builtins: every thread
	 * runs its own transfers and none takes a lock for them. */
	struct http_stats stats;
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_FAILED_INIT;

static void global_init(void)
{
	global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static void share_lock(CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
	struct http_client *c = arg;

	(void)h;
	(void)access;
	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_lock(&c->share_locks[data]);
}

static void share_unlock(CURL *h, curl_lock_data data, void *arg)
{
	struct http_client *c = arg;

	(void)h;
	if ((unsigned)data < CURL_LOCK_DATA_LAST)
		pthread_mutex_unlock(&c->share_locks[data]);
}

int http_client_new(const struct http_options *opts, struct http_client **out, struct ph_err *err)
{
	static const struct http_options defaults;
	struct http_client *c;

	*out = NULL;
	if (!opts)
		opts = &defaults;
	pthread_once(&global_once, global_init);
	if (global_rc != CURLE_OK)
		return ph_err_set(err, EIO, NULL, "cannot initialise libcurl: %s",
		                  curl_easy_strerror(global_rc));

	c = calloc(1, sizeof(*c));
	if (!c)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	pthread_mutex_init(&c->pool_lock, NULL);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_init(&c->share_locks[i], NULL);
	c->connect_timeout_ms =
	    opts->connect_timeout_ms > 0 ? opts->connect_timeout_ms : HTTP_DEFAULT_CONNECT_MS;
	c->timeout_ms = opts->timeout_ms > 0 ? opts->timeout_ms : HTTP_DEFAULT_TIMEOUT_MS;
	c->insecure = opts->insecure;
	if (!ph_strdup_opt(&c->ca_file, opts->ca_file))
		goto nomem;
	c->user_agent =
	    strdup(opts->user_agent ? opts->user_agent : "primehubfs/" PRIMEHUBFS_VERSION);
	if (!c->user_agent)
		goto nomem;

	c->share = curl_share_init();
	if (!c->share)
		goto nomem;
	curl_share_setopt(c->share, CURLSHOPT_LOCKFUNC, share_lock);
	curl_share_setopt(c->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
	curl_share_setopt(c->share, CURLSHOPT_USERDATA, c);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
	curl_share_setopt(c->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
	*out = c;
	return 0;

nomem:
	http_client_free(c);
	return ph_err_set(err, ENOMEM, NULL, "out of memory");
}

void http_client_free(struct http_client *c)
{
	if (!c)
		return;
	/* Every handle must be back (no transfer running): a handle still
	 * attached to the share would make curl_share_cleanup fail. */
	for (size_t i = 0; i < c->nidle; i++)
		curl_easy_cleanup(c->idle[i]);
	if (c->share)
		curl_share_cleanup(c->share);
	for (int i = 0; i < CURL_LOCK_DATA_LAST; i++)
		pthread_mutex_destroy(&c->share_locks[i]);
	pthread_mutex_destroy(&c->pool_lock);
	free(c->ca_file);
	free(c->user_agent);
	free(c);
}

void http_client_stats(struct http_client *c, struct http_stats *out)
{
	out->requests = __atomic_load_n(&c->stats.requests, __ATOMIC_RELAXED);
	out->failures = __atomic_load_n(&c->stats.failures, __ATOMIC_RELAXED);
	out->bytes_sent = __atomic_load_n(&c->stats.bytes_sent, __ATOMIC_RELAXED);
	out->bytes_received = __atomic_load_n(&c->stats.bytes_received, __ATOMIC_RELAXED);
}

/* Count one finished transfer of h. */
static void count_transfer(struct http_client *c, CURL *h, bool failed)
{
	curl_off_t up = 0, down = 0;

	curl_easy_getinfo(h, CURLINFO_SIZE_UPLOAD_T, &up);
	curl_easy_getinfo(h, CURLINFO_SIZE_DOWNLOAD_T, &down);
	__atomic_add_fetch(&c->stats.requests, 1, __ATOMIC_RELAXED);
	if (failed)
		__atomic_add_fetch(&c->stats.failures, 1, __ATOMIC_RELAXED);
	if (up > 0)
		__atomic_add_fetch(&c->stats.bytes_sent, (unsigned long long)up, __ATOMIC_RELAXED);
	if (down > 0)
		__atomic_add_fetch(&c->stats.bytes_received, (unsigned long long)down,
		                   __ATOMIC_RELAXED);
}

long http_client_timeout_ms(const struct http_client *c)
{
	return c->timeout_ms;
}

/* Take a handle from the pool, or make one; NULL only on ENOMEM. */
static CURL *pool_take(struct http_client *c)
{
	CURL *h = NULL;

	pthread_mutex_lock(&c->pool_lock);
	if (c->nidle)
		h = c->idle[--c->nidle];
	pthread_mutex_unlock(&c->pool_lock);
	return h ? h : curl_easy_init();
}

static void pool_put(struct http_client *c, CURL *h)
{
	pthread_mutex_lock(&c->pool_lock);
	if (c->nidle < HTTP_POOL_MAX) {
		c->idle[c->nidle++] = h;
		h = NULL;
	}
	pthread_mutex_unlock(&c->pool_lock);
	if (h)
		curl_easy_cleanup(h); /* pool full: closes its connections, outside the lock */
}

/* One transfer's state, on the caller's stack. */
struct xfer {
	char *data;
	size_t len, cap, max;
	bool too_big;
	http_abort_fn abort_cb;
	void *abort_arg;
	CURL *h;
	const struct http_sink *sink; /* NULL: keep the body in data */
	int sink_ret;                 /* the sink stopped the transfer with this */
	struct ph_err sink_err;
};

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb; /* curl bounds a chunk by CURL_MAX_WRITE_SIZE */

	if (n > x->max - x->len) {
		x->too_big = true;
		return 0; /* makes curl fail with CURLE_WRITE_ERROR */
	}
	if (x->sink) {
		long status = 0;

		/* The status line and headers are in before the first byte. */
		curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &status);
		x->len += n;
		x->sink_ret = x->sink->write(x->sink->arg, status, ptr, n, &x->sink_err);
		return x->sink_ret < 0 ? 0 : n;
	}
	if (x->len + n + 1 > x->cap) {
		/* Geometric growth keeps a 15 MB answer linear to receive. */
		size_t cap = x->cap ? x->cap : 16384;
		char *p;

		while (cap < x->len + n + 1)
			cap *= 2;
		p = realloc(x->data, cap);
		if (!p)
			return 0;
		x->data = p;
		x->cap = cap;
	}
	memcpy(x->data + x->len, ptr, n);
	x->len += n;
	x->data[x->len] = '\0';
	return n;
}

static int on_progress(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow)
{
	struct xfer *x = arg;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return x->abort_cb(x->abort_arg) ? 1 : 0; /* nonzero: CURLE_ABORTED_BY_CALLBACK */
}

/* Every option, every time: curl_easy_reset wiped the previous request's
 * but kept the handle's live connections, which is the point of the pool. */
static int setup_handle(struct http_client *c, CURL *h, const struct http_request *req,
                        struct curl_slist *headers, struct xfer *x, char *errbuf)
{
	long low_speed_time = HTTP_LOW_SPEED_TIME_S;
	CURLcode rc = CURLE_OK;

#define SET(opt, val)                                                                              \
	do {                                                                                       \
		if (rc == CURLE_OK)                                                                \
			rc = curl_easy_setopt(h, opt, val);                                        \
	} while (0)

	curl_easy_reset(h);
	SET(CURLOPT_NOSIGNAL, 1L); /* threads: never longjmp out of a DNS lookup */
	SET(CURLOPT_SHARE, c->share);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_URL, req->url);
#if LIBCURL_VERSION_NUM >= 0x075500
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	SET(CURLOPT_USERAGENT, c->user_agent);
	SET(CURLOPT_CONNECTTIMEOUT_MS, c->connect_timeout_ms);
	SET(CURLOPT_TIMEOUT_MS, req->timeout_ms > 0 && req->timeout_ms < c->timeout_ms
	                            ? req->timeout_ms
	                            : c->timeout_ms);
	/* The token goes to the URL asked for and nowhere else: a 3xx comes
	 * back to the caller as it is (and CURLOPT_UNRESTRICTED_AUTH is never
	 * set, so even a follow could not carry it to another host). */
	SET(CURLOPT_FOLLOWLOCATION, 0L);
	/* A request that must not run twice never rides a reused connection:
	 * libcurl resends on a fresh one when a reused connection dies before
	 * the answer starts, which would repeat a mutation the server may have
	 * already applied. */
	if (req->once)
		SET(CURLOPT_FRESH_CONNECT, 1L);
	/* A server that accepted the request and then stalls is caught here
	 * even when the total timeout is configured very long. */
	if (c->timeout_ms / 1000 < low_speed_time)
		low_speed_time = c->timeout_ms / 1000 + 1;
	SET(CURLOPT_LOW_SPEED_LIMIT, 1L);
	SET(CURLOPT_LOW_SPEED_TIME, low_speed_time);
	/* Notice a peer that vanished while a pooled connection sat idle. */
	SET(CURLOPT_TCP_KEEPALIVE, 1L);
	SET(CURLOPT_TCP_KEEPIDLE, 30L);
	SET(CURLOPT_TCP_KEEPINTVL, 10L);
	SET(CURLOPT_ACCEPT_ENCODING, ""); /* whatever curl can decode: the tree compresses well */
	SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)x->max); /* early EFBIG when announced */
	if (c->ca_file)
		SET(CURLOPT_CAINFO, c->ca_file);
	if (c->insecure) {
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	}
	SET(CURLOPT_WRITEFUNCTION, on_write);
	SET(CURLOPT_WRITEDATA, x);
	if (x->abort_cb) {
		SET(CURLOPT_XFERINFOFUNCTION, on_progress);
		SET(CURLOPT_XFERINFODATA, x);
		SET(CURLOPT_NOPROGRESS, 0L);
	}
	if (strcmp(req->method, "POST") == 0) {
		SET(CURLOPT_POST, 1L);
		/* Borrowed, not copied: req->body outlives the transfer. */
		SET(CURLOPT_POSTFIELDS, req->body ? req->body : "");
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(req->body ? req->body_len : 0));
	} else {
		SET(CURLOPT_HTTPGET, 1L);
	}
	SET(CURLOPT_HTTPHEADER, headers);
#undef SET
	return rc == CURLE_OK ? 0 : -EIO;
}

/* curl keeps its own copies of the header lines, the Authorization one
 * among them: clear them before they go back to the heap. */
static void free_headers(struct curl_slist *headers)
{
	for (struct curl_slist *n = headers; n; n = n->next)
		if (n->data)
			explicit_bzero(n->data, strlen(n->data));
	curl_slist_free_all(headers);
}

/* Translate a failed transfer into the errno list of http.h. */
static int map_curl_error(CURL *h, CURLcode rc, const struct xfer *x, const char *url,
                          const char *errbuf, struct ph_err *err)
{
	const char *why = errbuf[0] ? errbuf : curl_easy_strerror(rc);
	long os_errno = 0;

	switch (rc) {
	case CURLE_OPERATION_TIMEDOUT:
		return ph_err_set(err, ETIMEDOUT, NULL, "no answer from %s in time: %s", url, why);
	case CURLE_ABORTED_BY_CALLBACK:
		return ph_err_set(err, EINTR, NULL, "request to %s interrupted", url);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return ph_err_set(err, EHOSTUNREACH, NULL, "cannot resolve the host of %s: %s", url,
		                  why);
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os_errno);
		if (os_errno == ECONNREFUSED)
			return ph_err_set(err, ECONNREFUSED, NULL, "cannot connect to %s: %s", url,
			                  strerror(ECONNREFUSED));
		if (os_errno == ETIMEDOUT)
			return ph_err_set(err, ETIMEDOUT, NULL, "cannot connect to %s: %s", url,
			                  strerror(ETIMEDOUT));
		return ph_err_set(err, EHOSTUNREACH, NULL, "cannot connect to %s: %s", url,
		                  os_errno ? strerror((int)os_errno) : why);
	case CURLE_FILESIZE_EXCEEDED:
		return ph_err_set(err, EFBIG, NULL, "answer from %s is larger than %zu bytes", url,
		                  x->max);
	case CURLE_WRITE_ERROR:
		if (x->sink_ret < 0)
			return ph_err_set(err, -x->sink_ret, NULL, "%s", x->sink_err.msg);
		if (x->too_big)
			return ph_err_set(err, EFBIG, NULL,
			                  "answer from %s is larger than %zu bytes", url, x->max);
		return ph_err_set(err, ENOMEM, NULL, "out of memory reading the answer from %s",
		                  url);
	case CURLE_OUT_OF_MEMORY:
		return ph_err_set(err, ENOMEM, NULL, "out of memory talking to %s", url);
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return ph_err_set(err, ECONNRESET, NULL, "the connection to %s broke: %s", url,
		                  why);
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
		return ph_err_set(err, EIO, NULL, "TLS error with %s: %s", url, why);
	default:
		return ph_err_set(err, EIO, NULL, "request to %s failed: %s", url, why);
	}
}

int http_perform(struct http_client *c, const struct http_request *req, struct http_response *resp,
                 struct ph_err *err)
{
	char errbuf[CURL_ERROR_SIZE] = "";
	struct curl_slist *headers = NULL;
	struct xfer x = {0};
	CURLcode rc;
	char *ctype = NULL;
	CURL *h;
	int ret;

	memset(resp, 0, sizeof(*resp));
	if (!req->url || !req->method ||
	    (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0))
		return ph_err_set(err, EINVAL, NULL, "http: only GET and POST with a URL");
	x.max = req->max_body ? req->max_body : HTTP_DEFAULT_MAX_BODY;
	x.abort_cb = req->abort_cb;
	x.abort_arg = req->abort_arg;
	x.sink = req->sink;
	/* Already interrupted: do not even connect. */
	if (x.abort_cb && x.abort_cb(x.abort_arg))
		return ph_err_set(err, EINTR, NULL, "request to %s interrupted", req->url);

	for (const char *const *hp = req->headers; hp && *hp; hp++) {
		struct curl_slist *n = curl_slist_append(headers, *hp);

		if (!n)
			goto nomem;
		headers = n;
	}
	if (strcmp(req->method, "POST") == 0) {
		/* No "Expect: 100-continue" round trip before a large body. */
		struct curl_slist *n = curl_slist_append(headers, "Expect:");

		if (!n)
			goto nomem;
		headers = n;
	}

	h = pool_take(c);
	if (!h)
		goto nomem;
	x.h = h;
	if (setup_handle(c, h, req, headers, &x, errbuf) < 0) {
		/* A handle in an unknown state is not worth keeping. */
		curl_easy_cleanup(h);
		free_headers(headers);
		return ph_err_set(err, EIO, NULL, "request to %s: cannot set up libcurl", req->url);
	}

	rc = curl_easy_perform(h); /* no lock held: other threads run their own transfers */
	count_transfer(c, h, rc != CURLE_OK);

	if (rc == CURLE_OK) {
		const char *ct = NULL, *loc = NULL;

		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
		if (curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
			ctype = strdup(ct);
		if (curl_easy_getinfo(h, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK && loc)
			resp->location = strdup(loc);
		ret = 0;
	} else {
		long sent = 0;

		ret = map_curl_error(h, rc, &x, req->url, errbuf, err);
		/* Bytes of the request went out: the server may have acted on
		 * it although no (whole) answer came back. */
		if (curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &sent) == CURLE_OK && sent > 0 &&
		    err)
			err->maybe_applied = true;
	}
	/* Detach the borrowed pointers before the handle goes back. */
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, NULL);
	pool_put(c, h);
	free_headers(headers);

	if (ret < 0) {
		free(x.data);
		return ret;
	}
	if (x.sink) {
		free(x.data);
		x.data = NULL;
	}
	if (!x.data) {
		x.data = malloc(1); /* "body is NUL-terminated" holds for an empty answer too */
		if (!x.data) {
			free(ctype);
			return ph_err_set(err, ENOMEM, NULL, "out of memory");
		}
		x.data[0] = '\0';
	}
	resp->body = x.data;
	resp->len = x.len;
	resp->content_type = ctype;
	return 0;

nomem:
	free_headers(headers);
	return ph_err_set(err, ENOMEM, NULL, "out of memory");
}

void http_response_free(struct http_response *resp)
{
	if (!resp)
		return;
	free(resp->body);
	free(resp->content_type);
	free(resp->location);
	memset(resp, 0, sizeof(*resp));
}
