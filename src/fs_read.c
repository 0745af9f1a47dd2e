/*
 * fs_read.c - the read-only files: status.json (from the snapshot), /.status
 * (the mount's health), .error
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

/* Whether e's build may still write to its log: the log is then kept at
 * most a second, so that `tail -f build.log` follows it. */
static bool build_may_grow(const struct snap_image *e)
{
	return ph_image_building(e->img, true);
}

#define BUILD_LOG_FOLLOW_MS 1000

/* A copy of the build log of e, fetched when not cached or older than ttl
 * (a second while the build runs).
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
	if (le && age_ms(le->fetched) < (build_may_grow(e) ? BUILD_LOG_FOLLOW_MS : fs->ttl_ms)) {
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

		/* PrimeHub's builder deletes a cancelled build's job, and its
		 * log with it: say so rather than "no build job yet". */
		if (ret == -ENOENT && e->img->image_spec && e->img->image_spec->cancel)
			snprintf(
			    line, sizeof(line),
			    "(no build log: the build was cancelled, and PrimeHub removed its "
			    "job and log; to build again, change imageSpec or touch %s/rebuild)\n",
			    e->img->id);
		else
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

/*
 * A reader of build.log at its end (tail -f): take up what the log cache
 * holds now, when it continues what the handle has.  Never the network:
 * the cache is renewed by a stat of the path (tail -f's fstat every
 * second, which Linux sends as a path GETATTR), so an open file never
 * waits on the server.  Text that does not continue the handle's (a log
 * replaced after a cancel) is left alone, so tail never sees a truncation.
 */
void phfs_build_log_follow(struct phfs *fs, struct phfs_handle *h)
{
	struct phfs_log_cache *c = fs->logs;
	struct log_entry *le;
	char *more = NULL;

	/* Lock order: the handle, then the cache. */
	pthread_mutex_lock(&h->lock);
	pthread_mutex_lock(&c->lock);
	for (le = c->head; le; le = le->next)
		if (strcmp(le->image, h->node.image) == 0)
			break;
	if (le && le->text && le->len > h->ro_len && h->ro_text == h->own_text &&
	    (h->ro_len == 0 || memcmp(le->text, h->ro_text, h->ro_len) == 0)) {
		more = malloc(le->len + 1);
		if (more) {
			memcpy(more, le->text, le->len + 1);
			free(h->own_text);
			h->own_text = more;
			h->ro_text = more;
			h->ro_len = le->len;
		}
	}
	pthread_mutex_unlock(&c->lock);
	pthread_mutex_unlock(&h->lock);
}

/*
 * While a custom image builds, its phase moves every few seconds
 * (Pending, Building, Succeeded or Failed).  A reader of its status.json or
 * build.log gets the image read again (one `image` query), at most once a
 * second per image, instead of waiting for the next read of the whole list
 * (ttl).  One such read at a time; while another runs, or while the server
 * is failing, the snapshot is shown as it is: nobody waits on a poll.
 */
#define BUILD_POLL_MS 1000

static long long mono_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

#define BUILD_START_MS 60000 /* PrimeHub's builder makes the job within seconds */

/* poll_lock held: image's slot (the least recently used when it has none,
 * taken over when take). */
static int poll_slot(struct phfs *fs, const char *image, bool take)
{
	int oldest = 0, n = (int)(sizeof(fs->polled) / sizeof(fs->polled[0]));

	for (int i = 0; i < n; i++) {
		if (strcmp(fs->polled[i].image, image) == 0)
			return i;
		if (fs->polled[i].at_ms < fs->polled[oldest].at_ms)
			oldest = i;
	}
	if (!take)
		return -1;
	snprintf(fs->polled[oldest].image, sizeof(fs->polled[oldest].image), "%s", image);
	fs->polled[oldest].at_ms = 0;
	fs->polled[oldest].expect_until = 0;
	return oldest;
}

void phfs_expect_build(struct phfs *fs, const char *image)
{
	int i;

	pthread_mutex_lock(&fs->poll_lock);
	i = poll_slot(fs, image, true);
	fs->polled[i].expect_until = mono_now_ms() + BUILD_START_MS;
	pthread_mutex_unlock(&fs->poll_lock);
}

/* A build under way, or one about to start (a custom image this mount
 * just saved, whose phase is not there yet). */
static bool build_due(struct phfs *fs, const struct ph_image *img, const char *image, long long now)
{
	int i;
	bool expected;

	if (ph_image_building(img, false))
		return true;
	if (!img->image_spec || (img->has_job_status && img->job_phase))
		return false;
	pthread_mutex_lock(&fs->poll_lock);
	i = poll_slot(fs, image, false);
	expected = i >= 0 && fs->polled[i].expect_until > now;
	pthread_mutex_unlock(&fs->poll_lock);
	return expected;
}

void phfs_poll_building(struct phfs *fs, const char *image)
{
	struct snapshot *snap = store_peek(fs->store);
	const struct snap_image *e = snap ? snapshot_find(snap, image) : NULL;
	long long now = mono_now_ms();
	int at;
	struct store_status ss;
	struct ph_image *img = NULL;
	struct ph_err err = {0};
	bool due;

	due = e && build_due(fs, e->img, image, now);
	snapshot_put(snap);
	if (!due)
		return;
	store_get_status(fs->store, &ss);
	if (ss.failures)
		return;
	pthread_mutex_lock(&fs->poll_lock);
	at = poll_slot(fs, image, false);
	due = !fs->polling && (at < 0 || now - fs->polled[at].at_ms >= BUILD_POLL_MS);
	if (due) {
		fs->polling = true;
		fs->polled[poll_slot(fs, image, true)].at_ms = now;
	}
	pthread_mutex_unlock(&fs->poll_lock);
	if (!due)
		return;
	/* Under the image's lock: a save of it publishes after, not before. */
	if (phfs_image_lock(fs, image) == 0) {
		if (ph_get_image(fs->api, image, &img, &err) == 0 && img) {
			log_debug("%s is building: read again for its phase", image);
			store_put_image(fs->store, img);
		} else if (err.msg[0]) {
			log_debug("%s is building: reading it again failed: %s", image, err.msg);
		}
		phfs_image_unlock(fs, image);
	}
	pthread_mutex_lock(&fs->poll_lock);
	fs->polling = false;
	pthread_mutex_unlock(&fs->poll_lock);
}

int phfs_build_log_size(struct phfs *fs, const struct snap_image *e, size_t *size)
{
	char *text;
	int ret = build_log_text(fs, e, &text, size);

	if (ret == 0)
		free(text);
	return ret;
}

/* An RFC 3339 UTC time, or "never" for 0. */
static void format_time(struct timespec t, char *buf, size_t size)
{
	struct tm tm;

	if (t.tv_sec == 0 || !gmtime_r(&t.tv_sec, &tm) ||
	    strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
		snprintf(buf, size, "never");
}

/*
 * /.status: one "key: value" line per fact, always the same keys in the same
 * order, so scripts can grep them (documented in primehubfs(1)).  Built from
 * what the mount already knows (store_get_status, store_peek, the HTTP
 * counters): reading it never asks the server, so it answers while the
 * server hangs.  Nothing secret: the token never reaches this layer, and
 * error texts are escaped like log lines.
 */
static int render_status(struct phfs *fs, const struct store_status *st,
                         const struct http_stats *hst, char **text, size_t *len)
{
	struct store_status ss = *st;
	struct http_stats hs = *hst;
	struct snapshot *snap;
	struct timespec now;
	char mounted[32], fetched[32], err_line[sizeof(ss.last_error.msg) * 4];
	char endpoint[4 * 1024];
	long long age = -1;
	size_t nimages = 0;
	int n;

	snap = store_peek(fs->store);
	if (snap) {
		nimages = snap->nimages;
		snapshot_put(snap);
	}
	clock_gettime(CLOCK_REALTIME, &now);
	format_time(fs->mounted_at, mounted, sizeof(mounted));
	format_time(ss.last_ok, fetched, sizeof(fetched));
	if (ss.last_ok.tv_sec != 0)
		age = (long long)(now.tv_sec - ss.last_ok.tv_sec);
	ph_escape_line(ss.failures > 0 ? ss.last_error.msg : "", err_line, sizeof(err_line));
	ph_escape_line(ph_api_endpoint(fs->api), endpoint, sizeof(endpoint));

	*text = malloc(8192 + sizeof(endpoint) + sizeof(err_line));
	if (!*text)
		return -ENOMEM;
	n = snprintf(*text, 8192 + sizeof(endpoint) + sizeof(err_line),
	             "endpoint: %s\n"
	             "user: %s\n"
	             "version: %s\n"
	             "mounted: %s\n"
	             "state: %s\n"
	             "last_fetch: %s\n"
	             "last_fetch_age_seconds: %lld\n"
	             "fetches: %llu\n"
	             "failures_in_a_row: %u\n"
	             "last_error: %s\n"
	             "retry_in_seconds: %ld\n"
	             "images: %zu\n"
	             "requests: %llu\n"
	             "request_failures: %llu\n"
	             "bytes_sent: %llu\n"
	             "bytes_received: %llu\n",
	             endpoint, fs->user ? fs->user : "", PRIMEHUBFS_VERSION, mounted,
	             ss.failures > 0    ? "failing"
	             : ss.have_snapshot ? "ok"
	                                : "starting",
	             fetched, age, (unsigned long long)ss.fetches, ss.failures, err_line,
	             ss.failures > 0 ? (ss.retry_in_ms + 999) / 1000 : 0L, nimages, hs.requests,
	             hs.failures, hs.bytes_sent, hs.bytes_received);
	if (n < 0) {
		free(*text);
		*text = NULL;
		return -EIO;
	}
	*len = (size_t)n;
	return 0;
}

int phfs_status_text(struct phfs *fs, long max_age_ms, char **text, size_t *len)
{
	struct store_status ss;
	struct http_stats hs;
	struct timespec t;
	long long now;
	char key[128];
	int ret = 0;

	clock_gettime(CLOCK_MONOTONIC, &t);
	now = (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
	store_get_status(fs->store, &ss);
	ph_api_traffic(fs->api, &hs);
	/* A rendering is reused only while nothing but the clock moved. */
	snprintf(key, sizeof(key), "%d %llu %u %lld.%ld %llu", ss.have_snapshot,
	         (unsigned long long)ss.fetches, ss.failures, (long long)ss.last_ok.tv_sec,
	         ss.last_ok.tv_nsec, hs.requests);
	pthread_mutex_lock(&fs->status_lock);
	if (!fs->status_text || now - fs->status_at_ms >= max_age_ms ||
	    strcmp(key, fs->status_key) != 0) {
		char *fresh;
		size_t n;

		ret = render_status(fs, &ss, &hs, &fresh, &n);
		if (ret == 0) {
			free(fs->status_text);
			fs->status_text = fresh;
			fs->status_len = n;
			fs->status_at_ms = now;
			snprintf(fs->status_key, sizeof(fs->status_key), "%s", key);
		}
	}
	if (ret == 0) {
		*text = malloc(fs->status_len + 1);
		if (*text) {
			memcpy(*text, fs->status_text, fs->status_len + 1);
			*len = fs->status_len;
		} else {
			ret = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&fs->status_lock);
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
	case NODE_ROOT_CHANGES:
		ret = phfs_changes_text(fs->changes, &h->own_text, &h->ro_len, &h->opened);
		if (ret == 0 && !h->opened.tv_sec)
			h->opened = fs->mounted_at;
		h->ro_text = h->own_text;
		return ret;
	case NODE_ROOT_STATUS: {
		struct store_status ss;

		ret = phfs_status_text(fs, PHFS_STATUS_REUSE_MS, &h->own_text, &h->ro_len);
		h->ro_text = h->own_text;
		/* fstat shows the time a stat of the path shows (phfs_stat_node). */
		store_get_status(fs->store, &ss);
		h->opened = ss.last_ok.tv_sec ? ss.last_ok : fs->mounted_at;
		return ret;
	}
	case NODE_HISTORY_FILE:
		ret = phfs_history_open(fs, h);
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
		ret = n->kind == NODE_STATUS ? phfs_snapshot_groups(fs, n->image, &snap)
		                             : phfs_snapshot_shown(fs, n->image, &snap);
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
