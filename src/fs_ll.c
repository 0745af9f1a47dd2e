/*
 * fs_ll.c - the FUSE glue: libfuse's low-level operations, each turned
 * into the path-based operation of fs.c, fs_file.c, fs_list.c and fs_dir.c.
 *
 * Why low-level: the kernel keeps a directory's listing in its page cache
 * only when told to, and libfuse's high-level API drops that flag before
 * 3.16.1 (Debian 12 has 3.14).  Here OPENDIR is answered ENOSYS, which
 * Linux takes as "no directory handles, and keep every listing": an
 * unchanged directory is then listed from the kernel's cache, with no
 * OPENDIR, READDIR or RELEASEDIR (a warm `find` of 10,000 images was 4
 * requests a directory).  The kernel drops a cached listing when the
 * directory's mtime changes (it asks for it again once its attributes
 * expire, or we invalidate them) or when the notifier invalidates the
 * directory; docs/fs-conventions.md says how each kind of change reaches
 * it.
 *
 * Inode numbers and paths: inodes.c.  The request being served is
 * thread-local (phfs_ctx, phfs_caller_pid, phfs_caller_interrupted), so the
 * layers below need no libfuse type to ask who is calling.
 */
#include "fs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/inodes.h"
#include "primehubfs/log.h"

#define PATH_BUF (4 * TREE_NAME_MAX + 64)
/* The inode number of an entry listed without one (what libfuse's
 * high-level API gives): not 0, which some readers skip. */
#define UNKNOWN_INO 0xffffffffu

/* The request this thread serves: set by enter(), cleared before the
 * reply (a request is freed once answered). */
static _Thread_local fuse_req_t cur_req;
static _Thread_local pid_t cur_pid;
static struct phfs *the_fs; /* one mount per process */

struct phfs *phfs_ctx(void)
{
	return the_fs;
}

pid_t phfs_caller_pid(void)
{
	return cur_req ? cur_pid : 0;
}

int phfs_caller_interrupted(void)
{
	return cur_req ? fuse_req_interrupted(cur_req) : 0;
}

static struct phfs *enter(fuse_req_t req)
{
	const struct fuse_ctx *c = fuse_req_ctx(req);

	cur_req = req;
	cur_pid = c ? c->pid : 0;
	return fuse_req_userdata(req);
}

static void leave(void)
{
	cur_req = NULL;
	cur_pid = 0;
}

static void reply_err(fuse_req_t req, int ret)
{
	leave();
	fuse_reply_err(req, ret < 0 ? -ret : ret);
}

static double ttl_s(const struct phfs *fs)
{
	return (double)fs->ttl_ms / 1000.0;
}

/* ---- listings the kernel cannot see change ---- */

/* After a request that may have changed what a directory lists beyond its
 * own entry (a refused save writes IMAGE/.error, a refused mkdir the
 * top's, a save adds a version to .history, a build makes build.log):
 * the kernel forgets the attributes of the directories involved, so the
 * next listing asks for their mtime and drops a cached listing that
 * changed (phfs_dir_mtime).  Attributes only: safe from a request thread
 * (no page lock is taken). */
static void listings_may_have_changed(struct phfs *fs, const char *path)
{
	struct node n;
	char dir[PATH_BUF];
	static const char *const subdirs[] = {"", "/.history", "/groups"};

	if (!fs->se)
		return;
	fuse_lowlevel_notify_inval_inode(fs->se, INODES_ROOT, -1, 0);
	if (!path || tree_parse(path, &n) < 0 || !n.image[0])
		return;
	for (size_t i = 0; i < sizeof(subdirs) / sizeof(subdirs[0]); i++) {
		uint64_t ino;

		snprintf(dir, sizeof(dir), "/%s%s", n.image, subdirs[i]);
		ino = inodes_find(fs->inodes, dir);
		if (ino)
			fuse_lowlevel_notify_inval_inode(fs->se, ino, -1, 0);
	}
}

/* Called on the notifier thread only (fs_notify.c says why). */
void phfs_kernel_invalidate(struct phfs *fs, const char *path)
{
	uint64_t ino = path ? inodes_find(fs->inodes, path) : INODES_ROOT;

	if (ino && fs->se)
		fuse_lowlevel_notify_inval_inode(fs->se, ino, 0, 0);
}

/* ---- names ---- */

static int path_of(struct phfs *fs, fuse_ino_t ino, char *buf)
{
	return inodes_path(fs->inodes, ino, buf, PATH_BUF);
}

/* A handle's operations run on detached files too (unlinked while open):
 * their path is then NULL, as libfuse's high-level API passes it. */
static const char *path_or_null(struct phfs *fs, fuse_ino_t ino, char *buf)
{
	return path_of(fs, ino, buf) == 0 ? buf : NULL;
}

static int child_path(struct phfs *fs, fuse_ino_t parent, const char *name, char *buf)
{
	int ret = inodes_child_path(fs->inodes, parent, name, buf, PATH_BUF);

	return ret == -ESTALE ? -ENOENT : ret;
}

static void fill_entry(struct phfs *fs, struct fuse_entry_param *e, uint64_t ino,
                       const struct stat *st)
{
	memset(e, 0, sizeof(*e));
	e->ino = ino;
	e->attr = *st;
	e->attr.st_ino = ino;
	e->attr_timeout = ttl_s(fs);
	e->entry_timeout = ttl_s(fs);
}

/* Number name in parent for the kernel and answer with its attributes. */
static void reply_entry(fuse_req_t req, struct phfs *fs, fuse_ino_t parent, const char *name,
                        const struct stat *st)
{
	struct fuse_entry_param e;
	uint64_t ino = inodes_ref(fs->inodes, parent, name);

	if (!ino) {
		reply_err(req, -ENOMEM);
		return;
	}
	fill_entry(fs, &e, ino, st);
	leave();
	if (fuse_reply_entry(req, &e) != 0)
		inodes_forget(fs->inodes, ino, 1); /* the kernel never got it */
}

static void ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct phfs *fs = enter(req);
	char path[PATH_BUF];
	struct stat st;
	int ret = child_path(fs, parent, name, path);

	if (ret == 0)
		ret = phfs_getattr(path, &st, NULL);
	if (ret < 0)
		reply_err(req, ret); /* no negative entry: a name made elsewhere shows at once */
	else
		reply_entry(req, fs, parent, name, &st);
}

/* The kernel evicted entries of these directories (memory pressure,
 * drop_caches): the listings it keeps of them now name entries it has no
 * attributes for, so `ls -l` would look each one up.  Have it drop those
 * listings (queued: page invalidation is the notifier's), so the next one
 * is a READDIRPLUS with every entry's attributes. */
static void forgotten_in(struct phfs *fs, const uint64_t *dirs, size_t n)
{
	char path[PATH_BUF];

	for (size_t i = 0; i < n; i++)
		if (inodes_path(fs->inodes, dirs[i], path, sizeof(path)) == 0)
			phfs_notifier_push(fs->notifier, path);
}

static void ll_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
	struct phfs *fs = fuse_req_userdata(req);
	uint64_t dir = inodes_forget(fs->inodes, ino, nlookup);

	fuse_reply_none(req);
	if (dir)
		forgotten_in(fs, &dir, 1);
}

static void ll_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
	struct phfs *fs = fuse_req_userdata(req);
	uint64_t dirs[32];
	size_t ndirs = 0;

	fuse_reply_none(req); /* nothing to answer: the kernel goes on */
	for (size_t i = 0; i < count; i++) {
		uint64_t dir = inodes_forget(fs->inodes, forgets[i].ino, forgets[i].nlookup);
		size_t j = 0;

		/* Each directory once: a batch is mostly one directory's. */
		while (dir && j < ndirs && dirs[j] != dir)
			j++;
		if (!dir || j < ndirs)
			continue;
		if (ndirs == sizeof(dirs) / sizeof(dirs[0])) {
			forgotten_in(fs, dirs, ndirs);
			ndirs = 0;
		}
		dirs[ndirs++] = dir;
	}
	forgotten_in(fs, dirs, ndirs);
}

/* fi only when it holds one of our handles (directories have none). */
static struct fuse_file_info *handle_fi(struct fuse_file_info *fi)
{
	return fi && fi->fh ? fi : NULL;
}

static void reply_attr(fuse_req_t req, struct phfs *fs, fuse_ino_t ino, struct stat *st)
{
	st->st_ino = ino;
	leave();
	fuse_reply_attr(req, st, ttl_s(fs));
}

static void ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char buf[PATH_BUF];
	const char *path = path_or_null(fs, ino, buf);
	struct stat st;
	int ret;

	fi = handle_fi(fi);
	ret = path || fi ? phfs_getattr(path, &st, fi) : -ENOENT;
	if (ret < 0)
		reply_err(req, ret);
	else
		reply_attr(req, fs, ino, &st);
}

/* The time fields of a SETATTR as utimensat(2) takes them. */
static void setattr_times(const struct stat *attr, int to_set, struct timespec tv[2])
{
	tv[0].tv_sec = tv[1].tv_sec = 0;
	tv[0].tv_nsec = tv[1].tv_nsec = UTIME_OMIT;
	if (to_set & FUSE_SET_ATTR_ATIME_NOW)
		tv[0].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_ATIME)
		tv[0] = attr->st_atim;
	if (to_set & FUSE_SET_ATTR_MTIME_NOW)
		tv[1].tv_nsec = UTIME_NOW;
	else if (to_set & FUSE_SET_ATTR_MTIME)
		tv[1] = attr->st_mtim;
}

/* In the order libfuse's high-level API makes them: mode, owner, size,
 * times; then the attributes as they now are. */
static void ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                       struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char buf[PATH_BUF];
	const char *path = path_or_null(fs, ino, buf);
	struct stat st;
	int ret = 0;

	fi = handle_fi(fi);
	if (!path && !fi) {
		reply_err(req, -ENOENT);
		return;
	}
	if (to_set & FUSE_SET_ATTR_MODE)
		ret = phfs_chmod(path, attr->st_mode, fi);
	if (ret == 0 && (to_set & (FUSE_SET_ATTR_UID | FUSE_SET_ATTR_GID)))
		ret = phfs_chown(path, (to_set & FUSE_SET_ATTR_UID) ? attr->st_uid : (uid_t)-1,
		                 (to_set & FUSE_SET_ATTR_GID) ? attr->st_gid : (gid_t)-1, fi);
	if (ret == 0 && (to_set & FUSE_SET_ATTR_SIZE)) {
		ret = phfs_truncate(path, attr->st_size, fi);
		listings_may_have_changed(fs, path);
	}
	if (ret == 0 && (to_set & (FUSE_SET_ATTR_ATIME | FUSE_SET_ATTR_MTIME |
	                           FUSE_SET_ATTR_ATIME_NOW | FUSE_SET_ATTR_MTIME_NOW))) {
		struct timespec tv[2];

		setattr_times(attr, to_set, tv);
		ret = phfs_utimens(path, tv, fi);
		listings_may_have_changed(fs, path); /* touch IMAGE/rebuild */
	}
	if (ret == 0)
		ret = phfs_getattr(path, &st, fi);
	if (ret < 0)
		reply_err(req, ret);
	else
		reply_attr(req, fs, ino, &st);
}

/* mkdir, create: the new name's attributes go back with its number. */
static void reply_new(fuse_req_t req, struct phfs *fs, fuse_ino_t parent, const char *name,
                      const char *path, struct fuse_file_info *fi)
{
	struct stat st;
	int ret = phfs_getattr(path, &st, fi);

	if (ret < 0)
		reply_err(req, ret);
	else
		reply_entry(req, fs, parent, name, &st);
}

static void ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
	struct phfs *fs = enter(req);
	char path[PATH_BUF];
	int ret = child_path(fs, parent, name, path);

	if (ret == 0) {
		ret = phfs_mkdir(path, mode);
		listings_may_have_changed(fs, path); /* a refusal writes the top's .error */
	}
	if (ret < 0)
		reply_err(req, ret);
	else
		reply_new(req, fs, parent, name, path, NULL);
}

static void ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, dev_t rdev)
{
	struct phfs *fs = enter(req);
	char path[PATH_BUF];
	int ret = child_path(fs, parent, name, path);

	reply_err(req, ret < 0 ? ret : phfs_mknod(path, mode, rdev));
}

static void ll_symlink(fuse_req_t req, const char *target, fuse_ino_t parent, const char *name)
{
	struct phfs *fs = enter(req);
	char path[PATH_BUF];
	int ret = child_path(fs, parent, name, path);

	reply_err(req, ret < 0 ? ret : phfs_symlink(target, path));
}

static void ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent, const char *newname)
{
	struct phfs *fs = enter(req);
	char from[PATH_BUF], to[PATH_BUF];
	int ret = path_of(fs, ino, from);

	if (ret == 0)
		ret = child_path(fs, newparent, newname, to);
	reply_err(req, ret < 0 ? (ret == -ESTALE ? -ENOENT : ret) : phfs_link(from, to));
}

static void ll_remove(fuse_req_t req, fuse_ino_t parent, const char *name, bool dir)
{
	struct phfs *fs = enter(req);
	char path[PATH_BUF];
	int ret = child_path(fs, parent, name, path);

	if (ret == 0) {
		ret = dir ? phfs_rmdir(path) : phfs_unlink_op(path);
		if (ret == 0)
			inodes_unlink(fs->inodes, parent, name);
		listings_may_have_changed(fs, path);
	}
	reply_err(req, ret);
}

static void ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ll_remove(req, parent, name, false);
}

static void ll_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	ll_remove(req, parent, name, true);
}

static void ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name, fuse_ino_t newparent,
                      const char *newname, unsigned int flags)
{
	struct phfs *fs = enter(req);
	char from[PATH_BUF], to[PATH_BUF];
	int ret = child_path(fs, parent, name, from);

	if (ret == 0)
		ret = child_path(fs, newparent, newname, to);
	if (ret == 0) {
		ret = phfs_rename_op(from, to, flags);
		if (ret == 0)
			ret = inodes_rename(fs->inodes, parent, name, newparent, newname);
		listings_may_have_changed(fs, from);
		listings_may_have_changed(fs, to);
	}
	reply_err(req, ret);
}

/* ---- files ---- */

/* A read-only handle has nothing to commit: its close needs no FLUSH
 * round trip (half the requests of a `cat` of every file). */
static void no_flush_if_readonly(struct fuse_file_info *fi)
{
	if ((fi->flags & O_ACCMODE) == O_RDONLY && !(fi->flags & O_TRUNC))
		fi->noflush = 1;
}

static void ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char path[PATH_BUF];
	int ret = path_of(fs, ino, path);

	if (ret == 0)
		ret = phfs_open(path, fi);
	if (ret < 0) {
		reply_err(req, ret == -ESTALE ? -ENOENT : ret);
		return;
	}
	no_flush_if_readonly(fi);
	leave();
	if (fuse_reply_open(req, fi) != 0)
		phfs_release(path, fi); /* the open was interrupted: nobody holds it */
}

static void ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                      struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char path[PATH_BUF];
	struct fuse_entry_param e;
	struct stat st;
	uint64_t ino;
	int ret = child_path(fs, parent, name, path);

	if (ret == 0) {
		ret = phfs_create(path, mode, fi);
		listings_may_have_changed(fs, path);
	}
	if (ret < 0) {
		reply_err(req, ret);
		return;
	}
	ret = phfs_getattr(path, &st, fi);
	ino = ret == 0 ? inodes_ref(fs->inodes, parent, name) : 0;
	if (!ino) {
		phfs_release(path, fi);
		reply_err(req, ret < 0 ? ret : -ENOMEM);
		return;
	}
	fill_entry(fs, &e, ino, &st);
	no_flush_if_readonly(fi);
	leave();
	if (fuse_reply_create(req, &e, fi) != 0) {
		inodes_forget(fs->inodes, ino, 1);
		phfs_release(path, fi);
	}
}

static void ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char pbuf[PATH_BUF];
	const char *path = path_or_null(fs, ino, pbuf);
	char *buf = malloc(size ? size : 1);
	int n;

	if (!buf) {
		reply_err(req, -ENOMEM);
		return;
	}
	n = phfs_read(path, buf, size, off, fi);
	if (n < 0) {
		reply_err(req, n);
	} else {
		leave();
		fuse_reply_buf(req, buf, (size_t)n);
	}
	free(buf);
}

static void ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off,
                     struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char pbuf[PATH_BUF];
	int n = phfs_write(path_or_null(fs, ino, pbuf), buf, size, off, fi);

	if (n < 0) {
		reply_err(req, n);
	} else {
		leave();
		fuse_reply_write(req, (size_t)n);
	}
}

/* FLUSH (each close) and FSYNC are one commit point: a handle that wrote
 * sends its save, which can change what .error and .history list. */
static void ll_flush(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char pbuf[PATH_BUF];
	const char *path = path_or_null(fs, ino, pbuf);
	bool writable = phfs_fh(fi) && phfs_fh(fi)->writable;
	int ret = phfs_flush(path, fi);

	if (writable)
		listings_may_have_changed(fs, path);
	reply_err(req, ret);
}

static void ll_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi)
{
	(void)datasync; /* nothing is kept locally that could be synced apart */
	ll_flush(req, ino, fi);
}

static void ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct phfs *fs = enter(req);
	char pbuf[PATH_BUF];

	reply_err(req, phfs_release(path_or_null(fs, ino, pbuf), fi));
}

/* ---- directories ---- */

static void ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	(void)ino;
	(void)fi;
	/* No directory handles: the kernel then keeps listings (see the top
	 * of this file) and sends no OPENDIR or RELEASEDIR again. */
	fuse_reply_err(req, ENOSYS);
}

struct dir_reply {
	fuse_req_t req;
	struct phfs *fs;
	fuse_ino_t dir;
	bool plus;
	char *buf;
	size_t size, used;
};

static int add_entry(void *arg, const char *name, mode_t mode, const struct stat *st, off_t next)
{
	struct dir_reply *r = arg;
	size_t need;

	if (r->plus) {
		struct fuse_entry_param e;

		need = fuse_add_direntry_plus(r->req, NULL, 0, name, NULL, 0);
		if (need > r->size - r->used)
			return 1;
		memset(&e, 0, sizeof(e));
		e.attr.st_mode = mode;
		e.attr.st_ino = UNKNOWN_INO;
		/* An entry with attributes is looked up here and now (the
		 * kernel counts it); one without (ino 0) it looks up itself. */
		if (st) {
			uint64_t ino = inodes_ref(r->fs->inodes, r->dir, name);

			if (ino)
				fill_entry(r->fs, &e, ino, st);
		}
		fuse_add_direntry_plus(r->req, r->buf + r->used, r->size - r->used, name, &e, next);
	} else {
		struct stat plain = {.st_mode = mode, .st_ino = UNKNOWN_INO};

		need = fuse_add_direntry(r->req, NULL, 0, name, NULL, 0);
		if (need > r->size - r->used)
			return 1;
		fuse_add_direntry(r->req, r->buf + r->used, r->size - r->used, name, &plain, next);
	}
	r->used += need;
	return 0;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	struct phfs *fs = enter(req);
	struct dir_reply r = {.req = req, .fs = fs, .dir = ino, .plus = plus, .size = size};
	char path[PATH_BUF];
	struct phfs_dirlist *l = NULL;
	int ret = path_of(fs, ino, path);

	if (ret == 0)
		ret = phfs_list_get(fs, ino, path, off, &l);
	if (ret == 0 && !(r.buf = malloc(size ? size : 1)))
		ret = -ENOMEM;
	if (ret < 0) {
		phfs_list_put(fs, ino, l, false);
		reply_err(req, ret == -ESTALE ? -ENOENT : ret);
		return;
	}
	ret = phfs_list_fill(fs, l, path, off, plus, add_entry, &r);
	/* Kept until the READDIR that finds nothing left (the kernel's last
	 * one, at the end's offset): dropped with the last entries, that
	 * call would take the whole listing again to answer it. */
	phfs_list_put(fs, ino, l, ret == 0 && r.used == 0);
	leave();
	fuse_reply_buf(req, r.buf, r.used);
	free(r.buf);
}

static void ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, false);
}

static void ll_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
	(void)fi;
	do_readdir(req, ino, size, off, true);
}

/* ---- the rest ---- */

static void ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
	struct statvfs sv;

	(void)ino;
	enter(req);
	phfs_statfs("/", &sv);
	leave();
	fuse_reply_statfs(req, &sv);
}

static void ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name, const char *value,
                        size_t size, int flags)
{
	(void)ino;
	(void)name;
	(void)value;
	(void)size;
	(void)flags;
	fuse_reply_err(req, ENOTSUP);
}

static void ll_init(void *userdata, struct fuse_conn_info *conn)
{
	(void)userdata;
	/* No writeback cache: a write must reach the handle, which decides
	 * what a save sends. */
	conn->want &= ~FUSE_CAP_WRITEBACK_CACHE;
}

static const struct fuse_lowlevel_ops phfs_ll_oper = {
    .init = ll_init,
    .lookup = ll_lookup,
    .forget = ll_forget,
    .forget_multi = ll_forget_multi,
    .getattr = ll_getattr,
    .setattr = ll_setattr,
    .mknod = ll_mknod,
    .mkdir = ll_mkdir,
    .unlink = ll_unlink,
    .rmdir = ll_rmdir,
    .symlink = ll_symlink,
    .rename = ll_rename,
    .link = ll_link,
    .open = ll_open,
    .read = ll_read,
    .write = ll_write,
    .flush = ll_flush,
    .release = ll_release,
    .fsync = ll_fsync,
    .opendir = ll_opendir,
    .readdir = ll_readdir,
    .readdirplus = ll_readdirplus,
    .statfs = ll_statfs,
    .setxattr = ll_setxattr,
    .create = ll_create,
};

struct fuse_session *phfs_session_new(struct phfs *fs, struct fuse_args *args)
{
	the_fs = fs;
	fs->se = fuse_session_new(args, &phfs_ll_oper, sizeof(phfs_ll_oper), fs);
	return fs->se;
}
