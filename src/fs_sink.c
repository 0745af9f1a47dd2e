/*
 * fs_sink.c - what a copy tool writes beside the images: local-only, never
 * sent, its contents dropped.
 *
 * A backup of a mount is restored by copying it back (`cp -r backup/.
 * MNT/`, `rsync -a backup/ MNT/`, `tar -x`), and a backup kept in git holds
 * `.git` and maybe `.gitignore` beside the image directories.  PrimeHub
 * image names begin with a letter or a digit, so a name at the top that
 * begins with a dot is never an image.  Such names, other than the mount's
 * own (.error, .status, .changes), may be made by a copy tool: the tree it
 * makes is remembered (names and kinds, so its later stat, chmod, utimens,
 * rename and rmdir succeed) and whatever it writes is dropped.  Other
 * programs may look at it but not make one: it would not survive the mount.
 *
 * Ownership: the table owns its paths.  Memory is bounded (SINK_MAX paths);
 * entries untouched for SINK_TTL_MS are forgotten first.
 */
#include "fs_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SINK_MAX    20000          /* a .git of a few hundred images' history */
#define SINK_TTL_MS (3600L * 1000) /* long after any copy ends */

struct sink_entry {
	char *path; /* "/.git/objects/ab" */
	bool dir;
	struct timespec mtime;
	long long touched_ms; /* CLOCK_MONOTONIC */
};

struct phfs_sink {
	pthread_mutex_t lock;
	struct sink_entry *ents;
	size_t n, cap;
};

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

bool phfs_sink_path(const char *path)
{
	static const char *const own[] = {TREE_ROOT_ERROR_NAME, TREE_ROOT_STATUS_NAME,
	                                  TREE_ROOT_CHANGES_NAME};
	size_t len;

	if (!path || path[0] != '/' || path[1] != '.')
		return false;
	len = strcspn(path + 1, "/");
	if (len == 1 || (len == 2 && path[2] == '.'))
		return false; /* "." and ".." */
	for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
		if (strlen(own[i]) == len && strncmp(path + 1, own[i], len) == 0)
			return false;
	return true;
}

struct phfs_sink *phfs_sink_new(void)
{
	struct phfs_sink *s = calloc(1, sizeof(*s));

	if (s)
		pthread_mutex_init(&s->lock, NULL);
	return s;
}

void phfs_sink_free(struct phfs_sink *s)
{
	if (!s)
		return;
	for (size_t i = 0; i < s->n; i++)
		free(s->ents[i].path);
	free(s->ents);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

/* Lock held for all below. */
static struct sink_entry *find(struct phfs_sink *s, const char *path)
{
	for (size_t i = 0; i < s->n; i++)
		if (strcmp(s->ents[i].path, path) == 0)
			return &s->ents[i];
	return NULL;
}

/* Whether path is directly or deeply under dir. */
static bool under(const char *path, const char *dir, size_t dir_len)
{
	return strncmp(path, dir, dir_len) == 0 && path[dir_len] == '/';
}

static void drop_at(struct phfs_sink *s, size_t i)
{
	free(s->ents[i].path);
	s->ents[i] = s->ents[--s->n];
}

/* Drops path and everything under it. */
static void drop_tree(struct phfs_sink *s, const char *path)
{
	size_t len = strlen(path);

	for (size_t i = 0; i < s->n;) {
		if (strcmp(s->ents[i].path, path) == 0 || under(s->ents[i].path, path, len))
			drop_at(s, i);
		else
			i++;
	}
}

/* Whether path's parent is the root or a directory here. */
static bool parent_exists(struct phfs_sink *s, const char *path)
{
	const char *slash = strrchr(path, '/');
	struct sink_entry *e;
	char *parent;

	if (slash == path)
		return true;
	parent = strndup(path, (size_t)(slash - path));
	if (!parent)
		return false;
	e = find(s, parent);
	free(parent);
	return e && e->dir;
}

static void forget_stale(struct phfs_sink *s)
{
	long long cutoff = now_ms() - SINK_TTL_MS;

	for (size_t i = 0; i < s->n;) {
		if (s->ents[i].touched_ms < cutoff)
			drop_at(s, i);
		else
			i++;
	}
}

int phfs_sink_stat(struct phfs_sink *s, const char *path, bool *dir, struct timespec *mtime)
{
	struct sink_entry *e;
	int ret = -ENOENT;

	pthread_mutex_lock(&s->lock);
	e = find(s, path);
	if (e) {
		*dir = e->dir;
		*mtime = e->mtime;
		ret = 0;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* Lock held: a new entry (its parent checked by the caller). */
static int add_locked(struct phfs_sink *s, const char *path, bool dir)
{
	struct sink_entry *e;

	if (s->n == SINK_MAX)
		forget_stale(s);
	if (s->n == SINK_MAX)
		return -ENOSPC;
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 64;
		struct sink_entry *ents = realloc(s->ents, cap * sizeof(*ents));

		if (!ents)
			return -ENOMEM;
		s->ents = ents;
		s->cap = cap;
	}
	e = &s->ents[s->n];
	e->path = strdup(path);
	if (!e->path)
		return -ENOMEM;
	e->dir = dir;
	clock_gettime(CLOCK_REALTIME, &e->mtime);
	e->touched_ms = now_ms();
	s->n++;
	return 0;
}

int phfs_sink_make(struct phfs_sink *s, const char *path, bool dir, bool excl)
{
	struct sink_entry *e;
	int ret;

	pthread_mutex_lock(&s->lock);
	e = find(s, path);
	if (e) {
		ret = excl || e->dir || dir ? -EEXIST : 0;
		if (ret == 0)
			e->touched_ms = now_ms();
	} else {
		ret = parent_exists(s, path) ? add_locked(s, path, dir) : -ENOENT;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* Notes live in the same table under keys no path has (paths begin with
 * '/'), so they are never listed nor found as a sink path. */
#define NOTE_PREFIX "N"
#define NOTE_TTL_MS 60000

void phfs_sink_note(struct phfs_sink *s, const char *path)
{
	char key[2 * TREE_NAME_MAX + 8];
	struct sink_entry *e;

	snprintf(key, sizeof(key), NOTE_PREFIX "%s", path);
	pthread_mutex_lock(&s->lock);
	e = find(s, key);
	if (e)
		e->touched_ms = now_ms();
	else
		add_locked(s, key, false); /* at worst the copy's utimens fails */
	pthread_mutex_unlock(&s->lock);
}

bool phfs_sink_noted(struct phfs_sink *s, const char *path)
{
	char key[2 * TREE_NAME_MAX + 8];
	struct sink_entry *e;
	bool noted;

	snprintf(key, sizeof(key), NOTE_PREFIX "%s", path);
	pthread_mutex_lock(&s->lock);
	e = find(s, key);
	noted = e && now_ms() - e->touched_ms < NOTE_TTL_MS;
	pthread_mutex_unlock(&s->lock);
	return noted;
}

int phfs_sink_set_mtime(struct phfs_sink *s, const char *path, const struct timespec *mtime)
{
	struct sink_entry *e;

	pthread_mutex_lock(&s->lock);
	e = find(s, path);
	if (e && mtime)
		e->mtime = *mtime;
	pthread_mutex_unlock(&s->lock);
	return e ? 0 : -ENOENT;
}

int phfs_sink_remove(struct phfs_sink *s, const char *path, bool dir)
{
	struct sink_entry *e;
	size_t len = strlen(path);
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	e = find(s, path);
	if (!e)
		ret = -ENOENT;
	else if (e->dir != dir)
		ret = dir ? -ENOTDIR : -EISDIR;
	for (size_t i = 0; ret == 0 && dir && i < s->n; i++)
		if (under(s->ents[i].path, path, len))
			ret = -ENOTEMPTY;
	if (ret == 0)
		drop_at(s, (size_t)(e - s->ents));
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void phfs_sink_drop(struct phfs_sink *s, const char *path)
{
	pthread_mutex_lock(&s->lock);
	drop_tree(s, path);
	pthread_mutex_unlock(&s->lock);
}

int phfs_sink_rename(struct phfs_sink *s, const char *from, const char *to)
{
	size_t from_len = strlen(from), to_len = strlen(to);
	struct sink_entry *e, *target;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	e = find(s, from);
	target = find(s, to);
	if (!e || !parent_exists(s, to))
		ret = -ENOENT;
	else if (e->dir && under(to, from, from_len))
		ret = -EINVAL; /* into itself */
	else if (target && target->dir != e->dir)
		ret = e->dir ? -ENOTDIR : -EISDIR;
	for (size_t i = 0; ret == 0 && target && target->dir && i < s->n; i++)
		if (under(s->ents[i].path, to, to_len))
			ret = -ENOTEMPTY;
	if (ret == 0 && target != e) {
		if (target)
			drop_at(s, (size_t)(target - s->ents));
		/* Renames the entry and, for a directory, all it holds. */
		for (size_t i = 0; ret == 0 && i < s->n; i++) {
			char *old = s->ents[i].path, *now;
			size_t len = strlen(old);

			if (strcmp(old, from) != 0 && !under(old, from, from_len))
				continue;
			now = malloc(to_len + len - from_len + 1);
			if (!now) {
				ret = -ENOMEM;
				break;
			}
			memcpy(now, to, to_len);
			memcpy(now + to_len, old + from_len, len - from_len + 1);
			free(old);
			s->ents[i].path = now;
			s->ents[i].touched_ms = now_ms();
		}
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int phfs_sink_list(struct phfs_sink *s, const char *dir,
                   void (*add)(void *arg, const char *name, bool is_dir), void *arg)
{
	size_t len = strcmp(dir, "/") == 0 ? 0 : strlen(dir);
	struct sink_entry *e;
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	e = len ? find(s, dir) : NULL;
	if (len && !e)
		ret = -ENOENT;
	else if (e && !e->dir)
		ret = -ENOTDIR;
	for (size_t i = 0; ret == 0 && i < s->n; i++) {
		const char *p = s->ents[i].path;

		if ((len == 0 || under(p, dir, len)) && !strchr(p + len + 1, '/'))
			add(arg, p + len + 1, s->ents[i].dir);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}
