/*
 * fs.h - the FUSE layer's face to main: make the mount's context and the
 * libfuse session that serves it (low-level API: fs_ll.c).
 *
 * Ownership: phfs_new borrows api (main frees it after phfs_free) and owns
 * the store, staging and caches it makes.
 */
#ifndef PRIMEHUBFS_FS_H
#define PRIMEHUBFS_FS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include "primehubfs/primehub.h"

struct phfs;

int phfs_new(struct ph_api *api, long ttl_ms, struct phfs **out);
void phfs_free(struct phfs *fs);
/* The PrimeHub user the token belongs to, shown in /.status (copied). */
int phfs_set_user(struct phfs *fs, const char *user);
/* Versions of spec.json kept on disk (IMAGE/.history/); fs owns h. */
struct history;
void phfs_set_history(struct phfs *fs, struct history *h);
/* -o uid=N, gid=N, umask=M (libfuse's high-level options, served here):
 * NULL leaves the mounting user's, and each file's own modes. */
void phfs_set_owner(struct phfs *fs, const uid_t *uid, const gid_t *gid, const mode_t *umask);
/* The libfuse session serving fs (NULL: bad options, libfuse said why);
 * fs keeps it for the refresher's notifications. */
struct fuse_session *phfs_session_new(struct phfs *fs, struct fuse_args *args);
/* The loop has ended and the mount is gone (call after
 * fuse_session_unmount, which ends any notification blocked in the kernel,
 * and before fuse_session_destroy): no kernel notification from now on;
 * the refresher runs until phfs_free. */
bool phfs_quiesce(struct phfs *fs); /* false: do not destroy the session, just exit */
/* Whether the FUSE request being served was interrupted (used to abort
 * waits and transfers). */
int phfs_request_interrupted(void *arg);
/* After daemonizing: threads do not survive fork. */
int phfs_start(struct phfs *fs);

/* The multi-threaded request loop (fs_loop.c): libfuse's
 * fuse_session_loop_mt, reshaped so that a request costs no thread wake-up. */
struct fs_loop_options {
	unsigned max_threads; /* at most this many threads serve requests (>= 1) */
	long poll_us;         /* how long a reader polls for the next request
	                       * before it sleeps (0: never) */
};

/* Serve se until it ends: unmounted, or a signal libfuse's handlers turned
 * into fuse_session_exit (both return 0), or an error reading the device
 * or starting a thread (-errno).  The caller's thread only waits; signals
 * reach it alone (the threads started here block them). */
int fs_loop_run(struct fuse_session *se, const struct fs_loop_options *o);

#endif
