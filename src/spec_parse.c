/*
 * spec_parse.c - spec.json text -> struct spec_doc: size, encoding, syntax,
 * keys and types.  Value rules live in spec_check.c and are applied by the
 * planner; here only what every spec.json must satisfy is checked, because
 * whatever spec_render produces for any image has to parse (a save of what
 * `cat` showed must always succeed).
 */
#include "spec_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "primehubfs/json_text.h"

static const char *const spec_keys[] = {
    "name",      "displayName", "description",        "type",      "url",
    "urlForGpu", "global",      "useImagePullSecret", "imageSpec",
};
#define NSPEC_KEYS (sizeof(spec_keys) / sizeof(spec_keys[0]))

static const char *const build_keys[] = {"baseImage", "pullSecret", "packages", "cancel"};
#define NBUILD_KEYS (sizeof(build_keys) / sizeof(build_keys[0]))

static const char *const package_keys[] = {"apt", "pip", "conda"};

/* Keys of status.json (and of the API's Image) that people paste back. */
static const char *const read_only_keys[] = {
    "id",         "isReady",         "customBuild", "buildPhase",  "buildImage",
    "updateTime", "cancelRequested", "groups",      "logEndpoint", "jobStatus",
    "spec",
};

static const char *const packages_msg = "Invalid imageSpec: packages is a dict with {apt, pip, "
                                        "conda} keys and you have use at least one";

static int find_key(const char *key, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(key, keys[i]) == 0)
			return (int)i;
	return -1;
}

static int tolower_ascii(int c)
{
	return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

/* Levenshtein distance ignoring case, for "did you mean"; short keys only. */
static size_t edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[33];

	if (la > 32 || lb > 32)
		return 99;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t sub = diag + (tolower_ascii(a[i - 1]) != tolower_ascii(b[j - 1]));
			size_t best = row[j] + 1 < row[j - 1] + 1 ? row[j] + 1 : row[j - 1] + 1;

			diag = row[j];
			row[j] = sub < best ? sub : best;
		}
	}
	return row[lb];
}

/* Refuse an unknown key, naming the closest allowed one and listing all. */
static int unknown_key(const char *key, const char *where, const char *const *keys, size_t n,
                       struct ph_err *err)
{
	char quoted[96], field[64], list[256] = "", hint[64] = "";
	size_t best = 3, pick = n;

	for (size_t i = 0; i < n; i++) {
		size_t d = edit_distance(key, keys[i]);

		if (d < best && (d < 2 || strlen(keys[i]) > 4)) {
			best = d;
			pick = i;
		}
		snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "",
		         keys[i]);
	}
	if (pick < n)
		snprintf(hint, sizeof(hint), " (did you mean \"%s\"?)", keys[pick]);
	jt_quote(quoted, sizeof(quoted), key, 40);
	snprintf(field, sizeof(field), "%s%s%.40s", where ? where : "", where ? "." : "", key);
	/* The field name goes to logs and .error files as is: keep it one line. */
	for (char *p = field; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = '?';
	return ph_err_set(err, EINVAL, field, "unknown key %s%s%s%s; allowed keys: %s", quoted,
	                  where ? " in " : "", where ? where : "", hint, list);
}

static const char *json_kind(const cJSON *item)
{
	if (cJSON_IsNull(item))
		return "null";
	if (cJSON_IsBool(item))
		return cJSON_IsTrue(item) ? "true" : "false";
	if (cJSON_IsNumber(item))
		return "a number";
	if (cJSON_IsString(item))
		return "a string";
	if (cJSON_IsArray(item))
		return "a list";
	return "an object";
}

/* A string or null; *out borrows from item. */
static int opt_string(const cJSON *item, const char *field, const char **out, struct ph_err *err)
{
	if (cJSON_IsNull(item)) {
		*out = NULL;
		return 0;
	}
	if (cJSON_IsString(item) && item->valuestring) {
		*out = item->valuestring;
		return 0;
	}
	return ph_err_set(err, EINVAL, field, "%s must be a string or null, not %s", field,
	                  json_kind(item));
}

static int opt_bool(const cJSON *item, const char *field, bool *out, struct ph_err *err)
{
	if (cJSON_IsNull(item) || cJSON_IsBool(item)) {
		*out = cJSON_IsTrue(item);
		return 0;
	}
	return ph_err_set(err, EINVAL, field, "%s must be true, false or null, not %s", field,
	                  json_kind(item));
}

static int duplicate(const char *field, struct ph_err *err)
{
	return ph_err_set(err, EINVAL, field, "duplicate key \"%s\"; each key may appear once",
	                  field);
}

static int parse_package_list(const cJSON *list, const char *field, struct ph_strlist *out,
                              struct ph_err *err)
{
	const cJSON *item;
	size_t n = 0;

	if (!cJSON_IsArray(list))
		return ph_err_set(err, EINVAL, field,
		                  "Invalid imageSpec: packages values should "
		                  "be a list");
	cJSON_ArrayForEach(item, list)
	{
		n++;
		if (!cJSON_IsString(item) || !item->valuestring)
			return ph_err_set(
			    err, EINVAL, field,
			    "%s must be a list of package names (strings); item %zu is "
			    "%s",
			    field, n, json_kind(item));
		if (ph_strlist_append(out, item->valuestring) < 0)
			return ph_err_set(err, ENOMEM, field, "out of memory reading %s", field);
	}
	return 0;
}

static int parse_packages(const cJSON *obj, struct ph_build_spec *bs, struct ph_err *err)
{
	const cJSON *m;
	unsigned seen = 0;

	if (cJSON_IsNull(obj))
		return 0;
	if (!cJSON_IsObject(obj))
		return ph_err_set(err, EINVAL, "imageSpec.packages", "%s", packages_msg);
	cJSON_ArrayForEach(m, obj)
	{
		char field[64];
		int k = find_key(m->string, package_keys, 3);
		struct ph_strlist *lists[] = {&bs->apt, &bs->pip, &bs->conda};
		int r;

		if (k < 0) {
			char quoted[64];

			jt_quote(quoted, sizeof(quoted), m->string, 30);
			return ph_err_set(err, EINVAL, "imageSpec.packages", "%s (found %s)",
			                  packages_msg, quoted);
		}
		snprintf(field, sizeof(field), "imageSpec.packages.%s", package_keys[k]);
		if (seen & (1u << k))
			return duplicate(field, err);
		seen |= 1u << k;
		r = parse_package_list(m, field, lists[k], err);
		if (r)
			return r;
	}
	bs->has_packages = seen != 0;
	return 0;
}

static int parse_build_spec(const cJSON *obj, struct ph_build_spec **out, struct ph_err *err)
{
	struct ph_build_spec *bs;
	const cJSON *m;
	unsigned seen = 0;
	int r = 0;

	*out = NULL;
	if (cJSON_IsNull(obj))
		return 0;
	if (!cJSON_IsObject(obj))
		return ph_err_set(err, EINVAL, "imageSpec",
		                  "imageSpec must be an object {\"baseImage\": ..., \"packages\": "
		                  "...} or null, not %s",
		                  json_kind(obj));
	bs = calloc(1, sizeof(*bs));
	if (!bs)
		return ph_err_set(err, ENOMEM, "imageSpec", "out of memory reading imageSpec");
	cJSON_ArrayForEach(m, obj)
	{
		int k = find_key(m->string, build_keys, NBUILD_KEYS);
		char field[64];
		const char *s = NULL;

		if (k < 0) {
			if (strcmp(m->string, "updateTime") == 0)
				r = ph_err_set(
				    err, EINVAL, "imageSpec.updateTime",
				    "imageSpec.updateTime is read-only (see status.json)");
			else
				r = unknown_key(m->string, "imageSpec", build_keys, NBUILD_KEYS,
				                err);
			break;
		}
		snprintf(field, sizeof(field), "imageSpec.%s", build_keys[k]);
		if (seen & (1u << k)) {
			r = duplicate(field, err);
			break;
		}
		seen |= 1u << k;
		switch (k) {
		case 0:
		case 1:
			r = opt_string(m, field, &s, err);
			if (!r && !ph_strdup_opt(k == 0 ? &bs->base_image : &bs->pull_secret, s))
				r = ph_err_set(err, ENOMEM, field, "out of memory");
			break;
		case 2:
			r = parse_packages(m, bs, err);
			break;
		default:
			r = opt_bool(m, field, &bs->cancel, err);
			break;
		}
		if (r)
			break;
	}
	if (r) {
		ph_build_spec_free(bs);
		return r;
	}
	*out = bs;
	return 0;
}

static int read_only_key(const char *key, struct ph_err *err)
{
	if (strcmp(key, "groups") == 0)
		return ph_err_set(err, EINVAL, key,
		                  "groups is read-only (see status.json); connect or disconnect a "
		                  "group with touch or rm in the groups/ directory");
	return ph_err_set(err, EINVAL, key, "%s is read-only (see status.json)", key);
}

static int parse_member(struct spec_doc *doc, int k, const cJSON *m, struct ph_err *err)
{
	const char **strs[] = {&doc->name, &doc->display_name, &doc->description,
	                       &doc->type, &doc->url,          &doc->url_for_gpu,
	                       NULL,       &doc->pull_secret};

	if (k == 6)
		return opt_bool(m, "global", &doc->global, err);
	if (k == 8)
		return parse_build_spec(m, &doc->image_spec, err);
	return opt_string(m, spec_keys[k], strs[k], err);
}

static int parse_object(struct spec_doc *doc, struct ph_err *err)
{
	const cJSON *m;
	unsigned seen = 0;

	if (!cJSON_IsObject(doc->root))
		return ph_err_set(err, EINVAL, NULL,
		                  "spec.json must be a JSON object {\"name\": ...}, not %s",
		                  json_kind(doc->root));
	cJSON_ArrayForEach(m, doc->root)
	{
		int k = find_key(m->string, spec_keys, NSPEC_KEYS), r;

		if (k < 0) {
			if (find_key(m->string, read_only_keys,
			             sizeof(read_only_keys) / sizeof(read_only_keys[0])) >= 0)
				return read_only_key(m->string, err);
			if (strcmp(m->string, "groupName") == 0)
				return ph_err_set(err, EINVAL, "groupName",
				                  "groupName cannot be set here: this mount shows "
				                  "admin (system) images, which have no groupName");
			return unknown_key(m->string, NULL, spec_keys, NSPEC_KEYS, err);
		}
		if (seen & (1u << k))
			return duplicate(spec_keys[k], err);
		seen |= 1u << k;
		r = parse_member(doc, k, m, err);
		if (r)
			return r;
	}
	return 0;
}

void spec_doc_free(struct spec_doc *doc)
{
	if (!doc)
		return;
	cJSON_Delete(doc->root);
	ph_build_spec_free(doc->image_spec);
	memset(doc, 0, sizeof(*doc));
}

static int doc_parse(struct spec_doc *doc, const char *text, size_t len, size_t max,
                     struct ph_err *err)
{
	struct jt_syntax_error se;
	const char *nul, *end = NULL;
	unsigned line, col;
	int r;

	memset(doc, 0, sizeof(*doc));
	if (len > max)
		return ph_err_set(err, EFBIG, NULL,
		                  "spec.json is %zu bytes; at most %d bytes are accepted", len,
		                  SPEC_MAX_SIZE);
	if (!text)
		len = 0;
	/* A UTF-8 byte order mark is not JSON, but some editors add one. */
	if (len >= 3 && memcmp(text, "\xef\xbb\xbf", 3) == 0) {
		text += 3;
		len -= 3;
	}
	nul = len ? memchr(text, '\0', len) : NULL;
	if (nul) {
		jt_line_col(text, len, (size_t)(nul - text), &line, &col);
		return ph_err_set(
		    err, EINVAL, NULL,
		    "not valid JSON at line %u, column %u: a NUL byte (spec.json must "
		    "be UTF-8 text)",
		    line, col);
	}
	if (jt_check(text ? text : "", len, &se)) {
		jt_line_col(text ? text : "", len, se.offset, &line, &col);
		return ph_err_set(err, EINVAL, NULL, "not valid JSON at line %u, column %u: %s",
		                  line, col, se.hint);
	}
	/* The strict check passed, so a failure here is cJSON running out of
	 * memory (its nesting limit is far above ours). */
	doc->root = cJSON_ParseWithLengthOpts(text, len, &end, 0);
	if (!doc->root)
		return ph_err_set(err, ENOMEM, NULL, "out of memory reading spec.json");
	r = parse_object(doc, err);
	if (r)
		spec_doc_free(doc);
	return r;
}

int spec_doc_parse(struct spec_doc *doc, const char *text, size_t len, struct ph_err *err)
{
	return doc_parse(doc, text, len, SPEC_MAX_SIZE, err);
}

int spec_doc_parse_trusted(struct spec_doc *doc, const char *text, size_t len, struct ph_err *err)
{
	return doc_parse(doc, text, len, (size_t)-1, err);
}

int spec_doc_from_image(struct spec_doc *doc, const struct ph_image *img, struct ph_err *err)
{
	size_t len;
	char *text = spec_render(img, &len);
	int r;

	memset(doc, 0, sizeof(*doc));
	if (!text)
		return ph_err_set(err, ENOMEM, NULL, "out of memory rendering spec.json");
	r = spec_doc_parse_trusted(doc, text, len, err);
	free(text);
	if (r == -EINVAL) {
		/* spec_render's output always parses; if not, that is our bug. */
		ph_err_prefix(err, "internal error: the server's image does not read back: ");
		if (err)
			err->errnum = EIO;
		return -EIO;
	}
	return r;
}
