/*
 * fuzz_config.c - libFuzzer target for the config file and token file
 * parsers (see README.md here).
 *
 * Every input is tried as:
 *   - a token file's text (config_token_from_text);
 *   - a config file's text (config_parse_text);
 *   - both again through config_resolve, from a real file: once as
 *     -o token_file=, once as -o config= with no other token source.
 * Invariants: no crash or sanitizer report; each call returns 0 or
 * -EINVAL/-EFBIG/-ENOMEM with a one-line reason; a token that is accepted is
 * one word of printable ASCII; strings returned have no surrounding white
 * space; a refused input leaves nothing allocated (LeakSanitizer).
 *
 * Build (from the repository root):
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Iinclude \
 *     tests/fuzz/fuzz_config.c src/config.c src/error.c \
 *     $(pkg-config --cflags --libs libcjson) -o build/fuzz_config
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "primehubfs/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FAIL(...)                                                                             \
	do {                                                                                       \
		fprintf(stderr, "fuzz_config: " __VA_ARGS__);                                      \
		fprintf(stderr, "\n");                                                             \
		abort();                                                                           \
	} while (0)

static void check_reason(int ret, const struct ph_err *err, const char *what)
{
	if (ret == 0)
		return;
	if (ret != -EINVAL && ret != -EFBIG && ret != -ENOMEM)
		FUZZ_FAIL("%s returned %d", what, ret);
	if (!err->msg[0] || strchr(err->msg, '\n'))
		FUZZ_FAIL("%s: the reason is empty or more than one line: '%s'", what, err->msg);
}

static void check_token(const char *t, const char *what)
{
	if (!t || !t[0])
		FUZZ_FAIL("%s accepted an empty token", what);
	for (const char *p = t; *p; p++)
		if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
			FUZZ_FAIL("%s accepted a token with byte 0x%02x", what, (unsigned char)*p);
}

static void check_trimmed(const char *s, const char *what)
{
	size_t n;

	if (!s)
		return;
	n = strlen(s);
	if (n == 0)
		FUZZ_FAIL("%s returned an empty string instead of NULL", what);
	if (strchr(" \t\n\r\v\f", s[0]) || strchr(" \t\n\r\v\f", s[n - 1]))
		FUZZ_FAIL("%s returned '%s' with surrounding white space", what, s);
}

static char *no_env(const char *name)
{
	(void)name;
	return NULL;
}

/* One scratch file, rewritten for every input, for the config_resolve path. */
static const char *scratch_file(const uint8_t *data, size_t size)
{
	static char path[64];
	FILE *f;

	if (!path[0]) {
		int fd;

		snprintf(path, sizeof(path), "/tmp/fuzz-config-XXXXXX");
		fd = mkstemp(path);
		if (fd < 0)
			FUZZ_FAIL("mkstemp: %s", strerror(errno));
		close(fd);
	}
	f = fopen(path, "w");
	if (!f)
		FUZZ_FAIL("cannot write %s: %s", path, strerror(errno));
	if (size && fwrite(data, 1, size, f) != size)
		FUZZ_FAIL("short write to %s", path);
	fclose(f);
	return path;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *text = (const char *)data;
	struct ph_config_input in = {.endpoint_arg = "https://127.0.0.1/api/graphql",
	                             .getenv_fn = no_env};
	struct ph_config cfg;
	struct ph_err err = {0};
	char *token = NULL, *endpoint = NULL;
	int ret;

	ret = config_token_from_text(text, size, "the token file", &token, &err);
	check_reason(ret, &err, "config_token_from_text");
	if (ret == 0)
		check_token(token, "config_token_from_text");
	else if (token)
		FUZZ_FAIL("config_token_from_text failed but returned a token");
	config_free_token(token);

	ret = config_parse_text(text, size, "config.json", &endpoint, &token, &err);
	check_reason(ret, &err, "config_parse_text");
	if (ret < 0 && (endpoint || token))
		FUZZ_FAIL("config_parse_text failed but returned strings");
	check_trimmed(endpoint, "config_parse_text endpoint");
	check_trimmed(token, "config_parse_text api-token");
	free(endpoint);
	config_free_token(token);

	if (size > CONFIG_MAX_FILE + 16)
		return 0;
	in.token_file = scratch_file(data, size);
	ret = config_resolve(&in, &cfg, &err);
	check_reason(ret, &err, "config_resolve (token_file)");
	if (ret == 0) {
		check_token(cfg.token, "config_resolve (token_file)");
		config_clear(&cfg);
	}
	in.config_path = in.token_file;
	in.token_file = NULL;
	in.endpoint_arg = NULL;
	ret = config_resolve(&in, &cfg, &err);
	check_reason(ret, &err, "config_resolve (config)");
	if (ret == 0) {
		check_token(cfg.token, "config_resolve (config)");
		if (strncmp(cfg.endpoint, "http://", 7) != 0 &&
		    strncmp(cfg.endpoint, "https://", 8) != 0)
			FUZZ_FAIL("config_resolve accepted the endpoint '%s'", cfg.endpoint);
		config_clear(&cfg);
	}
	return 0;
}
