/*
 * spec_check.c - the value rules: image names, image references, type, pull
 * secrets and the imageSpec rules.  Each refusal names the field and says
 * what is allowed; where the official CLI has a message for the same rule,
 * its exact text is used so that both tools explain a problem alike.
 */
#include "spec_internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "primehubfs/json_text.h"

#define NAME_MAX_LEN 253 /* RFC 1123 subdomain, as Kubernetes enforces */
#define REF_NAME_MAX 255 /* Docker's limit on [domain/]path */
#define TAG_MAX      128

static const char name_msg[] = "[name] should be lower case alphanumeric characters, '-' or '.', "
                               "and must start and end with an alphanumeric character.";

bool spec_streq(const char *a, const char *b)
{
	if (!a || !b)
		return a == b;
	return strcmp(a, b) == 0;
}

bool spec_build_content_equal(const struct ph_build_spec *a, const struct ph_build_spec *b)
{
	if (!a || !b)
		return a == b;
	return spec_streq(a->base_image, b->base_image) &&
	       spec_streq(a->pull_secret, b->pull_secret) && ph_strlist_equal(&a->apt, &b->apt) &&
	       ph_strlist_equal(&a->pip, &b->pip) && ph_strlist_equal(&a->conda, &b->conda);
}

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_hex(char c, bool upper_ok)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (upper_ok && c >= 'A' && c <= 'F');
}

/* ------------------------------------------------------------------ name */

/* ^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$ */
static bool name_matches(const char *s)
{
	size_t label = 0; /* length of the current dot-separated label */
	char prev = '\0';

	for (; *s; prev = *s++) {
		if (*s == '.') {
			if (label == 0 || prev == '-')
				return false;
			label = 0;
			continue;
		}
		if (!is_lower_alnum(*s) && *s != '-')
			return false;
		if (label == 0 && *s == '-')
			return false;
		label++;
	}
	return label > 0 && prev != '-';
}

int spec_check_image_name(const char *name, struct ph_err *err)
{
	size_t n;

	if (!name || !name_matches(name))
		return ph_err_set(err, EINVAL, "name", "%s", name_msg);
	n = strlen(name);
	if (n > NAME_MAX_LEN)
		return ph_err_set(err, EINVAL, "name",
		                  "[name] must be at most %d characters long (this one has %zu).",
		                  NAME_MAX_LEN, n);
	return 0;
}

/* ------------------------------------------------------- image reference */

/*
 * The grammar of github.com/distribution/reference:
 *   reference := name [":" tag] ["@" digest]
 *   name      := [domain "/"] path          (at most 255 characters)
 *   domain    := host [":" port]; host is DNS labels (any case) or [IPv6]
 *   path      := component ("/" component)*
 *   component := [a-z0-9]+ (separator [a-z0-9]+)*, separator := [_.] | "__" | "-"+
 *   tag       := [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}
 *   digest    := algorithm ":" hex (sha256: exactly 64 lower-case hex)
 * The first component is the domain only if it has a '.' or ':' or is
 * "localhost", so "ubuntu/x" is a path on Docker Hub.  Docker also takes an
 * upper-case first component as a host ("InfuseAI/x"); we read it as a path
 * and say it must be lower case, which is the mistake it nearly always is.
 */

static bool host_valid(const char *s, size_t n)
{
	size_t label = 0;

	if (n == 0)
		return false;
	if (s[0] == '[') {
		if (n < 3 || s[n - 1] != ']')
			return false;
		for (size_t i = 1; i + 1 < n; i++)
			if (!is_hex(s[i], true) && s[i] != ':')
				return false;
		return true;
	}
	for (size_t i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (label == 0 || s[i - 1] == '-')
				return false;
			label = 0;
		} else if (is_alnum(s[i]) || (s[i] == '-' && label > 0)) {
			label++;
		} else {
			return false;
		}
	}
	return label > 0 && s[n - 1] != '-';
}

static int check_domain(const char *f, const char *s, size_t n, struct ph_err *err)
{
	size_t host_len = n;

	/* the port is after the last ':' outside the IPv6 brackets */
	for (size_t i = n; i-- > 0;) {
		if (s[i] == ']')
			break;
		if (s[i] == ':') {
			host_len = i;
			break;
		}
	}
	if (!host_valid(s, host_len))
		return ph_err_set(err, EINVAL, f,
		                  "%s: registry host \"%.*s\" is invalid; use a host name such as "
		                  "registry.example.com (optionally with :port)",
		                  f, (int)host_len, s);
	if (host_len < n) {
		const char *port = s + host_len + 1;
		size_t plen = n - host_len - 1;
		bool ok = plen > 0;

		for (size_t i = 0; i < plen; i++)
			ok = ok && port[i] >= '0' && port[i] <= '9';
		if (!ok)
			return ph_err_set(err, EINVAL, f,
			                  "%s: registry port \"%.*s\" must be a number", f,
			                  (int)plen, port);
	}
	return 0;
}

static bool component_valid(const char *s, size_t n)
{
	size_t i = 0;

	for (;;) {
		size_t run = i, sep;

		while (run < n && is_lower_alnum(s[run]))
			run++;
		if (run == i)
			return false; /* a component and every part after a separator start alnum */
		if (run == n)
			return true;
		sep = run;
		if (s[sep] == '.' || (s[sep] == '_' && (sep + 1 >= n || s[sep + 1] != '_'))) {
			sep++;
		} else if (s[sep] == '_') {
			sep += 2;
		} else if (s[sep] == '-') {
			while (sep < n && s[sep] == '-')
				sep++;
		} else {
			return false;
		}
		i = sep;
		if (i >= n)
			return false;
	}
}

static int check_path(const char *f, const char *s, size_t n, struct ph_err *err)
{
	size_t start = 0;

	if (n == 0)
		return ph_err_set(err, EINVAL, f, "%s: the repository path is missing", f);
	for (size_t i = 0; i < n; i++)
		if (s[i] >= 'A' && s[i] <= 'Z')
			return ph_err_set(err, EINVAL, f,
			                  "%s: the repository path \"%.*s\" must be lower case", f,
			                  (int)n, s);
	for (size_t i = 0; i <= n; i++) {
		if (i < n && s[i] != '/')
			continue;
		if (i == start)
			return ph_err_set(err, EINVAL, f,
			                  "%s: the repository path \"%.*s\" has an empty part (a "
			                  "'/' at the start or end, or \"//\")",
			                  f, (int)n, s);
		if (!component_valid(s + start, i - start))
			return ph_err_set(
			    err, EINVAL, f,
			    "%s: \"%.*s\" in the repository path is invalid; use "
			    "lower-case letters and digits separated by '.', '_', '__' "
			    "or '-'",
			    f, (int)(i - start), s + start);
		start = i + 1;
	}
	return 0;
}

static int check_tag(const char *f, const char *s, size_t n, struct ph_err *err)
{
	bool ok = n >= 1 && n <= TAG_MAX && (is_alnum(s[0]) || s[0] == '_');

	for (size_t i = 1; ok && i < n; i++)
		ok = is_alnum(s[i]) || s[i] == '_' || s[i] == '.' || s[i] == '-';
	if (!ok)
		return ph_err_set(err, EINVAL, f,
		                  "%s: tag \"%.*s\" is invalid; a tag is 1 to %d letters, digits, "
		                  "'_', '.' or '-' and does not start with '.' or '-'",
		                  f, (int)(n > 140 ? 140 : n), s, TAG_MAX);
	return 0;
}

/* [A-Za-z][A-Za-z0-9]* joined by [+._-] */
static bool algorithm_valid(const char *s, size_t n)
{
	bool component_start = true;

	for (size_t i = 0; i < n; i++) {
		char c = s[i];

		if (c == '+' || c == '.' || c == '_' || c == '-') {
			if (component_start)
				return false;
			component_start = true;
		} else if (component_start) {
			if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')))
				return false;
			component_start = false;
		} else if (!is_alnum(c)) {
			return false;
		}
	}
	return n > 0 && !component_start;
}

static int check_digest(const char *f, const char *s, struct ph_err *err)
{
	const char *colon = strchr(s, ':');
	bool ok = colon && algorithm_valid(s, (size_t)(colon - s));

	if (ok) {
		const char *hex = colon + 1;
		size_t alen = (size_t)(colon - s), hlen = strlen(hex), want = 0;

		/* The registered algorithms have a fixed length and lower-case hex. */
		if (alen == 6 && memcmp(s, "sha256", 6) == 0)
			want = 64;
		else if (alen == 6 && memcmp(s, "sha384", 6) == 0)
			want = 96;
		else if (alen == 6 && memcmp(s, "sha512", 6) == 0)
			want = 128;
		ok = want ? hlen == want : hlen >= 32;
		for (size_t i = 0; ok && i < hlen; i++)
			ok = is_hex(hex[i], want == 0);
	}
	if (!ok)
		return ph_err_set(err, EINVAL, f,
		                  "%s: digest \"%.80s\" is invalid; write @sha256: followed by 64 "
		                  "lower-case hex digits",
		                  f, s);
	return 0;
}

int spec_check_image_ref(const char *field, const char *ref, struct ph_err *err)
{
	const char *f = field ? field : "image";
	const char *at, *name_end, *tag = NULL, *slash;
	size_t n, name_len;
	int r;

	if (!ref)
		return ph_err_set(err, EINVAL, f,
		                  "%s is null; an image reference such as "
		                  "registry.example.com/team/image:tag is needed",
		                  f);
	n = strlen(ref);
	if (n == 0)
		return ph_err_set(err, EINVAL, f,
		                  "%s is empty; an image reference such as "
		                  "registry.example.com/team/image:tag is needed",
		                  f);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)ref[i];

		if (c <= 0x20 || c == 0x7f)
			return ph_err_set(err, EINVAL, f,
			                  "%s must not contain spaces or control characters "
			                  "(position %zu)",
			                  f, i + 1);
		if (c >= 0x80)
			return ph_err_set(err, EINVAL, f,
			                  "%s must be plain ASCII: letters, digits and . _ - / : @ "
			                  "(position %zu)",
			                  f, i + 1);
	}
	if (strstr(ref, "://"))
		return ph_err_set(err, EINVAL, f,
		                  "%s must not start with a scheme such as https://; write "
		                  "host/path:tag",
		                  f);
	at = strchr(ref, '@');
	name_end = at ? at : ref + n;
	/* A ':' after the last '/' starts the tag; one before it is a port. */
	slash = NULL;
	for (const char *p = ref; p < name_end; p++)
		if (*p == '/')
			slash = p;
	for (const char *p = slash ? slash : ref; p < name_end; p++)
		if (*p == ':')
			tag = p;
	name_len = (size_t)((tag ? tag : name_end) - ref);
	if (name_len == 0)
		return ph_err_set(err, EINVAL, f,
		                  "%s has no repository name before the ':' or '@' (expected "
		                  "host/path:tag)",
		                  f);
	if (name_len > REF_NAME_MAX)
		return ph_err_set(
		    err, EINVAL, f,
		    "%s: the repository name is %zu characters; at most %d are allowed", f,
		    name_len, REF_NAME_MAX);
	{
		const char *first = memchr(ref, '/', name_len);
		const char *path = ref;

		if (first) {
			size_t dl = (size_t)(first - ref);

			if (memchr(ref, '.', dl) || memchr(ref, ':', dl) ||
			    (dl == 9 && memcmp(ref, "localhost", 9) == 0)) {
				r = check_domain(f, ref, dl, err);
				if (r)
					return r;
				path = first + 1;
			}
		}
		r = check_path(f, path, (size_t)(ref + name_len - path), err);
		if (r)
			return r;
	}
	if (tag) {
		r = check_tag(f, tag + 1, (size_t)(name_end - tag - 1), err);
		if (r)
			return r;
	}
	if (at)
		return check_digest(f, at + 1, err);
	return 0;
}

/* ------------------------------------------------------------ type, secret */

int spec_check_type(const char *type, struct ph_err *err)
{
	if (type &&
	    (strcmp(type, "cpu") == 0 || strcmp(type, "gpu") == 0 || strcmp(type, "both") == 0))
		return 0;
	return ph_err_set(err, EINVAL, "type", "type should be one of ['cpu', 'gpu', 'both']");
}

static bool is_pull_secret(const struct ph_secret *s)
{
	return s->id && (!s->type || strcmp(s->type, "kubernetes") == 0);
}

int spec_check_pull_secret(const char *field, const char *id, const struct spec_context *ctx,
                           struct ph_err *err)
{
	char quoted[96], list[256] = "";
	size_t count = 0;
	bool fits = true;

	if (!id || !*id)
		return 0;
	if (ctx && ctx->secrets_unknown)
		return -EAGAIN; /* the caller lists the secrets and asks again */
	for (size_t i = 0; ctx && i < ctx->nsecrets; i++)
		if (is_pull_secret(&ctx->secrets[i]) && strcmp(ctx->secrets[i].id, id) == 0)
			return 0;
	for (size_t i = 0; ctx && i < ctx->nsecrets; i++) {
		char q[96];
		size_t used = strlen(list);

		if (!is_pull_secret(&ctx->secrets[i]))
			continue;
		count++;
		jt_quote(q, sizeof(q), ctx->secrets[i].id, 60);
		if (used + strlen(q) + 3 > 200)
			fits = false;
		else
			snprintf(list + used, sizeof(list) - used, "%s%s", count > 1 ? ", " : "",
			         q);
	}
	jt_quote(quoted, sizeof(quoted), id, 60);
	if (count == 0)
		return ph_err_set(
		    err, EINVAL, field,
		    "%s %s is not an image pull secret; this server has none (secrets "
		    "of type kubernetes), so use \"\" or null",
		    field, quoted);
	if (fits)
		return ph_err_set(
		    err, EINVAL, field,
		    "%s %s is not an image pull secret; use \"\" or null for none, or "
		    "one of: %s",
		    field, quoted, list);
	return ph_err_set(err, EINVAL, field,
	                  "%s %s is not an image pull secret; use \"\" or null for none, or the id "
	                  "of one of the %zu secrets of type kubernetes (primehub admin secrets "
	                  "list)",
	                  field, quoted, count);
}

/* ---------------------------------------------------------------- imageSpec */

/* The characters PrimeHub's image builder keeps in a package name: it drops
 * any other name from the Dockerfile without a word and still reports the
 * build Succeeded (primehub-controller's filterIllegalPackages,
 * ^[a-zA-Z0-9-_:=\.]+$). */
static bool builder_keeps(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == ':' || c == '=' || c == '.';
}

static int check_package_list(const char *field, const struct ph_strlist *l, struct ph_err *err)
{
	for (size_t i = 0; i < l->n; i++) {
		const unsigned char *p = (const unsigned char *)l->items[i];
		char quoted[96];

		if (!*p)
			return ph_err_set(err, EINVAL, field,
			                  "%s item %zu is empty; write a package name", field,
			                  i + 1);
		for (const unsigned char *c = p; *c; c++)
			if (*c < 0x20 || *c == 0x7f)
				return ph_err_set(err, EINVAL, field,
				                  "%s item %zu contains a control character; write "
				                  "one package per item",
				                  field, i + 1);
		for (const unsigned char *c = p; *c; c++) {
			if (builder_keeps(*c))
				continue;
			jt_quote(quoted, sizeof(quoted), (const char *)p, 60);
			if (*c < 0x80)
				return ph_err_set(
				    err, EINVAL, field,
				    "%s item %zu %s has '%c', which PrimeHub's image builder does "
				    "not accept: it would leave the package out of the build "
				    "without a word; use letters, digits and - _ : = . only "
				    "(a version as name==1.2, not >=, + or [extras])",
				    field, i + 1, quoted, *c);
			return ph_err_set(err, EINVAL, field,
			                  "%s item %zu %s has a character PrimeHub's image builder "
			                  "does not accept: it would leave the package out of the "
			                  "build without a word; use letters, digits and - _ : = . "
			                  "only",
			                  field, i + 1, quoted);
		}
	}
	return 0;
}

int spec_check_build_spec(const struct ph_build_spec *bs, const struct ph_build_spec *old,
                          bool url_beside, const char *url_field, const struct spec_context *ctx,
                          struct ph_err *err)
{
	static const char *const fields[] = {"imageSpec.packages.apt", "imageSpec.packages.pip",
	                                     "imageSpec.packages.conda"};
	const struct ph_strlist *lists[] = {&bs->apt, &bs->pip, &bs->conda};
	const struct ph_strlist *old_lists[] = {old ? &old->apt : NULL, old ? &old->pip : NULL,
	                                        old ? &old->conda : NULL};
	int r;

	/* The CLI's rules, in its order and words. */
	if (url_beside)
		return ph_err_set(err, EINVAL, url_field,
		                  "imageSpec cannot use with url and urlForGpu");
	if (!bs->base_image || !*bs->base_image)
		return ph_err_set(err, EINVAL, "imageSpec.baseImage",
		                  "Invalid imageSpec: baseImage is required");
	if (!bs->has_packages)
		return ph_err_set(err, EINVAL, "imageSpec.packages",
		                  "Invalid imageSpec: packages is required");
	/* Ours, on what changed. */
	if (!old || !spec_streq(old->base_image, bs->base_image)) {
		r = spec_check_image_ref("imageSpec.baseImage", bs->base_image, err);
		if (r)
			return r;
	}
	for (size_t k = 0; k < 3; k++) {
		if (old_lists[k] && ph_strlist_equal(old_lists[k], lists[k]))
			continue;
		r = check_package_list(fields[k], lists[k], err);
		if (r)
			return r;
	}
	if (!old || !spec_streq(old->pull_secret, bs->pull_secret))
		return spec_check_pull_secret("imageSpec.pullSecret", bs->pull_secret, ctx, err);
	return 0;
}
