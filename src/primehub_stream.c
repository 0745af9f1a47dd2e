/*
 * primehub_stream.c - the tree answer decoded straight from JSON events
 * (json_pull.h) into struct ph_tree, while the answer arrives: no body
 * buffer and no cJSON tree, so a refresh costs about the decoded tree and
 * decodes as fast as the bytes come.
 *
 * It gives exactly what ph_decode_tree (primehub_codec.c) gives for the same
 * data, by the same rules: keys in any order, a missing key and null alike,
 * the first of duplicate keys wins (cJSON_GetObjectItem), null list items
 * skipped, a malformed image, group or secret left out and counted (one
 * warning per answer naming the first, in the order images, groups,
 * secrets), non-kubernetes secrets dropped, and an answer whose images,
 * groups or secrets is not a list refused.  A malformed entry's reason is
 * the one ph_decode_tree would give: each field has a rank (the order that
 * decoder checks fields in) and the lowest-ranked problem is kept.  One
 * difference, on purpose: a string holding a NUL (\u0000) is "not a string"
 * here, where cJSON would cut it short and could make two names equal.
 *
 * Memory: one malloc per string (ph_image_free stays the owner, as the
 * snapshot keeps images one by one), lists grown geometrically and trimmed
 * at the end.
 */
#include "net_private.h"
#include "primehubfs/json_pull.h"
#include "primehubfs/log.h"
#include "primehubfs/primehub.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum where {
	W_TOP,        /* before the data value */
	W_DATA,       /* keys of data */
	W_LIST,       /* items of images / groups / secrets */
	W_ITEM,       /* keys of an image, group or secret */
	W_IMG_GROUPS, /* items of an image's groups */
	W_IMG_GROUP,  /* keys of one of them */
	W_SPEC,       /* keys of imageSpec */
	W_PACKAGES,   /* keys of imageSpec.packages */
	W_PKGLIST,    /* items of apt, pip or conda */
	W_JOB,        /* keys of jobStatus */
	W_END,        /* after the data value */
};

enum list { L_IMAGES, L_GROUPS, L_SECRETS, L_NONE };
static const char *const list_names[] = {"images", "groups", "secrets"};

enum list_state { LS_MISSING, LS_OK, LS_BAD };

/* The image's keys, in the order decode_image checks them: the rank of a
 * problem with one (RANK_SHIFT apart, room for the problems inside). */
enum image_key {
	K_ID,
	K_NAME,
	K_DISPLAY_NAME,
	K_DESCRIPTION,
	K_TYPE,
	K_URL,
	K_URL_FOR_GPU,
	K_GROUP_NAME,
	K_USE_IMAGE_PULL_SECRET,
	K_LOG_ENDPOINT,
	K_GLOBAL,
	K_IS_READY,
	K_GROUPS,
	K_IMAGE_SPEC,
	K_JOB_STATUS,
	K_NKEYS,
	K_UNKNOWN = -1,
};
#define RANK_SHIFT 40

static const struct {
	const char *name;
	size_t off; /* of the char * in struct ph_image (keys before K_GLOBAL) */
} image_keys[K_NKEYS] = {
    [K_ID] = {"id", offsetof(struct ph_image, id)},
    [K_NAME] = {"name", offsetof(struct ph_image, name)},
    [K_DISPLAY_NAME] = {"displayName", offsetof(struct ph_image, display_name)},
    [K_DESCRIPTION] = {"description", offsetof(struct ph_image, description)},
    [K_TYPE] = {"type", offsetof(struct ph_image, type)},
    [K_URL] = {"url", offsetof(struct ph_image, url)},
    [K_URL_FOR_GPU] = {"urlForGpu", offsetof(struct ph_image, url_for_gpu)},
    [K_GROUP_NAME] = {"groupName", offsetof(struct ph_image, group_name)},
    [K_USE_IMAGE_PULL_SECRET] = {"useImagePullSecret",
                                 offsetof(struct ph_image, use_image_pull_secret)},
    [K_LOG_ENDPOINT] = {"logEndpoint", offsetof(struct ph_image, log_endpoint)},
    [K_GLOBAL] = {"global", 0},
    [K_IS_READY] = {"isReady", 0},
    [K_GROUPS] = {"groups", 0},
    [K_IMAGE_SPEC] = {"imageSpec", 0},
    [K_JOB_STATUS] = {"jobStatus", 0},
};

/* imageSpec's keys in decode_build_spec's order, then packages' lists. */
static const char *const spec_keys[] = {"baseImage", "pullSecret", "cancel", "updateTime",
                                        "packages"};
static const char *const pkg_keys[] = {"apt", "pip", "conda"};
/* A group's and a secret's keys. */
static const char *const group_keys[] = {"id", "name", "displayName"};
static const char *const secret_keys[] = {"id", "name", "type"};
static const char *const job_keys[] = {"phase", "image"};

struct ph_tree_stream {
	struct ph_tree t;
	size_t cap_images, cap_groups, cap_secrets;
	enum list_state lists[3];
	unsigned required; /* PH_LIST_* the answer must hold */
	bool data_seen;    /* data was an object */
	enum where where;
	enum list list;
	size_t index;  /* of the item in its list */
	int key;       /* the key whose value comes next, at the current level */
	unsigned skip; /* > 0: inside a container being skipped */

	/* The item being decoded. */
	struct ph_image *img;
	struct ph_group grp;
	struct ph_secret sec;
	uint32_t seen, sub_seen, sub2_seen; /* keys seen: item, nested, packages */
	size_t sub_index;                   /* of the image group */
	struct ph_strlist *pl;              /* the package list being filled */
	size_t pl_cap, ig_cap;
	bool item_bad;
	unsigned long long item_rank;
	char item_why[sizeof(((struct ph_err *)0)->msg)];

	/* Left out, and the first reason per list. */
	size_t skipped[3];
	char first[3][sizeof(((struct ph_err *)0)->msg)];

	int fatal; /* -ENOMEM: everything stops */
};

int ph_tree_stream_new(struct ph_tree_stream **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->required = PH_LIST_ALL;
	return 0;
}

void ph_tree_stream_require(struct ph_tree_stream *s, unsigned lists)
{
	s->required = lists;
}

static void item_clear(struct ph_tree_stream *s)
{
	ph_image_free(s->img);
	s->img = NULL;
	ph_group_clear(&s->grp);
	ph_secret_clear(&s->sec);
	s->pl = NULL;
	s->pl_cap = s->ig_cap = 0;
	s->item_bad = false;
	s->item_rank = 0;
	s->item_why[0] = '\0';
	s->seen = s->sub_seen = s->sub2_seen = 0;
}

void ph_tree_stream_free(struct ph_tree_stream *s)
{
	if (!s)
		return;
	item_clear(s);
	ph_tree_free(&s->t);
	free(s);
}

static int nomem(struct ph_tree_stream *s)
{
	s->fatal = -ENOMEM;
	return -ENOMEM;
}

/* A problem with the current item: keep the one decode_* would report,
 * "unexpected answer from server: images[3]<where>.<key> <what>". */
static void item_problem(struct ph_tree_stream *s, unsigned long long rank, const char *where,
                         const char *key, const char *what)
{
	if (s->item_bad && rank >= s->item_rank)
		return;
	s->item_bad = true;
	s->item_rank = rank;
	snprintf(s->item_why, sizeof(s->item_why),
	         "unexpected answer from server: %s[%zu]%s%s%s %s", list_names[s->list], s->index,
	         where ? where : "", key ? "." : "", key ? key : "", what);
}

static int find_key(const struct jp_event *ev, const char *const *keys, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (keys[i][0] == ev->str[0] && strcmp(keys[i], ev->str) == 0 &&
		    strlen(keys[i]) == ev->len)
			return (int)i;
	return K_UNKNOWN;
}

/* An image has 15 keys and an answer 10^5 images: a first-byte test skips
 * most comparisons. */
static int find_image_key(const struct jp_event *ev)
{
	for (int i = 0; i < K_NKEYS; i++)
		if (image_keys[i].name[0] == ev->str[0] &&
		    strcmp(image_keys[i].name, ev->str) == 0 &&
		    strlen(image_keys[i].name) == ev->len)
			return i;
	return K_UNKNOWN;
}

static bool is_begin(const struct jp_event *ev)
{
	return ev->type == JP_OBJECT_BEGIN || ev->type == JP_ARRAY_BEGIN;
}

/* Leave the value that starts with ev out. */
static void skip_value(struct ph_tree_stream *s, const struct jp_event *ev)
{
	if (is_begin(ev))
		s->skip = 1;
}

/* First of duplicate keys wins: false (and the value skipped) for a key
 * already seen in this object. */
static bool first_time(struct ph_tree_stream *s, uint32_t *seen, int key, const struct jp_event *ev)
{
	if (key < 0 || (*seen & (1u << key))) {
		skip_value(s, ev);
		return false;
	}
	*seen |= 1u << key;
	return true;
}

/* A string value into *dst (NULL for null); 1 when the value is of another
 * type (skipped), 0 when taken, -ENOMEM. */
static int take_str(struct ph_tree_stream *s, const struct jp_event *ev, char **dst)
{
	if (ev->type == JP_NULL)
		return 0;
	if (ev->type != JP_STRING || memchr(ev->str, '\0', ev->len)) {
		skip_value(s, ev);
		return 1;
	}
	*dst = malloc(ev->len + 1);
	if (!*dst)
		return nomem(s);
	memcpy(*dst, ev->str, ev->len + 1);
	return 0;
}

static int take_bool(struct ph_tree_stream *s, const struct jp_event *ev, bool *dst)
{
	if (ev->type == JP_NULL)
		return 0;
	if (ev->type != JP_TRUE && ev->type != JP_FALSE) {
		skip_value(s, ev);
		return 1;
	}
	*dst = ev->type == JP_TRUE;
	return 0;
}

/* Append to a growing array of elem-sized items; -ENOMEM. */
static int grow(struct ph_tree_stream *s, void **arr, size_t n, size_t *cap, size_t elem)
{
	void *p;
	size_t c;

	if (n < *cap)
		return 0;
	c = *cap ? *cap * 2 : 8;
	p = realloc(*arr, c * elem);
	if (!p)
		return nomem(s);
	memset((char *)p + *cap * elem, 0, (c - *cap) * elem);
	*arr = p;
	*cap = c;
	return 0;
}

/* ---- the item's end ---- */

static void left_out(struct ph_tree_stream *s)
{
	if (!s->skipped[s->list]++)
		snprintf(s->first[s->list], sizeof(s->first[0]), "%s", s->item_why);
}

static int image_done(struct ph_tree_stream *s)
{
	if (!s->img->name)
		item_problem(s, (unsigned long long)K_NAME << RANK_SHIFT, NULL, "name",
		             "is missing");
	if (!s->img->id)
		item_problem(s, (unsigned long long)K_ID << RANK_SHIFT, NULL, "id", "is missing");
	if (s->item_bad) {
		left_out(s);
		item_clear(s);
		return 0;
	}
	if (grow(s, (void **)&s->t.images, s->t.nimages, &s->cap_images, sizeof(*s->t.images)))
		return -ENOMEM;
	s->t.images[s->t.nimages++] = s->img;
	s->img = NULL;
	item_clear(s);
	return 0;
}

static int group_done(struct ph_tree_stream *s)
{
	if (!s->grp.name)
		item_problem(s, 1, NULL, "name", "is missing");
	if (!s->grp.id)
		item_problem(s, 0, NULL, "id", "is missing");
	if (s->item_bad) {
		left_out(s);
		item_clear(s);
		return 0;
	}
	if (grow(s, (void **)&s->t.groups, s->t.ngroups, &s->cap_groups, sizeof(*s->t.groups)))
		return -ENOMEM;
	s->t.groups[s->t.ngroups++] = s->grp;
	memset(&s->grp, 0, sizeof(s->grp));
	item_clear(s);
	return 0;
}

static int secret_done(struct ph_tree_stream *s)
{
	if (!s->sec.id)
		item_problem(s, 0, NULL, "id", "is missing");
	if (s->item_bad) {
		left_out(s);
		item_clear(s);
		return 0;
	}
	/* Only docker-config secrets can be an image's pull secret. */
	if (!s->sec.type || strcmp(s->sec.type, "kubernetes") != 0) {
		item_clear(s);
		return 0;
	}
	if (grow(s, (void **)&s->t.secrets, s->t.nsecrets, &s->cap_secrets, sizeof(*s->t.secrets)))
		return -ENOMEM;
	s->t.secrets[s->t.nsecrets++] = s->sec;
	memset(&s->sec, 0, sizeof(s->sec));
	item_clear(s);
	return 0;
}

/* ---- one event per place ---- */

static int on_list_item(struct ph_tree_stream *s, const struct jp_event *ev)
{
	if (ev->type == JP_ARRAY_END) {
		s->where = W_DATA;
		return 0;
	}
	if (ev->type == JP_NULL) {
		s->index++;
		return 0;
	}
	if (ev->type != JP_OBJECT_BEGIN) {
		item_problem(s, 0, NULL, NULL, "is not an object");
		left_out(s);
		item_clear(s);
		skip_value(s, ev);
		s->index++;
		return 0;
	}
	if (s->list == L_IMAGES) {
		s->img = calloc(1, sizeof(*s->img));
		if (!s->img)
			return nomem(s);
	}
	s->where = W_ITEM;
	s->key = K_UNKNOWN;
	return 0;
}

/* A string member of a group or secret (keys[k]); rank k. */
static int plain_member(struct ph_tree_stream *s, const struct jp_event *ev, char **dst,
                        const char *where, const char *key, unsigned long long rank)
{
	int r = take_str(s, ev, dst);

	if (r == 1)
		item_problem(s, rank, where, key, "is not a string");
	return r < 0 ? r : 0;
}

static int on_item_value(struct ph_tree_stream *s, const struct jp_event *ev)
{
	unsigned long long rank = (unsigned long long)s->key << RANK_SHIFT;
	int r;

	if (s->list == L_GROUPS) {
		char **f[] = {&s->grp.id, &s->grp.name, &s->grp.display_name};

		if (!first_time(s, &s->seen, s->key, ev))
			return 0;
		return plain_member(s, ev, f[s->key], NULL, group_keys[s->key],
		                    (unsigned long long)s->key);
	}
	if (s->list == L_SECRETS) {
		char **f[] = {&s->sec.id, &s->sec.name, &s->sec.type};

		if (!first_time(s, &s->seen, s->key, ev))
			return 0;
		return plain_member(s, ev, f[s->key], NULL, secret_keys[s->key],
		                    (unsigned long long)s->key);
	}
	if (!first_time(s, &s->seen, s->key, ev))
		return 0;
	if (s->key < K_GLOBAL) { /* the string fields */
		char **dst = (char **)((char *)s->img + image_keys[s->key].off);

		return plain_member(s, ev, dst, NULL, image_keys[s->key].name, rank);
	}
	switch (s->key) {
	case K_GLOBAL:
	case K_IS_READY:
		r = take_bool(s, ev, s->key == K_GLOBAL ? &s->img->global : &s->img->is_ready);
		if (r == 1)
			item_problem(s, rank, NULL, image_keys[s->key].name, "is not a boolean");
		return 0;
	case K_GROUPS:
		if (ev->type == JP_ARRAY_BEGIN) {
			s->where = W_IMG_GROUPS;
			s->sub_index = 0;
		} else if (ev->type != JP_NULL) {
			item_problem(s, rank, NULL, "groups", "is not a list");
			skip_value(s, ev);
		}
		return 0;
	case K_IMAGE_SPEC:
		if (ev->type == JP_OBJECT_BEGIN) {
			s->img->image_spec = calloc(1, sizeof(*s->img->image_spec));
			if (!s->img->image_spec)
				return nomem(s);
			s->where = W_SPEC;
			s->sub_seen = s->sub2_seen = 0;
			s->key = K_UNKNOWN;
		} else if (ev->type != JP_NULL) {
			item_problem(s, rank, ".imageSpec", NULL, "is not an object");
			skip_value(s, ev);
		}
		return 0;
	case K_JOB_STATUS:
		if (ev->type == JP_OBJECT_BEGIN) {
			s->img->has_job_status = true;
			s->where = W_JOB;
			s->sub_seen = 0;
			s->key = K_UNKNOWN;
		} else if (ev->type != JP_NULL) {
			item_problem(s, rank, ".jobStatus", NULL, "is not an object");
			skip_value(s, ev);
		}
		return 0;
	}
	return 0;
}

static int on_item(struct ph_tree_stream *s, const struct jp_event *ev)
{
	if (ev->type == JP_KEY) {
		s->key = s->list == L_IMAGES   ? find_image_key(ev)
		         : s->list == L_GROUPS ? find_key(ev, group_keys, 3)
		                               : find_key(ev, secret_keys, 3);
		return 0;
	}
	if (ev->type == JP_OBJECT_END) {
		int r = s->list == L_IMAGES   ? image_done(s)
		        : s->list == L_GROUPS ? group_done(s)
		                              : secret_done(s);

		s->index++;
		s->where = W_LIST;
		return r;
	}
	return on_item_value(s, ev);
}

/* The image's groups: [{id name displayName}], all-or-nothing for the
 * image (decode_groups without a skip list). */
static int on_img_groups(struct ph_tree_stream *s, const struct jp_event *ev)
{
	char where[48];
	struct ph_image *img = s->img;

	if (ev->type == JP_ARRAY_END) {
		s->where = W_ITEM;
		return 0;
	}
	if (ev->type == JP_NULL) {
		s->sub_index++;
		return 0;
	}
	snprintf(where, sizeof(where), ".groups[%zu]", s->sub_index);
	if (ev->type != JP_OBJECT_BEGIN) {
		item_problem(s, ((unsigned long long)K_GROUPS << RANK_SHIFT) + s->sub_index * 4,
		             where, NULL, "is not an object");
		skip_value(s, ev);
		s->sub_index++;
		return 0;
	}
	if (grow(s, (void **)&img->groups, img->ngroups, &s->ig_cap, sizeof(*img->groups)))
		return -ENOMEM;
	img->ngroups++; /* filled in place; a bad image is dropped whole */
	s->sub_seen = 0;
	s->key = K_UNKNOWN;
	s->where = W_IMG_GROUP;
	return 0;
}

static int on_img_group(struct ph_tree_stream *s, const struct jp_event *ev)
{
	struct ph_group *g = &s->img->groups[s->img->ngroups - 1];
	unsigned long long base = ((unsigned long long)K_GROUPS << RANK_SHIFT) + s->sub_index * 4;
	char where[48];
	char **f[] = {&g->id, &g->name, &g->display_name};

	snprintf(where, sizeof(where), ".groups[%zu]", s->sub_index);
	if (ev->type == JP_KEY) {
		s->key = find_key(ev, group_keys, 3);
		return 0;
	}
	if (ev->type == JP_OBJECT_END) {
		if (!g->name)
			item_problem(s, base + 1, where, "name", "is missing");
		if (!g->id)
			item_problem(s, base, where, "id", "is missing");
		s->sub_index++;
		s->where = W_IMG_GROUPS;
		return 0;
	}
	if (!first_time(s, &s->sub_seen, s->key, ev))
		return 0;
	return plain_member(s, ev, f[s->key], where, group_keys[s->key], base + (unsigned)s->key);
}

static int on_spec(struct ph_tree_stream *s, const struct jp_event *ev)
{
	struct ph_build_spec *b = s->img->image_spec;
	unsigned long long base = (unsigned long long)K_IMAGE_SPEC << RANK_SHIFT;
	int r;

	if (ev->type == JP_KEY) {
		s->key = find_key(ev, spec_keys, 5);
		return 0;
	}
	if (ev->type == JP_OBJECT_END) {
		s->where = W_ITEM;
		s->key = K_UNKNOWN;
		return 0;
	}
	if (!first_time(s, &s->sub_seen, s->key, ev))
		return 0;
	switch (s->key) {
	case 0:
		return plain_member(s, ev, &b->base_image, ".imageSpec", "baseImage", base);
	case 1:
		return plain_member(s, ev, &b->pull_secret, ".imageSpec", "pullSecret", base + 1);
	case 2:
		r = take_bool(s, ev, &b->cancel);
		if (r == 1)
			item_problem(s, base + 2, ".imageSpec", "cancel", "is not a boolean");
		return 0;
	case 3:
		return plain_member(s, ev, &b->update_time, ".imageSpec", "updateTime", base + 3);
	default: /* packages */
		if (ev->type == JP_NULL)
			return 0;
		b->has_packages = true;
		if (ev->type != JP_OBJECT_BEGIN) {
			item_problem(s, base + 4, ".imageSpec.packages", NULL, "is not an object");
			skip_value(s, ev);
			return 0;
		}
		s->where = W_PACKAGES;
		s->sub2_seen = 0;
		s->key = K_UNKNOWN;
		return 0;
	}
}

static int on_packages(struct ph_tree_stream *s, const struct jp_event *ev)
{
	struct ph_build_spec *b = s->img->image_spec;
	struct ph_strlist *lists[] = {&b->apt, &b->pip, &b->conda};

	if (ev->type == JP_KEY) {
		s->key = find_key(ev, pkg_keys, 3);
		return 0;
	}
	if (ev->type == JP_OBJECT_END) {
		s->where = W_SPEC;
		s->key = K_UNKNOWN;
		return 0;
	}
	if (!first_time(s, &s->sub2_seen, s->key, ev) || ev->type == JP_NULL)
		return 0;
	if (ev->type != JP_ARRAY_BEGIN) {
		item_problem(
		    s, ((unsigned long long)K_IMAGE_SPEC << RANK_SHIFT) + 5 + (unsigned)s->key,
		    ".imageSpec.packages", pkg_keys[s->key], "is not a list");
		skip_value(s, ev);
		return 0;
	}
	s->pl = lists[s->key];
	s->pl_cap = 0;
	s->where = W_PKGLIST;
	return 0;
}

static int on_pkglist(struct ph_tree_stream *s, const struct jp_event *ev)
{
	int key = (int)(s->pl - &s->img->image_spec->apt);
	int r;

	if (ev->type == JP_ARRAY_END) {
		s->where = W_PACKAGES;
		s->key = K_UNKNOWN;
		return 0;
	}
	if (grow(s, (void **)&s->pl->items, s->pl->n, &s->pl_cap, sizeof(*s->pl->items)))
		return -ENOMEM;
	r = take_str(s, ev, &s->pl->items[s->pl->n]);
	if (r < 0)
		return r;
	if (r == 1)
		item_problem(
		    s, ((unsigned long long)K_IMAGE_SPEC << RANK_SHIFT) + 5 + (unsigned)key,
		    ".imageSpec.packages", pkg_keys[key], "has an item that is not a string");
	else if (s->pl->items[s->pl->n])
		s->pl->n++; /* null items are skipped */
	return 0;
}

static int on_job(struct ph_tree_stream *s, const struct jp_event *ev)
{
	unsigned long long base = (unsigned long long)K_JOB_STATUS << RANK_SHIFT;
	char **f[] = {&s->img->job_phase, &s->img->job_image};

	if (ev->type == JP_KEY) {
		s->key = find_key(ev, job_keys, 2);
		return 0;
	}
	if (ev->type == JP_OBJECT_END) {
		s->where = W_ITEM;
		s->key = K_UNKNOWN;
		return 0;
	}
	if (!first_time(s, &s->sub_seen, s->key, ev))
		return 0;
	return plain_member(s, ev, f[s->key], ".jobStatus", job_keys[s->key],
	                    base + (unsigned)s->key);
}

static int on_data(struct ph_tree_stream *s, const struct jp_event *ev)
{
	if (ev->type == JP_KEY) {
		s->key = find_key(ev, list_names, 3);
		return 0;
	}
	if (ev->type == JP_OBJECT_END) {
		s->where = W_END;
		return 0;
	}
	if (s->key < 0 || s->lists[s->key] != LS_MISSING) {
		skip_value(s, ev); /* unknown, or a duplicate: the first wins */
		return 0;
	}
	if (ev->type != JP_ARRAY_BEGIN) {
		s->lists[s->key] = LS_BAD;
		skip_value(s, ev);
		return 0;
	}
	s->lists[s->key] = LS_OK;
	s->list = (enum list)s->key;
	s->index = 0;
	s->where = W_LIST;
	return 0;
}

int ph_tree_stream_event(struct ph_tree_stream *s, const struct jp_event *ev)
{
	if (s->fatal)
		return s->fatal;
	if (s->skip) {
		if (is_begin(ev))
			s->skip++;
		else if (ev->type == JP_OBJECT_END || ev->type == JP_ARRAY_END)
			s->skip--;
		return 0;
	}
	switch (s->where) {
	case W_TOP:
		if (ev->type == JP_OBJECT_BEGIN) {
			s->data_seen = true;
			s->where = W_DATA;
		} else {
			skip_value(s, ev);
			s->where = W_END;
		}
		return 0;
	case W_DATA:
		return on_data(s, ev);
	case W_LIST:
		return on_list_item(s, ev);
	case W_ITEM:
		return on_item(s, ev);
	case W_IMG_GROUPS:
		return on_img_groups(s, ev);
	case W_IMG_GROUP:
		return on_img_group(s, ev);
	case W_SPEC:
		return on_spec(s, ev);
	case W_PACKAGES:
		return on_packages(s, ev);
	case W_PKGLIST:
		return on_pkglist(s, ev);
	case W_JOB:
		return on_job(s, ev);
	case W_END:
		return 0;
	}
	return 0;
}

/* Arrays trimmed to their size: a refresh keeps them as long as the tree. */
static void trim(void **arr, size_t n, size_t elem)
{
	void *p;

	if (!*arr)
		return;
	if (!n) {
		free(*arr);
		*arr = NULL;
		return;
	}
	p = realloc(*arr, n * elem);
	if (p)
		*arr = p;
}

int ph_tree_stream_finish(struct ph_tree_stream *s, struct ph_tree *out, struct ph_err *err)
{
	size_t total;

	memset(out, 0, sizeof(*out));
	if (s->fatal)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	if (!s->data_seen || s->where != W_END)
		return ph_err_set(err, EPROTO, NULL,
		                  "unexpected answer from server: data is not an object");
	/* All three are non-null lists in the schema (see ph_decode_tree): each
	 * one asked for must be there, and none may be anything but a list. */
	for (int i = 0; i < 3; i++)
		if (s->lists[i] != LS_OK &&
		    (s->lists[i] != LS_MISSING || (s->required & (1u << i))))
			return ph_err_set(err, EPROTO, NULL,
			                  "unexpected answer from server: %s is not a list",
			                  list_names[i]);
	trim((void **)&s->t.images, s->t.nimages, sizeof(*s->t.images));
	trim((void **)&s->t.groups, s->t.ngroups, sizeof(*s->t.groups));
	trim((void **)&s->t.secrets, s->t.nsecrets, sizeof(*s->t.secrets));
	total = s->skipped[0] + s->skipped[1] + s->skipped[2];
	s->t.nskipped = total;
	if (total)
		log_warn("left out %zu malformed entr%s of the server's answer (%zu image%s, %zu "
		         "group%s, %zu secret%s); the first: %s",
		         total, total == 1 ? "y" : "ies", s->skipped[0],
		         s->skipped[0] == 1 ? "" : "s", s->skipped[1],
		         s->skipped[1] == 1 ? "" : "s", s->skipped[2],
		         s->skipped[2] == 1 ? "" : "s",
		         s->first[s->skipped[0]   ? 0
		                  : s->skipped[1] ? 1
		                                  : 2]);
	*out = s->t;
	memset(&s->t, 0, sizeof(s->t));
	return 0;
}

int ph_decode_tree_text(const char *text, size_t len, struct ph_tree *out, struct ph_err *err)
{
	struct ph_tree_stream *s;
	struct jp_parser p;
	struct jp_event ev;
	int r, ret = 0;

	memset(out, 0, sizeof(*out));
	if (ph_tree_stream_new(&s) < 0)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	jp_init(&p, 0, 0, JP_RAW_BYTES);
	jp_feed(&p, text, len);
	jp_finish(&p);
	while ((r = jp_next(&p, &ev)) == JP_EVENT && ret == 0)
		ret = ph_tree_stream_event(s, &ev);
	if (ret < 0)
		ret = ph_err_set(err, -ret, NULL, "out of memory");
	else if (r == JP_ERROR)
		ret = ph_err_set(err, EPROTO, NULL, "unexpected answer from server: %s",
		                 jp_error(&p));
	else
		ret = ph_tree_stream_finish(s, out, err);
	jp_clear(&p);
	ph_tree_stream_free(s);
	return ret;
}

/* ---- the tree fetched and decoded as it arrives ---- */

struct tree_fetch {
	struct ph_tree_stream *s;
	unsigned lists;
};

static int fetch_begin(void *arg)
{
	struct tree_fetch *f = arg;

	ph_tree_stream_free(f->s);
	f->s = NULL;
	if (ph_tree_stream_new(&f->s) < 0)
		return -ENOMEM;
	ph_tree_stream_require(f->s, f->lists);
	return 0;
}

static int fetch_event(void *arg, const struct jp_event *ev)
{
	struct tree_fetch *f = arg;

	return ph_tree_stream_event(f->s, ev);
}

int ph_fetch_tree_streamed(struct gql_client *gql, const char *document, const cJSON *variables,
                           unsigned lists, struct ph_tree *out, struct ph_err *err)
{
	struct tree_fetch f = {.lists = lists};
	struct gql_stream st = {.begin = fetch_begin, .event = fetch_event, .arg = &f};
	int ret;

	memset(out, 0, sizeof(*out));
	ret = gql_execute_stream(gql, document, variables, &st, err);
	if (ret == -EFBIG) {
		size_t mb = gql_client_max_stream(gql) >> 20;

		ret = ph_err_set(err, EFBIG, NULL,
		                 "the answer is larger than %zu MiB (-o max_tree_mb=%zu): raise "
		                 "max_tree_mb if this machine has the memory",
		                 mb, mb);
	}
	/* A partial answer is not a tree: images missing from it would look
	 * deleted to the snapshot. */
	if (ret == 0)
		ret = ph_tree_stream_finish(f.s, out, err);
	ph_tree_stream_free(f.s);
	return ret;
}
