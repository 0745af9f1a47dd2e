/*
 * test_json_pull.c - the strict, resumable JSON pull parser: the events of
 * valid text, the refusal of text that is not JSON (with the place), and
 * the same outcome wherever the chunks are cut: whole, one byte at a time,
 * and at random places, for every document here.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "primehubfs/json_pull.h"
#include "unit.h"

/* The outcome of parsing text cut into chunks of the given sizes (the last
 * size repeats): every event as "type:depth:string" lines, then "DONE" or
 * "ERROR <message>". */
struct outcome {
	char *text;
	size_t len, cap;
};

static void out_add(struct outcome *o, const char *s, size_t n)
{
	if (o->len + n + 1 > o->cap) {
		o->cap = (o->len + n + 1) * 2;
		o->text = realloc(o->text, o->cap);
	}
	memcpy(o->text + o->len, s, n);
	o->len += n;
	o->text[o->len] = '\0';
}

static void out_event(struct outcome *o, const struct jp_event *ev)
{
	static const char *const names[] = {"none", "{",   "}", "[", "]", "key",
	                                    "str",  "num", "t", "f", "n"};
	char head[64];

	snprintf(head, sizeof(head), "%s:%u:", names[ev->type], ev->depth);
	out_add(o, head, strlen(head));
	if (ev->str) {
		/* NULs shown, so "a\u0000b" and "a" differ. */
		for (size_t i = 0; i < ev->len; i++)
			out_add(o, ev->str[i] ? &ev->str[i] : "\\0", ev->str[i] ? 1 : 2);
		CHECK(ev->str[ev->len] == '\0');
	}
	out_add(o, "\n", 1);
}

static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* max_chunk 0: whole; 1: byte by byte; otherwise random sizes 1..max_chunk
 * from seed.  Each chunk is a copy in a buffer of its own size (ASan sees a
 * read past it) freed once the parser asks for more. */
static char *parse_cut(const char *text, size_t len, size_t max_chunk, uint32_t seed,
                       unsigned flags, unsigned max_depth, size_t max_token)
{
	struct outcome o = {0};
	struct jp_parser p;
	struct jp_event ev;
	size_t at = 0;
	int r = JP_MORE;

	jp_init(&p, max_depth, max_token, flags);
	out_add(&o, "", 0);
	while (r == JP_MORE) {
		size_t n = len - at;
		char *chunk;

		if (max_chunk == 1)
			n = n ? 1 : 0;
		else if (max_chunk > 1 && n)
			n = 1 + rnd(&seed) % (n < max_chunk ? n : max_chunk);
		chunk = malloc(n ? n : 1);
		memcpy(chunk, text + at, n);
		at += n;
		jp_feed(&p, chunk, n);
		if (at == len)
			jp_finish(&p);
		while ((r = jp_next(&p, &ev)) == JP_EVENT)
			out_event(&o, &ev);
		free(chunk);
		if (r == JP_MORE && at == len) {
			out_add(&o, "STUCK", 5); /* finished input must end */
			break;
		}
	}
	if (r == JP_DONE)
		out_add(&o, "DONE", 4);
	else if (r == JP_ERROR) {
		out_add(&o, "ERROR ", 6);
		out_add(&o, jp_error(&p), strlen(jp_error(&p)));
	}
	/* After the end, it stays ended. */
	if (r == JP_DONE || r == JP_ERROR)
		CHECK_INT(jp_next(&p, &ev), r);
	jp_clear(&p);
	return o.text;
}

/* Parse whole, byte by byte and in 50 random cuttings: all the same. */
static char *parse_all_ways(const char *text, size_t len, unsigned flags)
{
	char *whole = parse_cut(text, len, 0, 1, flags, 0, 0);
	char *bytes = parse_cut(text, len, 1, 1, flags, 0, 0);
	int differ = 0;

	if (strcmp(whole, bytes) != 0) {
		fprintf(stderr, "byte by byte differs for %.60s:\n%s\n---\n%s\n", text, whole,
		        bytes);
		differ++;
	}
	free(bytes);
	for (uint32_t seed = 1; seed <= 50; seed++) {
		char *cut = parse_cut(text, len, 1 + seed % 17, seed * 2654435761u, flags, 0, 0);

		if (strcmp(whole, cut) != 0) {
			if (!differ)
				fprintf(stderr, "cutting %u differs for %.60s:\n%s\n---\n%s\n",
				        seed, text, whole, cut);
			differ++;
		}
		free(cut);
	}
	CHECK_INT(differ, 0);
	return whole;
}

static void expect(const char *text, const char *want)
{
	char *got = parse_all_ways(text, strlen(text), 0);

	if (strcmp(got, want) != 0)
		fprintf(stderr, "for %s\n got: %s\nwant: %s\n", text, got, want);
	CHECK(strcmp(got, want) == 0);
	free(got);
}

/* Refused, with a message containing `why`. */
static void refuse(const char *text, size_t len, unsigned flags, const char *why)
{
	char *got = parse_all_ways(text, len, flags);

	if (!strstr(got, "ERROR ") || !strstr(got, why))
		fprintf(stderr, "for %.60s\n got: %s\nwant an error with: %s\n", text, got, why);
	CHECK(strstr(got, "ERROR ") != NULL);
	CHECK_CONTAINS(got, why);
	free(got);
}

static void refuse_s(const char *text, const char *why)
{
	refuse(text, strlen(text), 0, why);
}

static void test_events(void)
{
	expect("{\"a\": [1, -0.5e+3, true, false, null, \"x\"], \"b\": {}}",
	       "{:0:\nkey:1:a\n[:1:\nnum:2:1\nnum:2:-0.5e+3\nt:2:\nf:2:\nn:2:\nstr:2:x\n]:1:\n"
	       "key:1:b\n{:1:\n}:1:\n}:0:\nDONE");
	expect(" 42 ", "num:0:42\nDONE");
	expect("0", "num:0:0\nDONE");
	expect("-0", "num:0:-0\nDONE");
	expect("1E9", "num:0:1E9\nDONE");
	expect("\"\"", "str:0:\nDONE");
	expect("[[],[[]]]", "[:0:\n[:1:\n]:1:\n[:1:\n[:2:\n]:2:\n]:1:\n]:0:\nDONE");
	expect("\r\n\t[ ]\n", "[:0:\n]:0:\nDONE");
	/* Escapes, a surrogate pair, and a NUL kept inside the string. */
	expect("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20AC\\ud83d\\ude00\"",
	       "str:0:\"\\/\b\f\n\r\t\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\nDONE");
	expect("\"a\\u0000b\"", "str:0:a\\0b\nDONE");
	/* Valid UTF-8 passes. */
	expect("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
	       "str:0:\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\nDONE");
}

static void test_refusals(void)
{
	refuse_s("", "the text ends before the value does");
	refuse_s("   ", "the text ends before the value does");
	refuse_s("{", "the text ends before the value does");
	refuse_s("{\"a\":1", "the text ends before the value does");
	refuse_s("\"abc", "the text ends before the value does");
	refuse_s("[1,]", "expected a value");
	refuse_s("{\"a\":1,}", "expected a key after ','");
	refuse_s("{,}", "expected a key or '}'");
	refuse_s("{\"a\" 1}", "expected ':' after a key");
	refuse_s("{\"a\":1 \"b\":2}", "expected ',' or '}'");
	refuse_s("[1 2]", "expected ',' or ']'");
	refuse_s("[1}", "expected ',' or ']'");
	refuse_s("{1:2}", "expected a key or '}'");
	refuse_s("01", "text after the end of the value");
	refuse_s("[01]", "expected ',' or ']'");
	refuse_s("-", "a malformed number");
	refuse_s("1.", "a malformed number");
	refuse_s("[1.]", "a malformed number");
	refuse_s(".5", "expected a value");
	refuse_s("+1", "expected a value");
	refuse_s("1e", "a malformed number");
	refuse_s("1e+", "a malformed number");
	refuse_s("[-]", "a malformed number");
	refuse_s("tru", "the text ends before the value does");
	refuse_s("truex", "text after the end of the value");
	refuse_s("nul", "the text ends before the value does");
	refuse_s("[nUll]", "an unknown word");
	refuse_s("{} {}", "text after the end of the value");
	refuse_s("{}x", "text after the end of the value");
	refuse_s("'a'", "expected a value");
	refuse_s("\"a\nb\"", "a control character (0x0a) in a string");
	refuse_s("\"\t\"", "a control character (0x09) in a string");
	refuse_s("\"\\x\"", "an unknown escape");
	refuse_s("\"\\u12\"", "a \\u escape without four hex digits");
	refuse_s("\"\\u12g4\"", "a \\u escape without four hex digits");
	refuse_s("\"\\ud800\"", "a high surrogate without its low half");
	refuse_s("\"\\ud800\\n\"", "a high surrogate without its low half");
	refuse_s("\"\\ud800\\u0041\"", "a high surrogate without its low half");
	refuse_s("\"\\ud800\\ud800\"", "a high surrogate without its low half");
	refuse_s("\"\\ude00\"", "a low surrogate without its high half");
	/* The place is the byte where the text went wrong. */
	refuse_s("[1,2,,3]", "invalid JSON at byte 5: expected a value");
	refuse_s("{\"key\":\"value\",\"k2\" x", "invalid JSON at byte 20: expected ':'");
	refuse(" [1,\0]", 6, 0, "invalid JSON at byte 4: expected a value");
}

static void test_utf8(void)
{
	static const char *const bad[] = {
	    "\"\xff\"",             /* never a UTF-8 byte */
	    "\"\x80\"",             /* a lone continuation byte */
	    "\"\xc0\xaf\"",         /* overlong '/' */
	    "\"\xc1\xbf\"",         /* overlong */
	    "\"\xe0\x80\xaf\"",     /* overlong */
	    "\"\xed\xa0\x80\"",     /* a UTF-16 surrogate in UTF-8 */
	    "\"\xf0\x80\x80\xaf\"", /* overlong */
	    "\"\xf4\x90\x80\x80\"", /* past U+10FFFF */
	    "\"\xf5\x80\x80\x80\"", /* past U+10FFFF */
	    "\"\xc3\"",             /* cut: the quote is no continuation */
	    "\"\xe2\x82\"",         /* cut */
	    "\"\xc3\x41\"",         /* a continuation missing */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char *got;

		refuse(bad[i], strlen(bad[i]), 0, "invalid UTF-8 in a string");
		/* With JP_RAW_BYTES the bytes are kept as they are. */
		got = parse_all_ways(bad[i], strlen(bad[i]), JP_RAW_BYTES);
		CHECK(strncmp(got, "str:0:", 6) == 0);
		CHECK(strncmp(got + 6, bad[i] + 1, strlen(bad[i]) - 2) == 0);
		CHECK_CONTAINS(got, "DONE");
		free(got);
	}
	/* Escapes are checked even with raw bytes allowed. */
	refuse("\"\\ud800\"", 8, JP_RAW_BYTES, "a high surrogate");
	refuse("\"\x01\"", 3, JP_RAW_BYTES, "a control character");
}

static void test_limits(void)
{
	char deep[2100];
	char *got;
	size_t n = 0;

	for (int i = 0; i < 600; i++)
		deep[n++] = '[';
	for (int i = 0; i < 600; i++)
		deep[n++] = ']';
	deep[n] = '\0';
	refuse(deep, n, 0, "nested deeper than 512");
	/* 512 levels are fine, 513 are not. */
	got = parse_cut(deep + 88, 1024, 0, 1, 0, 0, 0);
	CHECK_CONTAINS(got, "DONE");
	free(got);
	got = parse_cut("[[[]]]", 6, 0, 1, 0, 2, 0);
	CHECK_CONTAINS(got, "ERROR invalid JSON at byte 2: nested deeper than 2");
	free(got);
	got = parse_cut("[[]]", 4, 1, 1, 0, 2, 0);
	CHECK_CONTAINS(got, "DONE");
	free(got);
	/* The longest string or number. */
	got = parse_cut("[\"abcd\",\"abcde\"]", 16, 1, 1, 0, 0, 4);
	CHECK_CONTAINS(got, "str:1:abcd\n");
	CHECK_CONTAINS(got, "longer than 4 bytes");
	free(got);
	got = parse_cut("123456", 6, 1, 1, 0, 0, 5);
	CHECK_CONTAINS(got, "longer than 5 bytes");
	free(got);
}

/* Random documents from a small grammar, and random damage to them: the
 * cuts never matter, and what the parser accepts cJSON reads too. */
static void gen_value(char *buf, size_t *n, size_t cap, uint32_t *s, int depth)
{
	static const char *const atoms[] = {
	    "0",           "-1.5e3", "12",     "true",           "false",
	    "null",        "\"\"",   "\"ab\"", "\"\\u00e9\\n\"", "\"\\ud83d\\ude00\"",
	    "\"\xc3\xa9\""};
	int kind = depth > 4 ? 0 : (int)(rnd(s) % 3);

	if (*n + 64 > cap)
		kind = 0;
	if (kind == 0) {
		const char *a = atoms[rnd(s) % (sizeof(atoms) / sizeof(atoms[0]))];

		if (*n + strlen(a) + 1 < cap) {
			memcpy(buf + *n, a, strlen(a));
			*n += strlen(a);
		}
		return;
	}
	buf[(*n)++] = kind == 1 ? '[' : '{';
	for (int i = 0, k = (int)(rnd(s) % 4); i < k && *n + 64 < cap; i++) {
		if (i)
			buf[(*n)++] = ',';
		if (rnd(s) % 3 == 0)
			buf[(*n)++] = ' ';
		if (kind == 2) {
			*n += (size_t)sprintf(buf + *n, "\"k%d\":", i);
		}
		gen_value(buf, n, cap, s, depth + 1);
	}
	buf[(*n)++] = kind == 1 ? ']' : '}';
}

static void test_random(void)
{
	uint32_t s = 12345;
	int accepted = 0, refused = 0;

	for (int i = 0; i < 400; i++) {
		char doc[2048];
		size_t n = 0;
		char *got;

		gen_value(doc, &n, sizeof(doc), &s, 0);
		doc[n] = '\0';
		if (i % 2) { /* damage one byte */
			size_t at = rnd(&s) % n;

			doc[at] = "{}[],:\"\\0a -.e\x80"[rnd(&s) % 16];
		}
		got = parse_all_ways(doc, n, 0);
		if (strstr(got, "DONE")) {
			cJSON *j = cJSON_ParseWithLength(doc, n);

			CHECK(j != NULL);
			cJSON_Delete(j);
			accepted++;
		} else {
			refused++;
		}
		free(got);
	}
	CHECK(accepted > 150);
	CHECK(refused > 50);
}

int main(void)
{
	test_events();
	test_refusals();
	test_utf8();
	test_limits();
	test_random();
	UNIT_DONE();
}
