/*
 * history.h - every version of an image's spec.json this mount has shown or
 * saved, kept on this machine's disk (IMAGE/.history/ in the tree).
 *
 * One directory per server (history_open's dir), one per image below it,
 * one file per version named by when it was kept, in UTC with milliseconds
 * ("2026-12-01T10:02:11.250Z.json"), so names sort in time order.  A version
 * equal to the image's latest kept one is not kept again.  At most `keep`
 * versions per image: the oldest go first.  Files are written to a temporary
 * name and renamed, so a reader never sees half of one; modes 0600/0700.
 *
 * Knows no FUSE, no JSON, no HTTP: texts are bytes.  Thread-safe (one lock).
 * Ownership: the history owns its directory path; returned texts and name
 * lists are the caller's to free (history_names_free for lists).
 */
#ifndef PRIMEHUBFS_HISTORY_H
#define PRIMEHUBFS_HISTORY_H

#include <stddef.h>
#include <time.h>

#include "primehubfs/error.h"

#define HISTORY_DEFAULT_KEEP 100
#define HISTORY_SUFFIX       ".json"

struct history;

/* dir is made (with its parents) when missing.  -errno and err on failure. */
int history_open(const char *dir, unsigned keep, struct history **out, struct ph_err *err);
void history_close(struct history *h);
const char *history_dir(const struct history *h);

/* The directory name of server endpoint under a base directory: the
 * endpoint with every byte other than [A-Za-z0-9.-] made '_'. */
int history_server_dir(const char *base, const char *endpoint, char **out);

/* Keep text as image's newest version (nothing when equal to the newest). */
int history_keep(struct history *h, const char *image, const char *text, size_t len);
/* The same, only for an image that has versions already (a reader's view
 * of an image nobody edited here keeps nothing: a cat of every spec.json of a
 * whole server writes no file). */
int history_keep_if_tracked(struct history *h, const char *image, const char *text, size_t len);

/* image's versions, oldest first: *names is a NULL-terminated array. */
int history_list(struct history *h, const char *image, char ***names, size_t *count);
void history_names_free(char **names);

/* One version: its size and when it was kept; or its bytes. -ENOENT when
 * no such version (names are checked: no path can be read through them). */
int history_stat(struct history *h, const char *image, const char *name, size_t *size,
                 struct timespec *mtime);
int history_read(struct history *h, const char *image, const char *name, char **text, size_t *len);

#endif
