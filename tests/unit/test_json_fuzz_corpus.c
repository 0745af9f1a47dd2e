/*
 * test_json_fuzz_corpus.c - the fuzz target's checks (tests/fuzz/fuzz_spec.c)
 * over a fixed corpus: seeds, every truncation of them, and a few thousand
 * deterministic mutations (byte flips, insertions, deletions, splices,
 * invalid UTF-8, NUL bytes), plus deep nesting, huge numbers and an
 * over-size text.  Deterministic, so a failure reproduces; built into the
 * normal test run, so ASan/UBSan builds exercise the parser too.
 */
#include "../fuzz/fuzz_spec.c"

#include "unit.h"

static const char *const seeds[] = {
    "{\n  \"name\": \"base-notebook\",\n  \"displayName\": \"base-notebook\",\n"
    "  \"description\": \"base notebook\",\n  \"type\": \"both\",\n"
    "  \"url\": \"infuseai/docker-stacks:base-notebook-63fdf50a\",\n"
    "  \"urlForGpu\": \"infuseai/docker-stacks:base-notebook-63fdf50a-gpu\",\n"
    "  \"global\": false,\n  \"useImagePullSecret\": \"image-my-image-registry\"\n}\n",
    "{\"name\":\"base-notebook\",\"type\":\"cpu\",\"url\":\"registry.example.com:5000/a/b:1\","
    "\"urlForGpu\":\"registry.example.com:5000/a/b:1\",\"global\":null,"
    "\"useImagePullSecret\":\"\"}",
    "{\"name\":\"odd\",\"displayName\":\"\",\"description\":null,\"type\":\"\","
    "\"url\":\"Not A Ref\",\"urlForGpu\":\"x y\",\"global\":true,"
    "\"useImagePullSecret\":\"ghost\"}",
    "{\n  \"name\": \"my-custom-image\",\n  \"displayName\": \"my-custom-image\",\n"
    "  \"description\": null,\n  \"type\": \"both\",\n  \"global\": true,\n"
    "  \"useImagePullSecret\": \"\",\n  \"imageSpec\": {\n"
    "    \"baseImage\": \"jupyter/base-notebook\",\n    \"pullSecret\": null,\n"
    "    \"packages\": {\n      \"apt\": [\"curl\"],\n      \"pip\": [\n        \"pytest\"\n"
    "      ],\n      \"conda\": []\n    },\n    \"cancel\": true\n  }\n}\n",
    "{\"name\":\"my-new-image\",\"displayName\":\"my-new-image\",\"description\":null,"
    "\"type\":\"both\",\"url\":null,\"urlForGpu\":null,\"global\":false,"
    "\"useImagePullSecret\":null}",
    "{\"global\":true,\"imageSpec\":{\"baseImage\":\"jupyter/base-notebook@sha256:"
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\","
    "\"packages\":{\"pip\":[\"numpy==1.24\"]}}}",
    "{\"urll\": 1, \"isReady\": true, \"groups\": [], \"imageSpec\": {\"updateTime\": 1}}",
    "{\"description\": \"\\u00e9\\ud83d\\ude00\\n\\t\\\"\\\\\\/\", \"displayName\": "
    "\"\xe6\x97\xa5\xe6\x9c\xac\"}",
    "[1, -2.5e+3, 0, true, false, null, {\"a\": {}}, []]",
    "localhost:5000/foo/bar:latest@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca4959"
    "91b7852b855",
    "[::1]:5000/a__b/c---d.e_f:_T.1",
    "a.b-c.d9",
};

/* xorshift32: a fixed sequence, so the corpus is the same on every run. */
static uint32_t rng_next(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static size_t runs;

static void run(const void *data, size_t size)
{
	int r = fuzz_spec_check((const uint8_t *)data, size);

	runs++;
	CHECK_INT(r, 0);
	if (r)
		fprintf(stderr, "  input (%zu bytes): %.*s\n", size, (int)(size > 200 ? 200 : size),
		        (const char *)data);
}

static const char *const spice[] = {
    "\xff",
    "\xc0\x80",
    "\xed\xa0\x80",
    "\xf4\x90\x80\x80",
    "\xe6\x97",
    "\0",
    "\\u0000",
    "\\ud800",
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "null",
    "true",
    "1e999999",
    "-",
    "\t",
    "\n",
    "'",
    "\x7f",
    "\"imageSpec\":{}",
    "\"url\":\"A\"",
};

static void mutate(const char *seed, uint32_t *rng, int rounds)
{
	size_t n = strlen(seed);
	char *buf = malloc(n + 64);

	if (!buf)
		return;
	for (int round = 0; round < rounds; round++) {
		size_t len = n, at;
		uint32_t op = rng_next(rng) % 5;

		memcpy(buf, seed, n);
		at = len ? rng_next(rng) % len : 0;
		if (op == 0 && len) { /* flip bits of a byte */
			buf[at] = (char)(buf[at] ^ (1u << (rng_next(rng) % 8)));
		} else if (op == 1 && len) { /* replace a byte */
			buf[at] = (char)(rng_next(rng) & 0xff);
		} else if (op == 2 && len) { /* delete a run */
			size_t k = 1 + rng_next(rng) % 8;

			if (k > len - at)
				k = len - at;
			memmove(buf + at, buf + at + k, len - at - k);
			len -= k;
		} else { /* insert a spice */
			const char *sp = spice[rng_next(rng) % (sizeof(spice) / sizeof(spice[0]))];
			size_t k = sp[0] ? strlen(sp) : 1;

			memmove(buf + at + k, buf + at, len - at);
			memcpy(buf + at, sp, k);
			len += k;
		}
		run(buf, len);
	}
	free(buf);
}

static void nesting_and_numbers(void)
{
	size_t n = 20000;
	char *deep = malloc(2 * n + 16);
	char num[600];

	if (!deep)
		return;
	memset(deep, '[', n);
	run(deep, n);
	memset(deep + n, ']', n);
	run(deep, 2 * n);
	deep[0] = '\0';
	for (int i = 0; i < 2000; i++)
		strcat(deep, "{\"a\":");
	run(deep, strlen(deep));
	/* nesting just at and above the limit, inside imageSpec */
	strcpy(deep, "{\"imageSpec\":{\"packages\":{\"apt\":");
	for (int i = 0; i < 70; i++)
		strcat(deep, "[");
	run(deep, strlen(deep));
	free(deep);

	strcpy(num, "{\"global\": 1");
	memset(num + strlen(num), '9', 500);
	num[12 + 500] = '\0';
	strcat(num, "}");
	run(num, strlen(num));
	run("{\"global\": 1e999999, \"type\": -0.0e-999}", 39);
	run("{\"global\": -}", 13);
	run("{\"global\": 01}", 14);
}

static void over_size(void)
{
	char *big = malloc(SPEC_MAX_SIZE + 16);

	if (!big)
		return;
	memset(big, ' ', SPEC_MAX_SIZE + 16);
	big[0] = '{';
	big[SPEC_MAX_SIZE + 15] = '}';
	/* fuzz_spec_check only plans texts this large, it does not render them */
	run(big, SPEC_MAX_SIZE + 16);
	free(big);
}

int main(void)
{
	uint32_t rng = 0x9e3779b9u;
	size_t nseeds = sizeof(seeds) / sizeof(seeds[0]);

	run("", 0);
	for (size_t i = 0; i < nseeds; i++) {
		size_t n = strlen(seeds[i]);

		for (size_t k = 0; k <= n; k++) /* every truncation */
			run(seeds[i], k);
		mutate(seeds[i], &rng, 300);
	}
	nesting_and_numbers();
	over_size();
	printf("%zu inputs\n", runs);
	CHECK(runs > 3000);
	UNIT_DONE();
}
