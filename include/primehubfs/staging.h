/*
 * staging.h - what exists on this machine only and is never sent as is:
 * pending images (after mkdir, before the first save of their spec.json) with
 * the groups staged in them, editor scratch files beside spec.json, the
 * .error note of each directory, and the refused draft kept as
 * spec.json.rejected.
 *
 * Scratch files are bounded (STAGING_MAX_FILES per directory,
 * STAGING_MAX_FILE_SIZE each, STAGING_MAX_TOTAL in all, refused drafts
 * included) so a runaway program cannot eat the daemon's memory; past a
 * bound the call fails with EFBIG/ENOSPC, or the oldest drafts go.
 *
 * Thread-safe: one internal mutex for the index; each scratch file has its
 * own lock for its bytes.  Ownership: functions that return a struct scratch
 * return a counted reference the caller drops with scratch_put (an unlinked
 * file lives until its last handle closes, as on any Unix filesystem).
 * Returned strings and lists are copies the caller frees.
 */
#ifndef PRIMEHUBFS_STAGING_H
#define PRIMEHUBFS_STAGING_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>
#include "primehubfs/error.h"
#include "primehubfs/image.h"

#define STAGING_MAX_FILES     64
#define STAGING_MAX_FILE_SIZE (8 * 1024 * 1024)
#define STAGING_MAX_TOTAL     (128 * 1024 * 1024)

struct staging;
struct scratch;

int staging_new(struct staging **out);
void staging_free(struct staging *st);
/* Bytes of STAGING_MAX_TOTAL in use (scratch files and kept drafts). */
size_t staging_bytes_used(struct staging *st);

/* Forget everything staged for an image directory (after rmdir). */
void staging_drop_dir(struct staging *st, const char *image);

/* ---- pending images ---- */
int staging_pending_add(struct staging *st, const char *name); /* -EEXIST */
bool staging_pending_exists(struct staging *st, const char *name);
int staging_pending_remove(struct staging *st, const char *name); /* -ENOENT */
int staging_pending_list(struct staging *st, struct ph_strlist *names);
/* Groups touched in a pending image's groups/: names shown, ids sent. */
int staging_pending_group_add(struct staging *st, const char *image, const char *id,
                              const char *name);
int staging_pending_group_remove(struct staging *st, const char *image, const char *name_or_id);
bool staging_pending_has_group(struct staging *st, const char *image, const char *name_or_id);
/* A group name touched in a pending image that the server does not have
 * (kept until the directory goes): the image is not created while any is.  staging_pending_missing
 * lists them, quoted, into buf and returns how many there are. */
void staging_pending_group_missing(struct staging *st, const char *image, const char *name);
size_t staging_pending_missing(struct staging *st, const char *image, char *buf, size_t size);
int staging_pending_groups(struct staging *st, const char *image, struct ph_strlist *ids,
                           struct ph_strlist *names);

/* ---- scratch files ---- */
struct scratch_stat {
	size_t size;
	mode_t mode;
	struct timespec mtime;
};
/* Create (or, when excl is false and it exists, open) a scratch file. */
int staging_scratch_create(struct staging *st, const char *image, const char *name, mode_t mode,
                           bool excl, struct scratch **out, struct ph_err *err);
int staging_scratch_open(struct staging *st, const char *image, const char *name,
                         struct scratch **out);
int staging_scratch_unlink(struct staging *st, const char *image, const char *name);
/* rename within one directory; replaces an existing target. */
int staging_scratch_rename(struct staging *st, const char *image, const char *from, const char *to);
int staging_scratch_list(struct staging *st, const char *image, struct ph_strlist *names);
bool staging_scratch_exists(struct staging *st, const char *image, const char *name);

struct scratch *scratch_get(struct scratch *s); /* another reference */
void scratch_put(struct scratch *s);
int scratch_read(struct scratch *s, char *buf, size_t size, off_t off);
int scratch_write(struct staging *st, struct scratch *s, const char *buf, size_t size, off_t off,
                  struct ph_err *err);
int scratch_truncate(struct staging *st, struct scratch *s, off_t size, struct ph_err *err);
void scratch_stat(struct scratch *s, struct scratch_stat *out);
void scratch_chmod(struct scratch *s, mode_t mode);
void scratch_touch(struct scratch *s, const struct timespec *mtime); /* NULL: now */
/* A copy of the contents (malloc'd, NUL-terminated). */
int scratch_copy(struct scratch *s, char **data, size_t *len);

/* ---- notes: .error and spec.json.rejected ---- */
/* image "" is the mount root.  The line is stored escaped (ph_escape_line):
 * control characters and invisible format characters from names cannot
 * reach a terminal that shows .error. */
void staging_set_error(struct staging *st, const char *image, const char *line);
void staging_clear_error(struct staging *st, const char *image);
int staging_get_error(struct staging *st, const char *image, char **text, size_t *len);
/* Whether the note exists, and its length (no copy). */
bool staging_has_error(struct staging *st, const char *image, size_t *len);
bool staging_has_rejected(struct staging *st, const char *image, size_t *len);
/* Keep text as image's spec.json.rejected (replacing its previous one).
 * Drafts count in STAGING_MAX_TOTAL with the scratch files: when this one
 * does not fit, the oldest drafts of other directories are dropped first
 * (each such directory's .error says so).  Returns how many were dropped,
 * or -ENOSPC (scratch files hold the memory) / -ENOMEM: then no draft is
 * kept for image. */
int staging_set_rejected(struct staging *st, const char *image, const char *text, size_t len);
void staging_clear_rejected(struct staging *st, const char *image);
int staging_get_rejected(struct staging *st, const char *image, char **text, size_t *len);

/* ---- the rm -r guard (see fs_dir.c) ---- */
void staging_note_spec_unlink(struct staging *st, const char *image, pid_t pid);
bool staging_recent_spec_unlink(struct staging *st, const char *image, pid_t pid, long within_ms);

#endif
