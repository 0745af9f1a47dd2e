/* staging.c - see primehubfs/staging.h. */
#include "primehubfs/staging.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct scratch {
	int refs;              /* atomic */
	struct staging *owner; /* whose memory budget the buffer is charged to */
	pthread_mutex_t lock;
	char *data;
	size_t len, cap;
	mode_t mode;
	struct timespec mtime;
};

struct scratch_entry {
	char *name;
	struct scratch *file;
};

enum note_kind { NOTE_ERROR, NOTE_REJECTED, NOTE_KINDS };

struct note {
	char *text;
	size_t len;
	unsigned long long seq; /* drafts: when kept, to drop the oldest first */
};

/* Everything staged for one directory ("" is the root). */
struct stage_dir {
	char *image;
	bool pending;
	struct ph_strlist group_ids, group_names;
	/* Group names touched here that the server does not have (a copy
	 * from another server): the image is not created while any is. */
	struct ph_strlist missing_groups;
	struct scratch_entry *files;
	size_t nfiles;
	struct note notes[NOTE_KINDS];
	pid_t unlink_pid;
	struct timespec unlink_time;
};

struct staging {
	pthread_mutex_t lock;
	struct stage_dir **dirs;
	size_t ndirs;
	/* atomic: bytes of live scratch buffers and kept drafts, against
	 * STAGING_MAX_TOTAL */
	size_t total_bytes;
	unsigned long long draft_seq; /* lock held */
};

/* ---- scratch buffers ---- */

static struct scratch *scratch_new(struct staging *owner, mode_t mode)
{
	struct scratch *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->refs = 1;
	s->owner = owner;
	s->mode = mode;
	pthread_mutex_init(&s->lock, NULL);
	clock_gettime(CLOCK_REALTIME, &s->mtime);
	return s;
}

struct scratch *scratch_get(struct scratch *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	return s;
}

void scratch_put(struct scratch *s)
{
	if (!s || __atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* Charged until the last handle goes, as an unlinked file's blocks are. */
	__atomic_sub_fetch(&s->owner->total_bytes, s->cap, __ATOMIC_RELAXED);
	pthread_mutex_destroy(&s->lock);
	free(s->data);
	free(s);
}

int scratch_read(struct scratch *s, char *buf, size_t size, off_t off)
{
	size_t n = 0;

	pthread_mutex_lock(&s->lock);
	if (off >= 0 && (size_t)off < s->len) {
		n = s->len - (size_t)off;
		if (n > size)
			n = size;
		memcpy(buf, s->data + off, n);
	}
	pthread_mutex_unlock(&s->lock);
	return (int)n;
}

/* Grow s to hold `want` bytes, charging the staging-wide budget. */
static int scratch_reserve(struct staging *st, struct scratch *s, size_t want, struct ph_err *err)
{
	size_t cap;
	char *data;

	if (want > STAGING_MAX_FILE_SIZE)
		return ph_err_set(err, EFBIG, NULL,
		                  "scratch files are kept in memory and limited to %d MiB",
		                  STAGING_MAX_FILE_SIZE / (1024 * 1024));
	if (want <= s->cap)
		return 0;
	cap = s->cap ? s->cap : 4096;
	while (cap < want)
		cap *= 2;
	if (cap > STAGING_MAX_FILE_SIZE)
		cap = STAGING_MAX_FILE_SIZE;
	if (__atomic_add_fetch(&st->total_bytes, cap - s->cap, __ATOMIC_RELAXED) >
	    STAGING_MAX_TOTAL) {
		__atomic_sub_fetch(&st->total_bytes, cap - s->cap, __ATOMIC_RELAXED);
		return ph_err_set(err, ENOSPC, NULL,
		                  "scratch files on this mount already hold %d MiB of memory",
		                  STAGING_MAX_TOTAL / (1024 * 1024));
	}
	data = realloc(s->data, cap);
	if (!data) {
		__atomic_sub_fetch(&st->total_bytes, cap - s->cap, __ATOMIC_RELAXED);
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	}
	s->data = data;
	s->cap = cap;
	return 0;
}

int scratch_write(struct staging *st, struct scratch *s, const char *buf, size_t size, off_t off,
                  struct ph_err *err)
{
	size_t end;
	int ret;

	if (off < 0)
		return ph_err_set(err, EINVAL, NULL, "negative offset");
	end = (size_t)off + size;
	pthread_mutex_lock(&s->lock);
	ret = scratch_reserve(st, s, end, err);
	if (ret == 0) {
		if ((size_t)off > s->len)
			memset(s->data + s->len, 0,
			       (size_t)off - s->len); /* a hole reads as zeros */
		memcpy(s->data + off, buf, size);
		if (end > s->len)
			s->len = end;
		clock_gettime(CLOCK_REALTIME, &s->mtime);
		ret = (int)size;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

int scratch_truncate(struct staging *st, struct scratch *s, off_t size, struct ph_err *err)
{
	int ret = 0;

	if (size < 0)
		return ph_err_set(err, EINVAL, NULL, "negative size");
	pthread_mutex_lock(&s->lock);
	if ((size_t)size > s->len) {
		ret = scratch_reserve(st, s, (size_t)size, err);
		if (ret == 0)
			memset(s->data + s->len, 0, (size_t)size - s->len);
	}
	if (ret == 0) {
		s->len = (size_t)size;
		clock_gettime(CLOCK_REALTIME, &s->mtime);
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

void scratch_stat(struct scratch *s, struct scratch_stat *out)
{
	pthread_mutex_lock(&s->lock);
	out->size = s->len;
	out->mode = s->mode;
	out->mtime = s->mtime;
	pthread_mutex_unlock(&s->lock);
}

void scratch_chmod(struct scratch *s, mode_t mode)
{
	pthread_mutex_lock(&s->lock);
	s->mode = mode & 07777;
	pthread_mutex_unlock(&s->lock);
}

void scratch_touch(struct scratch *s, const struct timespec *mtime)
{
	pthread_mutex_lock(&s->lock);
	if (mtime)
		s->mtime = *mtime;
	else
		clock_gettime(CLOCK_REALTIME, &s->mtime);
	pthread_mutex_unlock(&s->lock);
}

int scratch_copy(struct scratch *s, char **data, size_t *len)
{
	int ret = 0;

	pthread_mutex_lock(&s->lock);
	*data = malloc(s->len + 1);
	if (*data) {
		if (s->len)
			memcpy(*data, s->data, s->len);
		(*data)[s->len] = '\0';
		*len = s->len;
	} else {
		ret = -ENOMEM;
	}
	pthread_mutex_unlock(&s->lock);
	return ret;
}

/* ---- directory records (lock held) ---- */

static struct stage_dir *find_dir(struct staging *st, const char *image)
{
	for (size_t i = 0; i < st->ndirs; i++)
		if (strcmp(st->dirs[i]->image, image) == 0)
			return st->dirs[i];
	return NULL;
}

static struct stage_dir *get_dir(struct staging *st, const char *image)
{
	struct stage_dir *d = find_dir(st, image), **dirs;

	if (d)
		return d;
	dirs = realloc(st->dirs, (st->ndirs + 1) * sizeof(*dirs));
	if (!dirs)
		return NULL;
	st->dirs = dirs;
	d = calloc(1, sizeof(*d));
	if (!d || !(d->image = strdup(image))) {
		free(d);
		return NULL;
	}
	st->dirs[st->ndirs++] = d;
	return d;
}

static void free_dir(struct staging *st, struct stage_dir *d)
{
	__atomic_sub_fetch(&st->total_bytes, d->notes[NOTE_REJECTED].len, __ATOMIC_RELAXED);
	for (size_t i = 0; i < d->nfiles; i++) {
		free(d->files[i].name);
		scratch_put(d->files[i].file);
	}
	free(d->files);
	ph_strlist_free(&d->group_ids);
	ph_strlist_free(&d->group_names);
	ph_strlist_free(&d->missing_groups);
	for (int k = 0; k < NOTE_KINDS; k++)
		free(d->notes[k].text);
	free(d->image);
	free(d);
}

/* Drop a record that holds nothing any more, so the index stays small. */
static void maybe_drop_dir(struct staging *st, struct stage_dir *d)
{
	if (d->pending || d->nfiles || d->notes[NOTE_ERROR].text || d->notes[NOTE_REJECTED].text ||
	    d->unlink_pid)
		return;
	for (size_t i = 0; i < st->ndirs; i++) {
		if (st->dirs[i] == d) {
			st->dirs[i] = st->dirs[--st->ndirs];
			free_dir(st, d);
			return;
		}
	}
}

static struct scratch_entry *find_file(struct stage_dir *d, const char *name)
{
	for (size_t i = 0; d && i < d->nfiles; i++)
		if (strcmp(d->files[i].name, name) == 0)
			return &d->files[i];
	return NULL;
}

/* Remove an entry from d (the file lives on while handles hold it; its
 * memory stays charged until then, which is what the budget should see). */
static void remove_file(struct staging *st, struct stage_dir *d, struct scratch_entry *e)
{
	size_t i = (size_t)(e - d->files);

	(void)st;
	free(e->name);
	scratch_put(e->file);
	d->files[i] = d->files[--d->nfiles];
}

int staging_new(struct staging **out)
{
	struct staging *st = calloc(1, sizeof(*st));

	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	*out = st;
	return 0;
}

size_t staging_bytes_used(struct staging *st)
{
	return __atomic_load_n(&st->total_bytes, __ATOMIC_RELAXED);
}

void staging_free(struct staging *st)
{
	if (!st)
		return;
	for (size_t i = 0; i < st->ndirs; i++)
		free_dir(st, st->dirs[i]);
	free(st->dirs);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

void staging_drop_dir(struct staging *st, const char *image)
{
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->ndirs; i++) {
		if (strcmp(st->dirs[i]->image, image) == 0) {
			struct stage_dir *d = st->dirs[i];

			st->dirs[i] = st->dirs[--st->ndirs];
			free_dir(st, d);
			break;
		}
	}
	pthread_mutex_unlock(&st->lock);
}

/* ---- pending ---- */

int staging_pending_add(struct staging *st, const char *name)
{
	struct stage_dir *d;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	d = get_dir(st, name);
	if (!d)
		ret = -ENOMEM;
	else if (d->pending)
		ret = -EEXIST;
	else
		d->pending = true;
	pthread_mutex_unlock(&st->lock);
	return ret;
}

bool staging_pending_exists(struct staging *st, const char *name)
{
	struct stage_dir *d;
	bool yes;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, name);
	yes = d && d->pending;
	pthread_mutex_unlock(&st->lock);
	return yes;
}

int staging_pending_remove(struct staging *st, const char *name)
{
	struct stage_dir *d;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, name);
	if (!d || !d->pending) {
		ret = -ENOENT;
	} else {
		d->pending = false;
		ph_strlist_free(&d->group_ids);
		ph_strlist_free(&d->group_names);
		ph_strlist_free(&d->missing_groups);
		maybe_drop_dir(st, d);
	}
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int staging_pending_list(struct staging *st, struct ph_strlist *names)
{
	int ret = 0;

	*names = (struct ph_strlist){0};
	pthread_mutex_lock(&st->lock);
	for (size_t i = 0; i < st->ndirs && ret == 0; i++)
		if (st->dirs[i]->pending)
			ret = ph_strlist_append(names, st->dirs[i]->image);
	pthread_mutex_unlock(&st->lock);
	return ret;
}

static bool strlist_has(const struct ph_strlist *l, const char *s, size_t *at)
{
	for (size_t i = 0; i < l->n; i++) {
		if (strcmp(l->items[i], s) == 0) {
			if (at)
				*at = i;
			return true;
		}
	}
	return false;
}

static void strlist_remove_at(struct ph_strlist *l, size_t i)
{
	free(l->items[i]);
	memmove(&l->items[i], &l->items[i + 1], (l->n - i - 1) * sizeof(*l->items));
	l->n--;
}

int staging_pending_group_add(struct staging *st, const char *image, const char *id,
                              const char *name)
{
	struct stage_dir *d;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	if (!d || !d->pending)
		ret = -ENOENT;
	else if (!strlist_has(&d->group_ids, id, NULL)) {
		ret = ph_strlist_append(&d->group_ids, id);
		if (ret == 0) {
			ret = ph_strlist_append(&d->group_names, name);
			if (ret < 0)
				strlist_remove_at(&d->group_ids, d->group_ids.n - 1);
		}
	}
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int staging_pending_group_remove(struct staging *st, const char *image, const char *name_or_id)
{
	struct stage_dir *d;
	size_t at;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	/* The entry is shown by name; its id names it too, as for touch. */
	if (!d || !d->pending ||
	    !(strlist_has(&d->group_names, name_or_id, &at) ||
	      strlist_has(&d->group_ids, name_or_id, &at))) {
		ret = -ENOENT;
	} else {
		strlist_remove_at(&d->group_names, at);
		strlist_remove_at(&d->group_ids, at);
	}
	pthread_mutex_unlock(&st->lock);
	return ret;
}

void staging_pending_group_missing(struct staging *st, const char *image, const char *name)
{
	struct stage_dir *d;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	if (d && d->pending && !strlist_has(&d->missing_groups, name, NULL))
		(void)ph_strlist_append(&d->missing_groups, name); /* ENOMEM: not kept */
	pthread_mutex_unlock(&st->lock);
}

size_t staging_pending_missing(struct staging *st, const char *image, char *buf, size_t size)
{
	struct stage_dir *d;
	size_t n = 0, used = 0;

	if (size)
		buf[0] = '\0';
	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	if (d && d->pending) {
		n = d->missing_groups.n;
		for (size_t i = 0; i < n && used + 1 < size; i++)
			used += (size_t)snprintf(buf + used, size - used, "%s'%s'", i ? ", " : "",
			                         d->missing_groups.items[i]);
	}
	pthread_mutex_unlock(&st->lock);
	return n;
}

bool staging_pending_has_group(struct staging *st, const char *image, const char *name_or_id)
{
	struct stage_dir *d;
	bool yes;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	yes = d && d->pending &&
	      (strlist_has(&d->group_names, name_or_id, NULL) ||
	       strlist_has(&d->group_ids, name_or_id, NULL));
	pthread_mutex_unlock(&st->lock);
	return yes;
}

int staging_pending_groups(struct staging *st, const char *image, struct ph_strlist *ids,
                           struct ph_strlist *names)
{
	struct stage_dir *d;
	int ret = 0;

	*ids = (struct ph_strlist){0};
	*names = (struct ph_strlist){0};
	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	if (!d || !d->pending)
		ret = -ENOENT;
	else if (ph_strlist_dup(ids, &d->group_ids) || ph_strlist_dup(names, &d->group_names))
		ret = -ENOMEM;
	pthread_mutex_unlock(&st->lock);
	if (ret < 0) {
		ph_strlist_free(ids);
		ph_strlist_free(names);
	}
	return ret;
}

/* ---- scratch index ---- */

int staging_scratch_create(struct staging *st, const char *image, const char *name, mode_t mode,
                           bool excl, struct scratch **out, struct ph_err *err)
{
	struct stage_dir *d;
	struct scratch_entry *e, *files;
	int ret = 0;

	*out = NULL;
	pthread_mutex_lock(&st->lock);
	d = get_dir(st, image);
	if (!d) {
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
		goto out;
	}
	e = find_file(d, name);
	if (e) {
		if (excl)
			ret = ph_err_set(err, EEXIST, NULL, "%s exists", name);
		else
			*out = scratch_get(e->file);
		goto out;
	}
	if (d->nfiles >= STAGING_MAX_FILES) {
		ret = ph_err_set(err, ENOSPC, NULL,
		                 "an image directory holds at most %d scratch files (they are "
		                 "kept in memory, never sent to PrimeHub)",
		                 STAGING_MAX_FILES);
		goto out;
	}
	files = realloc(d->files, (d->nfiles + 1) * sizeof(*files));
	if (!files) {
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
		goto out;
	}
	d->files = files;
	e = &d->files[d->nfiles];
	e->name = strdup(name);
	e->file = scratch_new(st, mode & 07777);
	if (!e->name || !e->file) {
		free(e->name);
		scratch_put(e->file);
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
		goto out;
	}
	d->nfiles++;
	*out = scratch_get(e->file);
out:
	if (d && ret < 0)
		maybe_drop_dir(st, d);
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int staging_scratch_open(struct staging *st, const char *image, const char *name,
                         struct scratch **out)
{
	struct scratch_entry *e;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	e = find_file(find_dir(st, image), name);
	if (e)
		*out = scratch_get(e->file);
	else
		ret = -ENOENT;
	pthread_mutex_unlock(&st->lock);
	return ret;
}

bool staging_scratch_exists(struct staging *st, const char *image, const char *name)
{
	bool yes;

	pthread_mutex_lock(&st->lock);
	yes = find_file(find_dir(st, image), name) != NULL;
	pthread_mutex_unlock(&st->lock);
	return yes;
}

int staging_scratch_unlink(struct staging *st, const char *image, const char *name)
{
	struct stage_dir *d;
	struct scratch_entry *e;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	e = find_file(d, name);
	if (!e) {
		ret = -ENOENT;
	} else {
		remove_file(st, d, e);
		maybe_drop_dir(st, d);
	}
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int staging_scratch_rename(struct staging *st, const char *image, const char *from, const char *to)
{
	struct stage_dir *d;
	struct scratch_entry *src, *dst;
	char *name;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	src = find_file(d, from);
	if (!src) {
		ret = -ENOENT;
		goto out;
	}
	if (strcmp(from, to) == 0)
		goto out;
	name = strdup(to);
	if (!name) {
		ret = -ENOMEM;
		goto out;
	}
	free(src->name);
	src->name = name;
	dst = NULL;
	for (size_t i = 0; i < d->nfiles; i++)
		if (&d->files[i] != src && strcmp(d->files[i].name, to) == 0)
			dst = &d->files[i];
	if (dst)
		remove_file(st, d, dst); /* may move src; it is found by name from now on */
out:
	pthread_mutex_unlock(&st->lock);
	return ret;
}

int staging_scratch_list(struct staging *st, const char *image, struct ph_strlist *names)
{
	struct stage_dir *d;
	int ret = 0;

	*names = (struct ph_strlist){0};
	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	for (size_t i = 0; d && i < d->nfiles && ret == 0; i++)
		ret = ph_strlist_append(names, d->files[i].name);
	pthread_mutex_unlock(&st->lock);
	if (ret < 0)
		ph_strlist_free(names);
	return ret;
}

/* ---- notes: .error and spec.json.rejected ---- */

static int set_text(struct note *n, const char *text, size_t len)
{
	char *copy = malloc(len + 1);

	if (!copy)
		return -ENOMEM;
	memcpy(copy, text, len);
	copy[len] = '\0';
	free(n->text);
	n->text = copy;
	n->len = len;
	return 0;
}

static void note_set(struct staging *st, const char *image, enum note_kind kind, const char *text,
                     size_t len)
{
	struct stage_dir *d;

	pthread_mutex_lock(&st->lock);
	d = get_dir(st, image);
	if (d)
		set_text(&d->notes[kind], text, len);
	pthread_mutex_unlock(&st->lock);
}

static void note_clear(struct staging *st, const char *image, enum note_kind kind)
{
	struct stage_dir *d;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	if (d && d->notes[kind].text) {
		if (kind == NOTE_REJECTED)
			__atomic_sub_fetch(&st->total_bytes, d->notes[kind].len, __ATOMIC_RELAXED);
		free(d->notes[kind].text);
		d->notes[kind] = (struct note){0};
		maybe_drop_dir(st, d);
	}
	pthread_mutex_unlock(&st->lock);
}

/* A copy of a note; *text is NULL when there is none. */
static int note_get(struct staging *st, const char *image, enum note_kind kind, char **text,
                    size_t *len)
{
	struct stage_dir *d;
	const struct note *n;
	int ret = 0;

	*text = NULL;
	*len = 0;
	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	n = d ? &d->notes[kind] : NULL;
	if (n && n->text) {
		*text = malloc(n->len + 1);
		if (*text) {
			memcpy(*text, n->text, n->len + 1);
			*len = n->len;
		} else {
			ret = -ENOMEM;
		}
	}
	pthread_mutex_unlock(&st->lock);
	return ret;
}

/* Whether a note exists, and its length, without copying it (stat path). */
static bool note_len(struct staging *st, const char *image, enum note_kind kind, size_t *len)
{
	struct stage_dir *d;
	bool yes;

	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	yes = d && d->notes[kind].text;
	*len = yes ? d->notes[kind].len : 0;
	pthread_mutex_unlock(&st->lock);
	return yes;
}

bool staging_has_error(struct staging *st, const char *image, size_t *len)
{
	return note_len(st, image, NOTE_ERROR, len);
}

bool staging_has_rejected(struct staging *st, const char *image, size_t *len)
{
	return note_len(st, image, NOTE_REJECTED, len);
}

void staging_set_error(struct staging *st, const char *image, const char *line)
{
	/* An escape is at most 4 bytes for 1 (\xNN). */
	size_t size = 4 * strlen(line) + 2, n;
	char *text = malloc(size);

	if (!text)
		return;
	/* Names in the line come from users and from the server: a newline or
	 * an ANSI escape in one must not forge a line or drive a terminal. */
	n = ph_escape_line(line, text, size - 1);
	text[n] = '\n'; /* a file of one line */
	note_set(st, image, NOTE_ERROR, text, n + 1);
	free(text);
}

void staging_clear_error(struct staging *st, const char *image)
{
	note_clear(st, image, NOTE_ERROR);
}

int staging_get_error(struct staging *st, const char *image, char **text, size_t *len)
{
	return note_get(st, image, NOTE_ERROR, text, len);
}

/* Add a line to d's .error (lock held). */
static void error_append(struct stage_dir *d, const char *line)
{
	struct note *n = &d->notes[NOTE_ERROR];
	size_t add = strlen(line);
	char *text = realloc(n->text, n->len + add + 2);

	if (!text)
		return;
	memcpy(text + n->len, line, add);
	text[n->len + add] = '\n';
	text[n->len + add + 1] = '\0';
	n->text = text;
	n->len += add + 1;
}

/* Drop the oldest kept draft other than keep's (lock held).  false: none. */
static bool drop_oldest_draft(struct staging *st, const struct stage_dir *keep)
{
	struct stage_dir *oldest = NULL;
	struct note *n;

	for (size_t i = 0; i < st->ndirs; i++) {
		struct stage_dir *d = st->dirs[i];

		if (d != keep && d->notes[NOTE_REJECTED].text &&
		    (!oldest || d->notes[NOTE_REJECTED].seq < oldest->notes[NOTE_REJECTED].seq))
			oldest = d;
	}
	if (!oldest)
		return false;
	n = &oldest->notes[NOTE_REJECTED];
	__atomic_sub_fetch(&st->total_bytes, n->len, __ATOMIC_RELAXED);
	free(n->text);
	*n = (struct note){0};
	error_append(oldest, "spec.json.rejected (the text of a refused save) was dropped to make "
	                     "room for newer ones: refused drafts and scratch files share "
	                     "128 MiB of memory, and the oldest drafts go first");
	return true;
}

int staging_set_rejected(struct staging *st, const char *image, const char *text, size_t len)
{
	struct stage_dir *d;
	struct note *n;
	size_t dropped = 0;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	d = get_dir(st, image);
	if (!d) {
		ret = -ENOMEM;
		goto out;
	}
	n = &d->notes[NOTE_REJECTED];
	/* This directory's previous draft goes in any case. */
	if (n->text) {
		__atomic_sub_fetch(&st->total_bytes, n->len, __ATOMIC_RELAXED);
		free(n->text);
		*n = (struct note){0};
	}
	while (__atomic_load_n(&st->total_bytes, __ATOMIC_RELAXED) + len > STAGING_MAX_TOTAL &&
	       drop_oldest_draft(st, d))
		dropped++;
	if (__atomic_add_fetch(&st->total_bytes, len, __ATOMIC_RELAXED) > STAGING_MAX_TOTAL) {
		__atomic_sub_fetch(&st->total_bytes, len, __ATOMIC_RELAXED);
		ret = -ENOSPC; /* scratch files hold the memory: the draft is not kept */
	} else if (set_text(n, text, len) < 0) {
		__atomic_sub_fetch(&st->total_bytes, len, __ATOMIC_RELAXED);
		ret = -ENOMEM;
	} else {
		n->seq = ++st->draft_seq;
		ret = (int)(dropped > INT32_MAX ? INT32_MAX : dropped);
	}
	if (ret < 0)
		maybe_drop_dir(st, d);
out:
	pthread_mutex_unlock(&st->lock);
	return ret;
}

void staging_clear_rejected(struct staging *st, const char *image)
{
	note_clear(st, image, NOTE_REJECTED);
}

int staging_get_rejected(struct staging *st, const char *image, char **text, size_t *len)
{
	return note_get(st, image, NOTE_REJECTED, text, len);
}

/* ---- rm -r guard ---- */

void staging_note_spec_unlink(struct staging *st, const char *image, pid_t pid)
{
	struct stage_dir *d;

	pthread_mutex_lock(&st->lock);
	d = get_dir(st, image);
	if (d) {
		d->unlink_pid = pid;
		clock_gettime(CLOCK_MONOTONIC, &d->unlink_time);
	}
	pthread_mutex_unlock(&st->lock);
}

bool staging_recent_spec_unlink(struct staging *st, const char *image, pid_t pid, long within_ms)
{
	struct stage_dir *d;
	struct timespec now;
	bool yes = false;

	clock_gettime(CLOCK_MONOTONIC, &now);
	pthread_mutex_lock(&st->lock);
	d = find_dir(st, image);
	if (d && d->unlink_pid == pid) {
		long long ms = (long long)(now.tv_sec - d->unlink_time.tv_sec) * 1000 +
		               (now.tv_nsec - d->unlink_time.tv_nsec) / 1000000;
		yes = ms <= within_ms;
	}
	pthread_mutex_unlock(&st->lock);
	return yes;
}
