/*
 * inodes.c - the kernel's inode numbers and their paths (inodes.h).
 *
 * Two chained hash tables over the same nodes: by number (every request
 * names one) and by (parent, name) (lookups, and paths the notifier
 * resolves).  A node costs about 80 bytes and its name: at 300,000 images
 * the kernel may hold a million and a half of them, about what libfuse's
 * own table costs for the same walk.
 */
#include "primehubfs/inodes.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/image.h"

#define MIN_BUCKETS 1024

struct inode {
	struct inode *next_ino, *next_name; /* bucket chains */
	uint64_t ino;
	uint64_t parent; /* 0: detached (or the root) */
	uint64_t nlookup;
	uint64_t name_hash;
	char *name; /* NULL: detached */
};

struct inodes {
	pthread_mutex_t lock;
	struct inode **by_ino, **by_name;
	size_t nbuckets; /* a power of two, for both */
	size_t count;
	uint64_t next_ino;
	struct inode root;
};

static uint64_t name_key(uint64_t parent, const char *name)
{
	return ph_hash_bytes(name, strlen(name), parent * 0x9e3779b97f4a7c15ULL + 1);
}

static size_t slot(const struct inodes *t, uint64_t key)
{
	return (size_t)(key ^ (key >> 29)) & (t->nbuckets - 1);
}

static struct inode *by_ino(struct inodes *t, uint64_t ino)
{
	if (ino == INODES_ROOT)
		return &t->root;
	for (struct inode *n = t->by_ino[slot(t, ino)]; n; n = n->next_ino)
		if (n->ino == ino)
			return n;
	return NULL;
}

static struct inode *by_name(struct inodes *t, uint64_t parent, const char *name, uint64_t key)
{
	for (struct inode *n = t->by_name[slot(t, key)]; n; n = n->next_name)
		if (n->name_hash == key && n->parent == parent && n->name &&
		    strcmp(n->name, name) == 0)
			return n;
	return NULL;
}

static void link_ino(struct inodes *t, struct inode *n)
{
	size_t i = slot(t, n->ino);

	n->next_ino = t->by_ino[i];
	t->by_ino[i] = n;
}

static void link_name(struct inodes *t, struct inode *n)
{
	size_t i = slot(t, n->name_hash);

	n->next_name = t->by_name[i];
	t->by_name[i] = n;
}

static void unlink_ino(struct inodes *t, struct inode *n)
{
	struct inode **p = &t->by_ino[slot(t, n->ino)];

	while (*p && *p != n)
		p = &(*p)->next_ino;
	if (*p)
		*p = n->next_ino;
}

/* Take n out of the name table and forget its name (it stays numbered). */
static void detach(struct inodes *t, struct inode *n)
{
	struct inode **p;

	if (!n->name)
		return;
	p = &t->by_name[slot(t, n->name_hash)];
	while (*p && *p != n)
		p = &(*p)->next_name;
	if (*p)
		*p = n->next_name;
	free(n->name);
	n->name = NULL;
	n->parent = 0;
}

/* Twice the buckets when the nodes outnumber them; staying small is only
 * slower, so a failed allocation is ignored. */
static void maybe_grow(struct inodes *t)
{
	size_t nb = t->nbuckets * 2;
	struct inode **bi, **bn;
	struct inode **old_i = t->by_ino, **old_n = t->by_name;
	size_t old = t->nbuckets;

	if (t->count < t->nbuckets)
		return;
	bi = calloc(nb, sizeof(*bi));
	bn = calloc(nb, sizeof(*bn));
	if (!bi || !bn) {
		free(bi);
		free(bn);
		return;
	}
	t->by_ino = bi;
	t->by_name = bn;
	t->nbuckets = nb;
	for (size_t i = 0; i < old; i++) {
		for (struct inode *n = old_i[i], *next; n; n = next) {
			next = n->next_ino;
			link_ino(t, n);
		}
		for (struct inode *n = old_n[i], *next; n; n = next) {
			next = n->next_name;
			link_name(t, n);
		}
	}
	free(old_i);
	free(old_n);
}

struct inodes *inodes_new(void)
{
	struct inodes *t = calloc(1, sizeof(*t));

	if (!t)
		return NULL;
	t->nbuckets = MIN_BUCKETS;
	t->by_ino = calloc(t->nbuckets, sizeof(*t->by_ino));
	t->by_name = calloc(t->nbuckets, sizeof(*t->by_name));
	if (!t->by_ino || !t->by_name) {
		free(t->by_ino);
		free(t->by_name);
		free(t);
		return NULL;
	}
	pthread_mutex_init(&t->lock, NULL);
	t->root.ino = INODES_ROOT;
	t->root.nlookup = 1; /* the kernel never forgets the root */
	t->next_ino = INODES_ROOT + 1;
	t->count = 1;
	return t;
}

void inodes_free(struct inodes *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		for (struct inode *n = t->by_ino[i], *next; n; n = next) {
			next = n->next_ino;
			free(n->name);
			free(n);
		}
	}
	free(t->by_ino);
	free(t->by_name);
	pthread_mutex_destroy(&t->lock);
	free(t);
}

uint64_t inodes_ref(struct inodes *t, uint64_t parent, const char *name)
{
	uint64_t key = name_key(parent, name), ino = 0;
	struct inode *n;

	pthread_mutex_lock(&t->lock);
	n = by_name(t, parent, name, key);
	if (!n && by_ino(t, parent)) {
		n = calloc(1, sizeof(*n));
		if (n && !(n->name = strdup(name))) {
			free(n);
			n = NULL;
		}
		if (n) {
			n->ino = t->next_ino++;
			n->parent = parent;
			n->name_hash = key;
			link_ino(t, n);
			link_name(t, n);
			t->count++;
			maybe_grow(t);
		}
	}
	if (n) {
		n->nlookup++;
		ino = n->ino;
	}
	pthread_mutex_unlock(&t->lock);
	return ino;
}

uint64_t inodes_forget(struct inodes *t, uint64_t ino, uint64_t count)
{
	uint64_t parent = 0;
	struct inode *n;

	if (ino == INODES_ROOT)
		return 0;
	pthread_mutex_lock(&t->lock);
	n = by_ino(t, ino);
	if (n) {
		n->nlookup = count < n->nlookup ? n->nlookup - count : 0;
		if (n->nlookup == 0) {
			parent = n->name ? n->parent : 0;
			detach(t, n);
			unlink_ino(t, n);
			t->count--;
			free(n);
		}
	}
	pthread_mutex_unlock(&t->lock);
	return parent;
}

/* Put "/name" before buf[*at]. */
static int prepend(char *buf, size_t *at, const char *name)
{
	size_t len = strlen(name);

	if (len + 1 > *at)
		return -ENAMETOOLONG;
	*at -= len;
	memcpy(buf + *at, name, len);
	buf[--*at] = '/';
	return 0;
}

/* The path of n (and leaf in it, when not NULL), lock held: written from
 * the end of buf backwards, then moved to its start. */
static int path_locked(struct inodes *t, const struct inode *n, const char *leaf, char *buf,
                       size_t size)
{
	size_t at = size;

	if (size < 2)
		return -ENAMETOOLONG;
	buf[--at] = '\0';
	if (leaf && prepend(buf, &at, leaf) < 0)
		return -ENAMETOOLONG;
	for (int depth = 0; n->ino != INODES_ROOT; depth++) {
		if (!n->name || depth > 64) /* detached (a loop: never, but never hang) */
			return -ESTALE;
		if (prepend(buf, &at, n->name) < 0)
			return -ENAMETOOLONG;
		n = by_ino(t, n->parent);
		if (!n)
			return -ESTALE;
	}
	if (at == size - 1)
		buf[--at] = '/'; /* the root itself */
	memmove(buf, buf + at, size - at);
	return 0;
}

int inodes_child_path(struct inodes *t, uint64_t parent, const char *name, char *buf, size_t size)
{
	struct inode *n;
	int ret;

	pthread_mutex_lock(&t->lock);
	n = by_ino(t, parent);
	ret = n ? path_locked(t, n, name, buf, size) : -ESTALE;
	pthread_mutex_unlock(&t->lock);
	return ret;
}

int inodes_path(struct inodes *t, uint64_t ino, char *buf, size_t size)
{
	return inodes_child_path(t, ino, NULL, buf, size);
}

uint64_t inodes_find(struct inodes *t, const char *path)
{
	uint64_t ino = INODES_ROOT;
	char name[4096];

	pthread_mutex_lock(&t->lock);
	while (ino && *path) {
		const char *end;
		size_t len;
		struct inode *n;

		while (*path == '/')
			path++;
		if (!*path)
			break;
		end = strchr(path, '/');
		len = end ? (size_t)(end - path) : strlen(path);
		if (len >= sizeof(name)) {
			ino = 0;
			break;
		}
		memcpy(name, path, len);
		name[len] = '\0';
		n = by_name(t, ino, name, name_key(ino, name));
		ino = n ? n->ino : 0;
		path += len;
	}
	pthread_mutex_unlock(&t->lock);
	return ino;
}

void inodes_unlink(struct inodes *t, uint64_t parent, const char *name)
{
	struct inode *n;

	pthread_mutex_lock(&t->lock);
	n = by_name(t, parent, name, name_key(parent, name));
	if (n)
		detach(t, n);
	pthread_mutex_unlock(&t->lock);
}

int inodes_rename(struct inodes *t, uint64_t parent, const char *name, uint64_t newparent,
                  const char *newname)
{
	uint64_t key = name_key(parent, name), newkey = name_key(newparent, newname);
	struct inode *n, *target;
	char *copy = strdup(newname);

	if (!copy)
		return -ENOMEM;
	pthread_mutex_lock(&t->lock);
	n = by_name(t, parent, name, key);
	target = by_name(t, newparent, newname, newkey);
	if (target && target != n)
		detach(t, target);
	if (n && n != target) {
		detach(t, n);
		n->name = copy;
		copy = NULL;
		n->parent = newparent;
		n->name_hash = newkey;
		link_name(t, n);
	}
	pthread_mutex_unlock(&t->lock);
	free(copy);
	return 0;
}

size_t inodes_count(struct inodes *t)
{
	size_t n;

	pthread_mutex_lock(&t->lock);
	n = t->count;
	pthread_mutex_unlock(&t->lock);
	return n;
}
