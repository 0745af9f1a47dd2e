/*
 * fs_copy.c - what a copy tool that made an image directory sees in it
 * (see fs_internal.h, struct phfs_copies).
 *
 * cp -r, cp -a and tar -x make a directory and then
 * fill it assuming it is empty: files are created with O_EXCL and
 * subdirectories with a bare mkdir, and "File exists" fails the copy.  An
 * image directory is never empty (a pending one shows a template spec.json
 * and groups/, and once its spec.json is saved the image has status.json).
 * So, for a short while, a copy tool (cp, tar, cpio, pax: known by its
 * program name, phfs_caller_is_copier) that made an image directory does
 * not see the fixed entries it has not yet made itself: its create of
 * spec.json writes the image's settings (a save), its create of
 * status.json or build.log writes into nothing (derived files, never
 * sent), and its mkdir of groups/ succeeds.  Every other process sees the
 * directory as it is (a script that makes a directory and then reads its
 * template or status.json must see them).
 *
 * Memory: a small fixed table; the oldest record is reused when full.
 */
#include "fs_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define COPIES_MAX     32
#define COPY_WINDOW_MS 60000 /* a copy of one image takes far less */

enum { MADE_SPEC = 1, MADE_STATUS = 2, MADE_BUILD_LOG = 4, MADE_GROUPS = 8 };

struct copy_record {
	char image[TREE_NAME_MAX + 1]; /* "" = free */
	pid_t pid;
	bool hide;          /* a copy tool: hide what it has not made */
	long long since_ms; /* CLOCK_MONOTONIC */
	unsigned made;      /* MADE_* the creator has made itself */
};

struct phfs_copies {
	pthread_mutex_t lock;
	struct copy_record rec[COPIES_MAX];
	/* atomic: since_ms of the newest record, so that the common case (no
	 * directory made lately) costs getattr no lock at all */
	long long newest_ms;
};

static long long mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Whether some record may still be live (no lock). */
static bool any_live(struct phfs_copies *c)
{
	long long newest = __atomic_load_n(&c->newest_ms, __ATOMIC_RELAXED);

	return newest && mono_ms() - newest <= COPY_WINDOW_MS;
}

static unsigned made_bit(enum node_kind kind)
{
	switch (kind) {
	case NODE_SPEC:
		return MADE_SPEC;
	case NODE_STATUS:
		return MADE_STATUS;
	case NODE_BUILD_LOG:
		return MADE_BUILD_LOG;
	case NODE_GROUPS:
		return MADE_GROUPS;
	default:
		return 0;
	}
}

struct phfs_copies *phfs_copies_new(void)
{
	struct phfs_copies *c = calloc(1, sizeof(*c));

	if (c)
		pthread_mutex_init(&c->lock, NULL);
	return c;
}

void phfs_copies_free(struct phfs_copies *c)
{
	if (!c)
		return;
	pthread_mutex_destroy(&c->lock);
	free(c);
}

void phfs_copies_made_dir(struct phfs_copies *c, const char *image, pid_t pid, bool hide)
{
	struct copy_record *r;

	if (!c || strlen(image) > TREE_NAME_MAX)
		return;
	pthread_mutex_lock(&c->lock);
	r = &c->rec[0];
	for (size_t i = 0; i < COPIES_MAX; i++) {
		if (!c->rec[i].image[0] || strcmp(c->rec[i].image, image) == 0) {
			r = &c->rec[i];
			break;
		}
		if (c->rec[i].since_ms < r->since_ms)
			r = &c->rec[i];
	}
	strcpy(r->image, image);
	r->pid = pid;
	r->hide = hide;
	r->since_ms = mono_ms();
	__atomic_store_n(&c->newest_ms, r->since_ms, __ATOMIC_RELAXED);
	r->made = 0;
	pthread_mutex_unlock(&c->lock);
}

/* The live record of image made by pid, or NULL (lock held). */
static struct copy_record *find(struct phfs_copies *c, const char *image, pid_t pid)
{
	long long now = mono_ms();

	for (size_t i = 0; i < COPIES_MAX; i++) {
		struct copy_record *r = &c->rec[i];

		if (r->image[0] && r->pid == pid && strcmp(r->image, image) == 0)
			return now - r->since_ms <= COPY_WINDOW_MS ? r : NULL;
	}
	return NULL;
}

bool phfs_copies_hides(struct phfs_copies *c, const struct node *n, pid_t pid)
{
	unsigned bit = made_bit(n->kind);
	struct copy_record *r;
	bool hides;

	if (!c || !bit || !any_live(c))
		return false;
	pthread_mutex_lock(&c->lock);
	r = find(c, n->image, pid);
	hides = r && r->hide && !(r->made & bit);
	pthread_mutex_unlock(&c->lock);
	return hides;
}

bool phfs_copies_take(struct phfs_copies *c, const struct node *n, pid_t pid)
{
	unsigned bit = made_bit(n->kind);
	struct copy_record *r;
	bool hidden = false;

	if (!c || !bit || !any_live(c))
		return false;
	pthread_mutex_lock(&c->lock);
	r = find(c, n->image, pid);
	if (r) {
		hidden = r->hide && !(r->made & bit);
		r->made |= bit;
	}
	pthread_mutex_unlock(&c->lock);
	return hidden;
}

bool phfs_copies_made(struct phfs_copies *c, const struct node *n)
{
	unsigned bit = made_bit(n->kind);
	long long now = mono_ms();
	bool made = false;

	if (!c || !bit || !any_live(c))
		return false;
	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < COPIES_MAX && !made; i++) {
		const struct copy_record *r = &c->rec[i];

		made = r->image[0] && strcmp(r->image, n->image) == 0 && (r->made & bit) &&
		       now - r->since_ms <= COPY_WINDOW_MS;
	}
	pthread_mutex_unlock(&c->lock);
	return made;
}

bool phfs_copies_is_maker(struct phfs_copies *c, const char *image, pid_t pid)
{
	bool yes;

	if (!c || !any_live(c))
		return false;
	pthread_mutex_lock(&c->lock);
	yes = find(c, image, pid) != NULL;
	pthread_mutex_unlock(&c->lock);
	return yes;
}
