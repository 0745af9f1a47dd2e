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
 * version matches both keeps the cache; one that matches the reported one
 * only reads through the cache, emptied at open, and fills it (so the next
 * walk finds it filled); any other open reads past the cache (direct_io).
 * Every open becomes the version the next open compares with.  A
 * writable open of the path forgets both: a writer's pages never reach a
 * reader.  A directory's listing is remembered by a hash of its entries,
 * and the time it was seen to change becomes the directory's mtime: the
 * kernel keeps a listing in its cache while the mtime stays.
 *
 * Memory is one entry of 16 bytes per path the kernel was told about, in
 * an open-addressing table keyed by the path's 64-bit hash that grows with
 * the mount: a fixed table lost about one path in seven at 10,000 images
 * to collisions, and every lost path is a warm read that reaches the daemon
 * (and a GETATTR after it: a READ invalidates the cached atime).  Past
 * KCACHE_MAX_ENTRIES the table starts afresh, which only costs reads.
 * Local changes are rare: the times of the recent ones are a small ring of
 * their own, so that the common entry stays small.
 */
#include "fs_internal.h"

#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define KCACHE_MIN_SLOTS   4096
#define KCACHE_MAX_ENTRIES (1u << 23) /* 192 MiB of table at most */
#define KCACHE_TOUCHED     256        /* local changes remembered one by one */

/* The version last reported in attributes, and whether the version last
 * opened is that one: the open of a version keeps the cache when both are
 * it.  Versions are compared without their lowest bit, which holds the
 * flag (VERSION()); 63 bits keep a false match out of reach. */
struct kcache_entry {
	uint64_t path;    /* hash of the path (never 0), 0: empty slot */
	uint64_t version; /* VERSION() last reported | OPENED_SAME, 0: none;
	                   * for a listing, the listing last listed */
};
#define OPENED_SAME ((uint64_t)1)
#define VERSION(v)  ((v) & ~OPENED_SAME)

struct phfs_kcache {
	pthread_mutex_t lock;
	long long ttl_ms;    /* the kernel's entry and attribute timeout */
	long long settle_ms; /* how long after a local change the kernel's size
	                      * may still be the writer's: attr timeout + 1 s */
	struct kcache_entry *slots;
	size_t nslots, used; /* nslots: a power of two */
	/* Recent local changes (path hash, CLOCK_MONOTONIC ms), and the
	 * latest one pushed out of the ring, which stands for any path. */
	struct {
		uint64_t path;
		long long at;
	} touched[KCACHE_TOUCHED];
	unsigned next_touched;
	long long last_touched, dropped_touched;
	struct dir_entry *dirs; /* phfs_kcache_dir_mtime */
	size_t ndirs, ndirs_used;
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
	k->slots = calloc(KCACHE_MIN_SLOTS, sizeof(*k->slots));
	if (!k->slots) {
		free(k);
		return NULL;
	}
	k->nslots = KCACHE_MIN_SLOTS;
	pthread_mutex_init(&k->lock, NULL);
	k->ttl_ms = attr_timeout_ms;
	k->settle_ms = attr_timeout_ms + 1000;
	/* Nothing was changed here yet: "long ago", not "at boot" (a machine
	 * up for less than settle_ms would otherwise keep no page cached). */
	k->last_touched = k->dropped_touched = LLONG_MIN / 2;
	return k;
}

void phfs_kcache_free(struct phfs_kcache *k)
{
	if (!k)
		return;
	pthread_mutex_destroy(&k->lock);
	free(k->slots);
	free(k->dirs);
	free(k);
}

/* Where key is, or the empty slot it would take (linear probing). */
static struct kcache_entry *probe(struct kcache_entry *slots, size_t nslots, uint64_t key)
{
	size_t i = key & (nslots - 1);

	while (slots[i].path && slots[i].path != key)
		i = (i + 1) & (nslots - 1);
	return &slots[i];
}

/* Twice the slots, or (past the limit, or out of memory) an empty table
 * of the same size: forgetting versions only costs reads. */
static void grow(struct phfs_kcache *k)
{
	size_t n = k->nslots * 2;
	struct kcache_entry *bigger =
	    k->used < KCACHE_MAX_ENTRIES ? calloc(n, sizeof(*bigger)) : NULL;

	if (!bigger) {
		memset(k->slots, 0, k->nslots * sizeof(*k->slots));
		k->used = 0;
		return;
	}
	for (size_t i = 0; i < k->nslots; i++)
		if (k->slots[i].path)
			*probe(bigger, n, k->slots[i].path) = k->slots[i];
	free(k->slots);
	k->slots = bigger;
	k->nslots = n;
}

/* path's entry, made when it has none (lock held). */
static struct kcache_entry *entry_of(struct phfs_kcache *k, const char *path)
{
	uint64_t key = phfs_kcache_hash(path, strlen(path), 0) | 1; /* never 0 */
	struct kcache_entry *e = probe(k->slots, k->nslots, key);

	if (e->path)
		return e;
	if ((k->used + 1) * 4 > k->nslots * 3) { /* load <= 3/4 */
		grow(k);
		e = probe(k->slots, k->nslots, key);
	}
	e->path = key;
	k->used++;
	return e;
}

/* Whether path (its key) was changed here within settle_ms (lock held). */
static bool recently_touched(const struct phfs_kcache *k, uint64_t key, long long now)
{
	if (now - k->last_touched > k->settle_ms)
		return false; /* the common case: nothing changed here lately */
	if (now - k->dropped_touched <= k->settle_ms)
		return true;
	for (unsigned i = 0; i < KCACHE_TOUCHED; i++)
		if (k->touched[i].path == key && now - k->touched[i].at <= k->settle_ms)
			return true;
	return false;
}

void phfs_kcache_reported(struct phfs_kcache *k, const char *path, uint64_t version)
{
	struct kcache_entry *e;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	e = entry_of(k, path);
	/* What was opened is still what is reported if the version stays. */
	if (VERSION(e->version) == VERSION(version))
		e->version = VERSION(version) | (e->version & OPENED_SAME);
	else
		e->version = VERSION(version);
	pthread_mutex_unlock(&k->lock);
}

enum phfs_kcache_use phfs_kcache_open(struct phfs_kcache *k, const char *path, uint64_t version)
{
	struct kcache_entry *e;
	enum phfs_kcache_use use = PHFS_KCACHE_BYPASS;

	if (!k || !version)
		return PHFS_KCACHE_BYPASS;
	pthread_mutex_lock(&k->lock);
	e = entry_of(k, path);
	/* A local write or truncate sets the kernel's size itself, and an
	 * attribute answer racing with it is dropped by the kernel: until the
	 * attributes it had then have expired, what it holds is unknown.
	 * Otherwise the kernel's size is the reported version's: an open of
	 * that version may read through the cache (and fill it), and keep it
	 * when the last open was of that version too. */
	if (VERSION(e->version) == VERSION(version) && !recently_touched(k, e->path, now_ms()))
		use = (e->version & OPENED_SAME) ? PHFS_KCACHE_KEEP : PHFS_KCACHE_FILL;
	if (VERSION(e->version) == VERSION(version))
		e->version |= OPENED_SAME;
	else
		e->version &= ~OPENED_SAME;
	pthread_mutex_unlock(&k->lock);
	return use;
}

void phfs_kcache_forget(struct phfs_kcache *k, const char *path)
{
	struct kcache_entry *e;
	unsigned slot;
	long long now = now_ms();

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	e = entry_of(k, path);
	e->version = 0;
	slot = k->next_touched++ % KCACHE_TOUCHED;
	if (k->touched[slot].path && k->touched[slot].at > k->dropped_touched)
		k->dropped_touched = k->touched[slot].at;
	k->touched[slot].path = e->path;
	k->touched[slot].at = now;
	k->last_touched = now;
	pthread_mutex_unlock(&k->lock);
}

/* Directories: the listing last seen and when it was seen to change.  A
 * table of its own, since entries are twice the size of a file's. */
struct dir_entry {
	uint64_t path; /* hash of the path (never 0), 0: empty slot */
	uint64_t listing;
	struct timespec changed; /* 0: not since first seen */
	long long listed_ms;     /* CLOCK_MONOTONIC of the last listing handed out, 0: none */
};

static struct dir_entry *dir_probe(struct dir_entry *slots, size_t nslots, uint64_t key)
{
	size_t i = key & (nslots - 1);

	while (slots[i].path && slots[i].path != key)
		i = (i + 1) & (nslots - 1);
	return &slots[i];
}

/* Lock held.  Out of memory or past the limit: start afresh (a directory
 * then shows its base mtime, which at worst drops a cached listing). */
static struct dir_entry *dir_entry_of(struct phfs_kcache *k, uint64_t key, bool *made)
{
	struct dir_entry *e;

	*made = false;
	if (!k->dirs || (k->ndirs_used + 1) * 4 > k->ndirs * 3) {
		size_t n = k->ndirs ? k->ndirs * 2 : KCACHE_MIN_SLOTS;
		struct dir_entry *bigger =
		    k->ndirs_used < KCACHE_MAX_ENTRIES ? calloc(n, sizeof(*bigger)) : NULL;

		if (bigger) {
			for (size_t i = 0; i < k->ndirs; i++)
				if (k->dirs[i].path)
					*dir_probe(bigger, n, k->dirs[i].path) = k->dirs[i];
			free(k->dirs);
			k->dirs = bigger;
			k->ndirs = n;
		} else if (k->dirs) {
			memset(k->dirs, 0, k->ndirs * sizeof(*k->dirs));
			k->ndirs_used = 0;
		} else {
			return NULL;
		}
	}
	e = dir_probe(k->dirs, k->ndirs, key);
	if (!e->path) {
		e->path = key;
		k->ndirs_used++;
		*made = true;
	}
	return e;
}

static bool ts_before(struct timespec a, struct timespec b)
{
	return a.tv_sec < b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec < b.tv_nsec);
}

void phfs_kcache_dir_listed(struct phfs_kcache *k, const char *path)
{
	uint64_t key = phfs_kcache_hash(path, strlen(path), 0) | 1;
	struct dir_entry *e;
	bool made;

	if (!k)
		return;
	pthread_mutex_lock(&k->lock);
	e = dir_entry_of(k, key, &made);
	if (e)
		e->listed_ms = now_ms(); /* made: its listing is not known yet (0) */
	pthread_mutex_unlock(&k->lock);
}

/* The first moment after t. */
static struct timespec just_after(struct timespec t)
{
	if (++t.tv_nsec >= 1000000000L) {
		t.tv_sec++;
		t.tv_nsec = 0;
	}
	return t;
}

struct timespec phfs_kcache_dir_mtime(struct phfs_kcache *k, const char *path, uint64_t listing,
                                      struct timespec base)
{
	uint64_t key = phfs_kcache_hash(path, strlen(path), 0) | 1;
	struct dir_entry *e;
	bool made, expired;

	if (!k)
		return base;
	pthread_mutex_lock(&k->lock);
	e = dir_entry_of(k, key, &made);
	if (!e) {
		pthread_mutex_unlock(&k->lock);
		return base;
	}
	/* Listed so long ago that the names and attributes the kernel got
	 * with the listing have expired: it had better list again (one
	 * READDIRPLUS for hundreds of entries) than look up each entry of its
	 * cached listing (one request each).  That counts as a change. */
	expired = e->listed_ms && now_ms() - e->listed_ms >= k->ttl_ms;
	if ((made || !e->listing) && !expired) {
		e->listing = listing; /* first seen */
	} else if (e->listing != listing || expired) {
		/* A time never shown before, so the kernel's cached listing
		 * (kept while the mtime stays) is dropped. */
		struct timespec now;

		clock_gettime(CLOCK_REALTIME, &now);
		if (!ts_before(e->changed, now))
			now = just_after(e->changed);
		if (!ts_before(base, now))
			now = just_after(base);
		e->changed = now;
		e->listing = listing;
		e->listed_ms = 0;
	}
	if (ts_before(base, e->changed))
		base = e->changed;
	pthread_mutex_unlock(&k->lock);
	return base;
}
