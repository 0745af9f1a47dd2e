/*
 * fs_read.c - the read-only files: status.json (from the snapshot), .error
 * and spec.json.rejected (from staging) and build.log (fetched from the
 * image's log endpoint, cached for the freshness time).  Each open takes the
 * bytes it will serve, so a reader never sees half of two versions.
 */
#include "fs_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primehubfs/log.h"

struct log_entry {
	char *image;
	char *text;
	size_t len;
	struct timespec fetched;
	struct log_entry *next;
};

struct phfs_log_cache {
	pthread_mutex_t lock;
	struct log_entry *head;
};

struct phfs_log_cache *phfs_log_cache_new(void)
{
	struct phfs_log_cache *c = calloc(1, sizeof(*c));

	if (c)
		pthread_mutex_init(&c->lock, NULL);
	return c;
}

void phfs_log_cache_free(struct phfs_log_cache *c)
{
	if (!c)
		return;
	while (c->head) {
		struct log_entry *e = c->head;

		c->head = e->next;
		free(e->image);
		free(e->text);
		free(e);
	}
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static long long age_ms(struct timespec t)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)(now.tv_sec - t.tv_sec) * 1000 + (now.tv_nsec - t.tv_nsec) / 1000000;
}

/* A copy of the build log of e, fetched when not cached or older than ttl.
 * A log that cannot be had yet (no build job) reads as one line saying so:
 * the file exists for every custom image, and its size is always the size
 * of what it serves. */
static int build_log_text(struct phfs *fs, const struct snap_image *e, char **text, size_t *len)
{
	struct phfs_log_cache *c = fs->logs;
	struct log_entry *le;
	struct ph_err err = {0};
	char *fetched = NULL;
	size_t flen = 0;
	int ret;

	pthread_mutex_lock(&c->lock);
	for (le = c->head; le; le = le->next)
		if (strcmp(le->image, e->img->id) == 0)
			break;
	if (le && age_ms(le->fetched) < fs->ttl_ms) {
		*text = malloc(le->len + 1);
		if (*text) {
			memcpy(*text, le->text, le->len + 1);
			*len = le->len;
		}
		pthread_mutex_unlock(&c->lock);
		return *text ? 0 : -ENOMEM;
	}
	pthread_mutex_unlock(&c->lock);

	/* No lock across the network. */
	ret = e->img->log_endpoint
	          ? ph_fetch_build_log(fs->api, e->img->log_endpoint, &fetched, &flen, &err)
	          : ph_err_set(&err, ENOENT, NULL, "the server gave no log endpoint");
	if (ret == -ENOENT || ret == -EACCES) {
		char line[700];

		snprintf(line, sizeof(line), "(no build log: %s)\n", err.msg);
		free(fetched);
		fetched = strdup(line);
		flen = fetched ? strlen(fetched) : 0;
	} else if (ret < 0) {
		log_warn("build log of %s: %s", e->img->id, err.msg);
		return ret;
	}
	if (!fetched)
		return -ENOMEM;

	pthread_mutex_lock(&c->lock);
	for (le = c->head; le; le = le->next)
		if (strcmp(le->image, e->img->id) == 0)
			break;
	if (!le) {
		le = calloc(1, sizeof(*le));
		if (le && !(le->image = strdup(e->img->id))) {
			free(le);
			le = NULL;
		}
		if (le) {
			le->next = c->head;
			c->head = le;
		}
	}
	if (le) {
		free(le->text);
		le->text = malloc(flen + 1);
		if (le->text) {
			memcpy(le->text, fetched, flen + 1);
			le->len = flen;
			clock_gettime(CLOCK_MONOTONIC, &le->fetched);
		} else {
			le->len = 0;
			le->fetched = (struct timespec){0};
		}
	}
	pthread_mutex_unlock(&c->lock);
	*text = fetched;
	*len = flen;
	return 0;
}

int phfs_build_log_size(struct phfs *fs, const struct snap_image *e, size_t *size)
{
	char *text;
	int ret = build_log_text(fs, e, &text, size);

	if (ret == 0)
		free(text);
	return ret;
}

int phfs_open_readonly(struct phfs *fs, struct phfs_handle *h)
{
	const struct node *n = &h->node;
	struct snapshot *snap;
	const struct snap_image *e;
	int ret;

	switch (n->kind) {
	case NODE_ROOT_ERROR:
	case NODE_IMAGE_ERROR:
		ret = staging_get_error(fs->staging, n->image, &h->own_text, &h->ro_len);
		if (ret == 0 && !h->own_text)
			ret = -ENOENT;
		h->ro_text = h->own_text;
		return ret;
	case NODE_REJECTED:
		ret = staging_get_rejected(fs->staging, n->image, &h->own_text, &h->ro_len);
		if (ret == 0 && !h->own_text)
			ret = -ENOENT;
		h->ro_text = h->own_text;
		return ret;
	case NODE_STATUS:
	case NODE_BUILD_LOG:
		ret = phfs_snapshot(fs, &snap);
		if (ret < 0)
			return ret;
		e = snapshot_find(snap, n->image);
		if (!e) {
			ret = -ENOENT;
		} else if (n->kind == NODE_STATUS) {
			const struct snap_texts *tx = snap_image_texts(e);

			if (tx) {
				h->entry = snap_image_get(e); /* keeps tx alive */
				h->ro_text = tx->status;
				h->ro_len = tx->status_len;
			} else {
				ret = -ENOMEM;
			}
		} else if (!e->img->image_spec) {
			ret = -ENOENT;
		} else {
			ret = build_log_text(fs, e, &h->own_text, &h->ro_len);
			h->ro_text = h->own_text;
		}
		snapshot_put(snap);
		return ret;
	default:
		return -EACCES;
	}
}
