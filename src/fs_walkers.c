/*
 * fs_walkers.c - which processes are walking the mount, so that a walk's
 * first image asks for every image's groups at once.
 *
 * PrimeHub charges a Keycloak read per group for even one image's groups,
 * and images x groups of matching for everyone's.  The store asks one
 * image's groups first and everyone's when a second image wants them within
 * ttl (snapshot.c); a walk (ls -lR, find, du, grep -r, tar, rsync) thus
 * paid one single-image read before the list.  A walk lists the root
 * first and goes down at once: a process that listed the root a few
 * seconds ago and now wants an image's groups is walking, and so is the
 * child of one that listed it a moment before (a shell that expanded a
 * glob of every image's status.json for the cat it runs).  `ls -l`, then a
 * `cat` of one status.json, are two processes of which the second did not
 * list the root: one image read, as before.  A long-lived program (a file
 * manager) that lists the root and opens one image's groups/ within
 * PHFS_WALK_OWN_MS is taken for a walker: one membership query instead of
 * one image read, at most once per ttl.
 *
 * Pids identify a process only for a short while (they are reused), hence
 * the short windows.  A wrong guess costs one request more or less, never
 * a wrong answer.
 *
 * Ownership: phfs_walkers_new/free; the functions take the lock.
 */
#include "fs_internal.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* How long after a shell listed the root a command it started counts as
 * part of that listing (glob expansion is milliseconds before the exec; a
 * tab completion is usually seconds before the command). */
#define PHFS_WALK_CHILD_MS 1000
/* How long after a process last listed the root its wanting an image's
 * groups counts as a walk: ls -lR stats every image directory before it
 * goes down (about 1.5 s at 100,000 images). */
#define PHFS_WALK_OWN_MS 5000
#define WALKERS_MAX      32

struct phfs_walkers {
	pthread_mutex_t lock;
	struct {
		pid_t pid;
		long long at_ms; /* CLOCK_MONOTONIC */
	} seen[WALKERS_MAX];
	unsigned next;
};

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int phfs_walkers_new(struct phfs_walkers **out)
{
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	pthread_mutex_init(&(*out)->lock, NULL);
	return 0;
}

void phfs_walkers_free(struct phfs_walkers *w)
{
	if (!w)
		return;
	pthread_mutex_destroy(&w->lock);
	free(w);
}

void phfs_walkers_note_root(struct phfs_walkers *w)
{
	pid_t pid = phfs_caller_pid();
	long long now = now_ms();
	unsigned slot;

	if (!w || pid <= 0)
		return;
	pthread_mutex_lock(&w->lock);
	/* One entry per process: a walker opens the root once, a shell on
	 * every glob. */
	for (slot = 0; slot < WALKERS_MAX; slot++)
		if (w->seen[slot].pid == pid)
			break;
	if (slot == WALKERS_MAX)
		slot = w->next++ % WALKERS_MAX;
	w->seen[slot].pid = pid;
	w->seen[slot].at_ms = now;
	pthread_mutex_unlock(&w->lock);
}

/* The parent of pid, from /proc/PID/stat (its 4th field, after the command
 * name in parentheses, which may itself hold ')' and spaces); 0 if gone. */
static pid_t parent_of(pid_t pid)
{
	char path[64], buf[512], *close;
	int ppid = 0;
	size_t n;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	close = strrchr(buf, ')');
	if (!close || sscanf(close + 1, " %*c %d", &ppid) != 1)
		return 0;
	return (pid_t)ppid;
}

/* When pid last opened the root (CLOCK_MONOTONIC ms), or -1. */
static long long last_root(struct phfs_walkers *w, pid_t pid)
{
	long long at = -1;

	pthread_mutex_lock(&w->lock);
	for (unsigned i = 0; i < WALKERS_MAX; i++)
		if (w->seen[i].pid == pid && w->seen[i].at_ms > at)
			at = w->seen[i].at_ms;
	pthread_mutex_unlock(&w->lock);
	return at;
}

bool phfs_walkers_caller_walks(struct phfs_walkers *w)
{
	pid_t pid = phfs_caller_pid();
	long long now = now_ms(), at;
	pid_t parent;

	if (!w || pid <= 0)
		return false;
	at = last_root(w, pid);
	if (at >= 0 && now - at <= PHFS_WALK_OWN_MS)
		return true;
	parent = parent_of(pid);
	if (parent <= 1)
		return false;
	at = last_root(w, parent);
	return at >= 0 && now - at <= PHFS_WALK_CHILD_MS;
}
