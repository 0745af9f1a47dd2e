/*
 * fs_loop.c - the multi-threaded request loop.
 *
 * libfuse's loop keeps its idle threads asleep in read(2) on /dev/fuse, so
 * every request wakes one of them: the kernel's wake-up, then the
 * scheduler's.  In a virtual machine that costs more than answering: an
 * open(2) and close(2) of a cached spec.json take ~38 us there, against
 * ~3 us on tmpfs, and grep -r of 10,000 images opens 25,000 files.  Here one
 * thread at a time, the reader, takes requests from the device and answers
 * them itself; when none is waiting it polls the device for a short while
 * (poll_us) before it sleeps, so the requests of a burst are taken with no
 * wake-up at all (the same open and close: ~21 us).
 *
 * A request can take long (a save waits on PrimeHub), and the others must
 * not wait behind it: a second thread, the watcher, takes over reading once
 * the reader has been on one request for HANDOFF_MS, and another thread
 * (idle, or started, up to max_threads) watches in turn.  The watcher sleeps
 * while the reader sleeps; the reader wakes it once when a burst begins, and
 * during a burst it looks every HANDOFF_MS.
 *
 * Signals: the threads started here block the ones libfuse handles, so they
 * reach the caller's thread, which waits on a semaphore a signal interrupts
 * (libfuse's handlers have no SA_RESTART), as in libfuse's own loop, and
 * looks again every second.
 */
#include "primehubfs/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "primehubfs/log.h"

#define HANDOFF_MS 1

struct worker {
	struct worker *next; /* in fs_loop.workers */
	pthread_t thread;
	struct fs_loop *loop;
	/* CLOCK_MONOTONIC ns at which the request it answers came; 0: none.
	 * Written by the worker, read by the watcher. */
	long long busy_since;
};

struct fs_loop {
	struct fuse_session *se;
	int fd;      /* /dev/fuse, non-blocking */
	int stop_fd; /* eventfd: wakes a reader asleep in poll(2) */
	long long poll_ns;
	unsigned max_threads;
	sem_t finish; /* posted when the loop stops */
	pthread_mutex_t lock;
	/* Under lock: */
	pthread_cond_t idle;  /* threads with no role */
	pthread_cond_t watch; /* the watcher (CLOCK_MONOTONIC) */
	struct worker *workers;
	unsigned nthreads, nidle;
	/* reader is also read without the lock, by the reader after each
	 * request (serve): stored atomically. */
	struct worker *reader, *watcher;
	bool reader_asleep; /* in poll(2): nothing to watch */
	bool stopping;
	int error;
};

static long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

/* Under lock.  Ends the loop: every thread returns once its request is
 * answered; the caller's thread is woken. */
static void stop_locked(struct fs_loop *l, int error)
{
	uint64_t one = 1;

	if (l->stopping)
		return;
	__atomic_store_n(&l->stopping, true, __ATOMIC_RELAXED); /* next_request reads it */
	l->error = error;
	pthread_cond_broadcast(&l->idle);
	pthread_cond_broadcast(&l->watch);
	if (write(l->stop_fd, &one, sizeof(one)) < 0) {
		/* an eventfd write fails only on overflow: it is awake then */
	}
	sem_post(&l->finish);
}

static void *worker_main(void *arg);

/* Under lock.  A thread for the watcher's role, when one may be started. */
static void start_worker_locked(struct fs_loop *l)
{
	struct worker *w;
	sigset_t block, old;
	int err;

	if (l->nthreads >= l->max_threads || l->stopping)
		return;
	w = calloc(1, sizeof(*w));
	if (!w)
		return; /* the reader goes on alone, as with max_threads=1 */
	w->loop = l;
	/* Signals go to the caller's thread (see the top of this file). */
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGHUP);
	sigaddset(&block, SIGQUIT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	err = pthread_create(&w->thread, NULL, worker_main, w);
	if (err != 0) {
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		log_warn("cannot start a thread to serve requests: %s", strerror(err));
		free(w);
		return;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	w->next = l->workers;
	l->workers = w;
	l->nthreads++;
}

/* The next request into buf: > 0, or 0 when the loop is to stop, or
 * -errno.  Polls for poll_ns, then sleeps in poll(2). */
static int next_request(struct fs_loop *l, struct fuse_buf *buf)
{
	long long polling_since = 0;
	struct pollfd pfd[2] = {{.fd = l->fd, .events = POLLIN},
	                        {.fd = l->stop_fd, .events = POLLIN}};

	for (;;) {
		int r = fuse_session_receive_buf(l->se, buf);

		if (r > 0)
			return r;
		if (fuse_session_exited(l->se) || __atomic_load_n(&l->stopping, __ATOMIC_RELAXED))
			return 0; /* unmounted (ENODEV), or a signal */
		if (r == -EINTR)
			continue; /* a request interrupted before it was read */
		if (r != -EAGAIN)
			return r < 0 ? r : 0;
		if (!polling_since)
			polling_since = now_ns();
		if (now_ns() - polling_since < l->poll_ns)
			continue;
		pthread_mutex_lock(&l->lock);
		l->reader_asleep = true;
		pthread_mutex_unlock(&l->lock);
		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			return -errno;
		pthread_mutex_lock(&l->lock);
		l->reader_asleep = false;
		pthread_cond_signal(&l->watch); /* a burst may begin: watch it */
		pthread_mutex_unlock(&l->lock);
		polling_since = 0;
	}
}

/* As the reader: take and answer requests until another thread took over
 * (this one was busy too long) or the loop stops. */
static void serve(struct worker *w, struct fuse_buf *buf)
{
	struct fs_loop *l = w->loop;

	for (;;) {
		int r = next_request(l, buf);
		bool still;

		if (r <= 0) {
			pthread_mutex_lock(&l->lock);
			stop_locked(l, r);
			pthread_mutex_unlock(&l->lock);
			return;
		}
		__atomic_store_n(&w->busy_since, now_ns(), __ATOMIC_RELAXED);
		fuse_session_process_buf(l->se, buf);
		__atomic_store_n(&w->busy_since, 0, __ATOMIC_RELAXED);
		/* Without the lock (this runs once a request): a takeover
		 * seen one request late only means two threads read the
		 * device for that while, which the device allows. */
		still = __atomic_load_n(&l->reader, __ATOMIC_ACQUIRE) == w &&
		        !__atomic_load_n(&l->stopping, __ATOMIC_RELAXED);
		if (!still)
			return;
	}
}

/* Under lock.  As the watcher: take over reading when the reader has been
 * on one request for HANDOFF_MS; returns then, or when the loop stops. */
static void watch(struct worker *w)
{
	struct fs_loop *l = w->loop;

	l->watcher = w;
	while (!l->stopping && l->reader && l->reader != w) {
		long long since = __atomic_load_n(&l->reader->busy_since, __ATOMIC_RELAXED);
		long long now = now_ns(), until;
		struct timespec ts;

		if (since && now - since >= HANDOFF_MS * 1000000LL) {
			__atomic_store_n(&l->reader, w, __ATOMIC_RELEASE);
			if (l->nidle)
				pthread_cond_signal(&l->idle); /* to watch this one */
			else
				start_worker_locked(l);
			break;
		}
		if (l->reader_asleep) { /* not busy then: since is 0 */
			pthread_cond_wait(&l->watch, &l->lock);
			continue;
		}
		until = (since ? since : now) + HANDOFF_MS * 1000000LL;
		ts.tv_sec = (time_t)(until / 1000000000LL);
		ts.tv_nsec = (long)(until % 1000000000LL);
		pthread_cond_timedwait(&l->watch, &l->lock, &ts);
	}
	l->watcher = NULL;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct fs_loop *l = w->loop;
	struct fuse_buf buf = {0};

	pthread_mutex_lock(&l->lock);
	while (!l->stopping) {
		if (!l->reader)
			__atomic_store_n(&l->reader, w, __ATOMIC_RELEASE);
		if (l->reader == w) {
			pthread_mutex_unlock(&l->lock);
			serve(w, &buf);
			pthread_mutex_lock(&l->lock);
		} else if (!l->watcher) {
			watch(w);
		} else {
			l->nidle++;
			pthread_cond_wait(&l->idle, &l->lock);
			l->nidle--;
		}
	}
	pthread_mutex_unlock(&l->lock);
	free(buf.mem);
	return NULL;
}

int fs_loop_run(struct fuse_session *se, const struct fs_loop_options *o)
{
	struct fs_loop l = {.se = se, .fd = fuse_session_fd(se)};
	pthread_condattr_t ca;
	struct timespec deadline;
	int flags, ret;

	l.poll_ns = o->poll_us > 0 ? o->poll_us * 1000LL : 0;
	l.max_threads = o->max_threads ? o->max_threads : 1;
	l.stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l.stop_fd < 0)
		return -errno;
	flags = fcntl(l.fd, F_GETFL);
	if (flags < 0 || fcntl(l.fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		ret = -errno;
		close(l.stop_fd);
		return ret;
	}
	sem_init(&l.finish, 0, 0);
	pthread_mutex_init(&l.lock, NULL);
	pthread_cond_init(&l.idle, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&l.watch, &ca);
	pthread_condattr_destroy(&ca);

	/* A reader and, when allowed, its watcher. */
	pthread_mutex_lock(&l.lock);
	start_worker_locked(&l);
	start_worker_locked(&l);
	if (!l.nthreads)
		stop_locked(&l, -EAGAIN);
	pthread_mutex_unlock(&l.lock);

	for (;;) {
		bool stopping;

		pthread_mutex_lock(&l.lock);
		stopping = l.stopping;
		pthread_mutex_unlock(&l.lock);
		if (stopping || fuse_session_exited(se))
			break;
		/* Posted when the loop stops, or interrupted by a signal; at
		 * most a second also catches a signal that came between the
		 * check above and the wait. */
		clock_gettime(CLOCK_REALTIME, &deadline);
		deadline.tv_sec += 1;
		sem_timedwait(&l.finish, &deadline);
	}
	pthread_mutex_lock(&l.lock);
	stop_locked(&l, 0);
	pthread_mutex_unlock(&l.lock);
	/* Threads start others only until stopping is set: the list is final. */
	while (l.workers) {
		struct worker *w = l.workers;

		pthread_join(w->thread, NULL);
		l.workers = w->next;
		free(w);
	}
	ret = l.error;
	close(l.stop_fd);
	sem_destroy(&l.finish);
	pthread_cond_destroy(&l.idle);
	pthread_cond_destroy(&l.watch);
	pthread_mutex_destroy(&l.lock);
	fcntl(l.fd, F_SETFL, flags);
	return ret;
}
