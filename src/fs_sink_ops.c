/*
 * fs_sink_ops.c - the FUSE operations on what copy tools write beside the
 * images (fs_sink.c says what and why).  Each operation of fs.c, fs_file.c,
 * fs_dir.c and fs_list.c hands such a path here before it parses it.
 */
#include "fs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "primehubfs/log.h"
#include "primehubfs/spec.h"

static const char *const SINK_REASON =
    "names at the top that begin with a dot are never images; only a copy tool (cp, tar, "
    "rsync) restoring a backup may write them, and what it writes is dropped";

int phfs_sink_getattr_op(struct phfs *fs, const char *path, struct stat *st)
{
	struct timespec mtime;
	bool dir;
	int ret = phfs_sink_stat(fs->sink, path, &dir, &mtime);

	if (ret == 0)
		phfs_fill_stat(fs, st, dir ? S_IFDIR | 0755 : S_IFREG | 0644, 0, mtime);
	return ret;
}

/* Only copy tools make these; anyone else is told why. */
static int refuse_unless_copier(struct phfs *fs, const char *path)
{
	struct ph_err err = {0};

	if (phfs_caller_is_copier(true))
		return 0;
	ph_err_set(&err, EPERM, NULL, "%s", SINK_REASON);
	phfs_refuse(fs, "", path + 1, &err);
	return -EPERM;
}

static int made(struct phfs *fs, const char *path, int ret)
{
	struct ph_err err = {0};

	if (ret == -ENOSPC) {
		ph_err_set(&err, ENOSPC, NULL,
		           "too many files beside the images; leave them out of the copy "
		           "(rsync --exclude .git)");
		phfs_refuse(fs, "", path + 1, &err);
	} else if (ret == 0) {
		log_debug("%s made by a copy: kept locally, never sent", path + 1);
	}
	return ret;
}

int phfs_sink_mkdir_op(struct phfs *fs, const char *path)
{
	struct ph_err err = {0};

	if (phfs_caller_is_copier(true))
		return made(fs, path, phfs_sink_make(fs->sink, path, true, true));
	/* Anyone else making a directory at the top means an image: the
	 * name rule says why this one cannot be. */
	if (strchr(path + 1, '/'))
		return refuse_unless_copier(fs, path);
	spec_check_image_name(path + 1, &err);
	phfs_refuse(fs, "", path + 1, &err);
	return -EINVAL;
}

int phfs_sink_open_op(struct phfs *fs, const char *path, struct fuse_file_info *fi, bool create)
{
	struct node n = {.kind = NODE_SCRATCH};
	struct phfs_handle *h;
	struct timespec mtime;
	bool dir;
	int ret;

	if (create || (fi->flags & O_ACCMODE) != O_RDONLY) {
		ret = refuse_unless_copier(fs, path);
		if (ret < 0)
			return ret;
	}
	if (create)
		ret = made(fs, path,
		           phfs_sink_make(fs->sink, path, false, (fi->flags & O_EXCL) != 0));
	else
		ret = phfs_sink_stat(fs->sink, path, &dir, &mtime);
	if (ret < 0)
		return ret;
	if (!create && dir)
		return -EISDIR;
	h = phfs_handle_new(fs, &n);
	if (!h)
		return -ENOMEM;
	h->sink = true; /* reads find nothing, writes are dropped */
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	return 0;
}

int phfs_sink_remove_op(struct phfs *fs, const char *path, bool dir)
{
	return phfs_sink_remove(fs->sink, path, dir);
}

int phfs_sink_rename_op(struct phfs *fs, const char *from, const char *to)
{
	struct node n;

	if (phfs_sink_path(to))
		return phfs_sink_rename(fs->sink, from, to);
	/* rsync restoring the mount's own .status or .error writes a temporary
	 * file and renames it over: the copy succeeds, nothing changes. */
	if (tree_parse(to, &n) == 0 &&
	    (n.kind == NODE_ROOT_STATUS || n.kind == NODE_ROOT_ERROR ||
	     n.kind == NODE_ROOT_CHANGES) &&
	    phfs_caller_is_copier(true)) {
		bool dir;
		struct timespec mtime;
		int ret = phfs_sink_stat(fs->sink, from, &dir, &mtime);

		if (ret < 0 || dir)
			return ret < 0 ? ret : -EISDIR;
		phfs_sink_drop(fs->sink, from);
		return 0;
	}
	return -EXDEV; /* nothing moves between here and the images */
}
