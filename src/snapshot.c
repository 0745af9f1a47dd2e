/* snapshot.c - immutable snapshots and the store that refreshes them; see
 * primehubfs/snapshot.h for the freshness rules. */
#include "primehubfs/snapshot.h"

#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "primehubfs/log.h"
#include "primehubfs/spec.h"

/* Room to escape a 255-byte name (each byte at most 4 escaped bytes). */
#define TREE_ID_ESCAPE_MAX (255 * 4 + 1)

/* Backoff after failed refreshes: the first retry after about
 * BACKOFF_FIRST_MS (or ttl when shorter, but never below BACKOFF_MIN_MS),
 * doubling up to BACKOFF_MAX_MS, each delay jittered by +-20% so that many
 * mounts do not retry in step. */
#define BACKOFF_FIRST_MS 1000
#define BACKOFF_MIN_MS   200
#define BACKOFF_MAX_MS   30000

/* With nothing to show at all, a reader may still ask again this often
 * whatever the backoff: someone typing `ls` after fixing the server should
 * not wait half a minute, and one request a second is no flood. */
#define READER_RETRY_MS 1000

/* Up to this many queued change notifications are kept free of repeats. */
#define STORE_NOTIFY_MAX 64

/* Within one ttl, after this many images had their groups fetched one by
 * one, the next image's need fetches every image's groups in one request:
 * a walk is under way. The first need is one `image` read (an admin looking
 * at one image costs the server that image's groups only); a second image
 * within ttl means a walk, and one full read then costs less than one read
 * per image (each single read asks Keycloak once per group of that image,
 * the full one once per group of the whole server). */
#define MEMBERS_SINGLES_BEFORE_FULL 1

/* What the last fetch had to leave out, so that the same bad names are
 * reported once and not at every refresh (refresher thread only). */
struct skip_memo {
	size_t count;
	char first[TREE_ID_ESCAPE_MAX];
};

#define RETIRED_MAX       4
#define RETIRE_MIN_IMAGES 1024  /* smaller ones free in well under a millisecond */
#define RETIRE_POLL_MS    20    /* how often the refresher looks while some wait */
#define RETIRE_GIVE_UP_MS 10000 /* then the last holder frees it, wherever */

struct store {
	pthread_mutex_t lock;
	pthread_cond_t wake;    /* refresher: work to do */
	pthread_cond_t fetched; /* waiters: a fetch finished */
	pthread_t thread;
	bool started, stop;

	long ttl_ms;
	store_fetch_fn fetch;
	void *fetch_arg;
	store_changed_fn changed;
	store_hold_fn hold;
	void *changed_arg;
	int (*abort_cb)(void *);
	void *abort_arg;

	struct snapshot *cur;
	bool refresh_wanted;
	bool fetching;          /* a fetch is under way (on the refresher) */
	bool force_fetch;       /* store_invalidate: next get waits for a fetch */
	uint64_t fetch_gen;     /* completed fetch attempts */
	uint64_t mutation_gen;  /* own mutations published, and invalidations */
	struct ph_err last_err; /* of the last failed fetch */
	int last_ret;
	struct timespec last_access;
	struct timespec last_attempt; /* CLOCK_MONOTONIC: when the last fetch ended */
	struct timespec last_ok;      /* CLOCK_REALTIME: when a fetch last succeeded */

	/* Backoff after failed fetches: no fetch before retry_at while
	 * failures > 0, so a failing server is asked at a falling rate instead
	 * of as fast as it can answer. */
	unsigned failures;
	struct timespec retry_at;
	bool retry_now;           /* a reader with nothing to show asked past the backoff */
	bool fetch_for_waiters;   /* readers wait for the fetch under way */
	unsigned rng;             /* jitter */
	struct skip_memo skipped; /* refresher thread only */

	/* Group membership (store_get_groups): one fetch at a time, by any
	 * reader thread. */
	store_members_fn members_all;
	store_image_fn members_one;
	void *members_arg;
	bool members_fetching;
	pthread_cond_t members_done;
	uint64_t members_gen;       /* membership published */
	long long members_full_ms;  /* mono ms of the last full fetch, 0: none */
	long long singles_since_ms; /* start of the current count of singles */
	unsigned singles;

	/* Change notifications waiting for the refresher thread. */
	struct ph_strlist pending_ids;
	bool pending_root;

	/* Snapshots a refresh replaced that readers still hold: freeing one
	 * of 100,000 changed images takes ~50 ms, which must not land in the
	 * request that drops the last reference.  The refresher keeps a
	 * reference and frees each itself once it holds the last (retire). */
	struct {
		struct snapshot *snap;
		long long since_ms;
	} retired[RETIRED_MAX];
	unsigned nretired;
};

/* ---- time helpers ---- */

static struct timespec now_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts;
}

static long long ms_between(struct timespec a, struct timespec b)
{
	return (long long)(b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000;
}

static long long mono_ms(void)
{
	struct timespec t = now_mono();

	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static bool ts_after(struct timespec a, struct timespec b)
{
	return a.tv_sec > b.tv_sec || (a.tv_sec == b.tv_sec && a.tv_nsec > b.tv_nsec);
}

/* ---- entries ---- */

struct snap_image *snap_image_get(const struct snap_image *e)
{
	struct snap_image *m = (struct snap_image *)e;

	__atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
	return m;
}

static void texts_free(struct snap_texts *t)
{
	if (!t)
		return;
	free(t->spec);
	free(t->status);
	free(t);
}

void snap_image_put(struct snap_image *e)
{
	if (!e || __atomic_sub_fetch(&e->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	ph_image_free(e->img);
	texts_free(e->texts);
	free(e);
}

struct snap_image *snap_image_new(struct ph_image *img, const struct snap_image *previous)
{
	struct snap_image *e = calloc(1, sizeof(*e));

	if (!e) {
		ph_image_free(img);
		return NULL;
	}
	e->refs = 1;
	e->img = img;
	/* mtime moves only when the image does, so the kernel's AUTO_INVAL_DATA
	 * keeps page-cached content exactly as long as it is right. */
	/* Learning an image's groups for the first time changes nothing the
	 * kernel was shown: status.json and groups/ wait for them. */
	if (previous &&
	    (ph_image_equal(previous->img, img) ||
	     (!previous->img->groups_known && ph_image_equal_except_groups(previous->img, img))))
		e->mtime = previous->mtime;
	else
		clock_gettime(CLOCK_REALTIME, &e->mtime);
	if (img->groups_known)
		e->groups_at_ms = mono_ms(); /* it came with them: a read or a change */
	return e;
}

const struct snap_texts *snap_image_texts(const struct snap_image *e)
{
	struct snap_image *m = (struct snap_image *)e;
	struct snap_texts *t = __atomic_load_n(&m->texts, __ATOMIC_ACQUIRE), *none = NULL;

	if (t)
		return t;
	/* Two readers may render at once; one wins, the other's copy goes.
	 * Cheaper than a lock on every read of a rendered entry. */
	t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	t->spec = spec_render(e->img, &t->spec_len);
	t->status = spec_render_status(e->img, &t->status_len);
	if (!t->spec || !t->status) {
		texts_free(t);
		return NULL;
	}
	if (!__atomic_compare_exchange_n(&m->texts, &none, t, false, __ATOMIC_ACQ_REL,
	                                 __ATOMIC_ACQUIRE)) {
		texts_free(t);
		return none;
	}
	return t;
}

static void sizes_of(const struct snap_texts *t, struct snap_sizes *out)
{
	out->spec_len = t->spec_len;
	out->status_len = t->status_len;
	out->spec_hash = ph_hash_bytes(t->spec, t->spec_len, 0);
	out->status_hash = ph_hash_bytes(t->status, t->status_len, 0);
}

bool snap_image_sizes(const struct snap_image *e, struct snap_sizes *out)
{
	struct snap_image *m = (struct snap_image *)e;
	const struct snap_texts *t = __atomic_load_n(&m->texts, __ATOMIC_ACQUIRE);
	struct snap_texts fresh = {0};

	int unset = 0;

	if (__atomic_load_n(&m->sized, __ATOMIC_ACQUIRE) == 1) {
		*out = m->sizes;
		return true;
	}
	if (!t) {
		/* Render, measure, drop: the texts come back when opened. */
		fresh.spec = spec_render(e->img, &fresh.spec_len);
		fresh.status = spec_render_status(e->img, &fresh.status_len);
		if (!fresh.spec || !fresh.status) {
			free(fresh.spec);
			free(fresh.status);
			return false;
		}
		t = &fresh;
	}
	sizes_of(t, out);
	free(fresh.spec);
	free(fresh.status);
	/* 0: unknown, 2: being written (by the one thread that claimed it;
	 * others measure for themselves meanwhile), 1: known. */
	if (__atomic_compare_exchange_n(&m->sized, &unset, 2, false, __ATOMIC_ACQ_REL,
	                                __ATOMIC_ACQUIRE)) {
		m->sizes = *out;
		__atomic_store_n(&m->sized, 1, __ATOMIC_RELEASE);
	}
	return true;
}

/* ---- snapshots ---- */

struct snapshot *snapshot_ref(struct snapshot *s)
{
	__atomic_add_fetch(&s->refs, 1, __ATOMIC_RELAXED);
	return s;
}

/* Drop a reference; the last frees the snapshot.  paced: its entries a
 * thousand at a time with a pause between (snapshot_put_paced). */
static void snapshot_release(struct snapshot *snap, bool paced)
{
	if (!snap || __atomic_sub_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	for (size_t i = 0; i < snap->nimages; i++) {
		snap_image_put(snap->images[i]);
		if (paced && i % 1000 == 999)
			nanosleep(&(struct timespec){.tv_nsec = 50000}, NULL);
	}
	free(snap->images);
	free(snap);
}

void snapshot_put(struct snapshot *snap)
{
	snapshot_release(snap, false);
}

static int cmp_entry_id(const void *key, const void *elem)
{
	const struct snap_image *const *e = elem;

	return strcmp(key, (*e)->img->id);
}

static int cmp_entries(const void *a, const void *b)
{
	const struct snap_image *const *x = a, *const *y = b;

	return strcmp((*x)->img->id, (*y)->img->id);
}

/* In order already: Kubernetes lists objects by name, so the server's
 * answer usually is, and one pass spares sorting 100,000 ids again. */
static bool entries_sorted(struct snap_image *const *v, size_t n)
{
	for (size_t i = 1; i < n; i++)
		if (strcmp(v[i - 1]->img->id, v[i]->img->id) > 0)
			return false;
	return true;
}

/* Index of id, or of where it would be inserted (with *found false). */
static size_t snapshot_slot(const struct snapshot *snap, const char *id, bool *found)
{
	size_t lo = 0, hi = snap->nimages;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(id, snap->images[mid]->img->id);

		if (c == 0) {
			*found = true;
			return mid;
		}
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	*found = false;
	return lo;
}

uint64_t snapshot_id_hash(const char *id)
{
	return ph_hash_bytes(id, strlen(id), 0);
}

const struct snap_image *snapshot_find(const struct snapshot *snap, const char *id)
{
	struct snap_image *const *e;

	if (!snap || !snap->nimages)
		return NULL;
	e = bsearch(id, snap->images, snap->nimages, sizeof(*snap->images), cmp_entry_id);
	return e ? *e : NULL;
}

/* Can this id be a directory name?  Kubernetes names are lower-case
 * letters, digits, '-' and '.', so anything else comes from a broken or
 * hostile server: a '/' or '..' would escape the tree, a control character
 * or an invalid UTF-8 byte would reach terminals through ls. */
static bool usable_name(const char *id)
{
	size_t len = strlen(id);
	char escaped[TREE_ID_ESCAPE_MAX];

	if (len == 0 || len > 255 || strchr(id, '/') || strcmp(id, ".") == 0 ||
	    strcmp(id, "..") == 0 || strcmp(id, ".error") == 0 || strcmp(id, ".status") == 0)
		return false;
	/* Escaping changes nothing exactly when every byte is printable UTF-8. */
	return ph_escape_line(id, escaped, sizeof(escaped)) == len && strcmp(escaped, id) == 0;
}

/* Build a snapshot from a fetched tree (consumed).  Entries whose texts did
 * not change are taken over from prev, which keeps their mtime and memory. */
static int snapshot_from_tree(struct ph_tree *tree, const struct snapshot *prev,
                              struct skip_memo *memo, struct snapshot **out)
{
	struct snapshot *s = calloc(1, sizeof(*s));
	size_t n = 0, skipped = 0, kept;
	char *first_skipped = NULL;

	if (!s)
		goto nomem;
	s->refs = 1;
	s->fetched = now_mono();
	clock_gettime(CLOCK_REALTIME, &s->ctime);
	s->images = calloc(tree->nimages ? tree->nimages : 1, sizeof(*s->images));
	if (!s->images)
		goto nomem;

	for (size_t i = 0; i < tree->nimages; i++) {
		struct ph_image *img = tree->images[i];
		const struct snap_image *old;
		struct snap_image *e;

		tree->images[i] = NULL;
		if (!img)
			continue;
		if (!usable_name(img->id)) {
			/* Kubernetes names never look like this; a server that sends
			 * one must not make us show a path that escapes the tree. */
			if (!skipped++) {
				char shown[TREE_ID_ESCAPE_MAX];

				ph_escape_line(img->id, shown, sizeof(shown));
				first_skipped = strdup(shown);
			}
			ph_image_free(img);
			continue;
		}
		old = prev ? snapshot_find(prev, img->id) : NULL;
		if (old && ph_image_equal_except_groups(old->img, img)) {
			/* Unchanged (the tree says nothing of groups): keep the
			 * entry, its rendered texts and its known membership. */
			ph_image_free(img);
			s->images[n++] = snap_image_get(old);
			s->nimages = n;
			continue;
		}
		if (old && old->img->groups_known && !img->groups_known) {
			/* Changed, but not in what it is connected to as far as
			 * anyone knows: keep the groups, and how old they are. */
			if (ph_image_set_groups(img, old->img->groups, old->img->ngroups) < 0) {
				ph_image_free(img);
				goto nomem;
			}
		}
		e = snap_image_new(img, old);
		if (!e)
			goto nomem;
		if (old && img->groups_known)
			e->groups_at_ms = __atomic_load_n(&old->groups_at_ms, __ATOMIC_RELAXED);
		s->images[n++] = e;
		s->nimages = n;
	}
	if (skipped &&
	    (skipped != memo->count || !first_skipped || strcmp(memo->first, first_skipped) != 0))
		log_warn("ignoring %zu image(s) whose id cannot be a directory name, the first "
		         "'%s': Kubernetes never names an image like that",
		         skipped, first_skipped ? first_skipped : "?");
	memo->count = skipped;
	snprintf(memo->first, sizeof(memo->first), "%s", first_skipped ? first_skipped : "");
	free(first_skipped);
	if (!entries_sorted(s->images, s->nimages))
		qsort(s->images, s->nimages, sizeof(*s->images), cmp_entries);
	/* Ids are names and unique on the server; drop duplicates defensively
	 * so bsearch and readdir stay sane whatever the server sends (in one
	 * linear pass: a hostile answer must not make this quadratic). */
	kept = s->nimages ? 1 : 0;
	for (size_t i = 1; i < s->nimages; i++) {
		if (strcmp(s->images[kept - 1]->img->id, s->images[i]->img->id) == 0)
			snap_image_put(s->images[i]);
		else
			s->images[kept++] = s->images[i];
	}
	s->nimages = kept;
	for (size_t i = 0; i < kept; i++)
		s->ids_sum += snapshot_id_hash(s->images[i]->img->id);
	ph_tree_free(tree);
	*out = s;
	return 0;
nomem:
	free(first_skipped);
	ph_tree_free(tree);
	snapshot_put(s);
	return -ENOMEM;
}

/* ---- the store ---- */

static void queue_change(struct store *st, const char *id)
{
	if (!st->changed)
		return;
	if (!id) {
		st->pending_root = true;
		return;
	}
	/* A short queue is kept free of repeats; a long one (a refresh that
	 * changed many images is being announced) just grows: announcing an
	 * image twice is harmless, scanning 10^5 ids per change is not. */
	if (st->pending_ids.n < STORE_NOTIFY_MAX)
		for (size_t i = 0; i < st->pending_ids.n; i++)
			if (strcmp(st->pending_ids.items[i], id) == 0)
				return;
	ph_strlist_append(&st->pending_ids, id);
}

/* What changed between two snapshots, computed without the store lock (both
 * are immutable) in one merge pass over the sorted entries.  Every changed
 * id is copied here, outside the lock: the kernel keeps attributes for ttl,
 * so each changed image must be told about, however many there are. */
struct snap_diff {
	char **ids;
	size_t n, cap;
	bool root;
	bool nomem; /* some ids could not be kept: announce the root */
};

static void diff_add(struct snap_diff *d, const char *id)
{
	if (d->n == d->cap) {
		size_t cap = d->cap ? 2 * d->cap : 64;
		char **ids = realloc(d->ids, cap * sizeof(*ids));

		if (!ids) {
			d->nomem = true;
			return;
		}
		d->ids = ids;
		d->cap = cap;
	}
	if (!(d->ids[d->n] = strdup(id)))
		d->nomem = true;
	else
		d->n++;
}

static void diff_free(struct snap_diff *d)
{
	for (size_t i = 0; i < d->n; i++)
		free(d->ids[i]);
	free(d->ids);
	memset(d, 0, sizeof(*d));
}

static void snapshot_diff(const struct snapshot *old, const struct snapshot *new,
                          struct snap_diff *d)
{
	size_t i = 0, j = 0;

	diff_free(d);
	while (i < old->nimages || j < new->nimages) {
		int c;

		if (i == old->nimages)
			c = 1;
		else if (j == new->nimages)
			c = -1;
		else
			c = strcmp(old->images[i]->img->id, new->images[j]->img->id);
		if (c == 0) {
			if (old->images[i] != new->images[j])
				diff_add(d, new->images[j]->img->id);
			i++;
			j++;
		} else {
			d->root = true;
			diff_add(d, c < 0 ? old->images[i]->img->id : new->images[j]->img->id);
			if (c < 0)
				i++;
			else
				j++;
		}
	}
}

/* Queue a diff's notifications (lock held): its ids move to the queue
 * without a copy or a scan, so a refresh that changed everything holds the
 * lock for no longer than one that changed nothing. */
static void queue_diff(struct store *st, struct snap_diff *d)
{
	if (!st->changed) {
		diff_free(d);
		return;
	}
	if (d->root || d->nomem)
		st->pending_root = true;
	if (!st->pending_ids.n) {
		free(st->pending_ids.items);
		st->pending_ids.items = d->ids;
		st->pending_ids.n = d->n;
		d->ids = NULL;
		d->n = d->cap = 0;
	} else {
		for (size_t k = 0; k < d->n; k++)
			queue_change(st, d->ids[k]);
	}
	diff_free(d);
}

/* Entries of fresh (a tree: no groups) that are unchanged in from, which
 * knows their groups, become from's.  fresh is not published yet. */
static void carry_members(struct snapshot *fresh, const struct snapshot *from)
{
	for (size_t i = 0; i < fresh->nimages; i++) {
		struct snap_image *e = fresh->images[i];
		const struct snap_image *f;

		if (e->img->groups_known)
			continue;
		f = snapshot_find(from, e->img->id);
		if (f && f != e && f->img->groups_known &&
		    ph_image_equal_except_groups(f->img, e->img)) {
			fresh->images[i] = snap_image_get(f);
			snap_image_put(e);
		}
	}
}

/* The delay before the next fetch after `failures` failed ones. */
static long backoff_ms(struct store *st)
{
	long first =
	    st->ttl_ms > 0 && st->ttl_ms < BACKOFF_FIRST_MS ? st->ttl_ms : BACKOFF_FIRST_MS;
	long ms = first < BACKOFF_MIN_MS ? BACKOFF_MIN_MS : first;
	long jitter;

	for (unsigned k = 1; k < st->failures && ms < BACKOFF_MAX_MS; k++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	/* +-20%, from a small LCG: no need for good randomness, only for mounts
	 * not to retry in lock step. */
	st->rng = st->rng * 1103515245u + 12345u;
	jitter = (long)((st->rng >> 8) % 401u) - 200; /* -200..200 per mille */
	return ms + ms * jitter / 1000;
}

static struct timespec ts_add_ms(struct timespec t, long ms)
{
	t.tv_sec += ms / 1000;
	t.tv_nsec += (ms % 1000) * 1000000;
	if (t.tv_nsec >= 1000000000) {
		t.tv_sec++;
		t.tv_nsec -= 1000000000;
	}
	return t;
}

/* Whether a fetch must wait for the backoff delay (lock held). */
static bool backing_off(const struct store *st, struct timespec now)
{
	return st->failures && ts_after(st->retry_at, now);
}

static void store_notify(struct store *st);

/* snapshot_put on the refresher, for a snapshot a refresh replaced: paced,
 * so that request threads are not starved of malloc's one arena (main.c)
 * for the ~50 ms that 100,000 entries take. */
static void snapshot_put_paced(struct snapshot *snap)
{
	snapshot_release(snap, true);
}

/* Drop the refresher's reference to prev, a snapshot a refresh replaced:
 * at once when it is small or nobody else holds it (freed here, on the
 * refresher), else later (reap_retired).  Lock not held. */
static void retire(struct store *st, struct snapshot *prev)
{
	struct snapshot *out = NULL;

	if (!prev)
		return;
	if (prev->nimages < RETIRE_MIN_IMAGES ||
	    __atomic_load_n(&prev->refs, __ATOMIC_ACQUIRE) == 1) {
		snapshot_put_paced(prev);
		return;
	}
	pthread_mutex_lock(&st->lock);
	if (st->nretired == RETIRED_MAX) {
		out = st->retired[0].snap; /* the oldest: its last holder frees it */
		memmove(&st->retired[0], &st->retired[1],
		        sizeof(st->retired[0]) * (RETIRED_MAX - 1));
		st->nretired--;
	}
	st->retired[st->nretired].snap = prev;
	st->retired[st->nretired].since_ms = mono_ms();
	st->nretired++;
	pthread_mutex_unlock(&st->lock);
	snapshot_put_paced(out);
}

/* Refresher, lock held: free the retired snapshots nobody else holds any
 * more (or held too long).  Returns how long to wait before looking again,
 * -1: nothing left to look at. */
static long long reap_retired(struct store *st)
{
	struct snapshot *gone[RETIRED_MAX];
	unsigned ngone = 0, kept = 0;
	long long now = mono_ms();

	for (unsigned i = 0; i < st->nretired; i++) {
		if (__atomic_load_n(&st->retired[i].snap->refs, __ATOMIC_ACQUIRE) == 1 ||
		    now - st->retired[i].since_ms >= RETIRE_GIVE_UP_MS)
			gone[ngone++] = st->retired[i].snap;
		else
			st->retired[kept++] = st->retired[i];
	}
	st->nretired = kept;
	if (ngone) {
		pthread_mutex_unlock(&st->lock);
		for (unsigned i = 0; i < ngone; i++)
			snapshot_put_paced(gone[i]);
#ifdef __GLIBC__
		malloc_trim(0);
#endif
		pthread_mutex_lock(&st->lock);
	}
	return st->nretired ? RETIRE_POLL_MS : -1;
}

/* One fetch; called on the refresher thread with the lock held, returns
 * with it held.  The lock is dropped for the fetch, the snapshot build and
 * the diff: all of them can take long at 10^5 images, and every FUSE
 * request needs the lock for a moment. */
static void store_do_fetch(struct store *st)
{
	uint64_t mutations_before = st->mutation_gen, members_before = st->members_gen;
	struct snapshot *prev = st->cur ? snapshot_ref(st->cur) : NULL;
	struct snapshot *fresh = NULL;
	struct ph_tree tree = {0};
	struct ph_err err = {0};
	struct snap_diff diff = {0};
	int ret;

	st->refresh_wanted = false;
	st->retry_now = false;
	st->fetching = true;
	pthread_mutex_unlock(&st->lock);

	ret = st->fetch(st->fetch_arg, &tree, &err);
	if (__atomic_load_n(&st->stop, __ATOMIC_ACQUIRE)) {
		/* Stopping (unmount, SIGTERM): building and comparing a big
		 * answer nobody will see could take seconds; drop it. */
		ph_tree_free(&tree);
		pthread_mutex_lock(&st->lock);
		st->fetching = false;
		st->fetch_gen++;
		pthread_cond_broadcast(&st->fetched);
		pthread_mutex_unlock(&st->lock);
		snapshot_put(prev);
		pthread_mutex_lock(&st->lock);
		return;
	}
	if (ret == 0) {
		ret = snapshot_from_tree(&tree, prev, &st->skipped, &fresh);
		if (ret < 0)
			ph_err_set(&err, ENOMEM, NULL, "out of memory building the image list");
	} else {
		ph_tree_free(&tree);
	}
	if (ret == 0 && prev)
		snapshot_diff(prev, fresh, &diff);

	pthread_mutex_lock(&st->lock);
	/* Groups fetched while we fetched were published on top of prev: take
	 * them over (the tree has none), and compare with what was shown. */
	while (ret == 0 && prev && st->members_gen != members_before &&
	       st->mutation_gen == mutations_before) {
		struct snapshot *base = snapshot_ref(st->cur);

		members_before = st->members_gen;
		pthread_mutex_unlock(&st->lock);
		carry_members(fresh, base);
		snapshot_diff(base, fresh, &diff);
		snapshot_put(prev);
		prev = base;
		pthread_mutex_lock(&st->lock);
	}
	st->fetching = false;
	st->fetch_for_waiters = false;
	st->last_ret = ret;
	st->last_attempt = now_mono();
	if (ret < 0) {
		/* Say it once, not once per retry: a dead server must not fill
		 * the log.  The reason stays available to callers (.status,
		 * a reader with nothing to show). */
		if (!st->failures)
			log_warn("refreshing the image list failed: %s%s", err.msg,
			         st->cur ? "; showing the last list while retrying" : "");
		else
			log_debug("refreshing the image list failed again (%u in a row): %s",
			          st->failures + 1, err.msg);
		st->failures++;
		st->last_err = err;
		st->retry_at = ts_add_ms(st->last_attempt, backoff_ms(st));
	} else {
		if (st->failures)
			log_info("PrimeHub answers again: the image list is fresh after %u failed "
			         "refresh(es)",
			         st->failures);
		st->failures = 0;
		clock_gettime(CLOCK_REALTIME, &st->last_ok);
		if (st->mutation_gen != mutations_before) {
			/* An own mutation landed while we fetched: this answer may
			 * predate it, and publishing it would undo what the user
			 * just saw succeed.  Keep the current snapshot and fetch
			 * again. */
			snapshot_put(fresh);
			fresh = NULL;
			st->refresh_wanted = true;
		} else {
			/* No mutation since: cur is still prev, so the diff holds. */
			st->force_fetch = false;
			if (prev && st->hold && !diff.nomem && diff.n)
				st->hold(st->changed_arg, st->cur, diff.ids, diff.n);
			/* The first snapshot tells the kernel nothing: it
			 * cannot have cached anything of the images yet (a
			 * root invalidation would only drop the listing it is
			 * caching right now). */
			if (prev)
				queue_diff(st, &diff);
			snapshot_put(st->cur);
			st->cur = fresh;
		}
	}
	st->fetch_gen++;
	pthread_cond_broadcast(&st->fetched);
	/* Until the kernel is told, it may answer a stat of a changed file
	 * with the old size while an open here reads the new text: tell it
	 * before anything else (freeing the old snapshot, trimming the heap
	 * take milliseconds). */
	if (st->pending_ids.n || st->pending_root)
		store_notify(st);
	/* Dropping the last reference may free thousands of entries: not
	 * under the lock.  Then hand the memory of the parsed answer (several
	 * times the snapshot's size) back to the system, or the daemon would
	 * keep its peak for good. */
	pthread_mutex_unlock(&st->lock);
	diff_free(&diff);
	retire(st, prev);
#ifdef __GLIBC__
	malloc_trim(0);
#endif
	pthread_mutex_lock(&st->lock);
}

static void store_notify(struct store *st)
{
	struct ph_strlist ids = st->pending_ids;
	bool root = st->pending_root;

	st->pending_ids = (struct ph_strlist){0};
	st->pending_root = false;
	pthread_mutex_unlock(&st->lock);
	if (root)
		st->changed(st->changed_arg, NULL);
	for (size_t i = 0; i < ids.n; i++)
		st->changed(st->changed_arg, ids.items[i]);
	ph_strlist_free(&ids);
	pthread_mutex_lock(&st->lock);
}

static void *store_thread(void *arg)
{
	struct store *st = arg;

	pthread_mutex_lock(&st->lock);
	while (!st->stop) {
		long long reap_ms = st->nretired ? reap_retired(st) : -1;
		struct timespec now = now_mono();
		struct timespec reap_at = ts_add_ms(now, reap_ms > 0 ? (long)reap_ms : 0);

		if (st->pending_ids.n || st->pending_root) {
			store_notify(st);
		} else if (st->refresh_wanted && backing_off(st, now) && !st->retry_now) {
			/* Asked for, but the server failed lately: wait out the
			 * backoff (a stop or a new wish wakes us). */
			struct timespec until = st->retry_at;

			if (reap_ms >= 0 && ts_after(until, reap_at))
				until = reap_at;
			pthread_cond_timedwait(&st->wake, &st->lock, &until);
		} else if (st->refresh_wanted) {
			store_do_fetch(st);
		} else if (st->cur && st->ttl_ms > 0 &&
		           ts_after(st->last_access, st->last_attempt)) {
			/* In use since the last fetch: renew the snapshot as it
			 * expires, so readers see data at most about ttl old
			 * without ever waiting.  An unused mount asks nothing. */
			struct timespec due = ts_add_ms(st->cur->fetched, st->ttl_ms);

			if (reap_ms >= 0 && ts_after(due, reap_at))
				due = reap_at;
			if (ms_between(st->cur->fetched, now) >= st->ttl_ms)
				st->refresh_wanted = true;
			else
				pthread_cond_timedwait(&st->wake, &st->lock, &due);
		} else if (reap_ms >= 0) {
			pthread_cond_timedwait(&st->wake, &st->lock, &reap_at);
		} else {
			pthread_cond_wait(&st->wake, &st->lock);
		}
	}
	pthread_mutex_unlock(&st->lock);
	return NULL;
}

int store_new(long ttl_ms, store_fetch_fn fetch, void *fetch_arg, store_changed_fn changed,
              void *changed_arg, struct store **out)
{
	struct store *st = calloc(1, sizeof(*st));
	pthread_condattr_t ca;

	if (!st)
		return -ENOMEM;
	pthread_mutex_init(&st->lock, NULL);
	/* Timed waits use CLOCK_MONOTONIC: a clock change must not stall refreshes. */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->fetched, &ca);
	pthread_condattr_destroy(&ca);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&st->members_done, &ca);
	pthread_condattr_destroy(&ca);
	st->ttl_ms = ttl_ms;
	st->fetch = fetch;
	st->fetch_arg = fetch_arg;
	st->changed = changed;
	st->changed_arg = changed_arg;
	st->rng = (unsigned)getpid() ^ (unsigned)now_mono().tv_nsec;
	*out = st;
	return 0;
}

void store_set_abort(struct store *st, int (*abort_cb)(void *), void *arg)
{
	st->abort_cb = abort_cb;
	st->abort_arg = arg;
}

int store_start(struct store *st)
{
	int ret = pthread_create(&st->thread, NULL, store_thread, st);

	if (ret)
		return -ret;
	st->started = true;
	return 0;
}

void store_free(struct store *st)
{
	if (!st)
		return;
	pthread_mutex_lock(&st->lock);
	__atomic_store_n(&st->stop, true, __ATOMIC_RELEASE); /* read unlocked after a fetch */
	pthread_cond_broadcast(&st->wake);
	pthread_cond_broadcast(&st->fetched);
	pthread_cond_broadcast(&st->members_done);
	pthread_mutex_unlock(&st->lock);
	if (st->started)
		pthread_join(st->thread, NULL);
	for (unsigned i = 0; i < st->nretired; i++)
		snapshot_put(st->retired[i].snap);
	snapshot_put(st->cur);
	ph_strlist_free(&st->pending_ids);
	pthread_cond_destroy(&st->wake);
	pthread_cond_destroy(&st->fetched);
	pthread_cond_destroy(&st->members_done);
	pthread_mutex_destroy(&st->lock);
	free(st);
}

/* Whether a snapshot age ms old (stale, or after store_invalidate) is
 * served at once and renewed behind the reader (lock held): the server is
 * failing, or it is recent, or a background renewal is under way; else
 * the reader waits for a fresh fetch. */
static bool serves_stale(const struct store *st, long long age)
{
	return st->failures ||
	       (!st->force_fetch && (age < (long long)st->ttl_ms * STORE_IDLE_FACTOR ||
	                             (st->fetching && !st->fetch_for_waiters)));
}

int store_get(struct store *st, struct snapshot **out, struct ph_err *err)
{
	struct timespec now = now_mono();
	uint64_t target;
	int ret = 0;

	pthread_mutex_lock(&st->lock);
	/* The first use since a fetch wakes the refresher, so that it renews
	 * the snapshot as it expires while the mount is in use. */
	if (st->cur && !ts_after(st->last_access, st->last_attempt))
		pthread_cond_signal(&st->wake);
	st->last_access = now;
	if (st->cur) {
		long long age = ms_between(st->cur->fetched, now);

		if (age < st->ttl_ms && !st->force_fetch)
			goto serve;
		/* Stale but recent, or the server is failing, or a background
		 * renewal is under way (the mount was in use, so the snapshot
		 * is old only because that fetch is slow): serve the last
		 * snapshot at once and refresh behind the reader.  Nobody waits
		 * on a server that is known to be in trouble, not even after
		 * store_invalidate: that wait would be the backoff delay plus
		 * another timeout, for every reader until the server is back. */
		if (serves_stale(st, age)) {
			if (!st->refresh_wanted && !st->fetching) {
				st->refresh_wanted = true;
				pthread_cond_signal(&st->wake);
			}
			goto serve;
		}
	}
	if (!st->cur && backing_off(st, now) &&
	    ms_between(st->last_attempt, now) < READER_RETRY_MS) {
		/* Nothing to show and the server failed a moment ago: fail fast
		 * with that reason rather than queue behind another timeout. */
		if (err)
			*err = st->last_err;
		ret = st->last_ret < 0 ? st->last_ret : -EIO;
		pthread_mutex_unlock(&st->lock);
		return ret;
	}
	/* No snapshot yet, or an old one after an idle spell: wait for ONE
	 * fetch (the one under way, or the next), shared with every other
	 * waiter; only the refresher fetches.  A fetch is bounded by the
	 * request timeout, so no reader waits longer than that. */
	target = st->fetch_gen + 1;
	if (!st->fetching) {
		st->refresh_wanted = true;
		st->retry_now = !st->cur;
		st->fetch_for_waiters = true;
		pthread_cond_signal(&st->wake);
	}
	while (st->fetch_gen < target && !st->stop) {
		struct timespec slice = ts_add_ms(now_mono(), 100);

		pthread_cond_timedwait(&st->fetched, &st->lock, &slice);
		if (st->fetch_gen < target && st->abort_cb && st->abort_cb(st->abort_arg)) {
			pthread_mutex_unlock(&st->lock);
			return ph_err_set(err, EINTR, NULL, "interrupted while listing images");
		}
	}
	if (!st->cur) {
		if (st->stop)
			ret = ph_err_set(err, EIO, NULL, "primehubfs is shutting down");
		else if (err)
			*err = st->last_err;
		if (!ret)
			ret = st->last_ret < 0 ? st->last_ret : -EIO;
		pthread_mutex_unlock(&st->lock);
		return ret;
	}
	/* A failed refresh with an older snapshot at hand: show the old data
	 * (the log said once that refreshing failed) rather than failing. */
serve:
	*out = snapshot_ref(st->cur);
	pthread_mutex_unlock(&st->lock);
	return 0;
}

void store_get_status(struct store *st, struct store_status *out)
{
	pthread_mutex_lock(&st->lock);
	memset(out, 0, sizeof(*out));
	out->have_snapshot = st->cur != NULL;
	out->last_ok = st->last_ok;
	out->failures = st->failures;
	out->fetches = st->fetch_gen;
	if (st->failures) {
		long long left = ms_between(now_mono(), st->retry_at);

		out->last_error = st->last_err;
		out->retry_in_ms = left > 0 ? (long)left : 0;
	}
	pthread_mutex_unlock(&st->lock);
}

bool store_touch(struct store *st)
{
	struct timespec now = now_mono();
	long long age;

	pthread_mutex_lock(&st->lock);
	if (!st->cur) {
		pthread_mutex_unlock(&st->lock);
		return true;
	}
	age = ms_between(st->cur->fetched, now);
	/* What store_get would do without waiting; after an idle spell it
	 * waits for a fresh fetch instead, and so does the next store_get. */
	if (!serves_stale(st, age)) {
		pthread_mutex_unlock(&st->lock);
		return true;
	}
	if (!ts_after(st->last_access, st->last_attempt))
		pthread_cond_signal(&st->wake);
	st->last_access = now;
	if (age >= st->ttl_ms && !st->refresh_wanted && !st->fetching) {
		st->refresh_wanted = true;
		pthread_cond_signal(&st->wake);
	}
	pthread_mutex_unlock(&st->lock);
	return false;
}

struct snapshot *store_peek(struct store *st)
{
	struct snapshot *snap;

	pthread_mutex_lock(&st->lock);
	snap = st->cur ? snapshot_ref(st->cur) : NULL;
	pthread_mutex_unlock(&st->lock);
	return snap;
}

/* An empty snapshot derived from base, with room for n entries: base's
 * times (a derived snapshot is no fresher) and its ids_sum (the caller
 * adjusts it when the images differ).  NULL on ENOMEM. */
static struct snapshot *snapshot_derive(const struct snapshot *base, size_t n)
{
	struct snapshot *s = calloc(1, sizeof(*s));

	if (s)
		s->images = calloc(n ? n : 1, sizeof(*s->images));
	if (!s || !s->images) {
		free(s);
		return NULL;
	}
	s->refs = 1;
	s->fetched = base->fetched;
	s->ctime = base->ctime;
	s->ids_sum = base->ids_sum;
	return s;
}

/* Publish a copy of cur with entry e put at its place (or removed when e is
 * NULL).  Lock held. */
static int store_publish_edit(struct store *st, const char *id, struct snap_image *e)
{
	struct snapshot *old = st->cur, *s;
	bool found;
	size_t slot, n;

	if (!old) {
		/* Nothing shown yet: the next get fetches anyway. */
		snap_image_put(e);
		return 0;
	}
	slot = snapshot_slot(old, id, &found);
	n = old->nimages + (e && !found ? 1 : 0) - (!e && found ? 1 : 0);
	s = snapshot_derive(old, n); /* an own edit makes the rest no fresher */
	if (!s) {
		snap_image_put(e);
		return -ENOMEM;
	}
	if (e && !found)
		s->ids_sum += snapshot_id_hash(id);
	else if (!e && found)
		s->ids_sum -= snapshot_id_hash(id);
	for (size_t i = 0, j = 0; i < old->nimages; i++) {
		if (i == slot && found) {
			if (e)
				s->images[j++] = e;
			continue;
		}
		if (i == slot && e && !found)
			s->images[j++] = e;
		s->images[j++] = snap_image_get(old->images[i]);
	}
	if (e && !found && slot == old->nimages)
		s->images[n - 1] = e;
	s->nimages = n;
	st->cur = s;
	st->mutation_gen++;
	queue_change(st, id);
	if (!found || !e) {
		queue_change(st, NULL);
		clock_gettime(CLOCK_REALTIME, &s->ctime);
	}
	pthread_cond_signal(&st->wake);
	/* old is released by the caller, outside the lock. */
	return 0;
}

int store_put_image(struct store *st, struct ph_image *img)
{
	struct snapshot *old;
	struct snap_image *e;
	int ret;

	pthread_mutex_lock(&st->lock);
	old = st->cur;
	e = snap_image_new(img, old ? snapshot_find(old, img->id) : NULL);
	if (!e) {
		pthread_mutex_unlock(&st->lock);
		return -ENOMEM;
	}
	ret = store_publish_edit(st, e->img->id, e);
	if (ret < 0 || st->cur == old)
		old = NULL; /* still the store's */
	pthread_mutex_unlock(&st->lock);
	snapshot_put(old);
	return ret;
}

int store_remove_image(struct store *st, const char *id)
{
	struct snapshot *old;
	int ret;

	pthread_mutex_lock(&st->lock);
	old = st->cur;
	if (!old || !snapshot_find(old, id)) {
		pthread_mutex_unlock(&st->lock);
		return 0;
	}
	ret = store_publish_edit(st, id, NULL);
	if (ret < 0 || st->cur == old)
		old = NULL; /* still the store's */
	pthread_mutex_unlock(&st->lock);
	snapshot_put(old);
	return ret;
}

void store_invalidate(struct store *st)
{
	pthread_mutex_lock(&st->lock);
	st->force_fetch = true;
	/* A fetch already under way may have read the server before the change
	 * that made us doubt it: like an own mutation, it must not be taken
	 * for the truth (store_do_fetch fetches again). */
	st->mutation_gen++;
	pthread_mutex_unlock(&st->lock);
}

/* ---- group membership ---- */

void store_set_holder(struct store *st, store_hold_fn hold)
{
	st->hold = hold;
}

void store_set_membership(struct store *st, store_members_fn all, store_image_fn one, void *arg)
{
	st->members_all = all;
	st->members_one = one;
	st->members_arg = arg;
}

static bool groups_fresh(const struct store *st, const struct snap_image *e, long long now)
{
	return e->img->groups_known &&
	       now - __atomic_load_n(&e->groups_at_ms, __ATOMIC_RELAXED) < st->ttl_ms;
}

bool store_groups_fresh(const struct store *st, const struct snap_image *e)
{
	return groups_fresh(st, e, mono_ms());
}

static bool groups_equal(const struct ph_group *a, size_t na, const struct ph_group *b, size_t nb)
{
	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++)
		if (strcmp(a[i].id, b[i].id) != 0 ||
		    (a[i].name ? !b[i].name || strcmp(a[i].name, b[i].name) != 0 : !!b[i].name) ||
		    (a[i].display_name
		         ? !b[i].display_name || strcmp(a[i].display_name, b[i].display_name) != 0
		         : !!b[i].display_name))
			return false;
	return true;
}

/* The groups of one image, as a fetch found them. */
struct members_item {
	const char *id;
	struct ph_group *groups;
	size_t ngroups;
};

static int cmp_members_item(const void *a, const void *b)
{
	return strcmp(((const struct members_item *)a)->id, ((const struct members_item *)b)->id);
}

/* A copy of base with the groups of items (sorted by id) applied; entries
 * whose groups did not change are shared and have their time renewed.
 * Changed ids of entries whose groups were shown before go to d. */
static int members_apply(const struct snapshot *base, const struct members_item *items,
                         size_t nitems, long long now, struct snapshot **out, struct snap_diff *d)
{
	struct snapshot *s = snapshot_derive(base, base->nimages); /* the same images */
	size_t j = 0;

	if (!s)
		return -ENOMEM;
	for (size_t i = 0; i < base->nimages; i++) {
		struct snap_image *be = base->images[i], *ne;
		struct ph_image *img;
		int c = 1;

		while (j < nitems && (c = strcmp(items[j].id, be->img->id)) < 0)
			j++;
		s->nimages = i + 1;
		if (j >= nitems || c != 0) {
			s->images[i] = snap_image_get(be);
			continue;
		}
		if (be->img->groups_known && groups_equal(be->img->groups, be->img->ngroups,
		                                          items[j].groups, items[j].ngroups)) {
			__atomic_store_n(&be->groups_at_ms, now, __ATOMIC_RELAXED);
			s->images[i] = snap_image_get(be);
			continue;
		}
		img = ph_image_dup(be->img);
		if (!img || ph_image_set_groups(img, items[j].groups, items[j].ngroups) < 0) {
			ph_image_free(img);
			s->images[i] = snap_image_get(be);
			snapshot_put(s);
			return -ENOMEM;
		}
		ne = snap_image_new(img, be);
		if (!ne) {
			s->images[i] = snap_image_get(be);
			snapshot_put(s);
			return -ENOMEM;
		}
		ne->groups_at_ms = now;
		s->images[i] = ne;
		if (be->img->groups_known)
			diff_add(d, ne->img->id);
	}
	*out = s;
	return 0;
}

/* Publish the groups of items on the current snapshot, retrying when the
 * snapshot changes under us (a refresh or an own change landed). */
static int members_publish(struct store *st, const struct members_item *items, size_t nitems,
                           struct ph_err *err)
{
	long long now = mono_ms();

	pthread_mutex_lock(&st->lock);
	for (int tries = 0; tries < 4 && st->cur; tries++) {
		struct snapshot *base = snapshot_ref(st->cur), *s = NULL;
		struct snap_diff d = {0};
		bool announce;
		int ret;

		pthread_mutex_unlock(&st->lock);
		ret = members_apply(base, items, nitems, now, &s, &d);
		pthread_mutex_lock(&st->lock);
		if (ret < 0) {
			pthread_mutex_unlock(&st->lock);
			diff_free(&d);
			snapshot_put(base);
			return ph_err_set(err, ENOMEM, NULL,
			                  "out of memory applying group membership");
		}
		if (st->cur == base) {
			st->cur = s;
			st->members_gen++;
			announce = d.n || d.nomem;
			queue_diff(st, &d);
			if (announce)
				pthread_cond_signal(&st->wake);
			pthread_mutex_unlock(&st->lock);
			snapshot_put(base); /* the store's old reference */
			snapshot_put(base); /* ours; the diff's ids were copied by queue_diff */
			return 0;
		}
		pthread_mutex_unlock(&st->lock);
		diff_free(&d);
		snapshot_put(s);
		snapshot_put(base);
		pthread_mutex_lock(&st->lock);
	}
	pthread_mutex_unlock(&st->lock);
	return 0; /* nothing to publish on, or busy: the next need asks again */
}

/* Every image's groups in one request (names included). */
static int members_fetch_full(struct store *st, struct ph_err *err)
{
	struct ph_membership m = {0};
	struct members_item *items = NULL;
	int ret;

	ret = st->members_all(st->members_arg, &m, err);
	if (ret < 0)
		return ret;
	items = calloc(m.n ? m.n : 1, sizeof(*items));
	if (!items) {
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
		goto out;
	}
	for (size_t i = 0; i < m.n; i++) { /* borrowed: members_apply copies them */
		items[i].id = m.items[i].image_id;
		items[i].groups = m.items[i].groups;
		items[i].ngroups = m.items[i].ngroups;
	}
	qsort(items, m.n, sizeof(*items), cmp_members_item);
	ret = members_publish(st, items, m.n, err);
out:
	free(items);
	ph_membership_free(&m);
	return ret;
}

static int members_fetch_one(struct store *st, const char *id, struct ph_err *err)
{
	struct ph_image *img = NULL;
	struct members_item item;
	int ret;

	ret = st->members_one(st->members_arg, id, &img, err);
	if (ret < 0)
		return ret;
	if (!img)
		return ph_err_set(err, ENOENT, NULL, "image %s is no longer on the server", id);
	item = (struct members_item){.id = id, .groups = img->groups, .ngroups = img->ngroups};
	ret = members_publish(st, &item, 1, err);
	ph_image_free(img);
	return ret;
}

int store_get_groups(struct store *st, const char *id, bool many, struct snapshot **snap,
                     struct ph_err *err)
{
	const struct snap_image *e = snapshot_find(*snap, id), *ce = NULL;
	struct snapshot *old;
	bool full;
	int ret = 0;

	if (!e || groups_fresh(st, e, mono_ms()) || !st->members_one)
		return 0;
	pthread_mutex_lock(&st->lock);
	for (;;) {
		long long now = mono_ms();

		ce = st->cur ? snapshot_find(st->cur, id) : NULL;
		if (!ce)
			goto keep; /* gone meanwhile: the caller's snapshot decides */
		if (groups_fresh(st, ce, now))
			goto swap;
		/* Known but old while the server is slow or failing: show
		 * what we know rather than wait on it. */
		if (ce->img->groups_known && (st->members_fetching || st->failures))
			goto swap;
		if (!st->members_fetching)
			break;
		{
			struct timespec slice = ts_add_ms(now_mono(), 100);

			pthread_cond_timedwait(&st->members_done, &st->lock, &slice);
		}
		if (st->stop) {
			pthread_mutex_unlock(&st->lock);
			return ph_err_set(err, EIO, NULL, "primehubfs is shutting down");
		}
		if (st->members_fetching && st->abort_cb && st->abort_cb(st->abort_arg)) {
			pthread_mutex_unlock(&st->lock);
			return ph_err_set(err, EINTR, NULL, "interrupted while reading groups");
		}
	}
	{
		long long now = mono_ms();

		if (now - st->singles_since_ms >= st->ttl_ms) {
			st->singles_since_ms = now;
			st->singles = 0;
		}
		full = st->members_all && (many || st->singles >= MEMBERS_SINGLES_BEFORE_FULL);
		if (full) {
			st->members_full_ms = now;
			st->singles = 0;
		} else {
			st->singles++;
		}
	}
	st->members_fetching = true;
	pthread_mutex_unlock(&st->lock);
	ret = full ? members_fetch_full(st, err) : members_fetch_one(st, id, err);
	pthread_mutex_lock(&st->lock);
	ce = st->cur ? snapshot_find(st->cur, id) : NULL;
	if (ret == 0 && full && ce && !ce->img->groups_known) {
		/* Made after the list was taken: ask for this one. */
		pthread_mutex_unlock(&st->lock);
		ret = members_fetch_one(st, id, err);
		pthread_mutex_lock(&st->lock);
		ce = st->cur ? snapshot_find(st->cur, id) : NULL;
	}
	st->members_fetching = false;
	pthread_cond_broadcast(&st->members_done);
	if (ret < 0) {
		if (!ce || !ce->img->groups_known) {
			pthread_mutex_unlock(&st->lock);
			return ret;
		}
		log_warn("reading the groups of %s failed, showing the last known ones: %s", id,
		         err ? err->msg : "?");
		ret = 0;
	}
swap:
	if (st->cur && st->cur != *snap) {
		old = *snap;
		*snap = snapshot_ref(st->cur);
		pthread_mutex_unlock(&st->lock);
		snapshot_put(old);
		return 0;
	}
keep:
	pthread_mutex_unlock(&st->lock);
	return ret;
}
