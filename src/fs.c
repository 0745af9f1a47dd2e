/*
 * fs.c - the mount's context, attributes, the small path-based operations
 * (chmod, utimens, statfs, ...) fs_ll.c turns requests into, and how
 * refusals reach the user.  Model: libfuse example/passthrough.c
 * (prefix_op names, -errno returns) and sshfs.
 */
#include "fs_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

#include "primehubfs/fs.h"
#include "primehubfs/history.h"
#include "primehubfs/inodes.h"
#include "primehubfs/log.h"
#include "primehubfs/spec.h"

/* ---- helpers shared by the fs_*.c files ---- */

int phfs_user_error(int ret)
{
	switch (ret) {
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -EHOSTUNREACH:
	case -ETIMEDOUT:
	case -EPROTO:
		/* The server cannot be reached or answered nonsense: to programs
		 * that is an I/O error; the reason (which of these) is in .error
		 * and the log. */
		return -EIO;
	default:
		return ret;
	}
}

int phfs_snapshot(struct phfs *fs, struct snapshot **snap)
{
	struct ph_err err = {0};
	int ret = store_get(fs->store, snap, &err);

	if (ret < 0)
		log_error("cannot list images: %s", err.msg);
	return phfs_user_error(ret);
}

int phfs_snapshot_shown(struct phfs *fs, const char *image, struct snapshot **snap)
{
	if (phfs_notifier_held(fs->notifier, image, snap))
		return 0;
	return phfs_snapshot(fs, snap);
}

int phfs_snapshot_groups(struct phfs *fs, const char *image, struct snapshot **snap)
{
	struct ph_err err = {0};
	const struct snap_image *e;
	bool many;
	int ret = phfs_snapshot_shown(fs, image, snap);

	if (ret < 0)
		return ret;
	/* Asked only when the groups are to be fetched: /proc is read. */
	e = snapshot_find(*snap, image);
	many = e && !store_groups_fresh(fs->store, e) && phfs_walkers_caller_walks(fs->walkers);
	ret = store_get_groups(fs->store, image, many, snap, &err);
	if (ret < 0) {
		log_error("cannot read the groups of %s: %s", image, err.msg);
		snapshot_put(*snap);
		*snap = NULL;
		return phfs_user_error(ret);
	}
	return 0;
}

/* "vim, pid 1234": who did it, from the FUSE context.  /proc is read, never
 * the mount itself. */
void phfs_describe_caller(char *out, size_t size)
{
	pid_t pid = phfs_caller_pid();
	char path[64], comm[64] = "?";
	FILE *f;

	if (pid <= 0) {
		snprintf(out, size, "unknown process");
		return;
	}
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = '\0';
		fclose(f);
	}
	snprintf(out, size, "%s, pid %d", comm, (int)pid);
}

/* The calling program's name ("" when unknown). */
static void caller_comm(char *comm, size_t size)
{
	pid_t pid = phfs_caller_pid();
	char path[64];
	FILE *f;

	comm[0] = '\0';
	if (pid <= 0)
		return;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (!f)
		return;
	if (fgets(comm, (int)size, f))
		comm[strcspn(comm, "\n")] = '\0';
	fclose(f);
}

bool phfs_caller_is_copier(bool or_rsync)
{
	/* The programs that fill a directory they made as if it were empty
	 * (O_EXCL creates, bare mkdir): see fs_copy.c.  rsync checks first,
	 * but it too writes derived files in place (--inplace). */
	static const char *const copiers[] = {"cp", "tar", "bsdtar", "cpio", "pax", "rsync"};
	size_t count = sizeof(copiers) / sizeof(copiers[0]) - (or_rsync ? 0 : 1);
	char comm[64];

	caller_comm(comm, sizeof(comm));
	for (size_t i = 0; i < count; i++)
		if (strcmp(comm, copiers[i]) == 0)
			return true;
	return false;
}

bool phfs_caller_is_rsync(void)
{
	char comm[64];

	caller_comm(comm, sizeof(comm));
	return strcmp(comm, "rsync") == 0;
}

/* A note's line: "STAMP WHAT: TEXT (by CALLER)"; returns where the part
 * after the time stamp starts (the log has its own time). */
static const char *note_line(char *line, size_t size, const char *what, const char *text)
{
	char caller[128], stamp[32];
	time_t now = time(NULL);
	struct tm tm;

	phfs_describe_caller(caller, sizeof(caller));
	gmtime_r(&now, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	snprintf(line, size, "%s %s: %s (by %s)", stamp, what, text, caller);
	return line + strlen(stamp) + 1;
}

void phfs_refuse(struct phfs *fs, const char *dir, const char *what, const struct ph_err *err)
{
	const char *name = strerrorname_np(-phfs_user_error(-err->errnum));
	char text[sizeof(err->msg) + 48], line[1024];

	snprintf(text, sizeof(text), "%s [%s]", err->msg[0] ? err->msg : strerror(err->errnum),
	         name ? name : "error");
	log_error("refused %s", note_line(line, sizeof(line), what, text));
	/* No kernel invalidation needed (nor allowed here, on a request
	 * thread): negative lookups are not cached and listings are read
	 * afresh, so .error shows at once. */
	staging_set_error(fs->staging, dir, line);
}

void phfs_remark(struct phfs *fs, const char *dir, const char *what, const char *msg)
{
	char line[1024];

	log_warn("%s", note_line(line, sizeof(line), what, msg));
	staging_set_error(fs->staging, dir, line);
}

int phfs_reread_after_lost(struct phfs *fs, const char *image, const char *what, struct ph_err *err,
                           struct ph_image **now)
{
	struct ph_err again = {0};
	char cause[sizeof(err->msg)];
	int ret;

	*now = NULL;
	ret = ph_get_image(fs->api, image, now, &again);
	if (ret == 0)
		return 0;
	snprintf(cause, sizeof(cause), "%s", err->msg);
	store_invalidate(fs->store);
	log_warn("%s of %s: the answer was lost and the image cannot be read again: %s", what,
	         image, again.msg);
	return ph_err_set(err, EIO, NULL,
	                  "PrimeHub did not answer (%s); whether the %s was applied is unknown; "
	                  "cat spec.json shows the server's state once it answers",
	                  cause, what);
}

int phfs_lost_not_applied(struct ph_err *err, const char *what, bool nothing_changed)
{
	char cause[sizeof(err->msg)];

	snprintf(cause, sizeof(cause), "%s", err->msg);
	return ph_err_set(err, EIO, NULL,
	                  "PrimeHub did not answer (%s) and has not applied the %s%s; it was not "
	                  "sent again",
	                  cause, what, nothing_changed ? ": nothing was changed" : "");
}

void phfs_succeeded(struct phfs *fs, const char *dir)
{
	staging_clear_error(fs->staging, dir);
}

int phfs_image_lock(struct phfs *fs, const char *image)
{
	int ret = 0;

	pthread_mutex_lock(&fs->busy_lock);
	for (;;) {
		bool busy = false;

		for (size_t i = 0; i < fs->busy.n && !busy; i++)
			busy = strcmp(fs->busy.items[i], image) == 0;
		if (!busy) {
			ret = ph_strlist_append(&fs->busy, image);
			break;
		}
		if (phfs_request_interrupted(fs)) {
			ret = -EINTR;
			break;
		}
		struct timespec until;

		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_nsec += 100 * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&fs->busy_cond, &fs->busy_lock, &until);
	}
	pthread_mutex_unlock(&fs->busy_lock);
	return ret;
}

void phfs_image_unlock(struct phfs *fs, const char *image)
{
	pthread_mutex_lock(&fs->busy_lock);
	for (size_t i = 0; i < fs->busy.n; i++) {
		if (strcmp(fs->busy.items[i], image) == 0) {
			free(fs->busy.items[i]);
			fs->busy.items[i] = fs->busy.items[--fs->busy.n];
			break;
		}
	}
	pthread_cond_broadcast(&fs->busy_cond);
	pthread_mutex_unlock(&fs->busy_lock);
}

bool phfs_image_exists(struct phfs *fs, const struct snapshot *snap, const char *image,
                       bool *pending)
{
	*pending = false;
	if (snapshot_find(snap, image))
		return true;
	*pending = staging_pending_exists(fs->staging, image);
	return *pending;
}

struct phfs_handle *phfs_handle_new(struct phfs *fs, const struct node *node)
{
	struct phfs_handle *h = calloc(1, sizeof(*h));

	if (!h)
		return NULL;
	h->node = *node;
	h->pid = phfs_caller_pid();
	clock_gettime(CLOCK_REALTIME, &h->opened);
	pthread_mutex_init(&h->lock, NULL);
	pthread_mutex_lock(&fs->handles_lock);
	h->next = fs->handles;
	if (h->next)
		h->next->prev = h;
	fs->handles = h;
	pthread_mutex_unlock(&fs->handles_lock);
	return h;
}

void phfs_handle_free(struct phfs *fs, struct phfs_handle *h)
{
	if (!h)
		return;
	pthread_mutex_lock(&fs->handles_lock);
	if (h->prev)
		h->prev->next = h->next;
	else
		fs->handles = h->next;
	if (h->next)
		h->next->prev = h->prev;
	pthread_mutex_unlock(&fs->handles_lock);
	snap_image_put(h->entry);
	free(h->own_text);
	free(h->base);
	free(h->seen);
	free(h->buf);
	scratch_put(h->scratch);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

/* Called on the store's refresher thread, never on a request thread:
 * a kernel invalidation from a request handler can deadlock the kernel. */
void phfs_invalidate(struct phfs *fs, const char *image_id)
{
	static const char *const leaves[] = {"/spec.json", "/status.json", "/groups", ""};
	char path[TREE_NAME_MAX + 32];

	/* Queued: the notifier thread tells the kernel (fs_notify.c says why
	 * the refresher must not). */
	if (!image_id) {
		phfs_notifier_push(fs->notifier, NULL);
		return;
	}
	for (size_t i = 0; i < sizeof(leaves) / sizeof(leaves[0]); i++) {
		snprintf(path, sizeof(path), "/%s%s", image_id, leaves[i]);
		phfs_notifier_push(fs->notifier, path);
	}
}

bool phfs_quiesce(struct phfs *fs)
{
	if (!fs)
		return true;
	__atomic_store_n(&fs->stopping, true, __ATOMIC_RELAXED);
	if (phfs_notifier_stop(fs->notifier))
		return true;
	log_warn("a kernel notification is still blocked at exit; leaving it to the kernel");
	return false;
}

/* ---- attributes ---- */

void phfs_fill_stat(const struct phfs *fs, struct stat *st, mode_t mode, size_t size,
                    struct timespec mtime)
{
	memset(st, 0, sizeof(*st));
	st->st_mode = fs->set_mode ? (mode & S_IFMT) | (0777 & ~fs->umask) : mode;
	st->st_nlink = S_ISDIR(mode) ? 2 : 1; /* vim copies instead of renaming when >1 */
	st->st_uid = fs->uid;
	st->st_gid = fs->gid;
	st->st_size = (off_t)size;
	st->st_blksize = 4096;
	st->st_blocks = (blkcnt_t)((size + 511) / 512);
	st->st_mtim = mtime;
	st->st_ctim = mtime;
	st->st_atim = mtime;
}

/* Attributes of a node, from the snapshot and staging (no network except for
 * build.log, whose size is its content's). */
int phfs_stat_node(struct phfs *fs, const struct snapshot *snap, const struct node *n,
                   struct stat *st)
{
	const struct snap_image *e = NULL;
	struct timespec t = {0};
	bool pending = false;
	size_t size = 0;
	int ret;

	if (n->kind == NODE_ROOT_CHANGES) {
		char *text;
		struct timespec last;

		ret = phfs_changes_text(fs->changes, &text, &size, &last);
		if (ret < 0)
			return ret;
		free(text);
		phfs_fill_stat(fs, st, tree_mode(n->kind), size,
		               last.tv_sec ? last : fs->mounted_at);
		return 0;
	}
	if (n->kind == NODE_ROOT_STATUS) {
		/* Rendered now, as an open would: the size is the text's. */
		char *text;
		struct store_status ss;

		ret = phfs_status_text(fs, PHFS_STATUS_FRESH_MS, &text, &size);
		if (ret < 0)
			return ret;
		free(text);
		/* The time of the data it describes, not of the rendering: a
		 * reader (tar) must not see it "change" while it reads. */
		store_get_status(fs->store, &ss);
		phfs_fill_stat(fs, st, tree_mode(n->kind), size,
		               ss.last_ok.tv_sec ? ss.last_ok : fs->mounted_at);
		return 0;
	}
	t = snap->ctime;
	if (n->kind != NODE_ROOT && n->kind != NODE_ROOT_ERROR) {
		e = snapshot_find(snap, n->image);
		if (!e) {
			pending = staging_pending_exists(fs->staging, n->image);
			if (!pending)
				return -ENOENT;
		}
		if (e)
			t = e->mtime;
	}
	switch (n->kind) {
	case NODE_ROOT:
	case NODE_IMAGE:
	case NODE_GROUPS:
		phfs_fill_stat(fs, st, tree_mode(n->kind), 0, t);
		return 0;
	case NODE_ROOT_STATUS:
	case NODE_ROOT_CHANGES:
		return -ENOENT; /* answered above */
	case NODE_HISTORY:
	case NODE_HISTORY_FILE:
		return e ? phfs_history_stat(fs, n, t, st) : -ENOENT;
	case NODE_ROOT_ERROR:
	case NODE_IMAGE_ERROR:
	case NODE_REJECTED:
		if (!(n->kind == NODE_REJECTED ? staging_has_rejected(fs->staging, n->image, &size)
		                               : staging_has_error(fs->staging, n->image, &size)))
			return -ENOENT;
		phfs_fill_stat(fs, st, tree_mode(n->kind), size, t);
		return 0;
	case NODE_SPEC:
		if (e) {
			struct snap_sizes sz;

			if (!snap_image_sizes(e, &sz))
				return -ENOMEM;
			size = sz.spec_len;
		} else {
			char *tmpl = spec_render_template(n->image, &size);

			if (!tmpl)
				return -ENOMEM;
			free(tmpl);
		}
		phfs_fill_stat(fs, st, tree_mode(n->kind), size, t);
		return 0;
	case NODE_STATUS:
		if (!e && phfs_copies_made(fs->copies, n)) {
			phfs_fill_stat(fs, st, tree_mode(n->kind), 0, t); /* copied in, dropped */
			return 0;
		}
		if (!e)
			return -ENOENT; /* a pending image has no server state yet */
		if (!e->img->groups_known)
			return -EAGAIN; /* callers fetch the groups first */
		{
			struct snap_sizes sz;

			if (!snap_image_sizes(e, &sz))
				return -ENOMEM;
			phfs_fill_stat(fs, st, tree_mode(n->kind), sz.status_len, t);
		}
		return 0;
	case NODE_REBUILD:
		if (!e || !e->img->image_spec)
			return -ENOENT;
		phfs_fill_stat(fs, st, tree_mode(n->kind), 0, t);
		return 0;
	case NODE_BUILD_LOG:
		if (!e && phfs_copies_made(fs->copies, n)) {
			phfs_fill_stat(fs, st, tree_mode(n->kind), 0, t); /* copied in, dropped */
			return 0;
		}
		if (!e || !e->img->image_spec)
			return -ENOENT;
		ret = phfs_build_log_size(fs, e, &size);
		if (ret < 0)
			return ret;
		phfs_fill_stat(fs, st, tree_mode(n->kind), size, t);
		return 0;
	case NODE_GROUP:
		if (e) {
			if (!e->img->groups_known)
				return -EAGAIN; /* callers fetch the groups first */
			if (!ph_image_find_group(e->img, n->leaf))
				return -ENOENT;
		} else if (!staging_pending_has_group(fs->staging, n->image, n->leaf)) {
			return -ENOENT;
		}
		phfs_fill_stat(fs, st, tree_mode(n->kind), 0, t);
		return 0;
	case NODE_SCRATCH: {
		struct scratch *s;
		struct scratch_stat ss;

		ret = staging_scratch_open(fs->staging, n->image, n->leaf, &s);
		if (ret < 0)
			return ret;
		scratch_stat(s, &ss);
		scratch_put(s);
		phfs_fill_stat(fs, st, S_IFREG | ss.mode, ss.size, ss.mtime);
		return 0;
	}
	}
	return -ENOENT;
}

/* The kernel is about to cache the size of this content of path. */
static void report_version(struct phfs *fs, const char *path, enum node_kind kind, const char *text,
                           size_t len)
{
	if (path && text && (kind == NODE_SPEC || kind == NODE_STATUS))
		phfs_kcache_reported(fs->kcache, path, phfs_kcache_hash(text, len, 0));
}

void phfs_report_node(struct phfs *fs, const struct snapshot *snap, const struct node *n,
                      const char *path)
{
	const struct snap_image *e;
	struct snap_sizes sz;

	if (n->kind != NODE_SPEC && n->kind != NODE_STATUS)
		return;
	e = snapshot_find(snap, n->image);
	if (!e || !snap_image_sizes(e, &sz)) {
		phfs_kcache_forget(fs->kcache, path); /* a pending image's template */
		return;
	}
	if (path)
		phfs_kcache_reported(fs->kcache, path,
		                     n->kind == NODE_SPEC ? sz.spec_hash : sz.status_hash);
}

int phfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
	struct phfs *fs = phfs_ctx();
	struct phfs_handle *h = phfs_fh(fi);
	struct snapshot *snap;
	struct node n;
	int ret;

	/* fstat on an open handle describes what that handle holds. */
	if (h && h->scratch) {
		struct scratch_stat ss;

		scratch_stat(h->scratch, &ss);
		phfs_fill_stat(fs, st, S_IFREG | ss.mode, ss.size, ss.mtime);
		return 0;
	}
	if (h && h->writable) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		pthread_mutex_lock(&h->lock);
		phfs_fill_stat(fs, st, tree_mode(NODE_SPEC), h->buf_len, now);
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
	if (h && h->sink) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		phfs_fill_stat(fs, st, tree_mode(h->node.kind), 0, now);
		return 0;
	}
	if (h) {
		/* Any other open file: what the handle holds, never the
		 * network (fstat, and the kernel's GETATTR before a read, must
		 * not wait on a hung server). */
		phfs_fill_stat(fs, st, tree_mode(h->node.kind), h->ro_len,
		               h->entry ? h->entry->mtime : h->opened);
		report_version(fs, path, h->node.kind, h->ro_text, h->ro_len);
		return 0;
	}
	if (phfs_sink_path(path))
		return phfs_sink_getattr_op(fs, path, st);
	ret = tree_parse(path, &n);
	if (ret < 0)
		return ret;
	/* A copy tool filling an image directory it made (fs_copy.c). */
	if (phfs_copies_hides(fs->copies, &n, phfs_caller_pid()))
		return -ENOENT;
	/* fstat reaches here without the handle (Linux passes none): when the
	 * caller has this file open read-only, answer from what it holds, so
	 * an open file never waits on the network. */
	if (n.kind == NODE_SPEC || n.kind == NODE_STATUS || n.kind == NODE_ROOT_STATUS) {
		pid_t pid = phfs_caller_pid();
		bool found = false;

		pthread_mutex_lock(&fs->handles_lock);
		for (h = fs->handles; h && !found; h = h->next) {
			if (h->pid != pid || h->writable || h->scratch || h->node.kind != n.kind ||
			    strcmp(h->node.image, n.image) != 0)
				continue;
			phfs_fill_stat(fs, st, tree_mode(n.kind), h->ro_len,
			               h->entry ? h->entry->mtime : h->opened);
			report_version(fs, path, n.kind, h->ro_text, h->ro_len);
			found = true;
		}
		pthread_mutex_unlock(&fs->handles_lock);
		if (found)
			return 0;
	}
	if (n.kind == NODE_ROOT_STATUS || n.kind == NODE_ROOT_CHANGES) {
		/* Health must be readable while the server hangs: no fetch. */
		return phfs_stat_node(fs, NULL, &n, st);
	}
	if (n.kind == NODE_ROOT) {
		/* stat of the mount point (mount(8), ismount, shells' prompts)
		 * must not cost a request.  The kernel also asks it when its
		 * cached listing of the root may be stale: the mount is in use
		 * (a walk served from the kernel's caches sends nothing else),
		 * so renew the snapshot as it expires.  The mtime is when the
		 * listing last changed (phfs_dir_mtime): the kernel keeps its
		 * listing while it stays. */
		snap = store_peek(fs->store);
		if (store_touch(fs->store) && snap) {
			/* Too old to show (an idle spell): the kernel must
			 * drop its cached listing and ask, which waits for a
			 * fresh snapshot; a new mtime tells it so. */
			snapshot_put(snap);
			snap = NULL;
			phfs_fill_stat(fs, st, tree_mode(NODE_ROOT), 0,
			               phfs_dir_changed(fs, path, fs->mounted_at));
			return 0;
		}
		phfs_fill_stat(fs, st, tree_mode(NODE_ROOT), 0,
		               phfs_dir_mtime(fs, path, snap, fs->mounted_at));
		snapshot_put(snap);
		return 0;
	}
	/* status.json shows the groups, groups/G is one, and groups/'s mtime
	 * says whether the kernel's cached listing of it still holds (the
	 * kernel asks it only before listing it): their membership must be
	 * known and fresh (fetched here when it is not). */
	ret = n.kind == NODE_STATUS || n.kind == NODE_GROUP || n.kind == NODE_GROUPS
	          ? phfs_snapshot_groups(fs, n.image, &snap)
	          : phfs_snapshot_shown(fs, n.image[0] ? n.image : NULL, &snap);
	if (ret < 0)
		return ret;
	ret = phfs_stat_node(fs, snap, &n, st);
	if (ret == 0)
		phfs_report_node(fs, snap, &n, path);
	if (ret == 0 && (n.kind == NODE_IMAGE || n.kind == NODE_HISTORY || n.kind == NODE_GROUPS))
		st->st_mtim = st->st_ctim = st->st_atim =
		    phfs_dir_mtime(fs, path, snap, st->st_mtim);
	snapshot_put(snap);
	/* A note a copy tool just wrote (and we dropped): cp -a and rsync
	 * set its times and mode next, and must find it. */
	if (ret == -ENOENT &&
	    (n.kind == NODE_IMAGE_ERROR || n.kind == NODE_REJECTED || n.kind == NODE_ROOT_ERROR) &&
	    phfs_sink_noted(fs->sink, path)) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		phfs_fill_stat(fs, st, tree_mode(n.kind), 0, now);
		ret = 0;
	}
	return ret;
}

/* chmod/chown/utimens: editors and cp -p call them after saving; they are
 * kept on scratch files and accepted as no-ops elsewhere, since PrimeHub has
 * no such attributes. */
/* The scratch file a path or handle names, as a counted reference, or NULL. */
static struct scratch *scratch_at(struct phfs *fs, const char *path, struct fuse_file_info *fi)
{
	struct phfs_handle *h = phfs_fh(fi);
	struct scratch *s = NULL;
	struct node n;

	if (h)
		return h->scratch ? scratch_get(h->scratch) : NULL;
	if (phfs_sink_path(path))
		return NULL;
	if (tree_parse(path, &n) == 0 && n.kind == NODE_SCRATCH)
		staging_scratch_open(fs->staging, n.image, n.leaf, &s);
	return s;
}

/* For the no-op attribute changes: succeed on what exists, ENOENT else. */
static int exists(const char *path, struct fuse_file_info *fi)
{
	return fi ? 0 : phfs_getattr(path, &(struct stat){0}, NULL);
}

int phfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi)
{
	struct scratch *s = scratch_at(phfs_ctx(), path, fi);

	if (!s)
		return exists(path, fi);
	scratch_chmod(s, mode);
	scratch_put(s);
	return 0;
}

int phfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi)
{
	(void)uid;
	(void)gid;
	return exists(path, fi);
}

/* Whether the calling process holds a handle of node n. */
static bool caller_has_open(struct phfs *fs, const struct node *n)
{
	pid_t pid = phfs_caller_pid();
	bool found = false;

	pthread_mutex_lock(&fs->handles_lock);
	for (struct phfs_handle *h = fs->handles; h && !found; h = h->next)
		found = h->pid == pid && h->node.kind == n->kind &&
		        strcmp(h->node.image, n->image) == 0;
	pthread_mutex_unlock(&fs->handles_lock);
	return found;
}

int phfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi)
{
	const struct timespec *mt = tv && tv[1].tv_nsec != UTIME_NOW ? &tv[1] : NULL;
	struct scratch *s;
	struct node n;

	/* touch IMAGE/rebuild opens it (the gesture), then sets its times
	 * while it holds the file open (the kernel sends no handle).  When
	 * the open was refused, failing here too lets touch report the
	 * open's reason: GNU touch reports the open's errno only when the
	 * time change fails as well. */
	if (!fi && path && tree_parse(path, &n) == 0 && n.kind == NODE_REBUILD)
		return caller_has_open(phfs_ctx(), &n) ? 0 : -EPERM;
	if (mt && mt->tv_nsec == UTIME_OMIT)
		return exists(path, fi);
	if (!fi && phfs_sink_path(path)) {
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		return phfs_sink_set_mtime(phfs_ctx()->sink, path, mt ? mt : &now);
	}
	s = scratch_at(phfs_ctx(), path, fi);
	if (!s)
		return exists(path, fi);
	scratch_touch(s, mt);
	scratch_put(s);
	return 0;
}

/*
 * df: only what is true.  Blocks are the budget of local scratch files and
 * kept drafts (STAGING_MAX_TOTAL), free what of it is unused: that is how
 * much can be written here (editors check for room).  Files are the images
 * of the current snapshot (never a fetch: df must not wait on the server),
 * none free: there is no inode table, and no number of images to come.
 */
int phfs_statfs(const char *path, struct statvfs *sv)
{
	struct phfs *fs = phfs_ctx();
	struct snapshot *snap = store_peek(fs->store);
	size_t used = staging_bytes_used(fs->staging);
	size_t left = used < STAGING_MAX_TOTAL ? STAGING_MAX_TOTAL - used : 0;

	(void)path;
	memset(sv, 0, sizeof(*sv));
	sv->f_bsize = 4096;
	sv->f_frsize = 4096;
	sv->f_blocks = STAGING_MAX_TOTAL / 4096;
	sv->f_bfree = sv->f_bavail = left / 4096;
	sv->f_files = snap ? snap->nimages : 0;
	sv->f_ffree = sv->f_favail = 0;
	sv->f_namemax = TREE_NAME_MAX;
	snapshot_put(snap);
	return 0;
}

int phfs_symlink(const char *target, const char *path)
{
	(void)target;
	(void)path;
	/* EACCES, not EPERM: Emacs then skips its lock-file fallback dance. */
	return -EACCES;
}

int phfs_mknod(const char *path, mode_t mode, dev_t dev)
{
	(void)path;
	(void)mode;
	(void)dev;
	/* Only image directories, spec.json and editors' regular scratch
	 * files live here: no fifos, sockets or devices. */
	return -EPERM;
}

int phfs_link(const char *from, const char *to)
{
	(void)from;
	(void)to;
	return -EPERM;
}

/* A rename onto spec.json makes the renamed file's pages and size the
 * kernel's spec.json; an unlink ends its version: forget both paths before
 * and after (fs_kcache.c). */
int phfs_rename_op(const char *from, const char *to, unsigned int flags)
{
	struct phfs *fs = phfs_ctx();
	int ret;

	phfs_kcache_forget(fs->kcache, from);
	phfs_kcache_forget(fs->kcache, to);
	ret = phfs_rename(from, to, flags);
	phfs_kcache_forget(fs->kcache, from);
	phfs_kcache_forget(fs->kcache, to);
	return ret;
}

int phfs_unlink_op(const char *path)
{
	struct phfs *fs = phfs_ctx();
	int ret;

	phfs_kcache_forget(fs->kcache, path);
	ret = phfs_unlink(path);
	phfs_kcache_forget(fs->kcache, path);
	return ret;
}

/* ---- the context ---- */

static int fetch_tree(void *arg, struct ph_tree *out, struct ph_err *err)
{
	return ph_fetch_tree(arg, out, err);
}

static int fetch_catalog(void *arg, struct ph_tree *out, struct ph_err *err)
{
	return ph_fetch_catalog(arg, out, err);
}

static int fetch_membership(void *arg, struct ph_membership *out, struct ph_err *err)
{
	return ph_fetch_membership(arg, out, err);
}

static int fetch_image(void *arg, const char *id, struct ph_image **out, struct ph_err *err)
{
	return ph_get_image(arg, id, out, err);
}

static void tree_changed(void *arg, const char *image_id)
{
	phfs_invalidate(arg, image_id);
}

static void tree_hold(void *arg, struct snapshot *shown, char *const *ids, size_t n)
{
	struct phfs *fs = arg;

	phfs_notifier_hold(fs->notifier, shown, ids, n);
}

int phfs_new(struct ph_api *api, long ttl_ms, struct phfs **out)
{
	struct phfs *fs = calloc(1, sizeof(*fs));
	int ret;

	if (!fs)
		return -ENOMEM;
	fs->api = api;
	fs->ttl_ms = ttl_ms;
	pthread_mutex_init(&fs->handles_lock, NULL);
	pthread_mutex_init(&fs->busy_lock, NULL);
	pthread_mutex_init(&fs->poll_lock, NULL);
	pthread_mutex_init(&fs->status_lock, NULL);
	{
		pthread_condattr_t ca;

		pthread_condattr_init(&ca);
		pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
		pthread_cond_init(&fs->busy_cond, &ca);
		pthread_condattr_destroy(&ca);
	}
	clock_gettime(CLOCK_REALTIME, &fs->mounted_at);
	fs->uid = getuid();
	fs->gid = getgid();
	fs->logs = phfs_log_cache_new();
	fs->readers = phfs_readers_new();
	fs->kcache = phfs_kcache_new(ttl_ms);
	fs->inodes = inodes_new();
	fs->copies = phfs_copies_new();
	fs->changes = phfs_changes_new();
	fs->sink = phfs_sink_new();
	fs->notifier = phfs_notifier_new();
	ret = fs->logs && fs->readers && fs->kcache && fs->inodes && fs->copies && fs->changes &&
	              fs->sink && fs->notifier
	          ? store_new(ttl_ms, fetch_tree, api, tree_changed, fs, &fs->store)
	          : -ENOMEM;
	if (ret == 0) {
		/* A reader waiting for a fetch lets go when its request is
		 * interrupted (Ctrl-C) or the mount goes away. */
		store_set_abort(fs->store, phfs_request_interrupted, fs);
		store_set_membership(fs->store, fetch_membership, fetch_image, api);
		store_set_holder(fs->store, tree_hold);
		ret = catalog_new(ttl_ms, fetch_catalog, api, &fs->catalog);
	}
	if (ret == 0)
		ret = phfs_walkers_new(&fs->walkers);
	if (ret == 0)
		ret = staging_new(&fs->staging);
	if (ret < 0) {
		phfs_free(fs);
		return ret;
	}
	*out = fs;
	return 0;
}

int phfs_request_interrupted(void *arg)
{
	struct phfs *fs = arg;

	/* Unmounting: end whatever is in flight, so the daemon exits now
	 * rather than when a hung server's timeout runs out. */
	if (fs && __atomic_load_n(&fs->stopping, __ATOMIC_RELAXED))
		return 1;
	/* Only a FUSE request thread has a context; the refresher has none. */
	return phfs_caller_interrupted();
}

void phfs_set_owner(struct phfs *fs, const uid_t *uid, const gid_t *gid, const mode_t *umask)
{
	if (uid)
		fs->uid = *uid;
	if (gid)
		fs->gid = *gid;
	if (umask) {
		fs->set_mode = true;
		fs->umask = *umask & 0777;
	}
}

int phfs_start(struct phfs *fs)
{
	int ret = phfs_notifier_start(fs->notifier, fs);

	return ret < 0 ? ret : store_start(fs->store);
}

void phfs_free(struct phfs *fs)
{
	if (!fs)
		return;
	/* Whatever is still in flight (a refresh stuck on a hung server) ends
	 * now: exiting must not wait for a timeout. */
	__atomic_store_n(&fs->stopping, true, __ATOMIC_RELAXED);
	while (fs->handles)
		phfs_handle_free(fs, fs->handles);
	phfs_dirlists_free(fs);
	pthread_mutex_destroy(&fs->handles_lock);
	ph_strlist_free(&fs->busy);
	pthread_cond_destroy(&fs->busy_cond);
	pthread_mutex_destroy(&fs->busy_lock);
	pthread_mutex_destroy(&fs->poll_lock);
	store_free(fs->store); /* the refresher, which queues notifications, ends */
	catalog_free(fs->catalog);
	phfs_walkers_free(fs->walkers);
	phfs_notifier_free(fs->notifier);
	staging_free(fs->staging);
	phfs_log_cache_free(fs->logs);
	phfs_readers_free(fs->readers);
	phfs_kcache_free(fs->kcache);
	inodes_free(fs->inodes);
	phfs_copies_free(fs->copies);
	phfs_changes_free(fs->changes);
	phfs_sink_free(fs->sink);
	history_close(fs->history);
	free(fs->user);
	free(fs->status_text);
	pthread_mutex_destroy(&fs->status_lock);
	free(fs);
}

int phfs_set_user(struct phfs *fs, const char *user)
{
	char *copy = strdup(user);

	if (!copy)
		return -ENOMEM;
	free(fs->user);
	fs->user = copy;
	return 0;
}
