/* config.c - see primehubfs/config.h. */
#include "primehubfs/config.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_MAX_FILE (64 * 1024)

/* Read a small file whole; -ENOENT is returned as is so the caller can tell
 * "absent" from "unreadable". */
static int read_small_file(const char *path, char **out, struct ph_err *err)
{
	FILE *f = fopen(path, "r");
	char *buf;
	size_t n;

	*out = NULL;
	if (!f) {
		int e = errno;
		return ph_err_set(err, e, NULL, "cannot read %s: %s", path, strerror(e));
	}
	buf = malloc(CONFIG_MAX_FILE + 1);
	if (!buf) {
		fclose(f);
		return ph_err_set(err, ENOMEM, NULL, "out of memory reading %s", path);
	}
	n = fread(buf, 1, CONFIG_MAX_FILE + 1, f);
	fclose(f);
	if (n > CONFIG_MAX_FILE) {
		free(buf);
		return ph_err_set(err, EFBIG, NULL, "%s is larger than %d bytes", path,
		                  CONFIG_MAX_FILE);
	}
	buf[n] = '\0';
	*out = buf;
	return 0;
}

static char *trimmed_copy(const char *s)
{
	const char *end;
	char *copy;

	while (*s && isspace((unsigned char)*s))
		s++;
	end = s + strlen(s);
	while (end > s && isspace((unsigned char)end[-1]))
		end--;
	copy = malloc((size_t)(end - s) + 1);
	if (copy) {
		memcpy(copy, s, (size_t)(end - s));
		copy[end - s] = '\0';
	}
	return copy;
}

/* Load ~/.primehub/config.json (or the named file) as a cJSON object.
 * *json stays NULL when the default file does not exist. */
static int load_config_file(const struct ph_config_input *in, cJSON **json, char *path_out,
                            size_t path_size, struct ph_err *err)
{
	const char *home;
	char *text;
	int ret;

	*json = NULL;
	if (in->config_path) {
		snprintf(path_out, path_size, "%s", in->config_path);
	} else {
		home = in->getenv_fn("HOME");
		if (!home || !*home)
			return 0;
		snprintf(path_out, path_size, "%s/.primehub/config.json", home);
	}
	ret = read_small_file(path_out, &text, err);
	if (ret == -ENOENT && !in->config_path) {
		ph_err_clear(err);
		return 0;
	}
	if (ret < 0)
		return ret;
	*json = cJSON_Parse(text);
	free(text);
	if (!cJSON_IsObject(*json)) {
		cJSON_Delete(*json);
		*json = NULL;
		return ph_err_set(err, EINVAL, NULL, "%s is not a JSON object", path_out);
	}
	return 0;
}

static const char *config_string(const cJSON *json, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);

	return cJSON_IsString(item) && item->valuestring[0] ? item->valuestring : NULL;
}

static int check_endpoint(const char *endpoint, const char *source, struct ph_err *err)
{
	if (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0)
		return ph_err_set(err, EINVAL, NULL,
		                  "endpoint '%s' (from %s) is not an http:// or https:// URL; "
		                  "it looks like https://HOST/api/graphql",
		                  endpoint, source);
	return 0;
}

int config_resolve(const struct ph_config_input *in, struct ph_config *out, struct ph_err *err)
{
	char path[4096];
	cJSON *json = NULL;
	const char *value;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = load_config_file(in, &json, path, sizeof(path), err);
	if (ret < 0)
		return ret;

	if (in->endpoint_arg) {
		value = in->endpoint_arg;
		out->endpoint_source = "the command line";
	} else if ((value = in->getenv_fn("PRIMEHUB_API_ENDPOINT")) && *value) {
		out->endpoint_source = "PRIMEHUB_API_ENDPOINT";
	} else if ((value = config_string(json, "endpoint"))) {
		out->endpoint_source = "the config file";
	} else {
		cJSON_Delete(json);
		return ph_err_set(err, EINVAL, NULL,
		                  "no PrimeHub endpoint: give it before the mount point, set "
		                  "PRIMEHUB_API_ENDPOINT, or put \"endpoint\" in %s",
		                  in->config_path ? in->config_path : "~/.primehub/config.json");
	}
	ret = check_endpoint(value, out->endpoint_source, err);
	if (ret == 0 && !(out->endpoint = strdup(value)))
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
	if (ret < 0)
		goto fail;

	if ((value = in->getenv_fn("PRIMEHUB_API_TOKEN")) && *value) {
		out->token_source = "PRIMEHUB_API_TOKEN";
		out->token = trimmed_copy(value);
	} else if (in->token_file) {
		char *text;

		ret = read_small_file(in->token_file, &text, err);
		if (ret < 0)
			goto fail;
		out->token_source = "token_file";
		out->token = trimmed_copy(text);
		free(text);
	} else if ((value = config_string(json, "api-token"))) {
		out->token_source = "the config file";
		out->token = trimmed_copy(value);
	} else {
		ret = ph_err_set(err, EINVAL, NULL,
		                 "no API token: set PRIMEHUB_API_TOKEN, use -o token_file=PATH, or "
		                 "put \"api-token\" in %s",
		                 in->config_path ? in->config_path : "~/.primehub/config.json");
		goto fail;
	}
	if (!out->token) {
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
		goto fail;
	}
	if (!out->token[0]) {
		ret = ph_err_set(err, EINVAL, NULL, "the API token from %s is empty",
		                 out->token_source);
		goto fail;
	}
	cJSON_Delete(json);
	return 0;
fail:
	cJSON_Delete(json);
	config_clear(out);
	return ret;
}

void config_clear(struct ph_config *cfg)
{
	free(cfg->endpoint);
	free(cfg->token);
	memset(cfg, 0, sizeof(*cfg));
}
