/*
 * test_http.c - http.c and the operations of primehub.c over loopback,
 * with a tiny canned HTTP/1.1 server in a thread (no emulator needed):
 * keep-alive reuse, timeouts, refused connections, interrupts, max_body,
 * the headers GraphQL requests carry, the build-log error mapping, and the
 * fault answers: redirects (never followed), resets, short bodies, silence,
 * proxy pages, a rejected token; which are retried and which are reported
 * as "maybe applied".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include "primehubfs/graphql.h"
#include "primehubfs/http.h"
#include "primehubfs/primehub.h"
#include "unit.h"

#define MAX_CONNS 32

struct conn {
	int fd;
	char buf[65536];
	size_t len;
};

static struct {
	int listen_fd;
	int port;
	atomic_int accepted; /* TCP connections opened to us */
	atomic_int stop;
	pthread_mutex_t lock;
	char last_request[65536]; /* headers + body of the last request */
	pthread_t thread;
	atomic_int stolen;     /* requests that followed a redirect */
	atomic_int flaky_left; /* /flaky/ answers 503 this many more times */
	atomic_int flaky_calls;
	atomic_int flaky_mutations;
	atomic_int far_port;  /* a second listener redirects point at */
	atomic_int faulted;   /* requests that got a damaged answer */
	atomic_int rotate_ok; /* /rotate/ answers with the good token */
} srv;

/* What handle() wants done with the connection after it. */
enum after { KEEP, DROP, RESET };

static void send_all(int fd, const char *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

static void respond(int fd, int status, const char *ctype, const char *body)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
	                 "HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n", status,
	                 ctype, strlen(body));

	send_all(fd, head, (size_t)n);
	send_all(fd, body, strlen(body));
}

#define JSON "application/json"

#define BIGTREE_IMAGES 12000

/* The tree answer with BIGTREE_IMAGES images (about 1.5 MB), errors first,
 * data's lists in an odd order; malloc'd. */
static char *big_tree(size_t *len)
{
	size_t cap = (size_t)BIGTREE_IMAGES * 160 + 512, n = 0;
	char *t = malloc(cap);

	n += (size_t)sprintf(t + n, "{\"errors\":[],\"data\":{\"secrets\":[],\"images\":[");
	for (int i = 0; i < BIGTREE_IMAGES; i++)
		n += (size_t)sprintf(t + n,
		                     "%s{\"id\":\"img-%d\",\"name\":\"img-%d\",\"displayName\":"
		                     "\"Image \\u00e9 %d\",\"url\":\"registry.example/img:%d\","
		                     "\"global\":true}",
		                     i ? "," : "", i, i, i, i);
	n += (size_t)sprintf(t + n, "],\"groups\":[{\"id\":\"g\",\"name\":\"g\"}]}}");
	*len = n;
	return t;
}

/* The canned answers, by path and (for GraphQL) operation name. */
static enum after handle(int fd, const char *req, const char *body)
{
	char path[256] = "";

	sscanf(req, "%*s %255s", path);
	if (strncmp(path, "/redirect-far/", 14) == 0) {
		char head[256];
		int n = snprintf(head, sizeof(head),
		                 "HTTP/1.1 307 X\r\nLocation: http://127.0.0.1:%d/api/graphql\r\n"
		                 "Content-Length: 0\r\n\r\n",
		                 (int)srv.far_port);

		send_all(fd, head, (size_t)n);
	} else if (strncmp(path, "/reset/", 7) == 0) {
		srv.faulted++; /* read the request, then RST: no answer */
		return RESET;
	} else if (strncmp(path, "/truncated/", 11) == 0) {
		static const char h[] = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\n"
		                        "Content-Length: 200\r\n\r\n{\"data\":{\"upd";

		srv.faulted++;
		send_all(fd, h, sizeof(h) - 1);
		return DROP;
	} else if (strncmp(path, "/silent/", 8) == 0) {
		srv.faulted++; /* keep the connection, never answer */
	} else if (strncmp(path, "/applydrop/", 11) == 0) {
		/* Mutations are "applied" and the connection closed unanswered;
		 * queries are answered (so a keep-alive connection exists). */
		if (!strstr(body, "mutation")) {
			respond(fd, 200, JSON,
			        "{\"data\":{\"me\":{\"username\":\"phadmin\",\"isAdmin\":true}}}");
			return KEEP;
		}
		srv.faulted++;
		return DROP;
	} else if (strncmp(path, "/unavailable/", 13) == 0) {
		srv.flaky_calls++;
		if (srv.flaky_left > 0) {
			srv.flaky_left--;
			respond(fd, 200, JSON,
			        "{\"data\":null,\"errors\":[{\"message\":\"kubernetes is down\","
			        "\"extensions\":{\"code\":\"API_UNAVAILABLE\"}}]}");
		} else {
			respond(fd, 200, JSON,
			        "{\"data\":{\"me\":{\"username\":\"phadmin\",\"isAdmin\":true}}}");
		}
	} else if (strncmp(path, "/echo-token/", 12) == 0) {
		/* A server that quotes the credentials back in its error. */
		char msg[512];
		const char *a = strstr(req, "Authorization: ");
		const char *e = a ? strstr(a, "\r\n") : NULL;

		snprintf(msg, sizeof(msg),
		         "{\"errors\":[{\"message\":\"bad header %.*s, token %.*s\"}]}",
		         a && e ? (int)(e - a) : 0, a ? a : "", a && e ? (int)(e - a - 22) : 0,
		         a && e ? a + 22 : "");
		respond(fd, 200, JSON, msg);
	} else if (strcmp(path, "/ok") == 0) {
		respond(fd, 200, "text/plain", "hello");
	} else if (strcmp(path, "/empty") == 0) {
		respond(fd, 204, "text/plain", "");
	} else if (strcmp(path, "/big") == 0) {
		char *b = malloc(100001);

		memset(b, 'x', 100000);
		b[100000] = '\0';
		respond(fd, 200, "text/plain", b);
		free(b);
	} else if (strcmp(path, "/bigchunked") == 0) {
		/* No Content-Length: only the write callback can stop it. */
		const char *h = "HTTP/1.1 200 X\r\nTransfer-Encoding: chunked\r\n\r\n";
		char chunk[4096 + 16];

		send_all(fd, h, strlen(h));
		memset(chunk, 'y', sizeof(chunk));
		for (int i = 0; i < 10; i++) {
			int n = sprintf(chunk, "1000\r\n");

			memset(chunk + n, 'y', 4096);
			memcpy(chunk + n + 4096, "\r\n", 2);
			send_all(fd, chunk, (size_t)n + 4098);
		}
		send_all(fd, "0\r\n\r\n", 5);
	} else if (strncmp(path, "/bigtree/", 9) == 0 || strncmp(path, "/cuttree/", 9) == 0) {
		/* A tree of BIGTREE_IMAGES images, chunked in odd pieces; under
		 * /cuttree/ the first answer stops half-way (a retry must start
		 * afresh, not append to what the broken one fed). */
		const char *h = "HTTP/1.1 200 X\r\nContent-Type: application/json\r\n"
		                "Transfer-Encoding: chunked\r\n\r\n";
		size_t len;
		char *tree = big_tree(&len);
		bool cut = path[1] == 'c' && srv.flaky_left > 0;

		if (cut)
			srv.flaky_left--;
		srv.flaky_calls++;
		send_all(fd, h, strlen(h));
		for (size_t at = 0, piece = 1; at < len;
		     at += piece, piece = piece * 7 % 3001 + 1) {
			char size[32];
			size_t n = len - at < piece ? len - at : piece;

			if (cut && at > len / 2)
				break;
			snprintf(size, sizeof(size), "%zx\r\n", n);
			send_all(fd, size, strlen(size));
			send_all(fd, tree + at, n);
			send_all(fd, "\r\n", 2);
		}
		free(tree);
		if (cut)
			return DROP;
		send_all(fd, "0\r\n\r\n", 5);
	} else if (strncmp(path, "/redirect/", 10) == 0) {
		char head[256];
		int n = snprintf(head, sizeof(head),
		                 "HTTP/1.1 307 X\r\nLocation: http://127.0.0.1:%d/stolen\r\n"
		                 "Content-Length: 0\r\n\r\n",
		                 srv.port);

		send_all(fd, head, (size_t)n);
	} else if (strncmp(path, "/stolen", 7) == 0) {
		srv.stolen++;
		respond(fd, 200, JSON, "{\"data\":{\"me\":{\"username\":\"x\",\"isAdmin\":true}}}");
	} else if (strncmp(path, "/flaky/", 7) == 0) {
		srv.flaky_calls++;
		if (strstr(body, "mutation"))
			srv.flaky_mutations++;
		if (srv.flaky_left > 0) {
			srv.flaky_left--;
			respond(
			    fd, 503, "text/html",
			    "<html><head><title>503 Service Temporarily Unavailable</title></head>"
			    "<body>nginx</body></html>");
		} else {
			respond(fd, 200, JSON,
			        "{\"data\":{\"me\":{\"username\":\"phadmin\",\"isAdmin\":true}}}");
		}
	} else if (strncmp(path, "/rotate/", 8) == 0) {
		if (strstr(req, "Authorization: Bearer good\r\n") && ++srv.rotate_ok)
			respond(fd, 200, JSON,
			        "{\"data\":{\"me\":{\"username\":\"phadmin\",\"isAdmin\":true}}}");
		else
			respond(fd, 500, JSON,
			        "{\"errors\":[{\"message\":\"Context creation failed: Invalid API "
			        "Token\",\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}}]}");
	} else if (strncmp(path, "/badtoken/", 10) == 0) {
		respond(fd, 500, JSON,
		        "{\"errors\":[{\"message\":\"Context creation failed: Invalid API "
		        "Token\",\"extensions\":{\"code\":\"INTERNAL_SERVER_ERROR\"}}]}");
	} else if (strncmp(path, "/user/", 6) == 0) {
		respond(fd, 200, JSON,
		        "{\"data\":{\"me\":{\"username\":\"bob\",\"isAdmin\":false}}}");
	} else if (strncmp(path, "/api/graphql", 12) == 0) {
		if (strstr(body, "PrimehubfsWhoAmI"))
			respond(fd, 200, JSON,
			        "{\"data\":{\"me\":{\"username\":\"phadmin\",\"isAdmin\":true}}}");
		else if (strstr(body, "PrimehubfsImage") && strstr(body, "\"nope\""))
			respond(fd, 200, JSON, "{\"data\":{\"image\":null}}");
		else if (strstr(body, "PrimehubfsImage"))
			respond(fd, 200, JSON,
			        "{\"data\":{\"image\":{\"id\":\"tf-2\",\"name\":\"tf-2\","
			        "\"useImagePullSecret\":null}}}");
		else if (strstr(body, "PrimehubfsCreateImage"))
			respond(fd, 200, JSON,
			        "{\"data\":null,\"errors\":[{\"message\":\"Resource already "
			        "exist\",\"extensions\":{\"code\":\"RESOURCE_CONFLICT\"}}]}");
		else if (strstr(body, "PrimehubfsUpdateImage"))
			respond(fd, 200, JSON,
			        "{\"data\":{\"updateImage\":null},\"errors\":[{\"message\":"
			        "\"Request failed with status code 404\",\"extensions\":{\"code\":"
			        "\"INTERNAL_SERVER_ERROR\"}}]}");
		else if (strstr(body, "PrimehubfsDeleteImage"))
			respond(fd, 200, JSON, "{\"data\":{\"deleteImage\":{\"id\":\"tf-2\"}}}");
		else if (strstr(body, "PrimehubfsTree"))
			respond(fd, 200, JSON,
			        "{\"data\":{\"images\":[{\"id\":\"a\",\"name\":\"a\"}]}}");
		else if (strstr(body, "PrimehubfsCatalog"))
			respond(fd, 200, JSON,
			        "{\"data\":{\"groups\":[],\"secrets\":[{\"id\":\"image-r\","
			        "\"name\":\"r\",\"type\":\"kubernetes\"}]}}");
		else
			respond(fd, 400, "text/plain", "Must provide query string.");
	} else if (strcmp(path, "/api/logs/images/built/job?follow=false") == 0) {
		respond(fd, 200, "text/plain", "Step 1/3 : FROM jupyter/base-notebook\n");
	} else if (strncmp(path, "/api/logs/images/plain/job", 26) == 0) {
		respond(fd, 400, JSON, "{\"code\":\"InternalError\",\"message\":\"no job found\"}");
	} else if (strncmp(path, "/api/logs/images/forbidden/job", 30) == 0) {
		respond(fd, 403, "text/html", "<html><body>Forbidden</body></html>");
	} else {
		respond(fd, 404, "text/plain", "Not Found");
	}
	return KEEP;
}

/* Serve complete requests found in c->buf; what to do with the
 * connection afterwards. */
static enum after serve_buffered(struct conn *c)
{
	for (;;) {
		char *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
		size_t hlen, blen = 0, total;
		char *cl, saved;

		if (!end)
			return KEEP;
		hlen = (size_t)(end - c->buf) + 4;
		saved = c->buf[hlen - 1];
		c->buf[hlen - 1] = '\0';
		cl = strcasestr(c->buf, "\r\nContent-Length:");
		if (cl)
			blen = strtoul(cl + 17, NULL, 10);
		c->buf[hlen - 1] = saved;
		total = hlen + blen;
		if (c->len < total)
			return KEEP;
		pthread_mutex_lock(&srv.lock);
		memcpy(srv.last_request, c->buf, total);
		srv.last_request[total] = '\0';
		pthread_mutex_unlock(&srv.lock);
		{
			char req[65536];
			enum after then;

			memcpy(req, c->buf, total);
			req[total] = '\0';
			req[hlen - 1] = '\0';
			then = handle(c->fd, req, req + hlen);
			if (then != KEEP)
				return then;
		}
		memmove(c->buf, c->buf + total, c->len - total);
		c->len -= total;
	}
}

static void *server_main(void *arg)
{
	static struct conn conns[MAX_CONNS];
	int nconns = 0;

	(void)arg;
	while (!srv.stop) {
		struct pollfd pfd[MAX_CONNS + 1];

		pfd[0].fd = srv.listen_fd;
		pfd[0].events = POLLIN;
		for (int i = 0; i < nconns; i++) {
			pfd[i + 1].fd = conns[i].fd;
			pfd[i + 1].events = POLLIN;
		}
		if (poll(pfd, (nfds_t)nconns + 1, 50) <= 0)
			continue;
		for (int i = nconns - 1; i >= 0; i--) {
			ssize_t r;

			if (!pfd[i + 1].revents)
				continue;
			r = recv(conns[i].fd, conns[i].buf + conns[i].len,
			         sizeof(conns[i].buf) - 1 - conns[i].len, 0);
			if (r <= 0) {
				close(conns[i].fd);
				conns[i] = conns[--nconns];
				continue;
			}
			conns[i].len += (size_t)r;
			switch (serve_buffered(&conns[i])) {
			case RESET: {
				struct linger l = {.l_onoff = 1, .l_linger = 0};

				setsockopt(conns[i].fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
			}
				/* fall through */
			case DROP:
				close(conns[i].fd);
				conns[i] = conns[--nconns];
				break;
			case KEEP:
				break;
			}
		}
		if ((pfd[0].revents & POLLIN) && nconns < MAX_CONNS) {
			int fd = accept(srv.listen_fd, NULL, NULL);

			if (fd >= 0) {
				srv.accepted++;
				conns[nconns].fd = fd;
				conns[nconns].len = 0;
				nconns++;
			}
		}
	}
	for (int i = 0; i < nconns; i++)
		close(conns[i].fd);
	return NULL;
}

/* A listening socket on 127.0.0.1; *port gets its port. */
static int listen_loopback(int *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 16) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &alen) < 0) {
		perror("listen_loopback");
		exit(2);
	}
	*port = ntohs(a.sin_port);
	return fd;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int get(struct http_client *c, const char *path, size_t max_body, struct http_response *resp,
               struct ph_err *err)
{
	char url[128];
	struct http_request req = {.method = "GET", .url = url, .max_body = max_body};

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", srv.port, path);
	ph_err_clear(err);
	return http_perform(c, &req, resp, err);
}

static void test_keepalive(struct http_client *c)
{
	struct http_response resp;
	struct ph_err err;
	int before = srv.accepted;

	for (int i = 0; i < 5; i++) {
		CHECK_INT(get(c, "/ok", 0, &resp, &err), 0);
		CHECK_INT(resp.status, 200);
		CHECK_STR(resp.body, "hello");
		CHECK_INT(resp.len, 5);
		CHECK_STR(resp.content_type, "text/plain");
		http_response_free(&resp);
	}
	/* One TCP connection for five sequential requests. */
	CHECK_INT(srv.accepted - before, 1);

	CHECK_INT(get(c, "/nowhere", 0, &resp, &err), 0); /* any status is a response */
	CHECK_INT(resp.status, 404);
	http_response_free(&resp);

	CHECK_INT(get(c, "/empty", 0, &resp, &err), 0);
	CHECK_INT(resp.status, 204);
	CHECK(resp.body != NULL && resp.len == 0 && resp.body[0] == '\0');
	http_response_free(&resp);
}

static void test_max_body(struct http_client *c)
{
	struct http_response resp;
	struct ph_err err;

	CHECK_INT(get(c, "/big", 1000, &resp, &err), -EFBIG);
	CHECK_CONTAINS(err.msg, "larger than 1000 bytes");
	CHECK(resp.body == NULL);
	CHECK_INT(get(c, "/bigchunked", 10000, &resp, &err), -EFBIG);
	CHECK_CONTAINS(err.msg, "larger than 10000 bytes");
	CHECK_INT(get(c, "/big", 100000, &resp, &err), 0); /* exactly the limit is fine */
	CHECK_INT(resp.len, 100000);
	http_response_free(&resp);
	CHECK_INT(get(c, "/bigchunked", 0, &resp, &err), 0);
	CHECK_INT(resp.len, 40960);
	http_response_free(&resp);
}

struct collect {
	size_t pieces, bytes, not_y;
	long status;
	int stop_with; /* nonzero: stop at the first piece with this */
};

static int collect_write(void *arg, long status, const char *buf, size_t len, struct ph_err *err)
{
	struct collect *k = arg;

	k->status = status;
	k->pieces++;
	k->bytes += len;
	for (size_t i = 0; i < len; i++)
		k->not_y += buf[i] != 'y';
	if (k->stop_with)
		return ph_err_set(err, -k->stop_with, NULL, "the consumer had enough");
	return 0;
}

/* A body given to a sink as it arrives: nothing of it kept, every byte
 * delivered once, the status known at the first piece, and a sink that
 * stops the transfer makes it fail with the sink's errno and reason. */
static void test_sink(struct http_client *c)
{
	struct collect k = {0};
	struct http_sink sink = {.write = collect_write, .arg = &k};
	struct http_response resp;
	struct ph_err err;
	char url[128];
	struct http_request req = {.method = "GET", .url = url, .sink = &sink};

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/bigchunked", srv.port);
	CHECK_INT(http_perform(c, &req, &resp, &err), 0);
	CHECK_INT(resp.status, 200);
	CHECK_INT(k.status, 200);
	CHECK_INT(k.bytes, 40960);
	CHECK_INT(resp.len, 40960);
	CHECK_INT(k.not_y, 0);
	CHECK(k.pieces >= 1);
	CHECK_STR(resp.body, ""); /* nothing kept */
	http_response_free(&resp);

	memset(&k, 0, sizeof(k));
	k.stop_with = -ENOSPC;
	CHECK_INT(http_perform(c, &req, &resp, &err), -ENOSPC);
	CHECK_STR(err.msg, "the consumer had enough");
	CHECK_INT(k.pieces, 1);

	memset(&k, 0, sizeof(k));
	req.max_body = 10000;
	CHECK_INT(http_perform(c, &req, &resp, &err), -EFBIG);
	CHECK_CONTAINS(err.msg, "larger than 10000 bytes");
	CHECK(k.bytes <= 10000);
}

static struct gql_client *client_at(struct http_client *http, const char *prefix,
                                    const char *token);

/* The tree decoded while it arrives in odd pieces: every image, once, even
 * after a first answer that broke half-way; a bound on its size that
 * names the option. */
static void test_streamed_tree(struct http_client *http)
{
	struct gql_client *gql = client_at(http, "/bigtree", "secret-token");
	struct ph_api *api = NULL;
	struct ph_tree tree;
	struct ph_err err;

	ph_api_new(gql, &api);
	CHECK_INT(ph_fetch_tree(api, &tree, &err), 0);
	CHECK_INT(tree.nimages, BIGTREE_IMAGES);
	CHECK_STR(tree.nimages ? tree.images[BIGTREE_IMAGES - 1]->id : NULL, "img-11999");
	CHECK_STR(tree.nimages ? tree.images[7]->display_name : NULL, "Image \xc3\xa9 7");
	CHECK_INT(tree.ngroups, 1);
	ph_tree_free(&tree);

	/* About 1.5 MB is more than 1 MiB. */
	gql_client_set_max_stream(gql, (size_t)1 << 20);
	CHECK_INT(gql_client_max_stream(gql), 1 << 20);
	CHECK_INT(ph_fetch_tree(api, &tree, &err), -EFBIG);
	CHECK_STR(err.msg, "listing images: the answer is larger than 1 MiB (-o max_tree_mb=1): "
	                   "raise max_tree_mb if this machine has the memory");
	CHECK(tree.images == NULL && tree.nimages == 0);
	ph_api_free(api);
	gql_client_free(gql);

	gql = client_at(http, "/cuttree", "secret-token");
	ph_api_new(gql, &api);
	srv.flaky_left = 1;
	srv.flaky_calls = 0;
	CHECK_INT(ph_fetch_tree(api, &tree, &err), 0);
	CHECK_INT(srv.flaky_calls, 2);
	CHECK_INT(tree.nimages, BIGTREE_IMAGES);
	ph_tree_free(&tree);
	srv.flaky_left = 5; /* every try breaks: the error, nothing half-decoded */
	CHECK_INT(ph_fetch_tree(api, &tree, &err), -ECONNRESET);
	CHECK_CONTAINS(err.msg, "listing images: ");
	CHECK(tree.images == NULL && tree.nimages == 0);
	srv.flaky_left = 0;
	ph_api_free(api);
	gql_client_free(gql);
}

struct worker {
	struct http_client *c;
	int failures;
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (int i = 0; i < 25; i++) {
		struct http_response resp;
		struct ph_err err;

		if (get(w->c, "/ok", 0, &resp, &err) != 0 || resp.status != 200)
			w->failures++;
		http_response_free(&resp);
	}
	return NULL;
}

static void test_threads(struct http_client *c)
{
	struct worker w[8];
	pthread_t t[8];
	int failures = 0, before = srv.accepted;

	for (int i = 0; i < 8; i++) {
		w[i] = (struct worker){.c = c};
		pthread_create(&t[i], NULL, worker_main, &w[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		failures += w[i].failures;
	}
	CHECK_INT(failures, 0);
	/* At most one connection per concurrent handle. */
	CHECK(srv.accepted - before <= 8);
}

static void test_refused(struct http_client *c)
{
	struct http_request req = {.method = "POST", .body = "{}", .body_len = 2};
	struct http_response resp;
	struct ph_err err;
	char url[128], want[256];
	int port, fd = listen_loopback(&port);
	double t0;

	close(fd); /* now nothing listens there */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/graphql", port);
	snprintf(want, sizeof(want), "cannot connect to %s: Connection refused", url);
	req.url = url;
	t0 = now();
	CHECK_INT(http_perform(c, &req, &resp, &err), -ECONNREFUSED);
	CHECK(now() - t0 < 2.0);
	CHECK_STR(err.msg, want);
	CHECK_INT(err.errnum, ECONNREFUSED);

	req.url = "http://host.invalid/api/graphql";
	CHECK(http_perform(c, &req, &resp, &err) == -EHOSTUNREACH);
	CHECK_CONTAINS(err.msg, "host.invalid");

	req.url = "ftp://127.0.0.1/";
	CHECK_INT(http_perform(c, &req, &resp, &err), -EIO);
	req.method = "DELETE";
	CHECK_INT(http_perform(c, &req, &resp, &err), -EINVAL);
}

static int abort_after_calls(void *arg)
{
	int *calls = arg;

	return ++*calls > 3;
}

static int abort_now(void *arg)
{
	(void)arg;
	return 1;
}

/* A server that accepts (the kernel does) and never answers. */
static void test_silent(void)
{
	struct http_options o = {.connect_timeout_ms = 500, .timeout_ms = 800};
	struct http_client *c = NULL;
	struct http_request req = {.method = "POST", .body = "{}", .body_len = 2};
	struct http_response resp;
	struct ph_err err;
	char url[128];
	int port, fd = listen_loopback(&port), calls = 0;
	double t0, dt;

	CHECK_INT(http_client_new(&o, &c, &err), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/graphql", port);
	req.url = url;
	t0 = now();
	CHECK_INT(http_perform(c, &req, &resp, &err), -ETIMEDOUT);
	dt = now() - t0;
	CHECK(dt >= 0.7 && dt < 3.0);
	CHECK_CONTAINS(err.msg, url);

	/* Interrupted while waiting: the progress callback stops it. */
	o.timeout_ms = 10000;
	http_client_free(c);
	CHECK_INT(http_client_new(&o, &c, &err), 0);
	req.abort_cb = abort_after_calls;
	req.abort_arg = &calls;
	t0 = now();
	CHECK_INT(http_perform(c, &req, &resp, &err), -EINTR);
	CHECK(now() - t0 < 5.0);
	CHECK(calls > 3);
	CHECK_CONTAINS(err.msg, "interrupted");

	/* Already interrupted: not even a connection. */
	req.abort_cb = abort_now;
	CHECK_INT(http_perform(c, &req, &resp, &err), -EINTR);
	http_client_free(c);
	close(fd);
}

static void test_operations(struct http_client *http)
{
	struct gql_client *gql = NULL;
	struct ph_api *api = NULL;
	struct ph_image_input in = {0};
	struct ph_image *img = NULL;
	struct ph_tree tree;
	struct ph_err err;
	char url[128], *user = NULL, *text = NULL;
	size_t len;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/graphql", srv.port);
	CHECK_INT(gql_client_new(http, url, "secret-token", &gql, &err), 0);
	CHECK_INT(ph_api_new(gql, &api), 0);

	CHECK_INT(ph_check_admin(api, &user, &err), 0);
	CHECK_STR(user, "phadmin");
	free(user);
	pthread_mutex_lock(&srv.lock);
	CHECK_CONTAINS(srv.last_request, "POST /api/graphql HTTP/1.1");
	CHECK_CONTAINS(srv.last_request, "Authorization: Bearer secret-token\r\n");
	CHECK_CONTAINS(srv.last_request, "Content-Type: application/json\r\n");
	CHECK_CONTAINS(srv.last_request, "Accept: application/json\r\n");
	CHECK(strcasestr(srv.last_request, "Expect:") == NULL);
	CHECK_CONTAINS(srv.last_request, "\"query\":\"query PrimehubfsWhoAmI");
	pthread_mutex_unlock(&srv.lock);

	CHECK_INT(ph_fetch_tree(api, &tree, &err), 0);
	CHECK_INT(tree.nimages, 1);
	ph_tree_free(&tree);
	pthread_mutex_lock(&srv.lock);
	CHECK_CONTAINS(srv.last_request, "\"variables\":{\"mode\":\"SYSTEM_ONLY\"}}");
	CHECK_CONTAINS(srv.last_request, "fragment TreeImageFields on Image");
	/* The tree asks PrimeHub for images only: groups and secrets cost it
	 * Keycloak and Kubernetes reads and are asked only when needed. */
	CHECK(strstr(srv.last_request, "groups {") == NULL);
	CHECK(strstr(srv.last_request, "secrets(") == NULL);
	pthread_mutex_unlock(&srv.lock);

	CHECK_INT(ph_fetch_catalog(api, &tree, &err), 0);
	CHECK_INT(tree.nsecrets, 1);
	ph_tree_free(&tree);
	pthread_mutex_lock(&srv.lock);
	CHECK_CONTAINS(srv.last_request, "\"query\":\"query PrimehubfsCatalog");
	CHECK_CONTAINS(srv.last_request,
	               "\"variables\":{\"pullSecrets\":{\"ifDockerConfigJson\":true}}");
	pthread_mutex_unlock(&srv.lock);

	CHECK_INT(ph_get_image(api, "nope", &img, &err), 0);
	CHECK(img == NULL);
	CHECK_INT(ph_get_image(api, "tf-2", &img, &err), 0);
	CHECK_STR(img ? img->id : NULL, "tf-2");
	ph_image_free(img);
	pthread_mutex_lock(&srv.lock);
	CHECK_CONTAINS(srv.last_request, "\"variables\":{\"where\":{\"id\":\"tf-2\"}}");
	pthread_mutex_unlock(&srv.lock);

	in.set = PH_IN_NAME;
	in.name = strdup("tf-2");
	CHECK_INT(ph_create_image(api, &in, &img, &err), -EEXIST);
	CHECK(img == NULL);
	CHECK_CONTAINS(err.msg, "createImage tf-2: ");
	CHECK_CONTAINS(err.msg, "Resource already exist");
	ph_image_input_clear(&in);

	ph_strlist_append(&in.connect, "no-such-group");
	CHECK_INT(ph_update_image(api, "tf-2", &in, &img, &err), -ENOENT);
	CHECK(img == NULL);
	CHECK_CONTAINS(err.msg, "updateImage tf-2: a group id does not exist");
	pthread_mutex_lock(&srv.lock);
	CHECK_CONTAINS(srv.last_request,
	               "\"variables\":{\"data\":{\"groups\":{\"connect\":[{\"id\":"
	               "\"no-such-group\"}]}},\"where\":{\"id\":\"tf-2\"}}");
	pthread_mutex_unlock(&srv.lock);
	ph_image_input_clear(&in);

	CHECK_INT(ph_delete_image(api, "tf-2", &err), 0);

	/* Build logs: GET with follow=false, errors from status + JSON body. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/logs/images/built/job", srv.port);
	CHECK_INT(ph_fetch_build_log(api, url, &text, &len, &err), 0);
	CHECK_STR(text, "Step 1/3 : FROM jupyter/base-notebook\n");
	CHECK_INT(len, strlen("Step 1/3 : FROM jupyter/base-notebook\n"));
	free(text);
	pthread_mutex_lock(&srv.lock);
	CHECK_CONTAINS(srv.last_request, "GET /api/logs/images/built/job?follow=false HTTP/1.1");
	CHECK_CONTAINS(srv.last_request, "Accept: application/json\r\n");
	CHECK_CONTAINS(srv.last_request, "Authorization: Bearer secret-token\r\n");
	pthread_mutex_unlock(&srv.lock);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/logs/images/plain/job", srv.port);
	CHECK_INT(ph_fetch_build_log(api, url, &text, &len, &err), -ENOENT);
	CHECK_STR(err.msg, "build log: no build job yet (HTTP 400: no job found)");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/logs/images/forbidden/job", srv.port);
	CHECK_INT(ph_fetch_build_log(api, url, &text, &len, &err), -EACCES);
	CHECK_CONTAINS(err.msg, "HTML page");
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/logs/images/gone/job", srv.port);
	CHECK_INT(ph_fetch_build_log(api, url, &text, &len, &err), -ENOENT);
	CHECK_INT(ph_fetch_build_log(api, "file:///etc/passwd", &text, &len, &err), -EPROTO);
	CHECK(text == NULL);
	ph_api_free(api);
	gql_client_free(gql);

	/* A rejected token names the endpoint. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/badtoken/graphql", srv.port);
	CHECK_INT(gql_client_new(http, url, "bad", &gql, &err), 0);
	CHECK_INT(ph_api_new(gql, &api), 0);
	CHECK_INT(ph_check_admin(api, NULL, &err), -EACCES);
	{
		char want[256];

		snprintf(want, sizeof(want),
		         "token rejected by %s: Invalid API Token (it expired or was revoked: make "
		         "a new one in PrimeHub)",
		         url);
		CHECK_STR(err.msg, want);
	}
	CHECK_INT(ph_fetch_tree(api, &tree, &err), -EACCES);
	CHECK_CONTAINS(err.msg, "listing images: token rejected by");
	ph_api_free(api);
	gql_client_free(gql);

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/user/graphql", srv.port);
	CHECK_INT(gql_client_new(http, url, "tok", &gql, &err), 0);
	CHECK_INT(ph_api_new(gql, &api), 0);
	CHECK_INT(ph_check_admin(api, &user, &err), -EACCES);
	CHECK(user == NULL);
	CHECK_STR(err.msg, "user bob is not a PrimeHub administrator (admin images need the "
	                   "realm-admin role)");
	ph_api_free(api);
	gql_client_free(gql);
}

static int reloads;
static const char *next_token;

static int reload(void *arg, char **token)
{
	(void)arg;
	reloads++;
	*token = next_token ? strdup(next_token) : NULL;
	return *token ? 0 : -ENOENT;
}

/* Redirects are not followed, queries retry passing failures, mutations do
 * not, a rejected token is reloaded once, and the build log goes to the
 * endpoint's own origin whatever logEndpoint names. */
static void test_trust_and_retries(struct http_client *http)
{
	struct gql_client *gql = NULL;
	struct ph_api *api = NULL;
	struct ph_image_input in = {0};
	struct ph_image *img = NULL;
	struct ph_err err;
	char url[128], *user = NULL, *text = NULL, *out = NULL;
	size_t len;

	snprintf(url, sizeof(url), "http://127.0.0.1:%d/redirect/graphql", srv.port);
	CHECK_INT(gql_client_new(http, url, "secret-token", &gql, &err), 0);
	CHECK_INT(ph_api_new(gql, &api), 0);
	CHECK_INT(ph_check_admin(api, &user, &err), -EIO);
	CHECK_CONTAINS(err.msg, "PrimeHub answered HTTP 307 redirecting to http://127.0.0.1:");
	CHECK_CONTAINS(err.msg, "does not follow redirects");
	CHECK_INT(srv.stolen, 0);
	ph_api_free(api);
	gql_client_free(gql);

	/* Two 503 pages, then an answer: a query gets through. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/flaky/graphql", srv.port);
	CHECK_INT(gql_client_new(http, url, "secret-token", &gql, &err), 0);
	CHECK_INT(ph_api_new(gql, &api), 0);
	srv.flaky_left = 2;
	srv.flaky_calls = 0;
	CHECK_INT(ph_check_admin(api, &user, &err), 0);
	free(user);
	CHECK_INT(srv.flaky_calls, 3);
	/* A mutation is sent once, and its lost answer says so. */
	srv.flaky_left = 5;
	srv.flaky_mutations = 0;
	ph_err_clear(&err);
	in.set = PH_IN_DESCRIPTION;
	in.description = strdup("x");
	CHECK_INT(ph_update_image(api, "tf-2", &in, &img, &err), -EIO);
	CHECK(err.maybe_applied);
	CHECK_INT(srv.flaky_mutations, 1);
	ph_image_input_clear(&in);
	srv.flaky_left = 0;
	ph_api_free(api);
	gql_client_free(gql);

	/* A rejected token: the source gives a new one, the request goes once
	 * more; the same token again is not retried. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/rotate/graphql", srv.port);
	CHECK_INT(gql_client_new(http, url, "old", &gql, &err), 0);
	CHECK_INT(ph_api_new(gql, &api), 0);
	gql_client_set_token_source(gql, reload, NULL);
	next_token = "old";
	CHECK_INT(ph_check_admin(api, &user, &err), -EACCES);
	CHECK_INT(reloads, 1);
	next_token = "good\n";
	CHECK_INT(ph_check_admin(api, &user, &err), 0);
	free(user);
	CHECK_INT(reloads, 2);
	CHECK_INT(ph_check_admin(api, &user, &err), 0); /* keeps the new one */
	free(user);
	CHECK_INT(reloads, 2);
	ph_api_free(api);
	gql_client_free(gql);

	/* The log URL keeps only path and query of logEndpoint. */
	CHECK_INT(ph_log_url("https://hub.example.com/api/graphql",
	                     "http://other.example:8080/api/logs/images/x/job", &out, &err),
	          0);
	CHECK_STR(out, "https://hub.example.com/api/logs/images/x/job?follow=false");
	free(out);
	CHECK_INT(ph_log_url("http://127.0.0.1:9/api/graphql",
	                     "https://h/api/logs/images/x/job?tailLines=10#frag", &out, &err),
	          0);
	CHECK_STR(out, "http://127.0.0.1:9/api/logs/images/x/job?tailLines=10&follow=false");
	free(out);
	CHECK_INT(ph_log_url("http://e/api/graphql", "file:///etc/passwd", &out, &err), -EPROTO);
	CHECK_INT(ph_log_url("http://e/api/graphql", "http://u:p@h/api/logs", &out, &err), -EPROTO);
	CHECK_INT(ph_log_url("http://e/api/graphql", "not a url", &out, &err), -EPROTO);
	CHECK_INT(ph_log_url("http://e/api/graphql", "", &out, &err), -ENOENT);
	CHECK(out == NULL);

	/* A logEndpoint naming another port is fetched from the endpoint's. */
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/graphql", srv.port);
	CHECK_INT(gql_client_new(http, url, "secret-token", &gql, &err), 0);
	CHECK_INT(ph_api_new(gql, &api), 0);
	CHECK_INT(ph_fetch_build_log(api, "http://127.0.0.1:1/api/logs/images/built/job", &text,
	                             &len, &err),
	          0);
	CHECK_STR(text, "Step 1/3 : FROM jupyter/base-notebook\n");
	free(text);
	ph_api_free(api);
	gql_client_free(gql);
}

/* A connection waiting on a listener nobody accepts from: true if any. */
static bool pending_connection(int listen_fd)
{
	int fd;

	fcntl(listen_fd, F_SETFL, fcntl(listen_fd, F_GETFL) | O_NONBLOCK);
	fd = accept(listen_fd, NULL, NULL);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

static struct gql_client *client_at(struct http_client *http, const char *prefix, const char *token)
{
	struct gql_client *gql = NULL;
	struct ph_err err;
	char url[128];

	snprintf(url, sizeof(url), "http://127.0.0.1:%d%s/graphql", srv.port, prefix);
	CHECK_INT(gql_client_new(http, url, token, &gql, &err), 0);
	return gql;
}

/* A 307 to another port: not followed, and that port hears nothing, for
 * GraphQL and for the build log alike. */
static void test_redirect_elsewhere(struct http_client *http)
{
	int far_port, far = listen_loopback(&far_port);
	struct gql_client *gql;
	struct ph_api *api = NULL;
	struct ph_err err;
	char want[128], *user = NULL, *text = NULL;
	size_t len;

	srv.far_port = far_port;
	gql = client_at(http, "/redirect-far", "secret-token");
	CHECK_INT(ph_api_new(gql, &api), 0);
	CHECK_INT(ph_check_admin(api, &user, &err), -EIO);
	snprintf(want, sizeof(want),
	         "PrimeHub answered HTTP 307 redirecting to http://127.0.0.1:%d/", far_port);
	CHECK_CONTAINS(err.msg, want);
	CHECK_CONTAINS(err.msg, "use the final URL as the endpoint");
	CHECK(!err.maybe_applied);
	/* A mutation is not resent either, and nothing ran: no maybe. */
	CHECK_INT(ph_delete_image(api, "tf-2", &err), -EIO);
	CHECK(!err.maybe_applied);
	CHECK_INT(ph_fetch_build_log(api, "http://elsewhere:9/redirect-far/logs/images/x/job",
	                             &text, &len, &err),
	          -EIO);
	CHECK_CONTAINS(err.msg, "build log: PrimeHub answered HTTP 307 redirecting to");
	CHECK(text == NULL);
	usleep(100000);
	CHECK(!pending_connection(far));
	ph_api_free(api);
	gql_client_free(gql);
	close(far);
}

static void *late_server(void *arg)
{
	int *port = arg, one = 1, fd, c;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct pollfd p;
	char buf[8192];
	size_t n = 0;

	usleep(250000);
	a.sin_port = htons((uint16_t)*port);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4) < 0) {
		perror("late_server");
		close(fd);
		return NULL;
	}
	p = (struct pollfd){.fd = fd, .events = POLLIN};
	if (poll(&p, 1, 5000) == 1 && (c = accept(fd, NULL, NULL)) >= 0) {
		p = (struct pollfd){.fd = c, .events = POLLIN};
		/* The request is small: headers and body in a few reads. */
		while (n < sizeof(buf) - 1 && poll(&p, 1, 300) == 1) {
			ssize_t r = recv(c, buf + n, sizeof(buf) - 1 - n, 0);

			if (r <= 0)
				break;
			n += (size_t)r;
			buf[n] = '\0';
			if (strstr(buf, "\r\n\r\n") && strstr(buf, "}}"))
				break;
		}
		respond(c, 200, JSON, "{\"data\":{\"deleteImage\":{\"id\":\"tf-2\"}}}");
		usleep(100000);
		close(c);
		*port = -1; /* served */
	}
	close(fd);
	return NULL;
}

/* Which failures are retried, which are "maybe applied", and that one
 * budget (the timeout) bounds them all. */
static void test_faults(struct http_client *http)
{
	struct http_options so = {.connect_timeout_ms = 500, .timeout_ms = 800};
	struct http_client *quick = NULL;
	struct gql_client *gql;
	struct ph_api *api = NULL;
	struct ph_err err;
	char *user = NULL;
	double t0, dt;
	int before;

	CHECK_INT(http_client_new(&so, &quick, &err), 0);

	/* Reset after the request: a mutation is sent once and may have
	 * landed (even on a pooled warm connection: it gets a fresh one); a
	 * query is asked again (all four tries reset here). */
	gql = client_at(http, "/reset", "secret-token");
	ph_api_new(gql, &api);
	before = srv.faulted;
	CHECK_INT(ph_delete_image(api, "tf-2", &err), -ECONNRESET);
	CHECK(err.maybe_applied);
	CHECK_CONTAINS(err.msg, "deleteImage tf-2: ");
	CHECK_INT(srv.faulted - before, 1);
	before = srv.faulted;
	CHECK_INT(ph_check_admin(api, &user, &err), -ECONNRESET);
	CHECK(!err.maybe_applied);
	/* Four tries; libcurl adds a fresh-connection retry of its own when a
	 * reused connection dies unanswered (harmless for a query). */
	CHECK(srv.faulted - before >= 4 && srv.faulted - before <= 12);
	ph_api_free(api);
	gql_client_free(gql);

	/* A body that stops half-way. */
	gql = client_at(http, "/truncated", "secret-token");
	ph_api_new(gql, &api);
	before = srv.faulted;
	CHECK(ph_delete_image(api, "tf-2", &err) < 0);
	CHECK(err.maybe_applied);
	CHECK_INT(srv.faulted - before, 1);
	ph_api_free(api);
	gql_client_free(gql);

	/* The server applies, then closes a REUSED keep-alive connection
	 * without answering: libcurl would resend on a fresh connection by
	 * itself; a mutation must reach the server once. */
	gql = client_at(http, "/applydrop", "secret-token");
	ph_api_new(gql, &api);
	CHECK_INT(ph_check_admin(api, &user, &err), 0); /* leaves a warm connection */
	free(user);
	before = srv.faulted;
	CHECK(ph_delete_image(api, "tf-2", &err) < 0);
	CHECK(err.maybe_applied);
	CHECK_INT(srv.faulted - before, 1);
	ph_api_free(api);
	gql_client_free(gql);

	/* Silence: one budget for a query with its retries, one for a
	 * mutation, which then may have been applied (ETIMEDOUT kept). */
	gql = client_at(quick, "/silent", "secret-token");
	ph_api_new(gql, &api);
	t0 = now();
	CHECK_INT(ph_check_admin(api, &user, &err), -ETIMEDOUT);
	dt = now() - t0;
	CHECK(dt >= 0.7 && dt < 1.6);
	t0 = now();
	CHECK_INT(ph_delete_image(api, "tf-2", &err), -ETIMEDOUT);
	dt = now() - t0;
	CHECK(dt >= 0.7 && dt < 1.6);
	CHECK(err.maybe_applied);
	ph_api_free(api);
	gql_client_free(gql);

	/* A proxy's 503 page forever: the query gives up within the budget
	 * after a few jittered tries. */
	gql = client_at(quick, "/flaky", "secret-token");
	ph_api_new(gql, &api);
	srv.flaky_left = 1000;
	srv.flaky_calls = 0;
	t0 = now();
	CHECK_INT(ph_check_admin(api, &user, &err), -EIO);
	dt = now() - t0;
	CHECK(dt < 1.2);
	CHECK(srv.flaky_calls >= 2 && srv.flaky_calls <= 4);
	CHECK_CONTAINS(err.msg, "HTTP 503");
	srv.flaky_left = 0;
	ph_api_free(api);
	gql_client_free(gql);

	/* API_UNAVAILABLE twice, then an answer. */
	gql = client_at(http, "/unavailable", "secret-token");
	ph_api_new(gql, &api);
	srv.flaky_left = 2;
	srv.flaky_calls = 0;
	CHECK_INT(ph_check_admin(api, &user, &err), 0);
	free(user);
	CHECK_INT(srv.flaky_calls, 3);
	ph_api_free(api);
	gql_client_free(gql);

	/* Refused: nothing was sent, so nothing may have been applied, and
	 * even a mutation may go again: here the server comes up 250 ms
	 * later and gets the mutation once. */
	{
		int port, fd = listen_loopback(&port);
		struct gql_client *g = NULL;
		char url[128];
		pthread_t t;

		close(fd);
		snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/graphql", port);
		CHECK_INT(gql_client_new(quick, url, "secret-token", &g, &err), 0);
		ph_api_new(g, &api);
		t0 = now();
		CHECK_INT(ph_delete_image(api, "tf-2", &err), -ECONNREFUSED);
		CHECK(!err.maybe_applied);
		CHECK(now() - t0 < 1.2);
		pthread_create(&t, NULL, late_server, &port);
		CHECK_INT(ph_delete_image(api, "tf-2", &err), 0);
		pthread_join(t, NULL);
		CHECK_INT(port, -1);
		ph_api_free(api);
		gql_client_free(g);
	}

	/* The server quotes the Authorization header back: the token is cut
	 * out of the message. */
	gql = client_at(http, "/echo-token", "supersecret-0123456789");
	ph_api_new(gql, &api);
	CHECK_INT(ph_check_admin(api, &user, &err), -EIO);
	CHECK(strstr(err.msg, "supersecret") == NULL);
	CHECK_CONTAINS(err.msg, "Bearer (token)");
	ph_api_free(api);
	gql_client_free(gql);

	http_client_free(quick);
}

static atomic_int abort_flag;

static int abort_when_flagged(void *arg)
{
	(void)arg;
	return abort_flag;
}

static void *flag_later(void *arg)
{
	(void)arg;
	usleep(300000);
	abort_flag = 1;
	return NULL;
}

/* Interrupted while backing off: the operation ends at once with EINTR. */
static void test_interrupted_backoff(struct http_client *http)
{
	struct gql_client *gql = client_at(http, "/flaky", "secret-token");
	struct ph_api *api = NULL;
	struct ph_err err;
	char *user = NULL;
	pthread_t t;
	double t0, dt;

	ph_api_new(gql, &api);
	gql_client_set_abort(gql, abort_when_flagged, NULL);
	srv.flaky_left = 1000;
	abort_flag = 0;
	pthread_create(&t, NULL, flag_later, NULL);
	t0 = now();
	CHECK_INT(ph_check_admin(api, &user, &err), -EINTR);
	dt = now() - t0;
	pthread_join(t, NULL);
	CHECK(dt >= 0.25 && dt < 0.6);
	srv.flaky_left = 0;
	ph_api_free(api);
	gql_client_free(gql);
}

static pthread_mutex_t reload_lock = PTHREAD_MUTEX_INITIALIZER;
static atomic_int mt_reloads;
static char mt_current[16] = "old";

/* Like the daemon's source: says "nothing new" when the file still holds
 * the token it handed out last. */
static int reload_mt(void *arg, char **token)
{
	int ret = -EACCES;

	(void)arg;
	mt_reloads++;
	*token = NULL;
	pthread_mutex_lock(&reload_lock);
	if (strcmp(mt_current, "good") != 0) {
		strcpy(mt_current, "good");
		*token = strdup("good");
		ret = 0;
	}
	pthread_mutex_unlock(&reload_lock);
	return ret;
}

struct rotator {
	struct ph_api *api;
	int failures;
};

static void *rotate_main(void *arg)
{
	struct rotator *r = arg;

	for (int i = 0; i < 20; i++) {
		struct ph_err err;
		char *user = NULL;

		if (ph_check_admin(r->api, &user, &err) != 0)
			r->failures++;
		free(user);
	}
	return NULL;
}

/* Eight threads rejected at once: one swaps the token in, the others see
 * the swap and resend with it; nobody frees a header in use (ASan). */
static void test_token_threads(struct http_client *http)
{
	struct gql_client *gql = client_at(http, "/rotate", "old");
	struct ph_api *api = NULL;
	struct rotator r[8];
	pthread_t t[8];
	int failures = 0;

	ph_api_new(gql, &api);
	gql_client_set_token_source(gql, reload_mt, NULL);
	srv.rotate_ok = 0;
	for (int i = 0; i < 8; i++) {
		r[i] = (struct rotator){.api = api};
		pthread_create(&t[i], NULL, rotate_main, &r[i]);
	}
	for (int i = 0; i < 8; i++) {
		pthread_join(t[i], NULL);
		failures += r[i].failures;
	}
	CHECK_INT(failures, 0);
	CHECK_INT(srv.rotate_ok, 160);
	CHECK(mt_reloads >= 1 && mt_reloads <= 8);
	ph_api_free(api);
	gql_client_free(gql);
}

int main(void)
{
	struct http_client *c = NULL;
	struct ph_err err;

	pthread_mutex_init(&srv.lock, NULL);
	srv.listen_fd = listen_loopback(&srv.port);
	pthread_create(&srv.thread, NULL, server_main, NULL);

	CHECK_INT(http_client_new(NULL, &c, &err), 0);
	test_keepalive(c);
	test_max_body(c);
	test_threads(c);
	test_refused(c);
	test_operations(c);
	test_trust_and_retries(c);
	test_redirect_elsewhere(c);
	test_faults(c);
	test_interrupted_backoff(c);
	test_token_threads(c);
	test_sink(c);
	test_streamed_tree(c);
	http_client_free(c);
	test_silent();

	srv.stop = 1;
	pthread_join(srv.thread, NULL);
	close(srv.listen_fd);
	UNIT_DONE();
}
