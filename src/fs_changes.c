/*
 * fs_changes.c - /.changes: every change this mount sent to PrimeHub, one
 * line each, oldest first: when, which image, the operation and what it
 * changed (old -> new), who (program and pid) and the result.  An
 * administrator's answer to "what did I change, and when?"; it lives as
 * long as the mount, in memory, bounded (the oldest lines go first).
 */
#include "fs_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primehubfs/log.h"

#define CHANGES_MAX  2000 /* lines kept */
#define LINE_MAX_LEN 1024

struct phfs_changes {
	pthread_mutex_t lock;
	char *lines[CHANGES_MAX]; /* ring: oldest at head */
	size_t head, count;
	struct timespec last; /* CLOCK_REALTIME of the newest line, 0: none */
};

struct phfs_changes *phfs_changes_new(void)
{
	struct phfs_changes *c = calloc(1, sizeof(*c));

	if (c)
		pthread_mutex_init(&c->lock, NULL);
	return c;
}

void phfs_changes_free(struct phfs_changes *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->count; i++)
		free(c->lines[(c->head + i) % CHANGES_MAX]);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void phfs_change(struct phfs *fs, const char *image, const char *op, const char *detail, int ret,
                 const struct ph_err *err)
{
	struct phfs_changes *c = fs->changes;
	char stamp[32], caller[128], raw[LINE_MAX_LEN], line[LINE_MAX_LEN];
	struct timespec now;
	struct tm tm;
	char *copy;

	if (!c)
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	gmtime_r(&now.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	phfs_describe_caller(caller, sizeof(caller));
	snprintf(raw, sizeof(raw), "%s %s %s%s%s (by %s): %s%s", stamp, image, op,
	         detail && *detail ? " " : "", detail ? detail : "", caller,
	         ret == 0                          ? "ok"
	         : err && err->errnum == ECANCELED ? "not sent (dry run)"
	                                           : "failed: ",
	         ret == 0 || (err && err->errnum == ECANCELED) ? ""
	         : err && err->msg[0]                          ? err->msg
	                                                       : "error");
	/* One line, safe on a terminal, whatever names and values hold. */
	ph_escape_line(raw, line, sizeof(line));
	copy = strdup(line);
	if (!copy)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->count == CHANGES_MAX) {
		free(c->lines[c->head]);
		c->head = (c->head + 1) % CHANGES_MAX;
		c->count--;
	}
	c->lines[(c->head + c->count) % CHANGES_MAX] = copy;
	c->count++;
	c->last = now;
	pthread_mutex_unlock(&c->lock);
}

int phfs_changes_text(struct phfs_changes *c, char **text, size_t *len, struct timespec *last)
{
	size_t total = 0, at = 0;
	char *out;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < c->count; i++)
		total += strlen(c->lines[(c->head + i) % CHANGES_MAX]) + 1;
	out = malloc(total + 1);
	if (out) {
		for (size_t i = 0; i < c->count; i++) {
			const char *l = c->lines[(c->head + i) % CHANGES_MAX];
			size_t n = strlen(l);

			memcpy(out + at, l, n);
			at += n;
			out[at++] = '\n';
		}
		out[at] = '\0';
	}
	if (last)
		*last = c->last;
	pthread_mutex_unlock(&c->lock);
	if (!out)
		return -ENOMEM;
	*text = out;
	*len = at;
	return 0;
}
