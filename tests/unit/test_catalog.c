/*
 * test_catalog.c - groups and pull secrets on demand: fetched once per ttl,
 * again only when asked for a fresher one, one fetch at a time, and a
 * failed fetch shared by everyone who waited for it.
 */
#include "primehubfs/catalog.h"
#include "unit.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct fake {
	int calls; /* atomic */
	int fail;  /* -errno to fail with, 0: answer */
	int delay_ms;
};

static void sleep_ms(int ms)
{
	struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};

	nanosleep(&t, NULL);
}

static int fake_fetch(void *arg, struct ph_tree *out, struct ph_err *err)
{
	struct fake *f = arg;

	__atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
	if (f->delay_ms)
		sleep_ms(f->delay_ms);
	if (f->fail)
		return ph_err_set(err, -f->fail, NULL, "connection refused");
	out->groups = calloc(2, sizeof(*out->groups));
	out->secrets = calloc(1, sizeof(*out->secrets));
	if (!out->groups || !out->secrets)
		return ph_err_set(err, ENOMEM, NULL, "out of memory");
	out->groups[0].id = strdup("71ac1e32-65fa-4e8e-a735-ba282e3149b1");
	out->groups[0].name = strdup("example-group-1");
	out->groups[1].id = strdup("example-group-1-id-is-a-name-too");
	out->groups[1].name = strdup("other");
	out->ngroups = 2;
	out->secrets[0].id = strdup("regcred");
	out->secrets[0].type = strdup("kubernetes");
	out->nsecrets = 1;
	return 0;
}

struct waiter {
	struct catalog *c;
	int ret;
	struct ph_err err;
};

static void *wait_for_it(void *arg)
{
	struct waiter *w = arg;
	struct catalog_data *d = NULL;

	w->ret = catalog_get(w->c, -1, &d, &w->err);
	catalog_put(d);
	return NULL;
}

int main(void)
{
	struct fake f = {0};
	struct catalog *c;
	struct catalog_data *d, *d2;
	struct ph_err err = {0};

	CHECK_INT(catalog_new(60000, fake_fetch, &f, &c), 0);
	CHECK_INT(f.calls, 0); /* nothing until someone needs it */
	CHECK_INT(catalog_get(c, -1, &d, &err), 0);
	CHECK_INT(f.calls, 1);
	CHECK_INT(d->ngroups, 2);
	CHECK_INT(d->nsecrets, 1);
	/* By name first, then by id. */
	CHECK_STR(catalog_find_group(d, "example-group-1")->id,
	          "71ac1e32-65fa-4e8e-a735-ba282e3149b1");
	CHECK_STR(catalog_find_group(d, "example-group-1-id-is-a-name-too")->name, "other");
	CHECK(catalog_find_group(d, "example") == NULL);

	/* Within ttl: the same data, no fetch; held data outlives a refetch. */
	CHECK_INT(catalog_get(c, -1, &d2, &err), 0);
	CHECK(d2 == d);
	catalog_put(d2);
	CHECK_INT(f.calls, 1);
	sleep_ms(5);
	CHECK_INT(catalog_get(c, 0, &d2, &err), 0); /* asked fresher than it is */
	CHECK_INT(f.calls, 2);
	CHECK(d2 != d);
	CHECK_STR(d->groups[0].name, "example-group-1");
	catalog_put(d);
	catalog_put(d2);
	CHECK_INT(catalog_fetches(c), 2);

	catalog_free(c);

	/* A failing server: the caller gets the reason; those who came while
	 * a slow fetch failed share its failure instead of each starting
	 * their own (which would multiply the wait on a hung server). */
	{
		struct fake bad = {.fail = ECONNREFUSED, .delay_ms = 300};
		struct waiter w[3];
		pthread_t t[3];

		CHECK_INT(catalog_new(60000, fake_fetch, &bad, &c), 0);
		for (int i = 0; i < 3; i++) {
			memset(&w[i], 0, sizeof(w[i]));
			w[i].c = c;
		}
		CHECK_INT(pthread_create(&t[0], NULL, wait_for_it, &w[0]), 0);
		sleep_ms(100); /* its fetch is under way */
		for (int i = 1; i < 3; i++)
			CHECK_INT(pthread_create(&t[i], NULL, wait_for_it, &w[i]), 0);
		for (int i = 0; i < 3; i++) {
			pthread_join(t[i], NULL);
			CHECK_INT(w[i].ret, -ECONNREFUSED);
			CHECK_CONTAINS(w[i].err.msg, "connection refused");
		}
		CHECK_INT(bad.calls, 1);
		/* The next need asks again, and a recovered server answers. */
		bad.fail = 0;
		bad.delay_ms = 0;
		CHECK_INT(catalog_get(c, -1, &d, &err), 0);
		CHECK_INT(bad.calls, 2);
		CHECK_INT(d->ngroups, 2);
		catalog_put(d);
	}
	catalog_free(c);
	UNIT_DONE();
}
