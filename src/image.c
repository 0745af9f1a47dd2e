/* image.c - constructors and destructors of the data model (image.h). */
#include "primehubfs/image.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

bool ph_strdup_opt(char **dst, const char *src)
{
	*dst = NULL;
	if (!src)
		return true;
	*dst = strdup(src);
	return *dst != NULL;
}

void ph_strlist_free(struct ph_strlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->items[i]);
	free(l->items);
	l->items = NULL;
	l->n = 0;
}

int ph_strlist_append(struct ph_strlist *l, const char *s)
{
	char **items = realloc(l->items, (l->n + 1) * sizeof(*items));
	char *copy;

	if (!items)
		return -ENOMEM;
	l->items = items;
	copy = strdup(s);
	if (!copy)
		return -ENOMEM;
	l->items[l->n++] = copy;
	return 0;
}

int ph_strlist_dup(struct ph_strlist *dst, const struct ph_strlist *src)
{
	dst->items = NULL;
	dst->n = 0;
	for (size_t i = 0; i < src->n; i++) {
		if (ph_strlist_append(dst, src->items[i]) < 0) {
			ph_strlist_free(dst);
			return -ENOMEM;
		}
	}
	return 0;
}

bool ph_strlist_equal(const struct ph_strlist *a, const struct ph_strlist *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->items[i], b->items[i]) != 0)
			return false;
	return true;
}

void ph_build_spec_free(struct ph_build_spec *s)
{
	if (!s)
		return;
	free(s->base_image);
	free(s->pull_secret);
	ph_strlist_free(&s->apt);
	ph_strlist_free(&s->pip);
	ph_strlist_free(&s->conda);
	free(s->update_time);
	free(s);
}

struct ph_build_spec *ph_build_spec_dup(const struct ph_build_spec *s)
{
	struct ph_build_spec *d;

	if (!s)
		return NULL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->has_packages = s->has_packages;
	d->cancel = s->cancel;
	if (!ph_strdup_opt(&d->base_image, s->base_image) ||
	    !ph_strdup_opt(&d->pull_secret, s->pull_secret) ||
	    !ph_strdup_opt(&d->update_time, s->update_time) || ph_strlist_dup(&d->apt, &s->apt) ||
	    ph_strlist_dup(&d->pip, &s->pip) || ph_strlist_dup(&d->conda, &s->conda)) {
		ph_build_spec_free(d);
		return NULL;
	}
	return d;
}

void ph_group_clear(struct ph_group *g)
{
	free(g->id);
	free(g->name);
	free(g->display_name);
	memset(g, 0, sizeof(*g));
}

void ph_secret_clear(struct ph_secret *s)
{
	free(s->id);
	free(s->name);
	free(s->type);
	memset(s, 0, sizeof(*s));
}

void ph_image_free(struct ph_image *img)
{
	if (!img)
		return;
	free(img->id);
	free(img->name);
	free(img->display_name);
	free(img->description);
	free(img->type);
	free(img->url);
	free(img->url_for_gpu);
	free(img->group_name);
	free(img->use_image_pull_secret);
	for (size_t i = 0; i < img->ngroups; i++)
		ph_group_clear(&img->groups[i]);
	free(img->groups);
	free(img->log_endpoint);
	ph_build_spec_free(img->image_spec);
	free(img->job_phase);
	free(img->job_image);
	free(img);
}

void ph_image_input_clear(struct ph_image_input *in)
{
	if (!in)
		return;
	free(in->name);
	free(in->display_name);
	free(in->description);
	free(in->type);
	free(in->url);
	free(in->url_for_gpu);
	free(in->use_image_pull_secret);
	free(in->group_name);
	ph_build_spec_free(in->image_spec);
	ph_strlist_free(&in->connect);
	ph_strlist_free(&in->disconnect);
	memset(in, 0, sizeof(*in));
}

static bool str_eq(const char *a, const char *b)
{
	return a == b || (a && b && strcmp(a, b) == 0);
}

static bool build_spec_equal(const struct ph_build_spec *a, const struct ph_build_spec *b)
{
	if (!a || !b)
		return a == b;
	return str_eq(a->base_image, b->base_image) && str_eq(a->pull_secret, b->pull_secret) &&
	       a->has_packages == b->has_packages && ph_strlist_equal(&a->apt, &b->apt) &&
	       ph_strlist_equal(&a->pip, &b->pip) && ph_strlist_equal(&a->conda, &b->conda) &&
	       a->cancel == b->cancel && str_eq(a->update_time, b->update_time);
}

bool ph_image_equal_except_groups(const struct ph_image *a, const struct ph_image *b)
{
	return str_eq(a->id, b->id) && str_eq(a->name, b->name) &&
	       str_eq(a->display_name, b->display_name) && str_eq(a->description, b->description) &&
	       str_eq(a->type, b->type) && str_eq(a->url, b->url) &&
	       str_eq(a->url_for_gpu, b->url_for_gpu) && str_eq(a->group_name, b->group_name) &&
	       str_eq(a->use_image_pull_secret, b->use_image_pull_secret) &&
	       a->global == b->global && a->is_ready == b->is_ready &&
	       str_eq(a->log_endpoint, b->log_endpoint) && a->has_job_status == b->has_job_status &&
	       str_eq(a->job_phase, b->job_phase) && str_eq(a->job_image, b->job_image) &&
	       build_spec_equal(a->image_spec, b->image_spec);
}

bool ph_image_equal(const struct ph_image *a, const struct ph_image *b)
{
	if (!ph_image_equal_except_groups(a, b) || a->groups_known != b->groups_known ||
	    a->ngroups != b->ngroups)
		return false;
	for (size_t i = 0; i < a->ngroups; i++)
		if (!str_eq(a->groups[i].id, b->groups[i].id) ||
		    !str_eq(a->groups[i].name, b->groups[i].name) ||
		    !str_eq(a->groups[i].display_name, b->groups[i].display_name))
			return false;
	return true;
}

struct ph_image *ph_image_dup(const struct ph_image *src)
{
	struct ph_image *img = calloc(1, sizeof(*img));

	if (!img)
		return NULL;
	img->global = src->global;
	img->is_ready = src->is_ready;
	img->has_job_status = src->has_job_status;
	if (!ph_strdup_opt(&img->id, src->id) || !ph_strdup_opt(&img->name, src->name) ||
	    !ph_strdup_opt(&img->display_name, src->display_name) ||
	    !ph_strdup_opt(&img->description, src->description) ||
	    !ph_strdup_opt(&img->type, src->type) || !ph_strdup_opt(&img->url, src->url) ||
	    !ph_strdup_opt(&img->url_for_gpu, src->url_for_gpu) ||
	    !ph_strdup_opt(&img->group_name, src->group_name) ||
	    !ph_strdup_opt(&img->use_image_pull_secret, src->use_image_pull_secret) ||
	    !ph_strdup_opt(&img->log_endpoint, src->log_endpoint) ||
	    !ph_strdup_opt(&img->job_phase, src->job_phase) ||
	    !ph_strdup_opt(&img->job_image, src->job_image) ||
	    (src->image_spec && !(img->image_spec = ph_build_spec_dup(src->image_spec))) ||
	    (src->groups_known && ph_image_set_groups(img, src->groups, src->ngroups) < 0)) {
		ph_image_free(img);
		return NULL;
	}
	return img;
}

int ph_image_set_groups(struct ph_image *img, const struct ph_group *g, size_t n)
{
	struct ph_group *copy = n ? calloc(n, sizeof(*copy)) : NULL;

	if (n && !copy)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		if (!ph_strdup_opt(&copy[i].id, g[i].id) ||
		    !ph_strdup_opt(&copy[i].name, g[i].name) ||
		    !ph_strdup_opt(&copy[i].display_name, g[i].display_name)) {
			for (size_t k = 0; k <= i; k++)
				ph_group_clear(&copy[k]);
			free(copy);
			return -ENOMEM;
		}
	}
	for (size_t i = 0; i < img->ngroups; i++)
		ph_group_clear(&img->groups[i]);
	free(img->groups);
	img->groups = copy;
	img->ngroups = n;
	img->groups_known = true;
	return 0;
}

bool ph_image_has_group(const struct ph_image *img, const char *group_id)
{
	for (size_t i = 0; i < img->ngroups; i++)
		if (strcmp(img->groups[i].id, group_id) == 0)
			return true;
	return false;
}

const struct ph_group *ph_groups_find(const struct ph_group *groups, size_t n,
                                      const char *name_or_id)
{
	for (size_t i = 0; i < n; i++)
		if (groups[i].name && strcmp(groups[i].name, name_or_id) == 0)
			return &groups[i];
	for (size_t i = 0; i < n; i++)
		if (strcmp(groups[i].id, name_or_id) == 0)
			return &groups[i];
	return NULL;
}

const struct ph_group *ph_image_find_group(const struct ph_image *img, const char *name_or_id)
{
	return ph_groups_find(img->groups, img->ngroups, name_or_id);
}

bool ph_image_building(const struct ph_image *img, bool or_unknown)
{
	static const char *const running[] = {"Pending", "Preparing", "Running"};
	const char *phase = img->has_job_status ? img->job_phase : NULL;

	if (!phase)
		return false;
	for (size_t i = 0; i < sizeof(running) / sizeof(running[0]); i++)
		if (strcmp(phase, running[i]) == 0)
			return true;
	return or_unknown && strcmp(phase, "Unknown") == 0;
}

uint64_t ph_hash_bytes(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	uint64_t h = seed ? seed : 1469598103934665603ULL;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 1099511628211ULL;
	}
	return h ? h : 1;
}
