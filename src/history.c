/*
 * history.c - versions of spec.json kept on disk (see history.h).
 */
#include "primehubfs/history.h"
#include "primehubfs/image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HISTORY_MAX_TEXT (16 * 1024 * 1024) /* far above any spec.json */
#define NEWEST_SLOTS     4096               /* what was kept last, by image */

struct newest {
	uint64_t image; /* hash of the image name, 0: empty */
	uint64_t text;  /* hash of its newest kept text */
};

struct history {
	pthread_mutex_t lock;
	char *dir;
	unsigned keep;
	/* So that reading an unchanged spec.json costs no disk: a collision
	 * only costs a read of the newest file. */
	struct newest newest[NEWEST_SLOTS];
	/* Images found to have no versions, and when (CLOCK_MONOTONIC ms):
	 * a reader's open asks the disk once a second, not at every open
	 * (grep -r opens every spec.json). */
	struct {
		uint64_t image;
		long long at_ms;
	} untracked[NEWEST_SLOTS];
};

#define UNTRACKED_MS 1000

static long long mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* mkdir -p, mode 0700 for what it makes. */
static int make_dirs(const char *path)
{
	char *copy = strdup(path);
	int ret = 0;

	if (!copy)
		return -ENOMEM;
	for (char *p = copy + 1; ret == 0; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char c = *p;

		*p = '\0';
		if (mkdir(copy, 0700) != 0 && errno != EEXIST)
			ret = -errno;
		*p = c;
		if (c == '\0')
			break;
	}
	free(copy);
	return ret;
}

int history_open(const char *dir, unsigned keep, struct history **out, struct ph_err *err)
{
	struct history *h;
	int ret;

	*out = NULL;
	if (!dir || dir[0] != '/')
		return ph_err_set(err, EINVAL, NULL,
		                  "the history directory must be an absolute path");
	ret = make_dirs(dir);
	if (ret < 0)
		return ph_err_set(err, -ret, NULL, "cannot make the history directory %s: %s", dir,
		                  strerror(-ret));
	h = calloc(1, sizeof(*h));
	if (!h || !(h->dir = strdup(dir))) {
		free(h);
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	}
	pthread_mutex_init(&h->lock, NULL);
	h->keep = keep ? keep : HISTORY_DEFAULT_KEEP;
	*out = h;
	return 0;
}

void history_close(struct history *h)
{
	if (!h)
		return;
	pthread_mutex_destroy(&h->lock);
	free(h->dir);
	free(h);
}

const char *history_dir(const struct history *h)
{
	return h->dir;
}

int history_server_dir(const char *base, const char *endpoint, char **out)
{
	size_t blen = strlen(base), elen = strlen(endpoint);
	char *s = malloc(blen + 1 + elen + 1);

	*out = NULL;
	if (!s)
		return -ENOMEM;
	memcpy(s, base, blen);
	s[blen] = '/';
	for (size_t i = 0; i < elen; i++) {
		char c = endpoint[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '-';

		s[blen + 1 + i] = ok ? c : '_';
	}
	s[blen + 1 + elen] = '\0';
	*out = s;
	return 0;
}

/* Image and version names come from paths: never "..", never a '/'. */
static bool safe_name(const char *name)
{
	return name[0] && name[0] != '.' && !strchr(name, '/') && strlen(name) < 256;
}

static bool version_name(const char *name)
{
	size_t len = strlen(name), slen = strlen(HISTORY_SUFFIX);

	return safe_name(name) && len > slen && strcmp(name + len - slen, HISTORY_SUFFIX) == 0;
}

static char *image_dir(const struct history *h, const char *image)
{
	char *path;

	if (!safe_name(image) || asprintf(&path, "%s/%s", h->dir, image) < 0)
		return NULL;
	return path;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void history_names_free(char **names)
{
	if (!names)
		return;
	for (char **p = names; *p; p++)
		free(*p);
	free(names);
}

/* Lock held.  Versions of image, oldest first (an empty list when none). */
static int list_locked(struct history *h, const char *image, char ***names, size_t *count)
{
	char *dir = image_dir(h, image), **list = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int ret = 0;

	*names = NULL;
	*count = 0;
	if (!dir)
		return -ENOENT;
	d = opendir(dir);
	free(dir);
	if (!d && errno != ENOENT)
		return -errno;
	while (d && (de = readdir(d))) {
		if (!version_name(de->d_name))
			continue;
		if (n + 1 >= cap) {
			char **more = realloc(list, (cap = cap ? cap * 2 : 16) * sizeof(*list));

			if (!more) {
				ret = -ENOMEM;
				break;
			}
			list = more;
		}
		if (!(list[n] = strdup(de->d_name))) {
			ret = -ENOMEM;
			break;
		}
		n++;
	}
	if (d)
		closedir(d);
	if (ret == 0 && !list && !(list = calloc(1, sizeof(*list))))
		ret = -ENOMEM;
	if (ret < 0) {
		for (size_t i = 0; i < n; i++)
			free(list[i]);
		free(list);
		return ret;
	}
	list[n] = NULL;
	qsort(list, n, sizeof(*list), by_name);
	*names = list;
	*count = n;
	return 0;
}

int history_list(struct history *h, const char *image, char ***names, size_t *count)
{
	int ret;

	pthread_mutex_lock(&h->lock);
	ret = list_locked(h, image, names, count);
	pthread_mutex_unlock(&h->lock);
	return ret;
}

static int read_file(const char *path, char **text, size_t *len)
{
	struct stat st;
	char *buf;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	ssize_t got = 0;

	*text = NULL;
	*len = 0;
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > HISTORY_MAX_TEXT) {
		close(fd);
		return -ENOENT;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return -ENOMEM;
	}
	while ((size_t)got < (size_t)st.st_size) {
		ssize_t r = read(fd, buf + got, (size_t)st.st_size - (size_t)got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			break;
		got += r;
	}
	close(fd);
	buf[got] = '\0';
	*text = buf;
	*len = (size_t)got;
	return 0;
}

/* Lock held: whether text equals image's newest kept version. */
static bool is_newest(struct history *h, const char *image, char **names, size_t n,
                      uint64_t text_hash, struct newest *slot)
{
	uint64_t image_hash = ph_hash_bytes(image, strlen(image), 0);
	bool same = false;
	char *path, *old;
	size_t old_len;

	if (slot->image == image_hash)
		return slot->text == text_hash;
	if (n == 0)
		return false;
	if (asprintf(&path, "%s/%s/%s", h->dir, image, names[n - 1]) < 0)
		return false;
	if (read_file(path, &old, &old_len) == 0) {
		same = ph_hash_bytes(old, old_len, 0) == text_hash;
		free(old);
	}
	free(path);
	if (same)
		*slot = (struct newest){image_hash, text_hash};
	return same;
}

/* A name for now after newest (NULL when none): UTC, milliseconds. */
static void name_now(char *out, size_t size, const char *newest)
{
	struct timespec now;
	struct tm tm;
	long ms;

	clock_gettime(CLOCK_REALTIME, &now);
	ms = now.tv_nsec / 1000000;
	for (int i = 0; i < 1000; i++) {
		gmtime_r(&now.tv_sec, &tm);
		snprintf(out, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ" HISTORY_SUFFIX,
		         tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
		         tm.tm_sec, ms);
		if (!newest || strcmp(out, newest) > 0)
			return;
		if (++ms == 1000) { /* two versions within a millisecond */
			ms = 0;
			now.tv_sec++;
		}
	}
}

static int write_all(int fd, const char *text, size_t len)
{
	while (len) {
		ssize_t w = write(fd, text, len);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		text += w;
		len -= (size_t)w;
	}
	return 0;
}

int history_keep(struct history *h, const char *image, const char *text, size_t len)
{
	uint64_t text_hash = ph_hash_bytes(text, len, 0), image_hash;
	char name[64], *dir = NULL, *tmp = NULL, *path = NULL, **names = NULL;
	struct newest *slot;
	size_t n = 0;
	int ret, fd;

	if (!safe_name(image) || len > HISTORY_MAX_TEXT)
		return -EINVAL;
	image_hash = ph_hash_bytes(image, strlen(image), 0);
	pthread_mutex_lock(&h->lock);
	if (h->untracked[image_hash % NEWEST_SLOTS].image == image_hash)
		h->untracked[image_hash % NEWEST_SLOTS].image = 0; /* it will have versions */
	slot = &h->newest[image_hash % NEWEST_SLOTS];
	if (slot->image == image_hash && slot->text == text_hash) {
		pthread_mutex_unlock(&h->lock);
		return 0; /* the usual case: read again, unchanged */
	}
	ret = list_locked(h, image, &names, &n);
	if (ret < 0 || is_newest(h, image, names, n, text_hash, slot))
		goto out;
	dir = image_dir(h, image);
	if (!dir) {
		ret = -ENOMEM;
		goto out;
	}
	ret = make_dirs(dir);
	name_now(name, sizeof(name), n ? names[n - 1] : NULL);
	if (ret < 0 || asprintf(&tmp, "%s/.keeping-%d", dir, (int)gettid()) < 0 ||
	    asprintf(&path, "%s/%s", dir, name) < 0) {
		ret = ret < 0 ? ret : -ENOMEM;
		goto out;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	ret = write_all(fd, text, len);
	if (close(fd) != 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && rename(tmp, path) != 0)
		ret = -errno;
	if (ret < 0) {
		unlink(tmp);
		goto out;
	}
	*slot = (struct newest){image_hash, text_hash};
	/* Bounded: the oldest go (n versions were there before this one). */
	for (size_t i = 0; n + 1 > h->keep && i < n + 1 - h->keep; i++) {
		char *old;

		if (asprintf(&old, "%s/%s", dir, names[i]) >= 0) {
			unlink(old);
			free(old);
		}
	}
out:
	pthread_mutex_unlock(&h->lock);
	history_names_free(names);
	free(dir);
	free(tmp);
	free(path);
	return ret;
}

int history_keep_if_tracked(struct history *h, const char *image, const char *text, size_t len)
{
	uint64_t image_hash = ph_hash_bytes(image, strlen(image), 0);
	struct newest *slot;
	struct stat st;
	char *dir;
	bool tracked;

	if (!safe_name(image))
		return -EINVAL;
	long long now = mono_ms();
	size_t u = image_hash % NEWEST_SLOTS;

	pthread_mutex_lock(&h->lock);
	slot = &h->newest[image_hash % NEWEST_SLOTS];
	tracked = slot->image == image_hash;
	if ((tracked && slot->text == ph_hash_bytes(text, len, 0)) ||
	    (!tracked && h->untracked[u].image == image_hash &&
	     now - h->untracked[u].at_ms < UNTRACKED_MS)) {
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
	pthread_mutex_unlock(&h->lock);
	if (!tracked) {
		dir = image_dir(h, image);
		tracked = dir && stat(dir, &st) == 0;
		free(dir);
		if (!tracked) {
			pthread_mutex_lock(&h->lock);
			h->untracked[u].image = image_hash;
			h->untracked[u].at_ms = now;
			pthread_mutex_unlock(&h->lock);
		}
	}
	return tracked ? history_keep(h, image, text, len) : 0;
}

static char *version_path(const struct history *h, const char *image, const char *name)
{
	char *path;

	if (!safe_name(image) || !version_name(name) ||
	    asprintf(&path, "%s/%s/%s", h->dir, image, name) < 0)
		return NULL;
	return path;
}

int history_stat(struct history *h, const char *image, const char *name, size_t *size,
                 struct timespec *mtime)
{
	char *path = version_path(h, image, name);
	struct stat st;
	int ret = 0;

	if (!path)
		return -ENOENT;
	if (lstat(path, &st) != 0 || !S_ISREG(st.st_mode))
		ret = -ENOENT;
	free(path);
	if (ret == 0) {
		*size = (size_t)st.st_size;
		*mtime = st.st_mtim;
	}
	return ret;
}

int history_read(struct history *h, const char *image, const char *name, char **text, size_t *len)
{
	char *path = version_path(h, image, name);
	int ret;

	*text = NULL;
	*len = 0;
	if (!path)
		return -ENOENT;
	ret = read_file(path, text, len);
	free(path);
	return ret == -ELOOP ? -ENOENT : ret;
}
