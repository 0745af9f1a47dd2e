/*
 * fs.h - the FUSE layer's face to main: make the mount's context, hand
 * libfuse the operation table.
 *
 * Ownership: phfs_new borrows api (main frees it after phfs_free) and owns
 * the store, staging and caches it makes.
 */
#ifndef PRIMEHUBFS_FS_H
#define PRIMEHUBFS_FS_H

#ifndef FUSE_USE_VERSION
#define FUSE_USE_VERSION 312
#endif
#include <fuse.h>
#include "primehubfs/primehub.h"

struct phfs;

int phfs_new(struct ph_api *api, long ttl_ms, struct phfs **out);
void phfs_free(struct phfs *fs);
/* The PrimeHub user the token belongs to, shown in /.status (copied). */
int phfs_set_user(struct phfs *fs, const char *user);
/* Versions of spec.json kept on disk (IMAGE/.history/); fs owns h. */
struct history;
void phfs_set_history(struct phfs *fs, struct history *h);
/* After fuse_new: lets the refresher tell the kernel what changed. */
void phfs_set_fuse(struct phfs *fs, struct fuse *fuse);
/* The loop has ended and the mount is gone (call after fuse_unmount, which
 * ends any notification blocked in the kernel, and before fuse_destroy):
 * no kernel notification from now on; the refresher runs until phfs_free. */
bool phfs_quiesce(struct phfs *fs); /* false: do not fuse_destroy, just exit */
/* Whether the FUSE request being served was interrupted (used to abort
 * waits and transfers). */
int phfs_request_interrupted(void *arg);
/* After daemonizing: threads do not survive fork. */
int phfs_start(struct phfs *fs);

const struct fuse_operations *phfs_operations(void);

#endif
