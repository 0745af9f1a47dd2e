/*
 * fs_readers.c - which version of each image's spec.json each process
 * opened, so that a save by that process is compared with what it saw (see
 * fs_write.c for when that is the base of a save).
 *
 * PHFS_READERS_MAX (process, image) pairs are remembered, each for
 * PHFS_READER_TTL_MS; when full, the oldest is dropped, but a process
 * holding PHFS_READERS_MAX / 16 or more (grep -r over every image) gives up
 * its own oldest instead.  A process is its thread group id told apart from
 * a later process with the same pid by its start time.
 */
#include "fs_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "primehubfs/log.h"

/* ---- what each process read ---- */

struct reader {
	pid_t tgid;               /* 0: a free slot */
	unsigned long long start; /* the process's start time, /proc/PID/stat field 22 */
	char *image;
	struct snap_image *seen; /* a counted reference: the version it opened */
	struct timespec when;    /* CLOCK_MONOTONIC, when it was first remembered */
};

/* Who a thread id was, for a second: /proc is read once per process and
 * second, not twice per open (grep -r opens thousands of files a second).
 * A thread id is not given to another process within a second unless the
 * system makes more processes than pid_max in that time. */
#define PROC_CACHE    64
#define PROC_CACHE_MS 1000

struct phfs_readers {
	pthread_mutex_t lock;
	struct reader slots[PHFS_READERS_MAX];
	struct {
		pid_t tid, tgid;
		unsigned long long start;
		long long at_ms; /* CLOCK_MONOTONIC */
	} procs[PROC_CACHE];     /* under lock */
};

struct phfs_readers *phfs_readers_new(void)
{
	struct phfs_readers *r = calloc(1, sizeof(*r));

	if (r)
		pthread_mutex_init(&r->lock, NULL);
	return r;
}

static void reader_clear(struct reader *rd)
{
	snap_image_put(rd->seen);
	free(rd->image);
	memset(rd, 0, sizeof(*rd));
}

void phfs_readers_free(struct phfs_readers *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < PHFS_READERS_MAX; i++)
		reader_clear(&r->slots[i]);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static long long now_ms(void)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (long long)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* The calling process as /proc tells it: FUSE gives the thread's id; a
 * save and the read it was made from may come from different threads of
 * one program. */
static bool read_process(pid_t pid, pid_t *tgid, unsigned long long *start)
{
	char path[64], line[256], buf[1024];
	FILE *f;
	size_t n;
	const char *p;

	*tgid = pid;
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "Tgid:", 5) == 0) {
			*tgid = (pid_t)strtol(line + 5, NULL, 10);
			break;
		}
	}
	fclose(f);
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)*tgid);
	f = fopen(path, "r");
	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: fields count from the last ')'. */
	p = strrchr(buf, ')');
	if (!p)
		return false;
	/* state is field 3; starttime field 22: 19 fields after state. */
	for (int field = 2; field < 22 && p; field++)
		p = strchr(p + 1, ' ');
	if (!p)
		return false;
	*start = strtoull(p + 1, NULL, 10);
	return *tgid > 0;
}

static bool caller_process(struct phfs_readers *r, pid_t *tgid, unsigned long long *start)
{
	pid_t pid = phfs_caller_pid();
	long long now = now_ms();
	unsigned slot = (unsigned)pid % PROC_CACHE;

	if (pid <= 0)
		return false;
	pthread_mutex_lock(&r->lock);
	if (r->procs[slot].tid == pid && now - r->procs[slot].at_ms < PROC_CACHE_MS) {
		*tgid = r->procs[slot].tgid;
		*start = r->procs[slot].start;
		pthread_mutex_unlock(&r->lock);
		return true;
	}
	pthread_mutex_unlock(&r->lock);
	if (!read_process(pid, tgid, start))
		return false;
	pthread_mutex_lock(&r->lock);
	r->procs[slot].tid = pid;
	r->procs[slot].tgid = *tgid;
	r->procs[slot].start = *start;
	r->procs[slot].at_ms = now;
	pthread_mutex_unlock(&r->lock);
	return true;
}

static long long ts_ms(struct timespec t)
{
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* The slot of (process, image), dropping expired ones on the way (lock held). */
static struct reader *reader_find(struct phfs_readers *r, pid_t tgid, unsigned long long start,
                                  const char *image)
{
	struct reader *found = NULL;
	long long now = now_ms();

	for (size_t i = 0; i < PHFS_READERS_MAX; i++) {
		struct reader *rd = &r->slots[i];

		if (!rd->tgid)
			continue;
		if (now - ts_ms(rd->when) > PHFS_READER_TTL_MS) {
			reader_clear(rd);
			continue;
		}
		if (rd->tgid == tgid && rd->start == start && strcmp(rd->image, image) == 0)
			found = rd;
	}
	return found;
}

/* Remember that the caller opened version e of image's spec.json.  With
 * replace false an older version already remembered is kept (see the top of
 * the file); true after a save: the process now builds on what it saved. */
void phfs_reader_note(struct phfs *fs, const char *image, const struct snap_image *e, bool replace)
{
	struct phfs_readers *r = fs->readers;
	struct reader *rd, *oldest = NULL;
	unsigned long long start = 0;
	pid_t tgid;
	char *name;

	if (!e || !caller_process(r, &tgid, &start))
		return;
	pthread_mutex_lock(&r->lock);
	rd = reader_find(r, tgid, start, image);
	if (rd && !replace)
		goto out;
	if (!rd) {
		struct reader *own_oldest = NULL;
		size_t own = 0;

		for (size_t i = 0; i < PHFS_READERS_MAX && !rd; i++) {
			struct reader *s = &r->slots[i];

			if (!s->tgid) {
				rd = s;
				continue;
			}
			if (!oldest || ts_ms(s->when) < ts_ms(oldest->when))
				oldest = s;
			if (s->tgid == tgid && s->start == start) {
				own++;
				if (!own_oldest || ts_ms(s->when) < ts_ms(own_oldest->when))
					own_oldest = s;
			}
		}
		if (!rd) {
			/* One process reading many images (grep -r) makes room
			 * among its own entries, not by evicting an editor's. */
			rd = own >= PHFS_READERS_MAX / 16 ? own_oldest : oldest;
			reader_clear(rd);
		}
		name = strdup(image);
		if (!name)
			goto out;
		rd->image = name;
		rd->tgid = tgid;
		rd->start = start;
	}
	snap_image_put(rd->seen);
	rd->seen = snap_image_get(e);
	clock_gettime(CLOCK_MONOTONIC, &rd->when);
out:
	pthread_mutex_unlock(&r->lock);
}

/* A copy of the spec.json text the caller saw of image, or NULL (0) when
 * nothing is remembered. */
int phfs_reader_seen_text(struct phfs *fs, const char *image, char **text, size_t *len)
{
	struct phfs_readers *r = fs->readers;
	struct reader *rd;
	unsigned long long start = 0;
	const struct snap_texts *tx;
	struct snap_image *seen = NULL;
	pid_t tgid;

	*text = NULL;
	*len = 0;
	if (!caller_process(r, &tgid, &start))
		return 0;
	pthread_mutex_lock(&r->lock);
	rd = reader_find(r, tgid, start, image);
	if (rd)
		seen = snap_image_get(rd->seen);
	pthread_mutex_unlock(&r->lock);
	if (!seen)
		return 0;
	tx = snap_image_texts(seen);
	if (tx) {
		*text = malloc(tx->spec_len + 1);
		if (*text) {
			memcpy(*text, tx->spec, tx->spec_len + 1);
			*len = tx->spec_len;
		}
	}
	snap_image_put(seen);
	return *text ? 0 : -ENOMEM;
}

void phfs_readers_forget(struct phfs *fs, const char *image)
{
	struct phfs_readers *r = fs->readers;

	pthread_mutex_lock(&r->lock);
	for (size_t i = 0; i < PHFS_READERS_MAX; i++)
		if (r->slots[i].tgid && strcmp(r->slots[i].image, image) == 0)
			reader_clear(&r->slots[i]);
	pthread_mutex_unlock(&r->lock);
}

/* After a refusal for a conflict: the caller has been told, and what it
 * reads next (vim's :e!, a script's re-read) is what it builds on. */
void phfs_reader_drop(struct phfs *fs, const char *image)
{
	struct phfs_readers *r = fs->readers;
	struct reader *rd;
	unsigned long long start = 0;
	pid_t tgid;

	if (!caller_process(r, &tgid, &start))
		return;
	pthread_mutex_lock(&r->lock);
	rd = reader_find(r, tgid, start, image);
	if (rd)
		reader_clear(rd);
	pthread_mutex_unlock(&r->lock);
}

/* After a save by the caller: it now builds on what the snapshot shows. */
void phfs_reader_saved(struct phfs *fs, const char *image)
{
	struct snapshot *snap = store_peek(fs->store);
	const struct snap_image *e = snap ? snapshot_find(snap, image) : NULL;

	if (e)
		phfs_reader_note(fs, image, e, true);
	snapshot_put(snap);
}
