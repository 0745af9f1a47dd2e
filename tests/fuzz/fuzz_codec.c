/*
 * fuzz_codec.c - libFuzzer target for everything the network layer reads
 * from the server (see README.md here).
 *
 * An input is one answer: its first byte picks the HTTP status (from the
 * table below: '0' is 200, '1' 400, '2' 500, '3' 502, '4' 503, '5' 504,
 * '6' 307, '7' 404, ...), the rest is the body.  It is tried as:
 *   - a GraphQL answer (gql_decode_response);
 *   - when the body is JSON: a tree (ph_decode_tree on the body and on its
 *     "data"), an image (ph_decode_image on the body, on data.image and on
 *     the first of data.images);
 *   - a logEndpoint (ph_log_url: where build.log is fetched from);
 *   - text quoted in a message (net_snippet).
 * Invariants: no crash or sanitizer report, nothing leaked; each call
 * returns 0 or a documented negative errno with a reason; what is accepted
 * is well formed (a decoded image has an id and a name, a tree holds only
 * complete entries, a log URL stays on the endpoint's origin, a snippet is
 * one line of valid UTF-8).  Any broken invariant aborts.
 *
 * tests/fuzz/corpus_main.c runs this over tests/fuzz/corpus/codec in the
 * unit suite; tests/fuzz/run.sh fuzzes it with libFuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/graphql.h"
#include "primehubfs/primehub.h"
#include "../../src/net_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_codec: %s: ", #cond);                                \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

static const long statuses[] = {200, 400, 500, 502, 503, 504, 307, 404, 201, 0, 599, 302};

#define LOG_ENDPOINT_BASE "https://hub.example.com:8443/"

/* 0, or a negative errno from allowed[] (0-terminated) with a reason. */
static void check_ret(const char *what, int ret, const struct ph_err *err, const int *allowed)
{
	bool ok = ret == 0;

	for (const int *a = allowed; !ok && *a; a++)
		ok = ret == -*a;
	FUZZ_CHECK(ok, "%s returned %d", what, ret);
	if (ret < 0) {
		FUZZ_CHECK(err->errnum == -ret, "%s: errnum %d for %d", what, err->errnum, ret);
		FUZZ_CHECK(err->msg[0] != '\0', "%s: no reason for %d", what, ret);
		FUZZ_CHECK(memchr(err->msg, '\0', sizeof(err->msg)) != NULL, "%s: reason", what);
	}
}

static void check_image(const struct ph_image *img)
{
	FUZZ_CHECK(img && img->id && img->name, "decoded image without id or name");
	for (size_t i = 0; i < img->ngroups; i++)
		FUZZ_CHECK(img->groups[i].id && img->groups[i].name, "group without id or name");
	if (img->image_spec)
		for (size_t i = 0; i < img->image_spec->pip.n; i++)
			FUZZ_CHECK(img->image_spec->pip.items[i] != NULL, "NULL package");
}

static void fuzz_tree(const cJSON *node)
{
	static const int allowed[] = {EPROTO, ENOMEM, 0};
	struct ph_tree t;
	struct ph_err err = {0};
	int ret = ph_decode_tree(node, &t, &err);

	check_ret("ph_decode_tree", ret, &err, allowed);
	if (ret < 0) {
		FUZZ_CHECK(!t.images && !t.nimages && !t.groups && !t.secrets,
		           "a refused tree left entries");
		return;
	}
	for (size_t i = 0; i < t.nimages; i++)
		check_image(t.images[i]);
	for (size_t i = 0; i < t.ngroups; i++)
		FUZZ_CHECK(t.groups[i].id && t.groups[i].name, "tree group without id or name");
	for (size_t i = 0; i < t.nsecrets; i++)
		FUZZ_CHECK(t.secrets[i].id && t.secrets[i].type &&
		               strcmp(t.secrets[i].type, "kubernetes") == 0,
		           "tree secret that is no pull secret");
	ph_tree_free(&t);
}

static void fuzz_image(const cJSON *node)
{
	static const int allowed[] = {EPROTO, ENOMEM, 0};
	struct ph_image *img = NULL;
	struct ph_err err = {0};
	int ret = ph_decode_image(node, &img, &err);

	check_ret("ph_decode_image", ret, &err, allowed);
	if (ret == 0)
		check_image(img);
	else
		FUZZ_CHECK(img == NULL, "a refused image was returned");
	ph_image_free(img);
}

static void fuzz_answer(long status, const char *body, size_t len)
{
	static const int allowed[] = {EACCES, ENOENT, EEXIST, EPROTO, EIO, ENOMEM, 0};
	struct ph_err err = {0};
	cJSON *data = NULL;
	int ret = gql_decode_response(status, body, len, &data, &err);

	check_ret("gql_decode_response", ret, &err, allowed);
	if (ret == 0)
		FUZZ_CHECK(cJSON_IsObject(data), "success without a data object");
	FUZZ_CHECK(!data || cJSON_IsObject(data), "data that is not an object");
	if (data) {
		const cJSON *images = cJSON_GetObjectItemCaseSensitive(data, "images");

		fuzz_tree(data);
		fuzz_image(cJSON_GetObjectItemCaseSensitive(data, "image"));
		if (cJSON_IsArray(images))
			fuzz_image(images->child);
	}
	cJSON_Delete(data);
}

static void fuzz_log_url(const char *text)
{
	static const int allowed[] = {EPROTO, ENOENT, EINVAL, ENOMEM, 0};
	struct ph_err err = {0};
	char *out = NULL;
	int ret = ph_log_url("https://hub.example.com:8443/api/graphql", text, &out, &err);

	check_ret("ph_log_url", ret, &err, allowed);
	if (ret < 0) {
		FUZZ_CHECK(out == NULL, "a refused log URL was returned");
		return;
	}
	/* The token goes to the endpoint's origin only. */
	FUZZ_CHECK(strncmp(out, LOG_ENDPOINT_BASE, sizeof(LOG_ENDPOINT_BASE) - 1) == 0,
	           "log URL %s left the endpoint's origin", out);
	FUZZ_CHECK(strstr(out, "follow=false") != NULL, "log URL %s without follow=false", out);
	for (const unsigned char *p = (const unsigned char *)out; *p; p++)
		FUZZ_CHECK(*p > 0x20 && *p < 0x7f, "log URL with byte 0x%02x", *p);
	free(out);
}

/* Valid UTF-8, no control characters, bounded. */
static void fuzz_snippet(const char *body, size_t len)
{
	char out[NET_SNIPPET_MAX + 16];
	const unsigned char *p = (const unsigned char *)out;
	size_t n;

	net_snippet(body, len, out, sizeof(out));
	n = strlen(out);
	FUZZ_CHECK(n <= NET_SNIPPET_MAX + 3, "snippet of %zu bytes", n);
	for (size_t i = 0; i < n;) {
		size_t k = p[i] < 0x80 ? 1 : p[i] >= 0xf0 ? 4 : p[i] >= 0xe0 ? 3 : 2;

		FUZZ_CHECK(p[i] >= 0x20 && p[i] != 0x7f, "snippet with control byte 0x%02x", p[i]);
		FUZZ_CHECK(p[i] < 0x80 || p[i] >= 0xc2, "snippet with bad lead byte 0x%02x", p[i]);
		FUZZ_CHECK(i + k <= n, "snippet with a cut character");
		for (size_t j = 1; j < k; j++)
			FUZZ_CHECK((p[i + j] & 0xc0) == 0x80, "snippet with a bad sequence");
		i += k;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	long status;
	const char *body;
	size_t len;
	char *text;
	cJSON *root;

	if (size < 1)
		return 0;
	status = statuses[data[0] % (sizeof(statuses) / sizeof(statuses[0]))];
	body = (const char *)data + 1;
	len = size - 1;

	fuzz_answer(status, body, len);
	fuzz_snippet(body, len);

	root = cJSON_ParseWithLength(body, len);
	if (root) {
		const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");

		fuzz_tree(root);
		fuzz_tree(d);
		fuzz_image(root);
		cJSON_Delete(root);
	}

	/* As a logEndpoint: a C string (up to the first NUL). */
	text = malloc(len + 1);
	if (!text)
		return 0;
	memcpy(text, body, len);
	text[len] = '\0';
	fuzz_log_url(text);
	free(text);
	return 0;
}
