/*
 * primehub_codec.c - API JSON <-> the C model of image.h (pure, no I/O).
 *
 * Decoding reads server input, so it trusts nothing: any cJSON tree gives
 * either a complete model or -EPROTO / -ENOMEM with nothing leaked, never a
 * crash.  The rules:
 *   - a missing key and JSON null both decode to NULL (strings), false
 *     (booleans), an empty list, or "absent" (imageSpec, packages, jobStatus);
 *   - "" stays "" (PrimeHub gives useImagePullSecret "" after create and
 *     null after update, and the two mean different things to a save);
 *   - a value of the wrong JSON type is refused with the field's path:
 *     "unexpected answer from server: images[3].displayName is not a string";
 *   - null items inside a list are skipped (GraphQL reports their error
 *     separately, and graphql.c has already acted on it);
 *   - in the tree, a malformed image, group or secret is left out (counted
 *     in nskipped, one warning per answer) instead of failing the mount;
 *   - strings are bytes: a name with '/', control characters or invalid
 *     UTF-8 is kept as it is, for the layers above to show or refuse.
 *
 * Arrays are sized once from the JSON array, so decoding 10,000 images is
 * linear; children are walked with cJSON_ArrayForEach, never by index.
 */
#include "primehubfs/log.h"
#include "primehubfs/primehub.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_MAX_LEN 96 /* "images[12345].imageSpec.packages" and the like */

static int bad(struct ph_err *err, const char *path, const char *key, const char *what)
{
	return ph_err_set(err, EPROTO, NULL, "unexpected answer from server: %s%s%s %s",
	                  path ? path : "", path && key ? "." : "", key ? key : "", what);
}

static int nomem(struct ph_err *err)
{
	return ph_err_set(err, ENOMEM, NULL, "out of memory");
}

/* dst = base.key (or key alone); a path too long for dst is cut, which only
 * shortens a message. */
static void join_path(char *dst, size_t n, const char *base, const char *key)
{
	if (snprintf(dst, n, "%s%s%s", base ? base : "", base ? "." : "", key) >= (int)n)
		dst[n - 1] = '\0';
}

static const cJSON *member(const cJSON *obj, const char *key)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);

	return cJSON_IsNull(v) ? NULL : v; /* null and missing are the same to us */
}

/* *out = copy of obj[key], NULL when missing or null. */
static int get_str(const cJSON *obj, const char *key, const char *path, char **out,
                   struct ph_err *err)
{
	const cJSON *v = member(obj, key);

	*out = NULL;
	if (!v)
		return 0;
	if (!cJSON_IsString(v) || !v->valuestring)
		return bad(err, path, key, "is not a string");
	*out = strdup(v->valuestring);
	return *out ? 0 : nomem(err);
}

/* Like get_str, for the schema's non-null ids and names. */
static int get_str_req(const cJSON *obj, const char *key, const char *path, char **out,
                       struct ph_err *err)
{
	int ret = get_str(obj, key, path, out, err);

	if (ret == 0 && !*out)
		return bad(err, path, key, "is missing");
	return ret;
}

static int get_bool(const cJSON *obj, const char *key, const char *path, bool *out,
                    struct ph_err *err)
{
	const cJSON *v = member(obj, key);

	*out = false;
	if (!v)
		return 0;
	if (!cJSON_IsBool(v))
		return bad(err, path, key, "is not a boolean");
	*out = cJSON_IsTrue(v);
	return 0;
}

/* A list of strings; missing or null gives an empty list. */
static int get_strlist(const cJSON *obj, const char *key, const char *path, struct ph_strlist *out,
                       struct ph_err *err)
{
	const cJSON *v = member(obj, key), *item;
	int n;

	out->items = NULL;
	out->n = 0;
	if (!v)
		return 0;
	if (!cJSON_IsArray(v))
		return bad(err, path, key, "is not a list");
	n = cJSON_GetArraySize(v);
	if (n <= 0)
		return 0;
	out->items = calloc((size_t)n, sizeof(*out->items));
	if (!out->items)
		return nomem(err);
	cJSON_ArrayForEach(item, v)
	{
		if (cJSON_IsNull(item))
			continue;
		if (!cJSON_IsString(item) || !item->valuestring) {
			ph_strlist_free(out);
			return bad(err, path, key, "has an item that is not a string");
		}
		out->items[out->n] = strdup(item->valuestring);
		if (!out->items[out->n]) {
			ph_strlist_free(out);
			return nomem(err);
		}
		out->n++;
	}
	return 0;
}

static int decode_group(const cJSON *node, const char *path, struct ph_group *g, struct ph_err *err)
{
	int ret;

	memset(g, 0, sizeof(*g));
	if (!cJSON_IsObject(node))
		return bad(err, path, NULL, "is not an object");
	ret = get_str_req(node, "id", path, &g->id, err);
	if (!ret)
		ret = get_str_req(node, "name", path, &g->name, err);
	if (!ret)
		ret = get_str(node, "displayName", path, &g->display_name, err);
	if (ret)
		ph_group_clear(g);
	return ret;
}

static int decode_secret(const cJSON *node, const char *path, struct ph_secret *s,
                         struct ph_err *err)
{
	int ret;

	memset(s, 0, sizeof(*s));
	if (!cJSON_IsObject(node))
		return bad(err, path, NULL, "is not an object");
	ret = get_str_req(node, "id", path, &s->id, err);
	if (!ret)
		ret = get_str(node, "name", path, &s->name, err);
	if (!ret)
		ret = get_str(node, "type", path, &s->type, err);
	if (ret)
		ph_secret_clear(s);
	return ret;
}

/* Malformed entries left out of a tree answer, and why the first was. */
struct skips {
	size_t images, groups, secrets;
	struct ph_err first;
};

static void skip(struct skips *sk, size_t *count, const struct ph_err *why)
{
	if (!sk->images && !sk->groups && !sk->secrets)
		sk->first = *why;
	(*count)++;
}

/* An array of groups; *out is NULL when there are none.  With sk (the
 * tree's list), a malformed group is left out and counted; without (an
 * image's groups), it fails the whole list. */
static int decode_groups(const cJSON *arr, const char *path, struct ph_group **out, size_t *n,
                         struct skips *sk, struct ph_err *err)
{
	struct ph_err one = {0};
	char sub[PATH_MAX_LEN];
	const cJSON *item;
	struct ph_group *g;
	int size, i = 0, ret;

	*out = NULL;
	*n = 0;
	size = cJSON_GetArraySize(arr);
	if (size <= 0)
		return 0;
	g = calloc((size_t)size, sizeof(*g));
	if (!g)
		return nomem(err);
	cJSON_ArrayForEach(item, arr)
	{
		if (cJSON_IsNull(item)) {
			i++;
			continue;
		}
		if (snprintf(sub, sizeof(sub), "%s[%d]", path, i++) >= (int)sizeof(sub))
			sub[sizeof(sub) - 1] = '\0';
		ret = decode_group(item, sub, &g[*n], sk ? &one : err);
		if (ret && ret != -ENOMEM && sk) {
			skip(sk, &sk->groups, &one);
			continue;
		}
		if (ret == -ENOMEM && sk)
			nomem(err);
		if (ret) {
			for (size_t k = 0; k < *n; k++)
				ph_group_clear(&g[k]);
			free(g);
			*n = 0;
			return ret;
		}
		(*n)++;
	}
	*out = g;
	return 0;
}

static int decode_build_spec(const cJSON *node, const char *path, struct ph_build_spec **out,
                             struct ph_err *err)
{
	struct ph_build_spec *s;
	const cJSON *pk;
	char sub[PATH_MAX_LEN];
	int ret;

	*out = NULL;
	if (!cJSON_IsObject(node))
		return bad(err, path, NULL, "is not an object");
	s = calloc(1, sizeof(*s));
	if (!s)
		return nomem(err);
	ret = get_str(node, "baseImage", path, &s->base_image, err);
	if (!ret)
		ret = get_str(node, "pullSecret", path, &s->pull_secret, err);
	if (!ret)
		ret = get_bool(node, "cancel", path, &s->cancel, err);
	if (!ret)
		ret = get_str(node, "updateTime", path, &s->update_time, err);
	pk = member(node, "packages");
	if (!ret && pk) {
		join_path(sub, sizeof(sub), path, "packages");
		if (!cJSON_IsObject(pk))
			ret = bad(err, sub, NULL, "is not an object");
		s->has_packages = true;
		if (!ret)
			ret = get_strlist(pk, "apt", sub, &s->apt, err);
		if (!ret)
			ret = get_strlist(pk, "pip", sub, &s->pip, err);
		if (!ret)
			ret = get_strlist(pk, "conda", sub, &s->conda, err);
	}
	if (ret) {
		ph_build_spec_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

/* path names the image in messages ("images[3]"); NULL for a lone image. */
static int decode_image(const cJSON *node, const char *path, struct ph_image **out,
                        struct ph_err *err)
{
	static const struct {
		const char *key;
		size_t off;
		bool required;
	} strs[] = {
	    {"id", offsetof(struct ph_image, id), true},
	    {"name", offsetof(struct ph_image, name), true},
	    {"displayName", offsetof(struct ph_image, display_name), false},
	    {"description", offsetof(struct ph_image, description), false},
	    {"type", offsetof(struct ph_image, type), false},
	    {"url", offsetof(struct ph_image, url), false},
	    {"urlForGpu", offsetof(struct ph_image, url_for_gpu), false},
	    {"groupName", offsetof(struct ph_image, group_name), false},
	    {"useImagePullSecret", offsetof(struct ph_image, use_image_pull_secret), false},
	    {"logEndpoint", offsetof(struct ph_image, log_endpoint), false},
	};
	char sub[PATH_MAX_LEN];
	const cJSON *v;
	struct ph_image *img;
	int ret = 0;

	*out = NULL;
	if (!cJSON_IsObject(node))
		return bad(err, path ? path : "image", NULL, "is not an object");
	img = calloc(1, sizeof(*img));
	if (!img)
		return nomem(err);
	for (size_t i = 0; !ret && i < sizeof(strs) / sizeof(strs[0]); i++) {
		char **dst = (char **)((char *)img + strs[i].off);

		ret = strs[i].required ? get_str_req(node, strs[i].key, path, dst, err)
		                       : get_str(node, strs[i].key, path, dst, err);
	}
	if (!ret)
		ret = get_bool(node, "global", path, &img->global, err);
	if (!ret)
		ret = get_bool(node, "isReady", path, &img->is_ready, err);

	v = member(node, "groups");
	if (!ret && v) {
		join_path(sub, sizeof(sub), path, "groups");
		ret = cJSON_IsArray(v)
		          ? decode_groups(v, sub, &img->groups, &img->ngroups, NULL, err)
		          : bad(err, sub, NULL, "is not a list");
	}
	v = member(node, "imageSpec");
	if (!ret && v) {
		join_path(sub, sizeof(sub), path, "imageSpec");
		ret = decode_build_spec(v, sub, &img->image_spec, err);
	}
	v = member(node, "jobStatus");
	if (!ret && v) {
		join_path(sub, sizeof(sub), path, "jobStatus");
		if (!cJSON_IsObject(v))
			ret = bad(err, sub, NULL, "is not an object");
		img->has_job_status = true;
		if (!ret)
			ret = get_str(v, "phase", sub, &img->job_phase, err);
		if (!ret)
			ret = get_str(v, "image", sub, &img->job_image, err);
	}
	if (ret) {
		ph_image_free(img);
		return ret;
	}
	*out = img;
	return 0;
}

int ph_decode_groups(const cJSON *arr, const char *path, struct ph_group **out, size_t *n,
                     struct ph_err *err)
{
	return decode_groups(arr, path, out, n, NULL, err);
}

int ph_decode_image(const cJSON *node, struct ph_image **out, struct ph_err *err)
{
	return decode_image(node, NULL, out, err);
}

void ph_tree_free(struct ph_tree *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nimages; i++)
		ph_image_free(t->images[i]);
	free(t->images);
	for (size_t i = 0; i < t->ngroups; i++)
		ph_group_clear(&t->groups[i]);
	free(t->groups);
	for (size_t i = 0; i < t->nsecrets; i++)
		ph_secret_clear(&t->secrets[i]);
	free(t->secrets);
	memset(t, 0, sizeof(*t));
}

static int decode_tree_images(const cJSON *arr, struct ph_tree *t, struct skips *sk,
                              struct ph_err *err)
{
	char sub[PATH_MAX_LEN];
	const cJSON *item;
	struct ph_err one = {0};
	int size = cJSON_GetArraySize(arr), i = 0, ret;

	if (size <= 0)
		return 0;
	t->images = calloc((size_t)size, sizeof(*t->images));
	if (!t->images)
		return nomem(err);
	cJSON_ArrayForEach(item, arr)
	{
		if (cJSON_IsNull(item)) {
			i++;
			continue;
		}
		snprintf(sub, sizeof(sub), "images[%d]", i++);
		ret = decode_image(item, sub, &t->images[t->nimages], &one);
		if (ret == -ENOMEM)
			return nomem(err);
		if (ret) {
			/* One broken image must not hide all the others. */
			skip(sk, &sk->images, &one);
			continue;
		}
		t->nimages++;
	}
	return 0;
}

static int decode_tree_secrets(const cJSON *arr, struct ph_tree *t, struct skips *sk,
                               struct ph_err *err)
{
	char sub[PATH_MAX_LEN];
	const cJSON *item;
	struct ph_err one = {0};
	int size = cJSON_GetArraySize(arr), i = 0, ret;

	if (size <= 0)
		return 0;
	t->secrets = calloc((size_t)size, sizeof(*t->secrets));
	if (!t->secrets)
		return nomem(err);
	cJSON_ArrayForEach(item, arr)
	{
		struct ph_secret *s = &t->secrets[t->nsecrets];

		if (cJSON_IsNull(item)) {
			i++;
			continue;
		}
		snprintf(sub, sizeof(sub), "secrets[%d]", i++);
		ret = decode_secret(item, sub, s, &one);
		if (ret == -ENOMEM)
			return nomem(err);
		if (ret) {
			skip(sk, &sk->secrets, &one);
			continue;
		}
		/* Only docker-config secrets can be an image's pull secret. */
		if (s->type && strcmp(s->type, "kubernetes") == 0)
			t->nsecrets++;
		else
			ph_secret_clear(s);
	}
	return 0;
}

int ph_decode_tree(const cJSON *data, struct ph_tree *out, struct ph_err *err)
{
	const cJSON *images, *groups, *secrets;
	struct skips sk = {0};
	int ret;

	memset(out, 0, sizeof(*out));
	if (!cJSON_IsObject(data))
		return bad(err, "data", NULL, "is not an object");
	images = cJSON_GetObjectItemCaseSensitive(data, "images");
	groups = cJSON_GetObjectItemCaseSensitive(data, "groups");
	secrets = cJSON_GetObjectItemCaseSensitive(data, "secrets");
	/* All three are non-null lists in the schema: anything else means the
	 * answer is not the one we asked for, and a partial tree would make
	 * images or groups look deleted. */
	if (!cJSON_IsArray(images))
		return bad(err, "images", NULL, "is not a list");
	if (!cJSON_IsArray(groups))
		return bad(err, "groups", NULL, "is not a list");
	if (!cJSON_IsArray(secrets))
		return bad(err, "secrets", NULL, "is not a list");

	ret = decode_tree_images(images, out, &sk, err);
	if (!ret)
		ret = decode_groups(groups, "groups", &out->groups, &out->ngroups, &sk, err);
	if (!ret)
		ret = decode_tree_secrets(secrets, out, &sk, err);
	if (ret) {
		ph_tree_free(out);
		return ret;
	}
	out->nskipped = sk.images + sk.groups + sk.secrets;
	if (out->nskipped)
		log_warn("left out %zu malformed entr%s of the server's answer (%zu image%s, %zu "
		         "group%s, %zu secret%s); the first: %s",
		         out->nskipped, out->nskipped == 1 ? "y" : "ies", sk.images,
		         sk.images == 1 ? "" : "s", sk.groups, sk.groups == 1 ? "" : "s",
		         sk.secrets, sk.secrets == 1 ? "" : "s", sk.first.msg);
	return 0;
}

/* ---- encoding: the model -> GraphQL input objects ---- */

static bool add_str_or_null(cJSON *obj, const char *key, const char *s)
{
	return s ? cJSON_AddStringToObject(obj, key, s) != NULL
	         : cJSON_AddNullToObject(obj, key) != NULL;
}

static cJSON *strlist_json(const struct ph_strlist *l)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < l->n; i++) {
		cJSON *s;

		if (!l->items[i])
			continue;
		s = cJSON_CreateString(l->items[i]);
		if (!s || !cJSON_AddItemToArray(arr, s)) {
			cJSON_Delete(s);
			cJSON_Delete(arr);
			return NULL;
		}
	}
	return arr;
}

/* Add obj[key] = item, taking ownership of item even on failure. */
static bool add_owned(cJSON *obj, const char *key, cJSON *item)
{
	if (!item)
		return false;
	if (!cJSON_AddItemToObject(obj, key, item)) {
		cJSON_Delete(item);
		return false;
	}
	return true;
}

/* [{"id": "..."}, ...] */
static cJSON *id_list_json(const struct ph_strlist *l)
{
	cJSON *arr = cJSON_CreateArray();

	for (size_t i = 0; arr && i < l->n; i++) {
		cJSON *o = cJSON_CreateObject();

		if (!o || !cJSON_AddStringToObject(o, "id", l->items[i] ? l->items[i] : "") ||
		    !cJSON_AddItemToArray(arr, o)) {
			cJSON_Delete(o);
			cJSON_Delete(arr);
			return NULL;
		}
	}
	return arr;
}

cJSON *ph_encode_build_spec(const struct ph_build_spec *spec)
{
	cJSON *o, *pk;

	if (!spec)
		return cJSON_CreateNull();
	o = cJSON_CreateObject();
	if (!o)
		return NULL;
	if (!add_str_or_null(o, "baseImage", spec->base_image) ||
	    !add_str_or_null(o, "pullSecret", spec->pull_secret))
		goto fail;
	if (spec->has_packages) {
		/* All three lists, empty ones too: rebuild merges a list left out
		 * with the stored one, so "no pip" must be said as []. */
		pk = cJSON_CreateObject();
		if (!add_owned(o, "packages", pk) ||
		    !add_owned(pk, "apt", strlist_json(&spec->apt)) ||
		    !add_owned(pk, "pip", strlist_json(&spec->pip)) ||
		    !add_owned(pk, "conda", strlist_json(&spec->conda)))
			goto fail;
	} else if (!cJSON_AddNullToObject(o, "packages")) {
		goto fail;
	}
	if (!cJSON_AddBoolToObject(o, "cancel", spec->cancel))
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}

cJSON *ph_encode_image_input(const struct ph_image_input *in, bool for_create)
{
	static const struct {
		unsigned bit;
		const char *key;
		size_t off;
	} strs[] = {
	    {PH_IN_NAME, "name", offsetof(struct ph_image_input, name)},
	    {PH_IN_DISPLAY_NAME, "displayName", offsetof(struct ph_image_input, display_name)},
	    {PH_IN_DESCRIPTION, "description", offsetof(struct ph_image_input, description)},
	    {PH_IN_TYPE, "type", offsetof(struct ph_image_input, type)},
	    {PH_IN_URL, "url", offsetof(struct ph_image_input, url)},
	    {PH_IN_URL_FOR_GPU, "urlForGpu", offsetof(struct ph_image_input, url_for_gpu)},
	    {PH_IN_USE_IMAGE_PULL_SECRET, "useImagePullSecret",
	     offsetof(struct ph_image_input, use_image_pull_secret)},
	    {PH_IN_GROUP_NAME, "groupName", offsetof(struct ph_image_input, group_name)},
	};
	cJSON *o = cJSON_CreateObject();

	if (!o)
		return NULL;
	for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
		const char *s = *(char *const *)((const char *)in + strs[i].off);

		if ((in->set & strs[i].bit) && !add_str_or_null(o, strs[i].key, s))
			goto fail;
	}
	if ((in->set & PH_IN_GLOBAL) && !cJSON_AddBoolToObject(o, "global", in->global))
		goto fail;
	/* GroupCreateManyInput has no disconnect: sending it is a 400. */
	if (in->connect.n || (!for_create && in->disconnect.n)) {
		cJSON *g = cJSON_CreateObject();

		if (!add_owned(o, "groups", g))
			goto fail;
		if (in->connect.n && !add_owned(g, "connect", id_list_json(&in->connect)))
			goto fail;
		if (!for_create && in->disconnect.n &&
		    !add_owned(g, "disconnect", id_list_json(&in->disconnect)))
			goto fail;
	}
	/* ImageUpdateInput has no imageSpec: only rebuildImage changes it. */
	if (for_create && (in->set & PH_IN_IMAGE_SPEC) &&
	    !add_owned(o, "imageSpec", ph_encode_build_spec(in->image_spec)))
		goto fail;
	return o;
fail:
	cJSON_Delete(o);
	return NULL;
}
