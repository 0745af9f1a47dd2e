/*
 * snapshot.h - the server's images as one immutable, reference-counted
 * snapshot, and the store that publishes new ones (groups and pull secrets
 * are catalog.h's, fetched only when needed).
 *
 * A snapshot never changes once published: readers take a reference
 * (store_get), use it without any lock, and drop it (snapshot_put).  A refresh
 * builds a whole new snapshot and swaps it in; an own mutation publishes a
 * copy with one image replaced (copy-on-write of the pointer array; entries
 * are shared and reference-counted, so that copy is cheap even at 10,000
 * images).  Each entry carries its spec.json and status.json text rendered
 * once (on first use: listing 10,000 images renders none of them), so
 * st_size always equals the bytes read serves.
 *
 * Freshness (-o ttl): a snapshot younger than ttl is served as is.  Older,
 * it is still served at once while ONE background refresh runs (readers
 * never wait on the network when a snapshot exists), and while the mount is
 * in use the refresher renews it as it expires, so what is shown is at most
 * about ttl old.  After an idle spell longer than STORE_IDLE_FACTOR * ttl
 * readers wait for a fresh one instead of being shown old data, but only
 * for that ONE fetch: if it fails they get the old snapshot.
 * Every fetch runs on the store's refresher thread, never two at once.
 *
 * Failures: after a failed fetch the refresher backs off (about 1 s, then
 * doubling to 30 s, jittered) and logs the failure once and the recovery
 * once.  Meanwhile readers get the last snapshot at once.  With none at all
 * they fail at once with the last reason, but may ask again once a second.
 * An unused mount fetches nothing.
 *
 * Ownership: store_new/store_free.  store_get returns a counted reference the
 * caller drops with snapshot_put; pointers into it stay valid until then.
 * snap_image entries can be held on their own with snap_image_get/put.
 */
#ifndef PRIMEHUBFS_SNAPSHOT_H
#define PRIMEHUBFS_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include "primehubfs/error.h"
#include "primehubfs/image.h"
#include "primehubfs/primehub.h"

#define STORE_IDLE_FACTOR 3

/* The files of an image, rendered once per version. */
struct snap_texts {
	char *spec; /* spec.json */
	size_t spec_len;
	char *status; /* status.json */
	size_t status_len;
};

/* What a listing needs of the files: their sizes and versions (hashes). */
struct snap_sizes {
	size_t spec_len, status_len;
	uint64_t spec_hash, status_hash; /* ph_hash_bytes of the texts */
};

struct snap_image {
	int refs; /* atomic */
	struct ph_image *img;
	struct snap_texts *texts; /* atomic; rendered on first use: snap_image_texts() */
	/* Listing every image (ls -l, find) needs sizes, not texts: they are
	 * kept without the texts, which only an open keeps (~0.8 KB an image
	 * at 300,000 images).  sizes is read only once `sized` (atomic) is 1. */
	struct snap_sizes sizes;
	int sized;
	struct timespec mtime; /* last time the image (so its texts) changed */
	/* CLOCK_MONOTONIC ms when img->groups was last read from the server
	 * (0: never, img->groups_known is false).  Atomic: a full membership
	 * fetch that finds the groups unchanged renews it in place. */
	long long groups_at_ms;
};

struct snapshot {
	int refs;                   /* atomic */
	struct snap_image **images; /* sorted by id */
	size_t nimages;
	/* Names which images there are: the sum of snapshot_id_hash over their
	 * ids.  Kept as each snapshot is built (a sum, so an edit adds or takes
	 * one id), so the root listing's version costs nothing to ask, where
	 * hashing 100,000 names took a GETATTR 10-20 ms. */
	uint64_t ids_sum;
	struct timespec fetched; /* CLOCK_MONOTONIC time of the fetch it came from */
	struct timespec ctime;   /* CLOCK_REALTIME of the same moment, for st_mtime of dirs */
};

/* Fetch the whole tree (ph_fetch_tree in the daemon, a fake in tests). */
typedef int (*store_fetch_fn)(void *arg, struct ph_tree *out, struct ph_err *err);
/* Called on the refresher thread (never a FUSE request thread) with the id of
 * each image whose files changed, or NULL for "the root listing changed". */
typedef void (*store_changed_fn)(void *arg, const char *image_id);

/* Called on the refresher thread, under the store's lock, just before a
 * refresh publishes: `shown` (the snapshot published until now) and the
 * sorted ids of the images that change with it.  The kernel's caches
 * describe `shown` until it is told (store_changed_fn, after the publish):
 * the holder may serve those images from it until then (fs_notify.c). */
typedef void (*store_hold_fn)(void *arg, struct snapshot *shown, char *const *ids, size_t n);

struct store;

int store_new(long ttl_ms, store_fetch_fn fetch, void *fetch_arg, store_changed_fn changed,
              void *changed_arg, struct store **out);
/* Set before the first refresh; arg is store_new's changed_arg. */
void store_set_holder(struct store *st, store_hold_fn hold);
void store_free(struct store *st);

/* While a reader waits for a fetch, abort_cb is asked every 100 ms whether
 * the reader gave up (a FUSE request interrupted by Ctrl-C): then store_get
 * returns -EINTR at once and the fetch goes on for whoever needs it next. */
void store_set_abort(struct store *st, int (*abort_cb)(void *), void *arg);

/* Start the refresher thread (after fork/daemonize). */
int store_start(struct store *st);

/* A counted reference to the current snapshot, fetching the first one (or a
 * fresh one after an idle spell) if needed.  -errno from the fetch. */
int store_get(struct store *st, struct snapshot **out, struct ph_err *err);

/* How fetching goes, for .status and messages. */
struct store_status {
	bool have_snapshot;
	struct timespec last_ok;  /* CLOCK_REALTIME of the last good fetch; 0 if none */
	unsigned failures;        /* failed fetches in a row */
	uint64_t fetches;         /* fetch attempts since mount */
	struct ph_err last_error; /* the last failure's reason, while failures > 0 */
	long retry_in_ms;         /* while failures > 0: until the next attempt may
	                           * start (0: it may start now) */
};
void store_get_status(struct store *st, struct store_status *out);

/*
 * Group membership.  The tree query leaves it out (PrimeHub's cost of
 * Image.groups grows with images x groups), so it is fetched only where
 * something shows it: status.json and IMAGE/groups/.  One image's groups
 * come with ph_get_image (a few Keycloak calls); when several images want
 * theirs within one ttl (a walk: ls -lR, cat * / status.json, find), one
 * request fetches every image's groups instead, at once when the caller
 * says it walks (store_get_groups' many).  Membership is as fresh as
 * the rest: at most ttl old when shown.
 */
typedef int (*store_members_fn)(void *arg, struct ph_membership *out, struct ph_err *err);
typedef int (*store_image_fn)(void *arg, const char *id, struct ph_image **out, struct ph_err *err);
void store_set_membership(struct store *st, store_members_fn all, store_image_fn one, void *arg);

/* Make sure the entry of image id in *snap has fresh groups: when it does
 * not, fetch them (or wait for the fetch under way) and replace *snap by a
 * newer snapshot that has them.  many: the caller will want other images'
 * groups too (a walk), so everyone's are fetched at once.  An image with groups already known is
 * never kept waiting by a slow or failing server: its last known groups are
 * served.  0 (also when id is not in *snap: the caller decides), or -errno
 * with err set when nothing can be shown. */
int store_get_groups(struct store *st, const char *id, bool many, struct snapshot **snap,
                     struct ph_err *err);
/* Whether e's groups are known and at most ttl old (never fetches). */
bool store_groups_fresh(const struct store *st, const struct snap_image *e);

/* The mount is in use, though nothing needs the snapshot now (the kernel
 * asks a cached directory's attributes): renew it as store_get would,
 * without waiting for anything.  true: the snapshot is too old to show
 * (none yet, or an idle spell): the next store_get waits for a fresh one. */
bool store_touch(struct store *st);

/* The current snapshot if there is one, never fetching (NULL if none). */
struct snapshot *store_peek(struct store *st);

/* Publish an image as a mutation's answer returned it (takes ownership of
 * img, also on error).  Replaces the entry of the same id or adds it. */
int store_put_image(struct store *st, struct ph_image *img);
int store_remove_image(struct store *st, const char *id);

/* The next store_get waits for a fresh fetch (e.g. after a partial failure);
 * a fetch already under way does not count.  While refreshes fail, readers
 * are still served the last snapshot at once. */
void store_invalidate(struct store *st);

/* Another counted reference to snap (dropped with snapshot_put). */
struct snapshot *snapshot_ref(struct snapshot *snap);
void snapshot_put(struct snapshot *snap);
const struct snap_image *snapshot_find(const struct snapshot *snap, const char *id);
/* One id's share of struct snapshot's ids_sum. */
uint64_t snapshot_id_hash(const char *id);

struct snap_image *snap_image_get(const struct snap_image *e); /* takes a reference */
void snap_image_put(struct snap_image *e);

/* Build an entry; NULL on ENOMEM.  Takes img.  Keeps previous's mtime when
 * the image is unchanged. */
struct snap_image *snap_image_new(struct ph_image *img, const struct snap_image *previous);

/* The entry's spec.json and status.json, rendered on first use; valid as
 * long as the entry is held.  NULL on ENOMEM. */
const struct snap_texts *snap_image_texts(const struct snap_image *e);
/* Their sizes and versions, without keeping the texts when they were not
 * rendered yet.  false on ENOMEM. */
bool snap_image_sizes(const struct snap_image *e, struct snap_sizes *out);

#endif
