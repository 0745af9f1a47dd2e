/*
 * fs_internal.h - shared by the FUSE glue files (fs_ll.c: libfuse's
 * low-level operations, inode numbers to paths; fs.c: the context and
 * attributes; fs_list.c: listings; fs_read.c: read-only content; fs_write.c:
 * spec.json saves and scratch files; fs_dir.c: mkdir/rmdir, groups, rename,
 * unlink).  This layer knows no JSON and no HTTP: it resolves paths with
 * tree, reads snapshots, keeps local state in staging, asks spec to turn a
 * save into an update and primehub to send it.
 */
#ifndef PRIMEHUBFS_FS_INTERNAL_H
#define PRIMEHUBFS_FS_INTERNAL_H

#include "primehubfs/fs.h"
#include <pthread.h>
#include <stdbool.h>

#include "primehubfs/catalog.h"
#include "primehubfs/error.h"
#include "primehubfs/primehub.h"
#include "primehubfs/snapshot.h"
#include "primehubfs/staging.h"
#include "primehubfs/tree.h"

/* How long after a refused unlink of spec.json the same process may not
 * disconnect that image's groups: this is `rm -r IMAGE` at work. */
#define PHFS_RM_GUARD_MS 10000

/* How long, and for how many processes, the version of spec.json a process
 * read is remembered as the base of its later save (fs_write.c). */
#define PHFS_READERS_MAX   256
#define PHFS_READER_TTL_MS (3600L * 1000)

/* How many listings are kept between the READDIRs of one directory: one
 * per directory being listed at once (a walk lists one at a time); a
 * listing pushed out is taken again, from a newer snapshot. */
#define PHFS_KEPT_LISTINGS 32

struct phfs_log_cache; /* build.log texts, fs_read.c */
struct phfs_readers;   /* what each process read, fs_readers.c */
struct phfs_kcache;    /* what the kernel may keep cached, fs_kcache.c */
struct phfs_copies;    /* image directories a copy tool is filling, fs_copy.c */
struct phfs_changes;   /* what this mount sent, /.changes, fs_changes.c */
struct phfs_notifier;  /* the thread that tells the kernel, fs_notify.c */
struct phfs_sink;      /* what copy tools write beside the images, fs_sink.c */
struct phfs_walkers;   /* processes that listed the root, fs_walkers.c */

/* The one context of a mount (fuse_get_context()->private_data). */
struct phfs {
	struct ph_api *api;
	struct store *store;
	struct catalog *catalog; /* groups and pull secrets, when needed */
	struct staging *staging;
	struct fuse_session *se; /* set after fuse_session_new, for notifications */
	struct inodes *inodes;   /* the kernel's inode numbers (inodes.h) */
	struct phfs_notifier *notifier;
	long ttl_ms;
	bool stopping;              /* atomic: unmounting, abort transfers */
	struct timespec mounted_at; /* mtime of the root before the first listing */
	uid_t uid;
	gid_t gid;
	bool set_mode; /* -o umask: every file's permissions are 0777 & ~umask */
	mode_t umask;
	char *user; /* for /.status, may be NULL */
	/* The last rendering of /.status, so the size a stat just reported is
	 * the size the open that follows reads (tar checks). */
	pthread_mutex_t status_lock;
	char *status_text;
	size_t status_len;
	long long status_at_ms; /* CLOCK_MONOTONIC */
	char status_key[128];   /* the state it was rendered from */
	struct phfs_log_cache *logs;
	struct phfs_readers *readers;
	struct phfs_kcache *kcache;
	struct phfs_copies *copies;
	struct phfs_changes *changes;
	struct phfs_sink *sink;
	struct phfs_walkers *walkers;
	struct history *history; /* NULL: no history kept (-o history_keep=0) */
	/* Images read again while they build (phfs_poll_building), at most
	 * one read at a time: when each was last read. */
	pthread_mutex_t poll_lock;
	bool polling;
	struct {
		char image[TREE_NAME_MAX + 1];
		long long at_ms;        /* CLOCK_MONOTONIC */
		long long expect_until; /* a build may start before this */
	} polled[16];
	bool history_warned; /* atomic: a failure to keep was logged */
	/* Images whose change is being sent: one change of an image at a time,
	 * so two saves of it through this mount are ordered and the second is
	 * compared with what the first left (phfs_image_lock). */
	pthread_mutex_t busy_lock;
	pthread_cond_t busy_cond;
	struct ph_strlist busy;
	/* atomic: the snapshot (its fetch time in ns) whose unlistable group
	 * names were last logged, so the warning comes once per refresh. */
	long long bad_names_warned;
	/* Open handles, so the ones whose RELEASE never came (the kernel may
	 * drop queued releases at unmount) are still freed. */
	pthread_mutex_t handles_lock;
	struct phfs_handle *handles;
	/* Listings kept between the READDIRs of one directory (fs_list.c),
	 * also under handles_lock. */
	struct {
		uint64_t ino;
		struct phfs_dirlist *l;
		unsigned long used;
	} listings[PHFS_KEPT_LISTINGS];
	unsigned long listings_clock;
	uint64_t dir_changes; /* atomic: phfs_dir_changed */
};

/* An open file. */
struct phfs_handle {
	struct phfs_handle *prev, *next; /* in phfs.handles */
	struct node node;
	pid_t pid; /* who opened it (fuse_get_context()->pid) */
	pthread_mutex_t lock;
	struct timespec opened; /* CLOCK_REALTIME: mtime of what the handle holds
	                         * when no snapshot entry says better */
	/* Read-only content held for the life of the handle (so a read never
	 * sees bytes of two versions): either an entry's text or an own copy. */
	struct snap_image *entry; /* spec.json/status.json: a counted reference */
	const char *ro_text;      /* points into entry or own_text */
	size_t ro_len;
	char *own_text;
	/* spec.json opened for writing. */
	bool writable;
	/* status.json or build.log written by a copy tool: writes are taken
	 * and dropped (derived files, never sent). */
	bool sink;
	bool pending; /* a pending image: the first save creates it */
	/* Read-only, reading through the kernel's page cache (keep_cache):
	 * a writer of the same spec.json waits for it (fs_file.c).  Under
	 * phfs.handles_lock. */
	bool cached;
	char *base; /* the text the writer started from */
	size_t base_len;
	/* What this process read before, when older than base: the base once
	 * the handle is emptied before its first write (vim opens without
	 * O_TRUNC, then ftruncate(fd, 0)).  NULL when none. */
	char *seen;
	size_t seen_len;
	bool wrote; /* a write since open */
	char *buf;  /* what they have written so far */
	size_t buf_len, buf_cap;
	bool dirty;   /* written since the last commit */
	bool too_big; /* a write went past SPEC_MAX_SIZE */
	/* Scratch file. */
	struct scratch *scratch;
};

/* fs_ll.c: the mount, and the request this thread serves. */
struct phfs *phfs_ctx(void);
/* The process whose request is being served (its thread id, as FUSE
 * gives it); 0 on threads that serve none (the refresher). */
pid_t phfs_caller_pid(void);
/* Whether the request being served was interrupted (Ctrl-C); 0 when none. */
int phfs_caller_interrupted(void);
/* Tell the kernel path's cached attributes and pages (a directory's
 * listing) are stale.  On the notifier thread only (fs_notify.c). */
void phfs_kernel_invalidate(struct phfs *fs, const char *path);

static inline struct phfs_handle *phfs_fh(const struct fuse_file_info *fi)
{
	return fi ? (struct phfs_handle *)(uintptr_t)fi->fh : NULL;
}

/* fs.c */
/* Wait until no other change of image is being sent, and mark it busy:
 * 0, or -EINTR when the caller was interrupted while waiting. */
int phfs_image_lock(struct phfs *fs, const char *image);
void phfs_image_unlock(struct phfs *fs, const char *image);
/* Whether the process being served is a copy tool (cp, tar, cpio, pax; or
 * rsync too, when or_rsync). */
bool phfs_caller_is_copier(bool or_rsync);
/* "PROGRAM, pid N" of the process whose request is being served. */
void phfs_describe_caller(char *out, size_t size);
/* The errno a program sees for an error: transport failures become EIO. */
int phfs_user_error(int ret);
int phfs_snapshot(struct phfs *fs, struct snapshot **snap);
/* phfs_snapshot for what shows image's files to readers (attributes, a
 * read-only open, its directory's listing): while a refresh that changed
 * the image is not yet told to the kernel, the snapshot its caches still
 * describe (fs_notify.c), so a size is always what a read returns.
 * image NULL: phfs_snapshot. */
int phfs_snapshot_shown(struct phfs *fs, const char *image, struct snapshot **snap);
/* phfs_snapshot_shown, with image's groups known and fresh in it (store_get_groups):
 * for whatever shows membership (status.json, groups/). */
int phfs_snapshot_groups(struct phfs *fs, const char *image, struct snapshot **snap);
/* Attributes of n (spec.json, status.json) from snap go to the kernel at
 * path: remember which version (fs_kcache.c). */
void phfs_report_node(struct phfs *fs, const struct snapshot *snap, const struct node *n,
                      const char *path);
/* Tell the user why: the log, and the .error file of `dir` ("" = root). */
void phfs_refuse(struct phfs *fs, const char *dir, const char *what, const struct ph_err *err);
void phfs_succeeded(struct phfs *fs, const char *dir);
bool phfs_image_exists(struct phfs *fs, const struct snapshot *snap, const char *image,
                       bool *pending);
struct phfs_handle *phfs_handle_new(struct phfs *fs, const struct node *node);
/* Attributes as every file here has them: owner, links, blocks. */
void phfs_fill_stat(const struct phfs *fs, struct stat *st, mode_t mode, size_t size,
                    struct timespec mtime);
void phfs_handle_free(struct phfs *fs, struct phfs_handle *h);
void phfs_invalidate(struct phfs *fs, const char *image_id); /* store_changed_fn */

/* After a mutation failed with err->maybe_applied (its answer was lost, it
 * may have been applied): never resend it; re-read the image instead.  0
 * with *now the image as PrimeHub now holds it (NULL: no such image), err
 * untouched.  When the re-read fails too: -EIO, err says whether the `what`
 * ("save", "deletion", ...) was applied is unknown, and the next look
 * fetches afresh. */
int phfs_reread_after_lost(struct phfs *fs, const char *image, const char *what, struct ph_err *err,
                           struct ph_image **now);
/* The re-read shows the mutation was not applied: -EIO saying so (and that
 * nothing changed, when nothing_changed). */
int phfs_lost_not_applied(struct ph_err *err, const char *what, bool nothing_changed);
/* A line in dir's .error that is not a refusal (a save that succeeded with a
 * remark). */
void phfs_remark(struct phfs *fs, const char *dir, const char *what, const char *msg);

int phfs_stat_node(struct phfs *fs, const struct snapshot *snap, const struct node *n,
                   struct stat *st);

/* fs_file.c */
int phfs_open(const char *path, struct fuse_file_info *fi);
int phfs_create(const char *path, mode_t mode, struct fuse_file_info *fi);
int phfs_read(const char *path, char *buf, size_t size, off_t off, struct fuse_file_info *fi);
int phfs_write(const char *path, const char *buf, size_t size, off_t off,
               struct fuse_file_info *fi);
int phfs_truncate(const char *path, off_t size, struct fuse_file_info *fi);
int phfs_flush(const char *path, struct fuse_file_info *fi);
int phfs_release(const char *path, struct fuse_file_info *fi);

/* fs.c: the path-based operations fs_ll.c turns requests into (-errno). */
int phfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi);
int phfs_chmod(const char *path, mode_t mode, struct fuse_file_info *fi);
int phfs_chown(const char *path, uid_t uid, gid_t gid, struct fuse_file_info *fi);
int phfs_utimens(const char *path, const struct timespec tv[2], struct fuse_file_info *fi);
int phfs_statfs(const char *path, struct statvfs *sv);
int phfs_symlink(const char *target, const char *path);
int phfs_mknod(const char *path, mode_t mode, dev_t dev);
int phfs_link(const char *from, const char *to);
int phfs_rename_op(const char *from, const char *to, unsigned int flags);
int phfs_unlink_op(const char *path);

/* fs_list.c */
struct phfs_dirlist;
/* The listing of directory ino (at path) for a READDIR at offset off: taken
 * afresh at offset 0, else the one an earlier READDIR of it took.  A
 * counted reference, for phfs_list_put. */
int phfs_list_get(struct phfs *fs, uint64_t ino, const char *path, off_t off,
                  struct phfs_dirlist **out);
/* ended: it was read to its end, keep it no longer.  l may be NULL. */
void phfs_list_put(struct phfs *fs, uint64_t ino, struct phfs_dirlist *l, bool ended);
/* Called for each entry from offset on: type is S_IFDIR or S_IFREG, st
 * NULL when the entry goes without attributes; next the offset after it.
 * Non-zero: no room for it. */
typedef int (*phfs_list_add_fn)(void *arg, const char *name, mode_t type, const struct stat *st,
                                off_t next);
/* 0 when the listing's end was reached, 1 when add had no room. */
int phfs_list_fill(struct phfs *fs, struct phfs_dirlist *l, const char *path, off_t offset,
                   bool plus, phfs_list_add_fn add, void *arg);
/* The mtime a directory shows: base, or later when its listing changed
 * since the kernel was last told (the kernel drops a cached listing when
 * the mtime differs).  snap: what the listing is taken from (borrowed). */
struct timespec phfs_dir_mtime(struct phfs *fs, const char *path, struct snapshot *snap,
                               struct timespec base);
/* A new mtime for path, as if its listing changed: the kernel drops what
 * it cached of it. */
struct timespec phfs_dir_changed(struct phfs *fs, const char *path, struct timespec base);

/* fs_read.c */
int phfs_open_readonly(struct phfs *fs, struct phfs_handle *h);
int phfs_build_log_size(struct phfs *fs, const struct snap_image *e, size_t *size);
/* A build.log handle read at its end takes up a longer log (tail -f). */
void phfs_build_log_follow(struct phfs *fs, struct phfs_handle *h);
/* A copy of the text of /.status (malloc'd; never fetches): the last
 * rendering when younger than max_age_ms and nothing but the clock changed
 * since (so only the age in it can be that much behind), else a new one. */
int phfs_status_text(struct phfs *fs, long max_age_ms, char **text, size_t *len);
/* getattr renders afresh unless the last rendering is this young; an open
 * reuses one up to PHFS_STATUS_REUSE_MS old.  The kernel keeps attributes
 * for 1 s (attr_timeout), so the size it shows came from a rendering an
 * open still reuses. */
#define PHFS_STATUS_FRESH_MS 100
#define PHFS_STATUS_REUSE_MS 1200
struct phfs_log_cache *phfs_log_cache_new(void);
void phfs_log_cache_free(struct phfs_log_cache *c);

/* fs_write.c */
int phfs_open_spec(struct phfs *fs, struct phfs_handle *h, int flags);
int phfs_spec_write(struct phfs_handle *h, const char *buf, size_t size, off_t off);
int phfs_spec_truncate(struct phfs_handle *h, off_t size);
int phfs_spec_commit(struct phfs *fs, struct phfs_handle *h);
int phfs_commit_text(struct phfs *fs, const char *image, const char *text, size_t len,
                     const char *base, size_t base_len);
int phfs_rename_onto_spec(struct phfs *fs, const struct node *from, const struct node *to);

/* fs_kcache.c: the kernel keeps attributes, entries and (for unchanged
 * files and listings) pages across opens for ttl; these say when cached
 * pages or a cached listing are still this daemon's truth.  Versions are
 * phfs_kcache_hash values of the content. */
uint64_t phfs_kcache_hash(const void *data, size_t len, uint64_t seed);
struct phfs_kcache *phfs_kcache_new(long attr_timeout_ms);
void phfs_kcache_free(struct phfs_kcache *k);
/* The kernel was given attributes of path's content `version`. */
void phfs_kcache_reported(struct phfs_kcache *k, const char *path, uint64_t version);
/* A read-only open of path's content `version`: whether the kernel may keep
 * its cached pages (else the open reads past them, direct_io). */
enum phfs_kcache_use {
	PHFS_KCACHE_BYPASS, /* read past the page cache (direct_io) */
	PHFS_KCACHE_FILL,   /* read through it, emptied at open */
	PHFS_KCACHE_KEEP,   /* read through it as it is (keep_cache) */
};
enum phfs_kcache_use phfs_kcache_open(struct phfs_kcache *k, const char *path, uint64_t version);
/* Written, truncated, renamed or removed through the mount: forget it, and
 * keep no page cache of it until the kernel's attributes of that moment
 * have expired. */
void phfs_kcache_forget(struct phfs_kcache *k, const char *path);
/* A directory whose listing is `listing` (a hash) shows base as its mtime
 * unless the listing changed since first seen: then the time it was seen
 * to change, when later than base.  A listing handed out ttl ago or more
 * counts as a change. */
struct timespec phfs_kcache_dir_mtime(struct phfs_kcache *k, const char *path, uint64_t listing,
                                      struct timespec base);
/* path's listing was just handed out to the kernel: ttl from now, what
 * came with it has expired, and its mtime moves (see above). */
void phfs_kcache_dir_listed(struct phfs_kcache *k, const char *path);

/* fs_list.c: free the listings still kept (at exit). */
void phfs_dirlists_free(struct phfs *fs);

/* fs_copy.c: cp -r, tar -x and copytree fill a directory they made as if
 * it were empty.  For a while the process that made an image directory
 * does not see the fixed entries it has not made itself yet. */
struct phfs_copies *phfs_copies_new(void);
void phfs_copies_free(struct phfs_copies *c);
/* pid made image's directory (mkdir); hide: it is a copy tool. */
void phfs_copies_made_dir(struct phfs_copies *c, const char *image, pid_t pid, bool hide);
/* Whether pid made image's directory a short while ago (it may fill it). */
bool phfs_copies_is_maker(struct phfs_copies *c, const char *image, pid_t pid);
/* Whether n (spec.json, status.json, build.log, groups/) is hidden from pid. */
bool phfs_copies_hides(struct phfs_copies *c, const struct node *n, pid_t pid);
/* pid makes n: true when it was hidden from pid until now. */
bool phfs_copies_take(struct phfs_copies *c, const struct node *n, pid_t pid);
/* Whether the maker of image's directory made n (a written status.json of
 * a pending image then stats as an empty file, so cp -a and tar can set
 * its times). */
bool phfs_copies_made(struct phfs_copies *c, const struct node *n);

/* fs_sink.c: names at the top that begin with a dot (.git, .gitignore, a
 * copy tool's temporary files), other than the mount's own, made by copy
 * tools: remembered, never sent, contents dropped. */
bool phfs_sink_path(const char *path);
struct phfs_sink *phfs_sink_new(void);
void phfs_sink_free(struct phfs_sink *s);
int phfs_sink_stat(struct phfs_sink *s, const char *path, bool *dir, struct timespec *mtime);
/* 0, or -EEXIST (excl, or a directory), -ENOENT (no parent), -ENOSPC. */
int phfs_sink_make(struct phfs_sink *s, const char *path, bool dir, bool excl);
int phfs_sink_set_mtime(struct phfs_sink *s, const char *path, const struct timespec *mtime);
int phfs_sink_remove(struct phfs_sink *s, const char *path, bool dir);
void phfs_sink_drop(struct phfs_sink *s, const char *path); /* and all under it */
int phfs_sink_rename(struct phfs_sink *s, const char *from, const char *to);
/* A note (.error, spec.json.rejected) a copy tool wrote and we dropped:
 * for a minute it stats as an empty file, so the copy can set its times. */
void phfs_sink_note(struct phfs_sink *s, const char *path);
bool phfs_sink_noted(struct phfs_sink *s, const char *path);
int phfs_sink_list(struct phfs_sink *s, const char *dir,
                   void (*add)(void *arg, const char *name, bool is_dir), void *arg);
/* fs_sink_ops.c: the FUSE operations on such paths. */
int phfs_sink_getattr_op(struct phfs *fs, const char *path, struct stat *st);
int phfs_sink_mkdir_op(struct phfs *fs, const char *path);
int phfs_sink_open_op(struct phfs *fs, const char *path, struct fuse_file_info *fi, bool create);
int phfs_sink_remove_op(struct phfs *fs, const char *path, bool dir);
int phfs_sink_rename_op(struct phfs *fs, const char *from, const char *to);
bool phfs_caller_is_rsync(void);

/* While image builds, read it again (at most once a second) so status.json
 * shows the phase as it changes; never waits for another such read. */
void phfs_poll_building(struct phfs *fs, const char *image);
/* This mount just saved image: if it is a custom image whose build has no
 * phase yet, PrimeHub's builder starts one within moments; poll it too. */
void phfs_expect_build(struct phfs *fs, const char *image);

/* fs_history.c: IMAGE/.history/.  always: keep text even for an image with
 * no versions yet (a writer's base, a save); else only for one with some. */
void phfs_history_keep(struct phfs *fs, const char *image, const char *text, size_t len,
                       bool always);
int phfs_history_stat(struct phfs *fs, const struct node *n, struct timespec dir_time,
                      struct stat *st);
int phfs_history_list(struct phfs *fs, const char *image, void (*add)(void *arg, const char *name),
                      void *arg);
int phfs_history_open(struct phfs *fs, struct phfs_handle *h);

/* fs_notify.c: kernel invalidations, made on a thread of their own. */
struct phfs_notifier *phfs_notifier_new(void);
void phfs_notifier_free(struct phfs_notifier *q); /* stops it first */
/* Queue path for phfs_kernel_invalidate; NULL means the root. */
void phfs_notifier_push(struct phfs_notifier *q, const char *path);
/* Before a refresh publishes: serve the n images ids (sorted) from shown
 * until the notifier reaches them (see fs_notify.c). */
void phfs_notifier_hold(struct phfs_notifier *q, struct snapshot *shown, char *const *ids,
                        size_t n);
/* Whether image is held: then *snap is a reference to the snapshot the
 * kernel's caches describe. */
bool phfs_notifier_held(struct phfs_notifier *q, const char *image, struct snapshot **snap);
int phfs_notifier_start(struct phfs_notifier *q, struct phfs *fs);
/* Stop and join (a few seconds at most): true when no call is made after
 * it returns, false when one is still blocked in the kernel. */
bool phfs_notifier_stop(struct phfs_notifier *q);

/* fs_changes.c: /.changes, every change this mount sent. */
struct phfs_changes *phfs_changes_new(void);
void phfs_changes_free(struct phfs_changes *c);
/* A change of image was sent (or, ret ECANCELED, not sent: dry run): op is
 * the operation (updateImage ...), detail what it changes. */
void phfs_change(struct phfs *fs, const char *image, const char *op, const char *detail, int ret,
                 const struct ph_err *err);
/* The lines, and the time of the newest (0 when none). */
int phfs_changes_text(struct phfs_changes *c, char **text, size_t *len, struct timespec *last);

/* fs_readers.c */
struct phfs_readers *phfs_readers_new(void);
void phfs_readers_free(struct phfs_readers *r);
/* Forget what every process read of an image (it was deleted). */
void phfs_readers_forget(struct phfs *fs, const char *image);
/* The caller opened version e of image's spec.json (replace: after a save,
 * it now builds on e). */
void phfs_reader_note(struct phfs *fs, const char *image, const struct snap_image *e, bool replace);
/* A copy of the spec.json the caller saw of image; *text NULL when none. */
int phfs_reader_seen_text(struct phfs *fs, const char *image, char **text, size_t *len);
/* After a conflict refusal: what the caller reads next is its new base. */
void phfs_reader_drop(struct phfs *fs, const char *image);
/* After a save by the caller: it builds on what the snapshot shows. */
void phfs_reader_saved(struct phfs *fs, const char *image);
/* fs_dir.c */
int phfs_mkdir(const char *path, mode_t mode);
int phfs_rmdir(const char *path);
int phfs_unlink(const char *path);
int phfs_rename(const char *from, const char *to, unsigned int flags);
int phfs_group_connect(struct phfs *fs, const struct node *node);
/* fs_write.c: build a custom image's current imageSpec again (touch
 * IMAGE/rebuild); refused, with the reason in .error, for a plain image or
 * while a build runs. */
int phfs_rebuild(struct phfs *fs, const struct node *node);
/* fs_walkers.c: the calling process listed the root a few seconds ago, or
 * its parent did a moment ago: it is walking, and wants every image's
 * groups.  note_root: the caller opens or reads the root. */
int phfs_walkers_new(struct phfs_walkers **out);
void phfs_walkers_free(struct phfs_walkers *w);
void phfs_walkers_note_root(struct phfs_walkers *w);
bool phfs_walkers_caller_walks(struct phfs_walkers *w);

#endif
