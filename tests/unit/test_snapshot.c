/* test_snapshot.c - the store: one fetch at a time, stale-while-refresh,
 * copy-on-write edits, exact texts. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "primehubfs/snapshot.h"
#include "primehubfs/spec.h"
#include "unit.h"

struct fake {
	pthread_mutex_t lock;
	int calls;
	int in_flight, max_in_flight;
	int delay_ms;
	int fail;
	const char *display; /* displayName the next fetch reports */
	int nimages;
};

static struct ph_image *make_image(const char *id, const char *display)
{
	struct ph_image *img = calloc(1, sizeof(*img));

	img->id = strdup(id);
	img->name = strdup(id);
	img->display_name = strdup(display);
	img->type = strdup("both");
	img->url = strdup("infuseai/docker-stacks:base-notebook-63fdf50a");
	img->url_for_gpu = strdup("infuseai/docker-stacks:base-notebook-63fdf50a-gpu");
	img->is_ready = true;
	return img;
}

static int fake_fetch(void *arg, struct ph_tree *out, struct ph_err *err)
{
	struct fake *f = arg;
	const char *display;
	int fail;

	pthread_mutex_lock(&f->lock);
	f->calls++;
	f->in_flight++;
	if (f->in_flight > f->max_in_flight)
		f->max_in_flight = f->in_flight;
	fail = f->fail;
	display = f->display; /* what the server holds when it is asked */
	pthread_mutex_unlock(&f->lock);
	usleep((useconds_t)f->delay_ms * 1000);
	memset(out, 0, sizeof(*out));
	if (!fail) {
		out->images = calloc((size_t)f->nimages, sizeof(*out->images));
		for (int i = 0; i < f->nimages; i++) {
			char id[32];

			/* Unsorted on purpose: the store sorts. */
			snprintf(id, sizeof(id), "img-%03d", f->nimages - 1 - i);
			out->images[i] = make_image(id, display);
		}
		out->nimages = (size_t)f->nimages;
		out->groups = calloc(1, sizeof(*out->groups));
		out->groups[0].id = strdup("71ac1e32-65fa-4e8e-a735-ba282e3149b1");
		out->groups[0].name = strdup("example-group-1");
		out->ngroups = 1;
	}
	pthread_mutex_lock(&f->lock);
	f->in_flight--;
	pthread_mutex_unlock(&f->lock);
	if (fail)
		return ph_err_set(err, EIO, NULL, "server down");
	return 0;
}

static struct store *st;

static long long now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct notes {
	pthread_mutex_t lock;
	int roots, ids;
};

static void count_change(void *arg, const char *id)
{
	struct notes *n = arg;

	pthread_mutex_lock(&n->lock);
	if (id)
		n->ids++;
	else
		n->roots++;
	pthread_mutex_unlock(&n->lock);
}

/* A reader that keeps asking while the refresher publishes, recording the
 * longest store_get. */
static volatile int reading;
static long long longest_get_ms;

static void *steady_reader(void *arg)
{
	(void)arg;
	while (__atomic_load_n(&reading, __ATOMIC_RELAXED)) {
		struct snapshot *snap;
		long long a = now_ms(), d;

		if (store_get(st, &snap, NULL) == 0)
			snapshot_put(snap);
		d = now_ms() - a;
		if (d > longest_get_ms)
			longest_get_ms = d;
		usleep(1000);
	}
	return NULL;
}

static void *reader(void *arg)
{
	struct snapshot *snap;

	(void)arg;
	if (store_get(st, &snap, NULL) == 0)
		snapshot_put(snap);
	return NULL;
}

/* Whether snap's ids_sum is that of the images it holds, as a build from
 * scratch would make it. */
static int ids_sum_right(const struct snapshot *snap)
{
	uint64_t sum = 0;

	for (size_t i = 0; i < snap->nimages; i++)
		sum += snapshot_id_hash(snap->images[i]->img->id);
	return snap->ids_sum == sum;
}

/* Count fetches while a reader asks every 20 ms for `ms`. */
static void ask_for(int ms)
{
	for (long long end = now_ms() + ms; now_ms() < end;) {
		struct snapshot *snap;

		if (store_get(st, &snap, NULL) == 0)
			snapshot_put(snap);
		usleep(20 * 1000);
	}
}

static void test_backoff(struct fake *f)
{
	struct snapshot *snap;
	struct ph_err err;
	long long a;

	/* No snapshot and a failing server: the first reader gets the error,
	 * the next ones get it at once without a new fetch, and fetches come
	 * at a falling rate (200 ms, 400, 800, 1600 ... jittered 20%). */
	f->calls = 0;
	f->fail = 1;
	f->delay_ms = 0;
	CHECK_INT(store_new(100, fake_fetch, f, NULL, NULL, &st), 0);
	CHECK_INT(store_start(st), 0);
	CHECK_INT(store_get(st, &snap, &err), -EIO);
	a = now_ms();
	CHECK_INT(store_get(st, &snap, &err), -EIO);
	CHECK(now_ms() - a < 50);
	CHECK_CONTAINS(err.msg, "server down");
	CHECK_INT(f->calls, 1);
	/* A reader asking every 20 ms gets at most one fetch a second. */
	ask_for(3000);
	CHECK(f->calls >= 3 && f->calls <= 5);
	{
		struct store_status ss;

		store_get_status(st, &ss);
		CHECK(!ss.have_snapshot);
		CHECK(ss.failures >= 3);
		CHECK_CONTAINS(ss.last_error.msg, "server down");
		/* At most 5 failures so far: the delay is at most 200 ms
		 * doubled 4 times, +20%. */
		CHECK(ss.retry_in_ms >= 0 && ss.retry_in_ms <= 3840);
		CHECK(ss.last_ok.tv_sec == 0);
	}
	/* Past the delay, 16 readers at once share ONE new fetch: whoever
	 * arrives while it runs waits for it, whoever comes after it failed
	 * gets its reason at once. */
	usleep(1100 * 1000);
	{
		int before = f->calls;
		pthread_t t[16];

		f->delay_ms = 100;
		for (int i = 0; i < 16; i++)
			pthread_create(&t[i], NULL, reader, NULL);
		for (int i = 0; i < 16; i++)
			pthread_join(t[i], NULL);
		CHECK_INT(f->calls - before, 1);
		f->delay_ms = 0;
	}
	/* The server is back: the next fetch after the delay succeeds. */
	f->fail = 0;
	usleep(3300 * 1000);
	CHECK_INT(store_get(st, &snap, &err), 0);
	snapshot_put(snap);
	{
		struct store_status ss;

		store_get_status(st, &ss);
		CHECK(ss.have_snapshot);
		CHECK_INT(ss.failures, 0);
		CHECK_INT(ss.retry_in_ms, 0);
		CHECK(ss.last_ok.tv_sec > 0);
		CHECK(ss.fetches >= 4);
	}
	store_free(st);

	/* A snapshot at hand and a failing server: readers are served the old
	 * one at once, also after an idle spell, and fetches back off. */
	f->calls = 0;
	CHECK_INT(store_new(100, fake_fetch, f, NULL, NULL, &st), 0);
	CHECK_INT(store_start(st), 0);
	CHECK_INT(store_get(st, &snap, &err), 0);
	snapshot_put(snap);
	f->fail = 1;
	f->delay_ms = 300;  /* a slow failure, like a timeout */
	usleep(400 * 1000); /* idle spell: > 3 x ttl */
	a = now_ms();
	CHECK_INT(store_get(st, &snap, &err), 0); /* waits for ONE fetch, then the old one */
	CHECK(now_ms() - a < 700);
	snapshot_put(snap);
	for (int i = 0; i < 20; i++) {
		a = now_ms();
		CHECK_INT(store_get(st, &snap, &err), 0);
		CHECK(now_ms() - a < 50); /* never waits on a failing server again */
		snapshot_put(snap);
		usleep(50 * 1000);
	}
	CHECK(f->calls <= 5); /* 1 + failures over ~1.3 s of backoff */
	/* Even a store_invalidate (a save that failed) does not make readers
	 * wait on a server known to fail: that would be the backoff delay
	 * plus a whole timeout, for every call until the server is back. */
	store_invalidate(st);
	for (int i = 0; i < 5; i++) {
		a = now_ms();
		CHECK_INT(store_get(st, &snap, &err), 0);
		CHECK(now_ms() - a < 50);
		CHECK_INT(snap->nimages, 50);
		snapshot_put(snap);
	}
	f->fail = 0;
	f->delay_ms = 0;
	store_free(st);
}

/* 200,000 images, then none, then all again: the refresher publishes each
 * without keeping readers waiting, and tells the kernel about the root and
 * about every image (the kernel caches their attributes for ttl), off the
 * lock. */
static void test_big_change(struct fake *f)
{
	struct notes n = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct snapshot *snap;
	pthread_t t;

	f->calls = 0;
	f->fail = 0;
	f->delay_ms = 0;
	f->nimages = 200000;
	/* ttl 1 s: long enough that a fetch of 200,000 images under a
	 * sanitizer never makes the snapshot look idle-old (readers would then
	 * rightly wait for one fetch). */
	CHECK_INT(store_new(1000, fake_fetch, f, count_change, &n, &st), 0);
	CHECK_INT(store_start(st), 0);
	CHECK_INT(store_get(st, &snap, NULL), 0);
	CHECK_INT(snap->nimages, 200000);
	snapshot_put(snap);
	longest_get_ms = 0;
	reading = 1;
	pthread_create(&t, NULL, steady_reader, NULL);
	f->nimages = 0;
	usleep(2500 * 1000);
	CHECK_INT(store_get(st, &snap, NULL), 0);
	CHECK_INT(snap->nimages, 0);
	snapshot_put(snap);
	f->nimages = 200000;
	usleep(3000 * 1000);
	reading = 0;
	pthread_join(t, NULL);
	CHECK_INT(store_get(st, &snap, NULL), 0);
	CHECK_INT(snap->nimages, 200000);
	snapshot_put(snap);
	/* Generous for sanitizer builds; the quadratic version took seconds. */
	if (longest_get_ms >= 200)
		fprintf(stderr, "longest store_get: %lld ms\n", longest_get_ms);
	CHECK(longest_get_ms < 200);
	pthread_mutex_lock(&n.lock);
	CHECK(n.roots >= 2);
	CHECK(n.ids >= 2 * 200000);
	pthread_mutex_unlock(&n.lock);
	/* Stopping (SIGTERM, unmount) while the refresher fetches a big
	 * answer: it ends with that fetch (which the daemon aborts), without
	 * building or comparing what nobody will see.  The fake fetch here
	 * runs to its end: about a second under ASan on a busy machine. */
	{
		int busy = 0;
		long long a;

		f->display = "every image changed";
		for (long long end = now_ms() + 5000; !busy && now_ms() < end;) {
			if (store_get(st, &snap, NULL) == 0)
				snapshot_put(snap);
			usleep(5 * 1000);
			pthread_mutex_lock(&f->lock);
			busy = f->in_flight;
			pthread_mutex_unlock(&f->lock);
		}
		CHECK(busy);
		a = now_ms();
		store_free(st);
		if (now_ms() - a >= 3000)
			fprintf(stderr, "store_free took %lld ms\n", now_ms() - a);
		CHECK(now_ms() - a < 3000);
	}
	f->nimages = 50;
}

/* A snapshot of many images that a refresh replaced while a reader held
 * it: the refresher keeps a reference, so the reader's put never frees it
 * (~50 ms for 100,000 entries, in a FUSE request); the refresher frees it
 * once it holds the last.  A small one is not kept. */
static void test_retired(struct fake *f, int nimages, int kept)
{
	struct snapshot *a, *b;

	f->fail = 0;
	f->delay_ms = 0;
	f->nimages = nimages;
	f->display = "before";
	CHECK_INT(store_new(200, fake_fetch, f, NULL, NULL, &st), 0);
	CHECK_INT(store_start(st), 0);
	CHECK_INT(store_get(st, &a, NULL), 0);
	f->display = "after";
	usleep(250 * 1000); /* stale: the next get renews it behind us */
	CHECK_INT(store_get(st, &b, NULL), 0);
	snapshot_put(b);
	for (long long end = now_ms() + 3000; now_ms() < end; usleep(20 * 1000)) {
		CHECK_INT(store_get(st, &b, NULL), 0);
		snapshot_put(b);
		if (b != a)
			break;
	}
	CHECK(b != a);
	usleep(100 * 1000); /* the refresher retires it right after publishing */
	CHECK_INT(__atomic_load_n(&a->refs, __ATOMIC_ACQUIRE), kept ? 2 : 1);
	CHECK_STR(a->images[0]->img->display_name, "before"); /* intact while held */
	snapshot_put(a); /* freed by the refresher (or here, when not kept) */
	usleep(100 * 1000);
	store_free(st);
	f->nimages = 50;
	f->display = "one";
}

int main(void)
{
	struct fake f = {.lock = PTHREAD_MUTEX_INITIALIZER, .display = "one", .nimages = 50};
	struct snapshot *snap, *old;
	const struct snap_image *e;
	struct ph_err err;
	pthread_t t[16];
	size_t len;
	char *text;

	/* ttl 400 ms */
	CHECK_INT(store_new(400, fake_fetch, &f, NULL, NULL, &st), 0);
	CHECK_INT(store_start(st), 0);

	/* 16 readers on an empty store: exactly one fetch. */
	f.delay_ms = 100;
	for (int i = 0; i < 16; i++)
		pthread_create(&t[i], NULL, reader, NULL);
	for (int i = 0; i < 16; i++)
		pthread_join(t[i], NULL);
	CHECK_INT(f.calls, 1);
	CHECK_INT(f.max_in_flight, 1);

	CHECK_INT(store_get(st, &snap, &err), 0);
	CHECK_INT(snap->nimages, 50);
	CHECK_STR(snap->images[0]->img->id, "img-000"); /* sorted */
	CHECK(ids_sum_right(snap));
	e = snapshot_find(snap, "img-007");
	CHECK(e != NULL);
	CHECK(snapshot_find(snap, "nope") == NULL);
	/* Rendered only when first needed, then exactly what spec renders,
	 * and the same bytes every time after. */
	CHECK(e->texts == NULL);
	text = spec_render(e->img, &len);
	CHECK(snap_image_texts(e) != NULL);
	CHECK_INT(snap_image_texts(e)->spec_len, len);
	CHECK(text && memcmp(text, snap_image_texts(e)->spec, len) == 0);
	CHECK(snap_image_texts(e) == snap_image_texts(e));
	free(text);
	CHECK_INT(f.calls, 1); /* fresh: no fetch */

	/* Stale: served at once (no waiting) while one slow refresh runs. */
	f.display = "two";
	f.delay_ms = 300;
	old = snap;
	usleep(450 * 1000);
	{
		struct timespec a, b;

		clock_gettime(CLOCK_MONOTONIC, &a);
		CHECK_INT(store_get(st, &snap, &err), 0);
		clock_gettime(CLOCK_MONOTONIC, &b);
		CHECK(snap == old); /* the old one */
		CHECK((b.tv_sec - a.tv_sec) * 1000 + (b.tv_nsec - a.tv_nsec) / 1000000 < 100);
	}
	snapshot_put(snap);
	usleep(600 * 1000);
	CHECK_INT(f.calls, 2); /* one refresh, not one per stale reader */
	CHECK_INT(f.max_in_flight, 1);
	CHECK_INT(store_get(st, &snap, &err), 0);
	CHECK(snap != old);
	CHECK_STR(snapshot_find(snap, "img-007")->img->display_name, "two");
	CHECK(snap->ids_sum == old->ids_sum); /* the same images, changed */
	/* The old snapshot is intact while held. */
	CHECK_STR(snapshot_find(old, "img-007")->img->display_name, "one");
	snapshot_put(old);
	snapshot_put(snap);

	/* An own edit is visible at once, without a fetch, and does not make
	 * the rest look fresher. */
	f.delay_ms = 0;
	{
		int calls = f.calls;

		CHECK_INT(store_put_image(st, make_image("img-007", "edited")), 0);
		CHECK_INT(store_put_image(st, make_image("aaa-new", "new")), 0);
		CHECK_INT(store_get(st, &snap, &err), 0);
		CHECK_STR(snapshot_find(snap, "img-007")->img->display_name, "edited");
		CHECK_INT(snap->nimages, 51);
		CHECK_STR(snap->images[0]->img->id, "aaa-new");
		CHECK(ids_sum_right(snap)); /* one id added, one replaced */
		old = snap;
		CHECK_INT(store_remove_image(st, "img-010"), 0);
		CHECK_INT(store_get(st, &snap, &err), 0);
		CHECK(snapshot_find(snap, "img-010") == NULL);
		CHECK_INT(snap->nimages, 50);
		CHECK(ids_sum_right(snap) && snap->ids_sum != old->ids_sum);
		snapshot_put(old);
		snapshot_put(snap);
		CHECK_INT(f.calls, calls);
	}

	/* An invalidation while a fetch runs: that fetch may have read the
	 * server before the change in doubt, so it is not published; the next
	 * reader waits for ONE fetch (the doubtful one under way, then gets
	 * the current snapshot), and the refetch shows the truth. */
	{
		int busy = 0;

		f.delay_ms = 600;
		f.display = "three";
		for (long long end = now_ms() + 3000; !busy && now_ms() < end;) {
			CHECK_INT(store_get(st, &snap, &err), 0); /* in use: renewals run */
			snapshot_put(snap);
			usleep(10 * 1000);
			pthread_mutex_lock(&f.lock);
			busy = f.in_flight;
			pthread_mutex_unlock(&f.lock);
		}
		CHECK(busy);
		f.display = "four";
		store_invalidate(st);
		CHECK_INT(store_get(st, &snap, &err), 0);
		CHECK_STR(snapshot_find(snap, "img-007")->img->display_name, "edited");
		snapshot_put(snap);
		CHECK_INT(store_get(st, &snap, &err), 0);
		CHECK_STR(snapshot_find(snap, "img-007")->img->display_name, "four");
		snapshot_put(snap);
		f.delay_ms = 0;
	}

	/* Invalidate: the next get waits for a fetch; a failing fetch with a
	 * snapshot at hand still shows the old data. */
	store_invalidate(st);
	f.fail = 1;
	CHECK_INT(store_get(st, &snap, &err), 0);
	CHECK(snap->nimages == 50);
	snapshot_put(snap);
	store_free(st);

	/* A first fetch that fails returns its error. */
	f.calls = 0;
	CHECK_INT(store_new(400, fake_fetch, &f, NULL, NULL, &st), 0);
	CHECK_INT(store_start(st), 0);
	CHECK_INT(store_get(st, &snap, &err), -EIO);
	CHECK_CONTAINS(err.msg, "server down");
	store_free(st);

	test_backoff(&f);
	test_big_change(&f);
	test_retired(&f, 2000, 1);
	test_retired(&f, 50, 0);
	UNIT_DONE();
}
