/*
 * fs_notify.c - telling the kernel what changed, from a thread of its own.
 *
 * fuse_invalidate_path can block: dropping a file's cached pages waits for
 * the page locks a writer holds while its WRITE request waits for a worker
 * thread.  Were the refresher to make that call itself, every worker
 * waiting on the refresher (a reader after store_invalidate waits for a
 * fetch) would wait on that writer, and the writer on a free worker: the
 * whole mount would hang.  So the refresher only queues paths here, and
 * this thread makes the calls; when it blocks, nothing else waits on it.
 *
 * The queue is bounded: past NOTIFY_QUEUE_MAX paths it collapses into one
 * invalidation of the root (the kernel then re-reads the listing; cached
 * pages are re-checked at the next open, fs_kcache.c, and entries and
 * attributes expire with ttl).
 *
 * Lifetime: started by phfs_start (after daemonizing), stopped and joined
 * by phfs_quiesce after fuse_unmount and before fuse_destroy, so no call
 * ever reaches a closed /dev/fuse or a destroyed struct fuse.  A call still
 * blocked then (its writer's request will never be served) is not waited
 * for long: main then leaves the struct fuse alive and exits, and the
 * kernel ends the call when the process's /dev/fuse closes.
 */
#include "fs_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOTIFY_QUEUE_MAX    4096
#define NOTIFY_JOIN_SECONDS 2

struct phfs_notifier {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	char **paths; /* FIFO of paths to invalidate */
	size_t head, n, cap;
	bool root; /* the queue overflowed: invalidate "/" */
	bool stop;
	bool started;
	pthread_t thread;
	struct fuse *fuse; /* set before start, valid until joined */
};

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
		pthread_mutex_unlock(&q->lock);
		/* May block on a writer's page lock: nothing waits on us. */
		fuse_invalidate_path(q->fuse, root ? "/" : path);
		free(path);
		pthread_mutex_lock(&q->lock);
	}
	pthread_mutex_unlock(&q->lock);
	return NULL;
}

int phfs_notifier_start(struct phfs_notifier *q, struct fuse *fuse)
{
	int err;

	q->fuse = fuse;
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
