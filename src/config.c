/* config.c - see primehubfs/config.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* explicit_bzero, also when built alone (the fuzz target) */
#endif
#include "primehubfs/config.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A file's text, cleared when freed: it may hold the token. */
struct file_text {
	char *buf;
	size_t len;
	mode_t mode; /* permission bits, for the warning about exposed secrets */
	uid_t owner;
};

static void file_text_free(struct file_text *t)
{
	if (t->buf) {
		explicit_bzero(t->buf, t->len);
		free(t->buf);
	}
	t->buf = NULL;
	t->len = 0;
}

/* Read a small file whole; -ENOENT is returned as is so the caller can tell
 * "absent" from "unreadable".  The mode comes from the open descriptor, so it
 * is the mode of the file that was read. */
static int read_small_file(const char *path, struct file_text *out, struct ph_err *err)
{
	struct stat st;
	int fd, e;
	size_t n = 0;

	memset(out, 0, sizeof(*out));
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		e = errno;
		return ph_err_set(err, e, NULL, "cannot read %s: %s", path, strerror(e));
	}
	if (fstat(fd, &st) == 0) {
		out->mode = st.st_mode & 07777;
		out->owner = st.st_uid;
	}
	out->buf = malloc(CONFIG_MAX_FILE + 1);
	if (!out->buf) {
		close(fd);
		return ph_err_set(err, ENOMEM, NULL, "out of memory reading %s", path);
	}
	while (n <= CONFIG_MAX_FILE) {
		ssize_t r = read(fd, out->buf + n, CONFIG_MAX_FILE + 1 - n);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			e = errno;
			close(fd);
			out->len = n;
			file_text_free(out);
			return ph_err_set(err, e, NULL, "cannot read %s: %s", path, strerror(e));
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	close(fd);
	out->len = n;
	if (n > CONFIG_MAX_FILE) {
		file_text_free(out);
		return ph_err_set(err, EFBIG, NULL, "%s is larger than %d bytes", path,
		                  CONFIG_MAX_FILE);
	}
	out->buf[n] = '\0';
	return 0;
}

static bool space_byte(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

/* Narrow [*s, *s + *len) to its bytes without surrounding white space. */
static void trim(const char **s, size_t *len)
{
	const char *b = *s, *end = *s + *len;

	while (b < end && space_byte(*b))
		b++;
	while (end > b && space_byte(end[-1]))
		end--;
	*s = b;
	*len = (size_t)(end - b);
}

/* A malloc'd, NUL-terminated copy of text[0..len) without surrounding white
 * space; *out_len (if not NULL) is its length, NUL bytes inside included. */
static char *trimmed_copy(const char *s, size_t len, size_t *out_len)
{
	char *copy;

	trim(&s, &len);
	copy = malloc(len + 1);
	if (copy) {
		memcpy(copy, s, len);
		copy[len] = '\0';
	}
	if (out_len)
		*out_len = len;
	return copy;
}

void config_free_token(char *token)
{
	if (token) {
		explicit_bzero(token, strlen(token));
		free(token);
	}
}

/* The token goes into an HTTP header: one word of printable ASCII.  A line
 * break in it would end the header and start another one. */
static int check_token(const char *token, size_t len, const char *source, struct ph_err *err)
{
	if (len == 0)
		return ph_err_set(err, EINVAL, NULL, "the API token from %s is empty", source);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)token[i];

		if (c <= 0x20 || c >= 0x7f)
			return ph_err_set(err, EINVAL, NULL,
			                  "the API token from %s has a space, a control character "
			                  "or a non-ASCII byte at byte %zu; a token is one word of "
			                  "printable characters",
			                  source, i + 1);
	}
	return 0;
}

int config_token_from_text(const char *text, size_t len, const char *name, char **token,
                           struct ph_err *err)
{
	size_t tlen;
	char *t = trimmed_copy(text, len, &tlen);
	int ret;

	*token = NULL;
	if (!t)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	/* Checked over tlen, not strlen: a NUL byte inside must be refused, not
	 * end the token early. */
	ret = check_token(t, tlen, name, err);
	if (ret < 0) {
		explicit_bzero(t, tlen);
		free(t);
		return ret;
	}
	*token = t;
	return 0;
}

/* Clear every string of a parsed config before it is freed: one of them is
 * the token, perhaps more than once (duplicate keys). */
static void wipe_json(cJSON *item)
{
	for (; item; item = item->next) {
		if (item->valuestring)
			explicit_bzero(item->valuestring, strlen(item->valuestring));
		wipe_json(item->child);
	}
}

static char *json_string_copy(const cJSON *json, const char *key)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);

	if (!cJSON_IsString(item) || !item->valuestring)
		return NULL;
	return trimmed_copy(item->valuestring, strlen(item->valuestring), NULL);
}

int config_parse_text(const char *text, size_t len, const char *name, char **endpoint, char **token,
                      struct ph_err *err)
{
	cJSON *json;
	int ret = 0;

	*endpoint = NULL;
	*token = NULL;
	json = cJSON_ParseWithLength(text, len);
	if (!cJSON_IsObject(json)) {
		ret = ph_err_set(err, EINVAL, NULL, "%s is not a JSON object", name);
		goto out;
	}
	*endpoint = json_string_copy(json, "endpoint");
	*token = json_string_copy(json, "api-token");
	/* An empty string counts as absent, as in the SDK. */
	if (*endpoint && !(*endpoint)[0]) {
		free(*endpoint);
		*endpoint = NULL;
	}
	if (*token && !(*token)[0]) {
		free(*token);
		*token = NULL;
	}
out:
	if (json) {
		wipe_json(json);
		cJSON_Delete(json);
	}
	return ret;
}

/* Secrets in a file that group or others may open draw a warning, as ssh's
 * "UNPROTECTED PRIVATE KEY FILE" does, but the mount goes on: refusing would
 * break setups that work today. */
static void warn_if_exposed(struct ph_config *out, const char *what, const char *path,
                            const struct file_text *t)
{
	int n;

	if (!(t->mode & 077) || out->nwarnings >= CONFIG_MAX_WARNINGS)
		return;
	/* A path too long for the line is cut; the warning still stands. */
	n = snprintf(out->warning[out->nwarnings], sizeof(out->warning[0]),
	             "%s %s holds the API token and group or others may open it (mode %04o): "
	             "anyone who reads it can act as the token's owner on PrimeHub; "
	             "run chmod 600 on it",
	             what, path, (unsigned)t->mode);
	if (n > 0)
		out->nwarnings++;
}

struct config_file {
	char path[4096];
	bool present;
	char *endpoint;
	char *token;
};

static void config_file_clear(struct config_file *f)
{
	free(f->endpoint);
	config_free_token(f->token);
	f->endpoint = NULL;
	f->token = NULL;
}

/* Load ~/.primehub/config.json (or the named file).  f->present stays false
 * when the default file does not exist. */
static int load_config_file(const struct ph_config_input *in, struct config_file *f,
                            struct ph_config *out, struct ph_err *err)
{
	struct file_text t;
	const char *home;
	int ret;

	memset(f, 0, sizeof(*f));
	if (in->config_path) {
		snprintf(f->path, sizeof(f->path), "%s", in->config_path);
	} else {
		home = in->getenv_fn("HOME");
		if (!home || !*home)
			return 0;
		snprintf(f->path, sizeof(f->path), "%s/.primehub/config.json", home);
	}
	ret = read_small_file(f->path, &t, err);
	/* The default file is optional: absent, or unreadable because HOME is
	 * not ours (mount.fuse3 sets HOME=/root for a `user` fstab mount), it
	 * is simply not used.  A file named with -o config= must be read. */
	if ((ret == -ENOENT || ret == -EACCES) && !in->config_path) {
		ph_err_clear(err);
		return 0;
	}
	if (ret < 0)
		return ret;
	ret = config_parse_text(t.buf, t.len, f->path, &f->endpoint, &f->token, err);
	if (ret == 0) {
		f->present = true;
		if (f->token)
			warn_if_exposed(out, "the config file", f->path, &t);
	}
	file_text_free(&t);
	return ret;
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

/* Plain http is fine to this machine (a tunnel, a test server), but to any
 * other host every request carries the token in clear text. */
static bool cleartext_remote(const char *endpoint)
{
	const char *host, *end;
	size_t n;

	if (strncmp(endpoint, "http://", 7) != 0)
		return false;
	host = endpoint + 7;
	end = host + strcspn(host, "/?#");
	if (memchr(host, '@', (size_t)(end - host))) /* user@host */
		host = (const char *)memchr(host, '@', (size_t)(end - host)) + 1;
	if (*host == '[')
		return strncmp(host, "[::1]", 5) != 0;
	n = strcspn(host, ":/?#");
	if (n == 9 && strncmp(host, "localhost", 9) == 0)
		return false;
	/* 127.0.0.0/8, written as an address (127.0.0.1.example.com is not) */
	return !(n > 4 && strncmp(host, "127.", 4) == 0 && strspn(host, "0123456789.") == n);
}

int config_resolve(const struct ph_config_input *in, struct ph_config *out, struct ph_err *err)
{
	struct config_file file;
	const char *value;
	int ret;

	memset(out, 0, sizeof(*out));
	ret = load_config_file(in, &file, out, err);
	if (ret < 0)
		return ret;

	if (in->endpoint_arg) {
		value = in->endpoint_arg;
		out->endpoint_source = "the command line";
	} else if ((value = in->getenv_fn("PRIMEHUB_API_ENDPOINT")) && *value) {
		out->endpoint_source = "PRIMEHUB_API_ENDPOINT";
	} else if ((value = file.endpoint)) {
		out->endpoint_source = "the config file";
	} else {
		ret = ph_err_set(err, EINVAL, NULL,
		                 "no PrimeHub endpoint: give it before the mount point, set "
		                 "PRIMEHUB_API_ENDPOINT, or put \"endpoint\" in %s",
		                 in->config_path ? in->config_path : "~/.primehub/config.json");
		goto fail;
	}
	ret = check_endpoint(value, out->endpoint_source, err);
	if (ret == 0 && !(out->endpoint = strdup(value)))
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
	if (ret < 0)
		goto fail;

	/* The most explicit wins, for every setting: the command line (here
	 * -o token_file), then the environment, then the config file.  A
	 * token_file that cannot be read is an error, never a silent fall back
	 * to the environment's token. */
	if (in->token_file) {
		struct file_text t;

		ret = read_small_file(in->token_file, &t, err);
		if (ret < 0)
			goto fail;
		out->token_source = "token_file";
		ret = config_token_from_text(t.buf, t.len, in->token_file, &out->token, err);
		if (ret == 0) {
			warn_if_exposed(out, "the token file", in->token_file, &t);
			if (!(out->token_path = strdup(in->token_file)))
				ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
		}
		file_text_free(&t);
	} else if ((value = in->getenv_fn("PRIMEHUB_API_TOKEN")) && *value) {
		out->token_source = "PRIMEHUB_API_TOKEN";
		ret = config_token_from_text(value, strlen(value), out->token_source, &out->token,
		                             err);
	} else if (file.token) {
		out->token_source = "the config file";
		ret = config_token_from_text(file.token, strlen(file.token), file.path, &out->token,
		                             err);
		out->token_in_json = 1;
		if (ret == 0 && !(out->token_path = strdup(file.path)))
			ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
	} else {
		ret = ph_err_set(err, EINVAL, NULL,
		                 "no API token: use -o token_file=PATH, set PRIMEHUB_API_TOKEN, or "
		                 "put \"api-token\" in %s",
		                 in->config_path ? in->config_path : "~/.primehub/config.json");
	}
	if (ret < 0)
		goto fail;
	if (cleartext_remote(out->endpoint) && out->nwarnings < CONFIG_MAX_WARNINGS &&
	    snprintf(out->warning[out->nwarnings], sizeof(out->warning[0]),
	             "the endpoint %s is plain http: every request carries the API token "
	             "unencrypted across the network; use https://",
	             out->endpoint) > 0)
		out->nwarnings++;
	config_file_clear(&file);
	return 0;
fail:
	config_file_clear(&file);
	config_clear(out);
	return ret;
}

int config_reload_token(const struct ph_config *cfg, char **token, struct ph_err *err)
{
	struct file_text t;
	char *endpoint = NULL, *from_json = NULL;
	int ret;

	*token = NULL;
	if (!cfg->token_path)
		return ph_err_set(err, ENOENT, NULL,
		                  "the token came from %s, which cannot change while mounted",
		                  cfg->token_source ? cfg->token_source : "the environment");
	ret = read_small_file(cfg->token_path, &t, err);
	if (ret < 0)
		return ret;
	if (!cfg->token_in_json) {
		ret = config_token_from_text(t.buf, t.len, cfg->token_path, token, err);
	} else {
		ret = config_parse_text(t.buf, t.len, cfg->token_path, &endpoint, &from_json, err);
		if (ret == 0 && !from_json)
			ret = ph_err_set(err, EINVAL, NULL, "%s has no \"api-token\" any more",
			                 cfg->token_path);
		if (ret == 0)
			ret = config_token_from_text(from_json, strlen(from_json), cfg->token_path,
			                             token, err);
		free(endpoint);
		config_free_token(from_json);
	}
	file_text_free(&t);
	return ret;
}

void config_clear(struct ph_config *cfg)
{
	free(cfg->endpoint);
	config_free_token(cfg->token);
	free(cfg->token_path);
	memset(cfg, 0, sizeof(*cfg));
}

int config_max_tree_bytes(int mb, size_t *bytes, struct ph_err *err)
{
	if (mb < 0 || mb > CONFIG_MAX_TREE_MB_MAX)
		return ph_err_set(err, EINVAL, NULL,
		                  "-o max_tree_mb=%d: use 1 to %d (MiB; default %d)", mb,
		                  CONFIG_MAX_TREE_MB_MAX, CONFIG_MAX_TREE_MB);
	*bytes = (size_t)(mb ? mb : CONFIG_MAX_TREE_MB) << 20;
	return 0;
}
