/*
 * fs_kcache.c - when the kernel may keep what it cached of a file or a
 * directory listing across opens (see fs_internal.h, struct phfs_kcache).
 *
 * The kernel keeps one size and one page cache per inode, but every handle
 * here holds its own version of a file.  Cached pages are only right when
 * they, the size the kernel was last told, and the handle's content are all
 * the same version; otherwise a reader would get another version's bytes,
 * cut at another version's size.  So a version is remembered per path: the
 * one last reported in attributes, and the one last opened.  An open whose
 * version matches both keeps the cache; any other open reads past the cache
 * (direct_io) and becomes the version the next open compares with.  A
 * writable open of the path forgets both: a writer's pages never reach a
 * reader.  A directory's listing is remembered by a hash of its entries.
 *
 * Memory is a fixed table indexed by the path's hash: a collision only
 * forgets a version, which costs a read from the daemon, never a wrong one.
 */
#include "fs_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KCACHE_SLOTS 65536 /* 1.5 MiB; past that, colliding paths forget */

struct kcache_slot {
	uint64_t path;     /* hash of the path, 0: empty */
	uint64_t reported; /* version last given in attributes, 0: none */
	uint64_t opened;   /* version last opened (or listing last listed) */
	long long touched; /* CLOCK_MONOTONIC ms of the last local change */
};

struct phfs_kcache {
	pthread_mutex_t lock;
	long long settle_ms;    /* how long after a local change the kernel's size
	                         * may still be the writer's: attr timeout + 1 s */
	long long last_touched; /* of any path: a path evicted from its slot may
	                         * have been touched as late as this */
	struct kcache_slot slots[KCACHE_SLOTS];
};

uint64_t phfs_kcache_hash(const void *data, size_t len, uint64_t seed)
{
	return ph_hash_bytes(data, len, seed); /* the versions snapshots give too */
}

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct phfs_kcache *phfs_kcache_new(long attr_timeout_ms)
{
	struct phfs_kcache *k = calloc(1, sizeof(*k));

	if (!k)
		return NULL;
	pthread_mutex_init(&k->lock, NULL);
	k->settle_ms = attr_timeout_ms + 1000;
	return k;
}

void phfs_kcache_free(struct phfs_kcache *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k);
}

/* path's slot, taken over for it when another path held it (lock held). */
static struct kcache_slot *slot_of(struct phfs_kcache *k, const char *path)
{
	uint64_t ph = phfs_kcache_hash(path, strlen(path), 0);
	struct kcache_slot *s = &k->slots[ph % KCACHE_SLOTS];

	if (s->path != ph)
		*s = (struct kcache_slot){.path = ph, .touched = s->path ? k->last_touched : 0};
	return s;
}

void phfs_kcache_reported(struct phfs_kcache *k, const char *path, uint64_t version)
{
	struct kcache_slot *s;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	s = slot_of(k, path);
	s->reported = version;
	pthread_mutex_unlock(&k->lock);
}

bool phfs_kcache_open(struct phfs_kcache *k, const char *path, uint64_t version)
{
	struct kcache_slot *s;
	bool keep;

	if (!k || !version)
		return false;
	pthread_mutex_lock(&k->lock);
	s = slot_of(k, path);
	/* A local write or truncate sets the kernel's size itself, and an
	 * attribute answer racing with it is dropped by the kernel: until the
	 * attributes it had then have expired, what it holds is unknown. */
	keep =
	    s->opened == version && s->reported == version && now_ms() - s->touched > k->settle_ms;
	s->opened = version;
	pthread_mutex_unlock(&k->lock);
	return keep;
}

void phfs_kcache_forget(struct phfs_kcache *k, const char *path)
{
	struct kcache_slot *s;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	s = slot_of(k, path);
	s->reported = s->opened = 0;
	s->touched = k->last_touched = now_ms();
	pthread_mutex_unlock(&k->lock);
}

bool phfs_kcache_listing(struct phfs_kcache *k, const char *path, uint64_t listing)
{
	struct kcache_slot *s;
	bool keep;

	if (!k || !listing)
		return false;
	pthread_mutex_lock(&k->lock);
	s = slot_of(k, path);
	keep = s->opened == listing;
	s->opened = listing;
	pthread_mutex_unlock(&k->lock);
	return keep;
}
