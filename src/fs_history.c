/*
 * fs_history.c - IMAGE/.history/: the versions of spec.json this machine
 * has kept (history.h), read-only, and when a version is kept.
 *
 * Kept: what a writer starts from (the version it is about to change,
 * another admin's edit included), every version this mount saved, and what
 * a reader is shown of an image that already has versions.  Restoring one
 * is an ordinary save: cp IMAGE/.history/T.json IMAGE/spec.json.
 * .history is not listed in the image directory, so cp -r, rsync, tar and
 * diff -r of a mount see only what the server holds.
 */
#include "fs_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/history.h"
#include "primehubfs/log.h"

void phfs_set_history(struct phfs *fs, struct history *h)
{
	fs->history = h;
}

static void keep_failed(struct phfs *fs, const char *image, int ret)
{
	/* Once per mount: a full disk must not flood the log. */
	if (__atomic_exchange_n(&fs->history_warned, true, __ATOMIC_RELAXED))
		return;
	log_warn("cannot keep a version of %s/spec.json in %s: %s (the save itself is not "
	         "affected)",
	         image, history_dir(fs->history), strerror(-ret));
}

void phfs_history_keep(struct phfs *fs, const char *image, const char *text, size_t len,
                       bool always)
{
	int ret;

	if (!fs->history || !text)
		return;
	ret = always ? history_keep(fs->history, image, text, len)
	             : history_keep_if_tracked(fs->history, image, text, len);
	if (ret < 0)
		keep_failed(fs, image, ret);
}

int phfs_history_stat(struct phfs *fs, const struct node *n, struct timespec dir_time,
                      struct stat *st)
{
	struct timespec mtime;
	size_t size;
	int ret;

	if (!fs->history)
		return -ENOENT;
	if (n->kind == NODE_HISTORY) {
		phfs_fill_stat(fs, st, tree_mode(n->kind), 0, dir_time);
		return 0;
	}
	ret = history_stat(fs->history, n->image, n->leaf, &size, &mtime);
	if (ret == 0)
		phfs_fill_stat(fs, st, tree_mode(n->kind), size, mtime);
	return ret;
}

int phfs_history_list(struct phfs *fs, const char *image, void (*add)(void *arg, const char *name),
                      void *arg)
{
	char **names;
	size_t n;
	int ret;

	if (!fs->history)
		return -ENOENT;
	ret = history_list(fs->history, image, &names, &n);
	if (ret < 0)
		return ret;
	for (size_t i = 0; i < n; i++)
		add(arg, names[i]);
	history_names_free(names);
	return 0;
}

int phfs_history_open(struct phfs *fs, struct phfs_handle *h)
{
	if (!fs->history)
		return -ENOENT;
	return history_read(fs->history, h->node.image, h->node.leaf, &h->own_text, &h->ro_len);
}
