/*
 * fs_file.c - open files: open/create, read, write, truncate, and the commit
 * point (flush, fsync); release never commits.  What a handle holds is in
 * fs_internal.h; how a spec.json save turns into API calls is fs_write.c.
 */
#include "fs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "primehubfs/log.h"
#include "primehubfs/spec.h"

/*
 * A read-only spec.json handle may read through the kernel's page cache
 * (keep_cache), but the kernel keeps one size and one page cache per file:
 * a writer's O_TRUNC or ftruncate empties both, and its writes land in
 * them.  So a reader only claims the cache while no writer has the image's
 * spec.json open, and a writer waits, briefly, for readers that claimed it
 * before it came.  Both decide under handles_lock, so one sees the other.
 */
#define CACHED_READERS_WAIT_MS                                                                     \
	2000 /* a cat or grep takes microseconds;                                                  \
	      * a reader still open after this has                                                 \
	      * long read its few KiB */

/* Whether a handle other than except has image's spec.json open for
 * writing (only spec.json handles are writable).  handles_lock held. */
static bool spec_writer_locked(struct phfs *fs, const char *image, const struct phfs_handle *except)
{
	for (struct phfs_handle *o = fs->handles; o; o = o->next)
		if (o != except && o->writable && strcmp(o->node.image, image) == 0)
			return true;
	return false;
}

static bool claim_cached_read(struct phfs *fs, struct phfs_handle *h)
{
	bool writer;

	pthread_mutex_lock(&fs->handles_lock);
	writer = h->node.kind == NODE_SPEC && spec_writer_locked(fs, h->node.image, h);
	h->cached = !writer;
	pthread_mutex_unlock(&fs->handles_lock);
	return !writer;
}

static void unclaim_cached_read(struct phfs *fs, struct phfs_handle *h)
{
	pthread_mutex_lock(&fs->handles_lock);
	h->cached = false;
	pthread_mutex_unlock(&fs->handles_lock);
}

/* Another process reading w's spec.json through the page cache (its own
 * reads race with its own writes, as on any disk). */
static bool cached_reader_of(struct phfs *fs, const struct phfs_handle *w)
{
	bool found = false;

	pthread_mutex_lock(&fs->handles_lock);
	for (struct phfs_handle *o = fs->handles; o && !found; o = o->next)
		found = o->cached && o->node.kind == NODE_SPEC && o->pid != w->pid &&
		        strcmp(o->node.image, w->node.image) == 0;
	pthread_mutex_unlock(&fs->handles_lock);
	return found;
}

/* Another editor has w's spec.json open for writing. */
static bool other_writer_of(struct phfs *fs, const struct phfs_handle *w)
{
	bool found;

	pthread_mutex_lock(&fs->handles_lock);
	found = spec_writer_locked(fs, w->node.image, w);
	pthread_mutex_unlock(&fs->handles_lock);
	return found;
}

static void wait_cached_readers(struct phfs *fs, const struct phfs_handle *w)
{
	for (int waited = 0; cached_reader_of(fs, w); waited += 5) {
		if (waited >= CACHED_READERS_WAIT_MS) {
			log_debug("%s/spec.json: a reader still has it open; the save goes on",
			          w->node.image);
			return;
		}
		nanosleep(&(struct timespec){.tv_nsec = 5 * 1000000}, NULL);
	}
}

/*
 * status.json and build.log say what PrimeHub derived; nothing written to
 * them can change it.  A copy tool (cp -r, rsync, tar -x, a restore from a
 * backup) writes them along with spec.json: take the bytes and drop them,
 * so the copy succeeds and sends nothing for them.  Their mode stays 0444
 * and other programs get EACCES; a copy into a new directory creates them
 * (rsync renames its temporary file over them: fs_dir.c).
 */
static int open_sink(struct phfs *fs, const struct node *n, const char *path,
                     struct fuse_file_info *fi)
{
	struct phfs_handle *h = phfs_handle_new(fs, n);

	if (!h)
		return -ENOMEM;
	h->sink = true;
	fi->fh = (uintptr_t)h;
	fi->direct_io = 1;
	if (n->kind == NODE_IMAGE_ERROR || n->kind == NODE_REJECTED || n->kind == NODE_ROOT_ERROR)
		phfs_sink_note(fs->sink, path); /* may not exist: its times come next */
	log_debug("%s written by a copy: taken and dropped (PrimeHub derives it)", path + 1);
	return 0;
}

/* Files a backup holds that no copy can change: the mount's own and the
 * notes it keeps (.error, spec.json.rejected). */
static bool kept_by_copies(enum node_kind kind)
{
	return kind == NODE_ROOT_STATUS || kind == NODE_ROOT_ERROR || kind == NODE_ROOT_CHANGES ||
	       kind == NODE_IMAGE_ERROR || kind == NODE_REJECTED;
}

/* The version (hash) of the text h reads.  When that is its entry's own
 * spec.json or status.json, the entry knows it already (snap_image_sizes:
 * kept once listed), and a warm walk's every open is spared hashing it. */
static uint64_t text_version(const struct phfs_handle *h)
{
	const struct snap_texts *t = h->entry ? snap_image_texts(h->entry) : NULL;
	struct snap_sizes sz;

	if (t && snap_image_sizes(h->entry, &sz)) {
		if (h->ro_text == t->spec && h->ro_len == t->spec_len)
			return sz.spec_hash;
		if (h->ro_text == t->status && h->ro_len == t->status_len)
			return sz.status_hash;
	}
	return phfs_kcache_hash(h->ro_text, h->ro_len, 0);
}

int phfs_open(const char *path, struct fuse_file_info *fi)
{
	struct phfs *fs = phfs_ctx();
	struct phfs_handle *h;
	struct snapshot *snap;
	struct stat st;
	struct node n;
	int ret, acc = fi->flags & O_ACCMODE;

	if (phfs_sink_path(path))
		return phfs_sink_open_op(fs, path, fi, false);
	ret = tree_parse(path, &n);
	if (ret < 0)
		return ret;
	if (n.kind == NODE_ROOT_STATUS || n.kind == NODE_ROOT_CHANGES) {
		ret = 0; /* always there, and opening it must not fetch */
		st.st_mode = tree_mode(n.kind);
	} else {
		if ((n.kind == NODE_STATUS || n.kind == NODE_BUILD_LOG) &&
		    (fi->flags & O_ACCMODE) == O_RDONLY)
			phfs_poll_building(fs, n.image);
		ret = n.kind == NODE_STATUS ? phfs_snapshot_groups(fs, n.image, &snap)
		      : n.kind == NODE_SPEC && acc == O_RDONLY
		          ? phfs_snapshot_shown(fs, n.image, &snap)
		          : phfs_snapshot(fs, &snap);
		if (ret < 0)
			return ret;
		ret = phfs_stat_node(fs, snap, &n, &st);
		snapshot_put(snap);
	}
	if (ret < 0)
		return ret;
	if (S_ISDIR(st.st_mode))
		return -EISDIR;
	/* A copy tool (cp, tar, rsync) restoring over an image, or the process
	 * that made the directory and is filling it (copytree), writes its
	 * derived files too; any other program is told they are read-only. */
	if (acc != O_RDONLY && (n.kind == NODE_STATUS || n.kind == NODE_BUILD_LOG) &&
	    (phfs_caller_is_copier(true) ||
	     phfs_copies_is_maker(fs->copies, n.image, phfs_caller_pid())))
		return open_sink(fs, &n, path, fi);
	/* The notes and the mount's own files, restored from a backup. */
	if (acc != O_RDONLY && kept_by_copies(n.kind) && phfs_caller_is_copier(true))
		return open_sink(fs, &n, path, fi);
	if (acc != O_RDONLY && !(st.st_mode & 0200))
		return -EACCES; /* .error and spec.json.rejected are read-only */

	h = phfs_handle_new(fs, &n);
	if (!h)
		return -ENOMEM;
	switch (n.kind) {
	case NODE_SPEC:
		ret = phfs_open_spec(fs, h, fi->flags);
		break;
	case NODE_SCRATCH:
		ret = staging_scratch_open(fs->staging, n.image, n.leaf, &h->scratch);
		if (ret == 0 && (fi->flags & O_TRUNC))
			ret = scratch_truncate(fs->staging, h->scratch, 0, NULL);
		break;
	case NODE_GROUP:
		ret = 0; /* an empty marker; touch opens it */
		break;
	case NODE_REBUILD:
		/* Opening it for writing is the gesture (touch, echo >). */
		ret = acc == O_RDONLY ? -EACCES : phfs_rebuild(fs, &n);
		break;
	default:
		ret = phfs_open_readonly(fs, h);
	}
	if (ret < 0) {
		phfs_handle_free(fs, h);
		return ret;
	}
	fi->fh = (uintptr_t)h;
	if (acc != O_RDONLY && n.kind == NODE_SPEC) {
		phfs_kcache_forget(fs->kcache, path);
		wait_cached_readers(fs, h); /* before the kernel truncates */
	}
	/* An unchanged spec.json or status.json keeps the kernel's page cache
	 * from the last open (a warm cat of every spec.json, or grep -r, never
	 * reaches the daemon for data); anything else drops it, so what a fresh
	 * open reads is this handle's bytes, never another version's. */
	if (acc == O_RDONLY && (n.kind == NODE_SPEC || n.kind == NODE_STATUS) && h->entry &&
	    h->ro_text && claim_cached_read(fs, h)) {
		enum phfs_kcache_use use = phfs_kcache_open(fs->kcache, path, text_version(h));

		if (use != PHFS_KCACHE_BYPASS) {
			fi->keep_cache = use == PHFS_KCACHE_KEEP;
			fi->direct_io = 0;
			return 0;
		}
		unclaim_cached_read(fs, h);
	}
	/* A group's file is always empty: its one cached (empty) page never
	 * goes stale, and keeping it spares grep -r a READ and a GETATTR per
	 * group. */
	if (acc == O_RDONLY && n.kind == NODE_GROUP) {
		fi->keep_cache = 1;
		return 0;
	}
	fi->keep_cache = 0;
	/* Every handle holds its own version of a file, but the kernel keeps
	 * one size per path (from the last GETATTR, a writer's ftruncate or
	 * write) and cuts page-cache reads at it: a reader of a longer version
	 * would get a short or empty read while someone saves or after a
	 * refresh.  So reads bypass the page cache and run to the handle's own
	 * end (build.log grows during a build, too).  The cost: no shared mmap
	 * of a read-only handle (ENODEV); a writable spec.json handle stays
	 * cached, so a shared writable mapping saves at msync.  Scratch files
	 * have one version and stay cached. */
	fi->direct_io = acc == O_RDONLY && n.kind != NODE_SCRATCH && n.kind != NODE_GROUP;
	/* Two editors of one spec.json at once: the kernel's page cache is one
	 * per file, so through it the second would read the first's unsaved
	 * bytes as if it had typed them, and its save would carry them (or be
	 * refused for a field it never touched).  The first keeps the cache
	 * (its shared mapping saves at msync); a later one reads and writes
	 * its own handle. */
	if (acc != O_RDONLY && n.kind == NODE_SPEC && other_writer_of(fs, h))
		fi->direct_io = 1;
	return 0;
}

int phfs_create(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct phfs *fs = phfs_ctx();
	struct phfs_handle *h;
	struct ph_err err = {0};
	struct snapshot *snap;
	struct node n;
	bool pending;
	int ret;

	if (phfs_sink_path(path))
		return phfs_sink_open_op(fs, path, fi, true);
	ret = tree_parse(path, &n);
	if (ret < 0)
		return ret;
	if (kept_by_copies(n.kind) && phfs_caller_is_copier(true))
		return open_sink(fs, &n, path, fi);
	switch (n.kind) {
	case NODE_SPEC:
		/* It always exists; the kernel creates only what it was told is
		 * not there (a copy tool's view, fs_copy.c): a new file, so
		 * whatever it held before is replaced. */
		phfs_copies_take(fs->copies, &n, phfs_caller_pid());
		fi->flags |= O_TRUNC;
		return phfs_open(path, fi);
	case NODE_STATUS:
	case NODE_BUILD_LOG:
		phfs_copies_take(fs->copies, &n, phfs_caller_pid());
		ret = phfs_snapshot(fs, &snap);
		if (ret < 0)
			return ret;
		pending = false;
		if (!phfs_image_exists(fs, snap, n.image, &pending)) {
			snapshot_put(snap);
			return -ENOENT;
		}
		snapshot_put(snap);
		return open_sink(fs, &n, path, fi);
	case NODE_GROUP:
	case NODE_REBUILD:
		/* touch on a name the kernel did not know yet: the gesture is
		 * the create; the handle is an empty marker. */
		ret = n.kind == NODE_GROUP ? phfs_group_connect(fs, &n) : phfs_rebuild(fs, &n);
		if (ret < 0)
			return ret;
		h = phfs_handle_new(fs, &n);
		if (!h)
			return -ENOMEM;
		fi->fh = (uintptr_t)h;
		return 0;
	case NODE_SCRATCH:
		break;
	case NODE_ROOT_ERROR:
	case NODE_ROOT_STATUS:
	case NODE_ROOT_CHANGES:
	case NODE_IMAGE:
		ph_err_set(&err, EPERM, NULL,
		           "only image directories live at the top; make one with mkdir NAME");
		phfs_refuse(fs, "", path + 1, &err);
		return -EPERM;
	default:
		return -EACCES; /* status.json, .error, groups/: read-only or not files */
	}

	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	if (!phfs_image_exists(fs, snap, n.image, &pending)) {
		snapshot_put(snap);
		return -ENOENT;
	}
	snapshot_put(snap);
	h = phfs_handle_new(fs, &n);
	if (!h)
		return -ENOMEM;
	ret = staging_scratch_create(fs->staging, n.image, n.leaf, mode, (fi->flags & O_EXCL) != 0,
	                             &h->scratch, &err);
	if (ret == 0 && (fi->flags & O_TRUNC))
		ret = scratch_truncate(fs->staging, h->scratch, 0, &err);
	if (ret < 0) {
		if (ret != -EEXIST) {
			char what[2 * TREE_NAME_MAX + 2];

			snprintf(what, sizeof(what), "%s/%s", n.image, n.leaf);
			phfs_refuse(fs, n.image, what, &err);
		}
		phfs_handle_free(fs, h);
		return ret;
	}
	fi->fh = (uintptr_t)h;
	return 0;
}

int phfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct phfs_handle *h = phfs_fh(fi);
	const char *src;
	size_t len;
	int n = 0;

	(void)path;
	if (h->scratch)
		return scratch_read(h->scratch, buf, size, off);
	if (h->node.kind == NODE_BUILD_LOG) {
		bool at_end;

		pthread_mutex_lock(&h->lock);
		at_end = off >= 0 && (size_t)off + size > h->ro_len;
		pthread_mutex_unlock(&h->lock);
		if (at_end)
			phfs_build_log_follow(phfs_ctx(), h);
	}
	pthread_mutex_lock(&h->lock);
	src = h->writable ? h->buf : h->ro_text;
	len = h->writable ? h->buf_len : h->ro_len;
	if (off >= 0 && (size_t)off < len) {
		n = (int)(len - (size_t)off < size ? len - (size_t)off : size);
		memcpy(buf, src + off, (size_t)n);
	}
	pthread_mutex_unlock(&h->lock);
	return n;
}

int phfs_write(const char *path, const char *buf, size_t size, off_t off, struct fuse_file_info *fi)
{
	struct phfs *fs = phfs_ctx();
	struct phfs_handle *h = phfs_fh(fi);
	struct ph_err err = {0};
	int ret;

	(void)path;
	if (h->scratch) {
		ret = scratch_write(fs->staging, h->scratch, buf, size, off, &err);
		if (ret < 0) {
			char what[2 * TREE_NAME_MAX + 2];

			snprintf(what, sizeof(what), "%s/%s", h->node.image, h->node.leaf);
			phfs_refuse(fs, h->node.image, what, &err);
		}
		return ret;
	}
	if (h->writable) {
		/* These bytes are in the kernel's page cache now: no reader may
		 * take that cache for the server's text. */
		if (path)
			phfs_kcache_forget(fs->kcache, path);
		ret = phfs_spec_write(h, buf, size, off);
		if (ret == -EFBIG) {
			char what[TREE_NAME_MAX + 16];

			ph_err_set(&err, EFBIG, NULL, "spec.json is limited to %d bytes",
			           SPEC_MAX_SIZE);
			snprintf(what, sizeof(what), "%s/spec.json", h->node.image);
			phfs_refuse(fs, h->node.image, what, &err);
		}
		return ret;
	}
	/* groups/ entries are empty markers: what they hold is whether they
	 * exist.  What is written to rebuild does not matter: opening it was
	 * the gesture. */
	if (h->node.kind == NODE_REBUILD || h->sink)
		return (int)size;
	return h->node.kind == NODE_GROUP ? -EPERM : -EBADF;
}

int phfs_truncate(const char *path, off_t size, struct fuse_file_info *fi)
{
	struct phfs *fs = phfs_ctx();
	struct phfs_handle *h = phfs_fh(fi);
	struct scratch *s;
	struct node n;
	int ret;

	if (h && h->scratch)
		return scratch_truncate(fs->staging, h->scratch, size, NULL);
	/* Derived files a copy writes, and groups/ markers (rsync --inplace
	 * truncates what it then writes): nothing to keep. */
	if (h && (h->sink || h->node.kind == NODE_GROUP))
		return 0;
	if (h && h->writable) {
		if (path)
			phfs_kcache_forget(fs->kcache, path);
		return phfs_spec_truncate(h, size);
	}
	if (phfs_sink_path(path)) {
		struct timespec mtime;
		bool dir;

		ret = phfs_sink_stat(fs->sink, path, &dir, &mtime);
		return ret < 0 ? ret : dir ? -EISDIR : 0;
	}
	ret = tree_parse(path, &n);
	if (ret < 0)
		return ret;
	switch (n.kind) {
	case NODE_SCRATCH:
		ret = staging_scratch_open(fs->staging, n.image, n.leaf, &s);
		if (ret < 0)
			return ret;
		ret = scratch_truncate(fs->staging, s, size, NULL);
		scratch_put(s);
		return ret;
	case NODE_SPEC: {
		/* A truncate with no open handle would have nothing to commit
		 * and nowhere to keep the bytes: editors truncate through their
		 * handle (ftruncate), which works. */
		struct ph_err err;

		ph_err_set(&err, EPERM, "spec.json",
		           "truncate spec.json through an open file; a bare truncate would "
		           "save nothing");
		phfs_refuse(fs, n.image, path + 1, &err);
		return -EPERM;
	}
	default:
		return -EACCES;
	}
}

int phfs_flush(const char *path, struct fuse_file_info *fi)
{
	struct phfs_handle *h = phfs_fh(fi);

	(void)path;
	/* The commit point: close (flush) of a handle that wrote.  A flush
	 * with nothing new written (shell `>` flushes before any data, dup'd
	 * descriptors flush again) sends nothing. */
	if (h->writable) {
		int ret = phfs_spec_commit(phfs_ctx(), h);

		if (path)
			phfs_kcache_forget(phfs_ctx()->kcache, path);
		return ret;
	}
	return 0;
}

int phfs_release(const char *path, struct fuse_file_info *fi)
{
	(void)path;
	/* Never commits: the kernel ignores release's result, so an error here
	 * would reach nobody. */
	phfs_handle_free(phfs_ctx(), phfs_fh(fi));
	return 0;
}
