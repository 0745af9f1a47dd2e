/*
 * config.h - where the endpoint and the API token come from, in the official
 * SDK's order (primehub-api.md §1.1):
 *   endpoint: command line > PRIMEHUB_API_ENDPOINT > config file "endpoint"
 *   token:    PRIMEHUB_API_TOKEN > -o token_file=PATH > config file "api-token"
 * The token is never taken from the command line: it would show in ps.
 * The config file is -o config=PATH, else ~/.primehub/config.json; a missing
 * default file is not an error, a missing named one is.
 *
 * Ownership: config_resolve fills *out with malloc'd strings; config_clear
 * frees them.  The input is borrowed.
 */
#ifndef PRIMEHUBFS_CONFIG_H
#define PRIMEHUBFS_CONFIG_H

#include "primehubfs/error.h"

struct ph_config_input {
	const char *endpoint_arg;             /* first non-option argument, or NULL */
	const char *config_path;              /* -o config=, or NULL for the default */
	const char *token_file;               /* -o token_file=, or NULL */
	char *(*getenv_fn)(const char *name); /* getenv, or a fake in tests */
};

struct ph_config {
	char *endpoint;
	char *token;
	const char *endpoint_source; /* static text: "command line", "PRIMEHUB_API_ENDPOINT", ... */
	const char *token_source;
};

int config_resolve(const struct ph_config_input *in, struct ph_config *out, struct ph_err *err);
void config_clear(struct ph_config *cfg);

#endif
