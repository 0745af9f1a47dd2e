/*
 * fuzz_pull.c - libFuzzer target for the streaming path: the JSON pull
 * parser (json_pull.c), the streamed GraphQL envelope (gql_execute_stream's
 * judge) and the streaming tree decoder (primehub_stream.c).
 *
 * An input's first byte picks how it is read: bit 0 lets raw bytes >= 0x80
 * through unvalidated (JP_RAW_BYTES), bits 1-2 the HTTP status (200, 500,
 * 400, 502), the rest seeds where the text is cut.  The rest is the text.
 * Invariants (any broken one aborts):
 *   - the events and the outcome (done, or the error and its place) are the
 *     same whole, one byte at a time, and cut at pseudo-random places;
 *   - every string event is NUL-terminated at its length, and valid UTF-8
 *     unless raw bytes were allowed; depths nest;
 *   - text the parser accepts, cJSON accepts too (it forgives more);
 *   - the streamed envelope gives the errno and message gql_decode_response
 *     gives for strict JSON, and some errno with a reason otherwise;
 *   - ph_decode_tree_text gives what ph_decode_tree gives on the same
 *     strict JSON (without \u0000, which cJSON cuts a string at), on the
 *     text and on its "data";
 *   - nothing leaks (LeakSanitizer) and no sanitizer reports.
 *
 * tests/fuzz/corpus_main.c runs this over tests/fuzz/corpus/pull in the
 * unit suite; tests/fuzz/run.sh fuzzes it with libFuzzer.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "primehubfs/graphql.h"
#include "primehubfs/json_pull.h"
#include "primehubfs/primehub.h"
#include "../../src/net_private.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_CHECK(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "fuzz_pull: %s: ", #cond);                                 \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A running hash of the events and outcome, and the checks on each. */
struct trace {
	uint64_t hash;
	size_t events;
	unsigned depth;
	bool raw;
};

static void mix(struct trace *t, const void *p, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		t->hash = (t->hash ^ b[i]) * 1099511628211ull;
}

static bool valid_utf8(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		unsigned c = s[i];
		size_t k = c < 0x80                 ? 1
		           : c >= 0xc2 && c <= 0xdf ? 2
		           : c >= 0xe0 && c <= 0xef ? 3
		           : c >= 0xf0 && c <= 0xf4 ? 4
		                                    : 0;
		unsigned cp;

		if (!k || i + k > n)
			return false;
		cp = k == 1 ? c : c & (0x7f >> k);
		for (size_t j = 1; j < k; j++) {
			if ((s[i + j] & 0xc0) != 0x80)
				return false;
			cp = cp << 6 | (s[i + j] & 0x3f);
		}
		if ((k == 3 && cp < 0x800) || (k == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
		    (cp >= 0xd800 && cp <= 0xdfff))
			return false;
		i += k;
	}
	return true;
}

static void on_event(struct trace *t, const struct jp_event *ev)
{
	bool end = ev->type == JP_OBJECT_END || ev->type == JP_ARRAY_END;

	mix(t, &ev->type, sizeof(ev->type));
	mix(t, &ev->depth, sizeof(ev->depth));
	t->events++;
	if (ev->type == JP_OBJECT_BEGIN || ev->type == JP_ARRAY_BEGIN) {
		FUZZ_CHECK(ev->depth == t->depth, "begin at depth %u inside %u", ev->depth,
		           t->depth);
		t->depth++;
	} else if (end) {
		FUZZ_CHECK(t->depth > 0 && ev->depth == t->depth - 1, "end at depth %u", ev->depth);
		t->depth--;
	} else {
		FUZZ_CHECK(ev->depth == t->depth, "value at depth %u inside %u", ev->depth,
		           t->depth);
	}
	if (ev->type == JP_KEY || ev->type == JP_STRING || ev->type == JP_NUMBER) {
		FUZZ_CHECK(ev->str && ev->str[ev->len] == '\0', "string without its NUL");
		mix(t, ev->str, ev->len);
		if (!t->raw)
			FUZZ_CHECK(valid_utf8((const unsigned char *)ev->str, ev->len),
			           "a string that is not UTF-8");
	} else {
		FUZZ_CHECK(ev->str == NULL, "a string on a non-string event");
	}
}

/* Parse text cut into pieces of 1..max_piece bytes (0: whole); the trace
 * and whether it was accepted.  Each piece is a copy of its own size. */
static bool parse(const uint8_t *text, size_t len, size_t max_piece, uint32_t seed, bool raw,
                  struct trace *t, char *why, size_t whysz)
{
	struct jp_parser p;
	struct jp_event ev;
	size_t at = 0;
	int r = JP_MORE;

	memset(t, 0, sizeof(*t));
	t->raw = raw;
	jp_init(&p, 0, 0, raw ? JP_RAW_BYTES : 0);
	while (r == JP_MORE) {
		size_t n = len - at;
		uint8_t *piece;

		if (max_piece && n) {
			seed = seed * 1103515245u + 12345u;
			n = 1 + (seed >> 8) % (n < max_piece ? n : max_piece);
		}
		piece = malloc(n ? n : 1);
		if (!piece)
			abort();
		memcpy(piece, text + at, n);
		at += n;
		jp_feed(&p, piece, n);
		if (at == len)
			jp_finish(&p);
		while ((r = jp_next(&p, &ev)) == JP_EVENT)
			on_event(t, &ev);
		free(piece);
		FUZZ_CHECK(r != JP_MORE || at < len, "finished input did not end");
	}
	snprintf(why, whysz, "%s", r == JP_ERROR ? jp_error(&p) : "");
	mix(t, why, strlen(why));
	FUZZ_CHECK(r == JP_DONE || r == JP_ERROR, "outcome %d", r);
	FUZZ_CHECK(r == JP_ERROR || t->depth == 0, "accepted with open containers");
	jp_clear(&p);
	return r == JP_DONE;
}

static void check_parser(const uint8_t *text, size_t len, bool raw, uint32_t seed, bool *strict)
{
	struct trace whole, bytes, cut;
	char w1[160], w2[160], w3[160];
	bool ok = parse(text, len, 0, 0, raw, &whole, w1, sizeof(w1));

	FUZZ_CHECK(parse(text, len, 1, 0, raw, &bytes, w2, sizeof(w2)) == ok &&
	               bytes.hash == whole.hash && strcmp(w1, w2) == 0,
	           "byte by byte differs: '%s' vs '%s'", w1, w2);
	FUZZ_CHECK(parse(text, len, 1 + seed % 64, seed, raw, &cut, w3, sizeof(w3)) == ok &&
	               cut.hash == whole.hash && strcmp(w1, w3) == 0,
	           "cut differs: '%s' vs '%s'", w1, w3);
	FUZZ_CHECK(ok || strncmp(w1, "invalid JSON at byte ", 21) == 0, "error '%s'", w1);
	if (ok) {
		cJSON *j = cJSON_ParseWithLength((const char *)text, len);

		FUZZ_CHECK(j != NULL, "accepted text cJSON refuses");
		cJSON_Delete(j);
	}
	*strict = ok;
}

/* --- the envelope --- */

static int count_begin(void *arg)
{
	*(size_t *)arg = 0;
	return 0;
}

static int count_event(void *arg, const struct jp_event *ev)
{
	(void)ev;
	(*(size_t *)arg)++;
	return 0;
}

static void check_envelope(long status, const uint8_t *text, size_t len, uint32_t seed, bool strict)
{
	size_t events = 0;
	struct gql_stream st = {.begin = count_begin, .event = count_event, .arg = &events};
	struct ph_err e1 = {0}, e2 = {0};
	cJSON *data = NULL;
	int r1 = gql_decode_response(status, (const char *)text, len, &data, &e1);
	int r2 =
	    gql_decode_response_stream(status, (const char *)text, len, 1 + seed % 37, &st, &e2);

	cJSON_Delete(data);
	FUZZ_CHECK(r2 <= 0, "stream decode returned %d", r2);
	if (r2 < 0)
		FUZZ_CHECK(e2.errnum == -r2 && e2.msg[0], "stream decode %d without a reason", r2);
	if (strict)
		FUZZ_CHECK(r1 == r2 && (r1 == 0 || strcmp(e1.msg, e2.msg) == 0),
		           "envelope: cJSON %d '%s', stream %d '%s'", r1, e1.msg, r2, e2.msg);
	else
		FUZZ_CHECK(r2 < 0, "stream accepted text that is not strict JSON");
}

/* --- the tree --- */

static bool tree_equal(const struct ph_tree *a, const struct ph_tree *b)
{
	if (a->nimages != b->nimages || a->ngroups != b->ngroups || a->nsecrets != b->nsecrets ||
	    a->nskipped != b->nskipped)
		return false;
	for (size_t i = 0; i < a->nimages; i++)
		if (!ph_image_equal(a->images[i], b->images[i]))
			return false;
	for (size_t i = 0; i < a->ngroups; i++)
		if (strcmp(a->groups[i].id, b->groups[i].id) ||
		    strcmp(a->groups[i].name, b->groups[i].name) ||
		    !a->groups[i].display_name != !b->groups[i].display_name ||
		    (a->groups[i].display_name &&
		     strcmp(a->groups[i].display_name, b->groups[i].display_name)))
			return false;
	for (size_t i = 0; i < a->nsecrets; i++)
		if (strcmp(a->secrets[i].id, b->secrets[i].id) ||
		    strcmp(a->secrets[i].type, b->secrets[i].type))
			return false;
	return true;
}

static void check_tree_text(const char *text, size_t len, const cJSON *node, bool compare)
{
	struct ph_tree a, b;
	struct ph_err ea = {0}, eb = {0};
	int ra, rb = ph_decode_tree_text(text, len, &b, &eb);

	FUZZ_CHECK(rb == 0 || rb == -EPROTO || rb == -ENOMEM, "tree stream returned %d", rb);
	if (rb < 0)
		FUZZ_CHECK(eb.errnum == -rb && eb.msg[0] && !b.images && !b.nimages,
		           "refused tree without a reason or with entries");
	for (size_t i = 0; rb == 0 && i < b.nimages; i++)
		FUZZ_CHECK(b.images[i]->id && b.images[i]->name, "image without id or name");
	if (compare) {
		ra = ph_decode_tree(node, &a, &ea);
		FUZZ_CHECK(ra == rb && (ra < 0 ? strcmp(ea.msg, eb.msg) == 0 : tree_equal(&a, &b)),
		           "tree: cJSON %d '%s', stream %d '%s'", ra, ea.msg, rb, eb.msg);
		ph_tree_free(&a);
	}
	ph_tree_free(&b);
}

static void check_tree(const uint8_t *text, size_t len, bool strict)
{
	/* cJSON cuts a string at \u0000, the stream refuses such a string. */
	bool comparable = strict && !memmem(text, len, "\\u0000", 6);
	cJSON *root = comparable ? cJSON_ParseWithLength((const char *)text, len) : NULL;
	const cJSON *d = cJSON_GetObjectItemCaseSensitive(root, "data");

	check_tree_text((const char *)text, len, root, comparable);
	/* data's own text, as the envelope hands it on */
	if (cJSON_IsObject(d)) {
		char *dt = cJSON_PrintUnformatted(d);

		if (dt) {
			cJSON *again = cJSON_Parse(dt);

			if (again)
				check_tree_text(dt, strlen(dt), again, true);
			cJSON_Delete(again);
			free(dt);
		}
	}
	cJSON_Delete(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const long statuses[] = {200, 500, 400, 502};
	bool raw, strict;
	uint32_t seed;

	if (size < 1)
		return 0;
	raw = data[0] & 1;
	seed = data[0] >> 3;
	seed = seed * 2654435761u + (uint32_t)size;
	check_parser(data + 1, size - 1, raw, seed, &strict);
	if (!raw)
		check_parser(data + 1, size - 1, true, seed, &strict);
	/* The envelope and the tree read raw bytes (names are kept as bytes). */
	check_envelope(statuses[(data[0] >> 1) & 3], data + 1, size - 1, seed, strict);
	check_tree(data + 1, size - 1, strict);
	return 0;
}
