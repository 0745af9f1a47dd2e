/*
 * fs_notify.c - telling the kernel what changed, from a thread of its own.
 *
 * A kernel invalidation (fuse_lowlevel_notify_inval_inode) can block:
 * dropping a file's cached pages waits for the page locks a writer holds
 * while its WRITE request waits for a worker thread.  Were the refresher to
 * make that call itself, every worker waiting on the refresher (a reader
 * after store_invalidate waits for a fetch) would wait on that writer, and
 * the writer on a free worker: the whole mount would hang.  So the
 * refresher only queues paths here, and this thread makes the calls; when
 * it blocks, nothing else waits on it.
 *
 * The queue is bounded: past NOTIFY_QUEUE_MAX paths it collapses into one
 * invalidation of the root (the kernel then re-reads the listing; cached
 * pages are re-checked at the next open, fs_kcache.c, and entries and
 * attributes expire with ttl).
 *
 * Until the kernel is told, it may answer a stat of a changed file from
 * its cache (the old size) while an open here would read the new text: a
 * reader would see a size that is not what it reads.  So the images a
 * refresh changes are held (phfs_notifier_hold, just before the refresh
 * publishes): their files are served from the snapshot the kernel's caches
 * describe (phfs_notifier_held) until this thread reaches the image, which
 * it releases right before it invalidates the image's paths.  A hold lasts
 * HOLD_MAX_MS at most (a notification blocked on a writer must not freeze
 * what readers see), and a refresh that changes more images than the queue
 * says one by one holds none (the root is invalidated, and entries and
 * attributes expire with ttl).
 *
 * Lifetime: started by phfs_start (after daemonizing), stopped and joined
 * by phfs_quiesce after fuse_session_unmount and before
 * fuse_session_destroy, so no call ever reaches a closed /dev/fuse or a
 * destroyed session.  A call still blocked then (its writer's request will
 * never be served) is not waited for long: main then leaves the session
 * alive and exits, and the kernel ends the call when the process's
 * /dev/fuse closes.
 */
#include "fs_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOTIFY_QUEUE_MAX    4096
#define NOTIFY_JOIN_SECONDS 2
#define HOLD_MAX_IMAGES     (NOTIFY_QUEUE_MAX / 4) /* phfs_invalidate: 4 paths each */
#define HOLD_MAX_MS         1000

struct phfs_notifier {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	char **paths; /* FIFO of paths to invalidate */
	size_t head, n, cap;
	bool root; /* the queue overflowed: invalidate "/" */
	bool stop;
	bool started;
	pthread_t thread;
	struct phfs *fs; /* set before start; its session valid until joined */
	/* Held images (see the top): ids sorted, each released once. */
	struct snapshot *held;
	char **held_ids;
	bool *released;
	size_t nheld, held_left; /* held_left: atomic reads without the lock */
	long long held_at;       /* CLOCK_MONOTONIC ms */
};

static long long mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct held_set {
	struct snapshot *snap;
	char **ids;
	bool *released;
	size_t n;
};

/* Take the held set out (lock held); free it with held_free, unlocked. */
static struct held_set held_take(struct phfs_notifier *q)
{
	struct held_set h = {q->held, q->held_ids, q->released, q->nheld};

	q->held = NULL;
	q->held_ids = NULL;
	q->released = NULL;
	q->nheld = 0;
	__atomic_store_n(&q->held_left, 0, __ATOMIC_RELAXED);
	return h;
}

static void held_free(struct held_set *h)
{
	for (size_t i = 0; i < h->n; i++)
		free(h->ids[i]);
	free(h->ids);
	free(h->released);
	snapshot_put(h->snap);
}

static int cmp_id(const void *key, const void *elem)
{
	return strcmp(*(const char *const *)key, *(const char *const *)elem);
}

void phfs_notifier_hold(struct phfs_notifier *q, struct snapshot *shown, char *const *ids, size_t n)
{
	struct held_set old, h = {0};
	bool ok = n > 0 && n <= HOLD_MAX_IMAGES;

	if (ok) {
		h.ids = calloc(n, sizeof(*h.ids));
		h.released = calloc(n, sizeof(*h.released));
		ok = h.ids && h.released;
		for (size_t i = 0; ok && i < n; i++) {
			h.ids[h.n] = strdup(ids[i]);
			ok = h.ids[h.n++] != NULL;
		}
		/* The store's diff is in id order; sorted again all the same,
		 * for bsearch. */
		if (ok)
			qsort(h.ids, h.n, sizeof(*h.ids), cmp_id);
	}
	pthread_mutex_lock(&q->lock);
	old = held_take(q); /* an older hold not yet told: let it go */
	if (ok && !q->stop) {
		q->held = snapshot_ref(shown);
		q->held_ids = h.ids;
		q->released = h.released;
		q->nheld = h.n;
		q->held_at = mono_ms();
		__atomic_store_n(&q->held_left, h.n, __ATOMIC_RELAXED);
		h = (struct held_set){0};
	}
	pthread_mutex_unlock(&q->lock);
	held_free(&h);
	held_free(&old);
}

bool phfs_notifier_held(struct phfs_notifier *q, const char *image, struct snapshot **snap)
{
	char **hit;
	bool found = false;

	if (!q || !image || !__atomic_load_n(&q->held_left, __ATOMIC_RELAXED))
		return false; /* the common case: nothing held */
	pthread_mutex_lock(&q->lock);
	if (q->held && mono_ms() - q->held_at <= HOLD_MAX_MS) {
		hit = bsearch(&image, q->held_ids, q->nheld, sizeof(*q->held_ids), cmp_id);
		if (hit && !q->released[hit - q->held_ids]) {
			*snap = snapshot_ref(q->held);
			found = true;
		}
	}
	pthread_mutex_unlock(&q->lock);
	return found;
}

/* The notifier reached path: release its image (the first component), or
 * everything for the root (lock held).  The set, once empty, is taken out
 * into *done for the caller to free unlocked. */
static void held_release(struct phfs_notifier *q, const char *path, struct held_set *done)
{
	char image[TREE_NAME_MAX + 1];
	const char *key = image, *end;
	char **hit;
	size_t len;

	*done = (struct held_set){0};
	if (!q->held)
		return;
	if (!path || strcmp(path, "/") == 0) {
		*done = held_take(q);
		return;
	}
	end = strchr(path + 1, '/');
	len = end ? (size_t)(end - path - 1) : strlen(path + 1);
	if (len > TREE_NAME_MAX)
		return;
	memcpy(image, path + 1, len);
	image[len] = '\0';
	hit = bsearch(&key, q->held_ids, q->nheld, sizeof(*q->held_ids), cmp_id);
	if (!hit || q->released[hit - q->held_ids])
		return;
	q->released[hit - q->held_ids] = true;
	if (__atomic_sub_fetch(&q->held_left, 1, __ATOMIC_RELAXED) == 0)
		*done = held_take(q);
}

struct phfs_notifier *phfs_notifier_new(void)
{
	struct phfs_notifier *q = calloc(1, sizeof(*q));

	if (!q)
		return NULL;
	pthread_mutex_init(&q->lock, NULL);
	pthread_cond_init(&q->wake, NULL);
	return q;
}

static void clear_queue(struct phfs_notifier *q)
{
	for (size_t i = 0; i < q->n; i++)
		free(q->paths[(q->head + i) % q->cap]);
	q->head = q->n = 0;
}

void phfs_notifier_free(struct phfs_notifier *q)
{
	if (!q)
		return;
	if (!phfs_notifier_stop(q))
		return; /* its thread still runs: leave it what it uses (exiting) */
	{
		struct held_set h = held_take(q);

		held_free(&h);
	}
	clear_queue(q);
	free(q->paths);
	pthread_cond_destroy(&q->wake);
	pthread_mutex_destroy(&q->lock);
	free(q);
}

void phfs_notifier_push(struct phfs_notifier *q, const char *path)
{
	char *copy = path ? strdup(path) : NULL;

	pthread_mutex_lock(&q->lock);
	if (q->stop) {
		free(copy);
	} else if (!path || !copy || q->n >= NOTIFY_QUEUE_MAX) {
		/* Too much (or no memory) to say one by one: say "/" once. */
		free(copy);
		clear_queue(q);
		q->root = true;
	} else {
		if (q->n == q->cap) {
			size_t cap = q->cap ? 2 * q->cap : 64;
			char **grown = malloc(cap * sizeof(*grown));

			if (!grown) {
				free(copy);
				clear_queue(q);
				q->root = true;
				goto out;
			}
			for (size_t i = 0; i < q->n; i++)
				grown[i] = q->paths[(q->head + i) % q->cap];
			free(q->paths);
			q->paths = grown;
			q->cap = cap;
			q->head = 0;
		}
		q->paths[(q->head + q->n) % q->cap] = copy;
		q->n++;
	}
out:
	pthread_cond_signal(&q->wake);
	pthread_mutex_unlock(&q->lock);
}

static void *notifier_thread(void *arg)
{
	struct phfs_notifier *q = arg;

	pthread_mutex_lock(&q->lock);
	for (;;) {
		struct held_set done;
		char *path = NULL;
		bool root;

		while (!q->stop && !q->root && q->n == 0)
			pthread_cond_wait(&q->wake, &q->lock);
		if (q->stop)
			break;
		root = q->root;
		q->root = false;
		if (!root) {
			path = q->paths[q->head];
			q->head = (q->head + 1) % q->cap;
			q->n--;
		}
		/* Readers see the new version from now on; the kernel is told
		 * next (the other order could let a stat in between cache the
		 * old attributes for ttl). */
		held_release(q, root ? NULL : path, &done);
		pthread_mutex_unlock(&q->lock);
		held_free(&done);
		/* May block on a writer's page lock: nothing waits on us. */
		phfs_kernel_invalidate(q->fs, root ? NULL : path);
		free(path);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int phfs_notifier_start(struct phfs_notifier *q, struct phfs *fs)
{
	int err;

	q->fs = fs;
	err = pthread_create(&q->thread, NULL, notifier_thread, q);
	if (err)
		return -err;
	q->started = true;
	return 0;
}

bool phfs_notifier_stop(struct phfs_notifier *q)
{
	struct timespec until;

	if (!q)
		return true;
	pthread_mutex_lock(&q->lock);
	q->stop = true;
	pthread_cond_signal(&q->wake);
	pthread_mutex_unlock(&q->lock);
	if (!q->started)
		return true;
	/* A call blocked in the kernel (a writer's page lock, the writer's
	 * request never to be served now) ends only when /dev/fuse is closed:
	 * do not wait for it forever. */
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += NOTIFY_JOIN_SECONDS;
	if (pthread_timedjoin_np(q->thread, NULL, &until) != 0)
		return false;
	q->started = false;
	return true;
}
