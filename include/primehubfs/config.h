/*
 * config.h - where the endpoint and the API token come from, in the order
 * an administrator means it (the most explicit wins):
 *   endpoint: command line > PRIMEHUB_API_ENDPOINT > config file "endpoint"
 *   token:    -o token_file=PATH > PRIMEHUB_API_TOKEN > config file "api-token"
 * The token is never taken from the command line: it would show in ps.
 * The config file is -o config=PATH, else ~/.primehub/config.json (the SDK's
 * file: {"endpoint", "api-token", "group"}); a missing default file is not an
 * error, a missing named one is.
 *
 * The token is a secret: every copy this module makes is cleared
 * (explicit_bzero) before it is freed, a token with a space or a control
 * character is refused (it would break or forge the Authorization header),
 * and a file holding it that group or others may read draws a warning.
 *
 * Ownership: config_resolve fills *out with malloc'd strings; config_clear
 * clears and frees them.  The input is borrowed.
 */
#ifndef PRIMEHUBFS_CONFIG_H
#define PRIMEHUBFS_CONFIG_H

#include <stddef.h>
#include "primehubfs/error.h"

/* Larger config or token files are refused (EFBIG). */
#define CONFIG_MAX_FILE (64 * 1024)

struct ph_config_input {
	const char *endpoint_arg;             /* first non-option argument, or NULL */
	const char *config_path;              /* -o config=, or NULL for the default */
	const char *token_file;               /* -o token_file=, or NULL */
	char *(*getenv_fn)(const char *name); /* getenv, or a fake in tests */
};

#define CONFIG_MAX_WARNINGS 3

struct ph_config {
	char *endpoint;
	char *token;
	const char
	    *endpoint_source; /* static text: "the command line", "PRIMEHUB_API_ENDPOINT", ... */
	const char *token_source;
	/* The file the token was read from (the token file or the config file),
	 * NULL when it came from the environment; token_in_json tells which. */
	char *token_path;
	int token_in_json;
	/* Lines for the mount to print: a token or config file holding the
	 * token that group or others may open, a plain http endpoint on
	 * another host. */
	char warning[CONFIG_MAX_WARNINGS][640];
	int nwarnings;
};

int config_resolve(const struct ph_config_input *in, struct ph_config *out, struct ph_err *err);
void config_clear(struct ph_config *cfg);

/*
 * Read the token again from the file it came from (cfg->token_path: the
 * token file, or "api-token" of the config file), for a server that rejected
 * the current one.  Returns 0 with a malloc'd token in *token (free it with
 * config_free_token), -ENOENT when the token came from the environment
 * (which cannot change under a running process), or the file's error.
 */
int config_reload_token(const struct ph_config *cfg, char **token, struct ph_err *err);

/*
 * -o max_tree_mb=N: the largest tree answer (images, groups, secrets in one
 * request) a refresh reads, in MiB; 0 (not given) is CONFIG_MAX_TREE_MB.
 * A bound on the memory a refresh may take, not a size the server keeps
 * to: about 0.5 KB per image, so the default fits ~2 million images.
 * *bytes gets the bound; -EINVAL with the reason for 0 > N or N > 1 TiB.
 */
#define CONFIG_MAX_TREE_MB     1024
#define CONFIG_MAX_TREE_MB_MAX (1024 * 1024)
int config_max_tree_bytes(int mb, size_t *bytes, struct ph_err *err);

/* Clear and free a token string (NULL is fine). */
void config_free_token(char *token);

/*
 * Pure parsers, also the fuzz targets' entry points.  text need not be
 * NUL-terminated and may contain NUL bytes; name is only used in messages.
 *
 * config_parse_text: a config file's text must be a JSON object; its
 * "endpoint" and "api-token" strings (empty or absent: NULL) are returned
 * malloc'd, the token trimmed of surrounding white space.  Its characters
 * are checked only when it is the token used (config_resolve).
 *
 * config_token_from_text: the token file's text, surrounding white space
 * trimmed; it must be non-empty and printable ASCII without spaces.
 */
int config_parse_text(const char *text, size_t len, const char *name, char **endpoint, char **token,
                      struct ph_err *err);
int config_token_from_text(const char *text, size_t len, const char *name, char **token,
                           struct ph_err *err);

#endif
