/*
 * catalog.c - groups and pull secrets on demand (see catalog.h).
 */
#include "primehubfs/catalog.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct catalog {
	pthread_mutex_t lock;
	pthread_cond_t done; /* a fetch finished */
	long ttl_ms;
	catalog_fetch_fn fetch;
	void *fetch_arg;
	struct catalog_data *cur; /* NULL until the first good fetch */
	bool fetching;
	unsigned long fetches;  /* started */
	unsigned long finished; /* fetches ended, good or not */
	int last_ret;           /* of the last fetch that ended */
	struct ph_err last_err;
};

static long long mono_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

int catalog_new(long ttl_ms, catalog_fetch_fn fetch, void *arg, struct catalog **out)
{
	struct catalog *c = calloc(1, sizeof(*c));

	if (!c)
		return -ENOMEM;
	pthread_mutex_init(&c->lock, NULL);
	pthread_cond_init(&c->done, NULL);
	c->ttl_ms = ttl_ms;
	c->fetch = fetch;
	c->fetch_arg = arg;
	*out = c;
	return 0;
}

void catalog_put(struct catalog_data *d)
{
	struct ph_tree t = {0};

	if (!d || __atomic_sub_fetch(&d->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	/* They came from a tree (data_from): freed as one. */
	t.groups = d->groups;
	t.ngroups = d->ngroups;
	t.secrets = d->secrets;
	t.nsecrets = d->nsecrets;
	ph_tree_free(&t);
	free(d);
}

void catalog_free(struct catalog *c)
{
	if (!c)
		return;
	catalog_put(c->cur);
	pthread_cond_destroy(&c->done);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static struct catalog_data *data_ref(struct catalog_data *d)
{
	__atomic_add_fetch(&d->refs, 1, __ATOMIC_RELAXED);
	return d;
}

/* The fetched groups and secrets as a new catalog (takes them from t). */
static struct catalog_data *data_from(struct ph_tree *t, long long when)
{
	struct catalog_data *d = calloc(1, sizeof(*d));

	if (!d)
		return NULL;
	d->refs = 1;
	d->groups = t->groups;
	d->ngroups = t->ngroups;
	d->secrets = t->secrets;
	d->nsecrets = t->nsecrets;
	d->fetched_ms = when;
	t->groups = NULL;
	t->secrets = NULL;
	t->ngroups = t->nsecrets = 0;
	return d;
}

int catalog_get(struct catalog *c, long max_age_ms, struct catalog_data **out, struct ph_err *err)
{
	long long asked = mono_ms(), started;
	long age = max_age_ms < 0 ? c->ttl_ms : max_age_ms;
	struct catalog_data *d = NULL;
	struct ph_tree t;
	int ret;

	pthread_mutex_lock(&c->lock);
	for (;;) {
		/* Fresh enough, or fetched since this caller asked (a fetch
		 * that started before may predate a change it wants seen). */
		if (c->cur &&
		    (mono_ms() - c->cur->fetched_ms <= age || c->cur->fetched_ms >= asked)) {
			*out = data_ref(c->cur);
			pthread_mutex_unlock(&c->lock);
			return 0;
		}
		if (!c->fetching)
			break;
		/* Share the fetch under way, its failure too: a waiter that
		 * fetched again after it would double the wait on a hung
		 * server. */
		unsigned long seen = c->finished;

		while (c->fetching && c->finished == seen)
			pthread_cond_wait(&c->done, &c->lock);
		if (c->finished != seen && c->last_ret < 0) {
			ret = c->last_ret;
			if (err)
				*err = c->last_err;
			pthread_mutex_unlock(&c->lock);
			return ret;
		}
	}
	c->fetching = true;
	c->fetches++;
	pthread_mutex_unlock(&c->lock);

	started = mono_ms();
	memset(&t, 0, sizeof(t));
	ret = c->fetch(c->fetch_arg, &t, err);
	if (ret == 0 && !(d = data_from(&t, started)))
		ret = ph_err_set(err, ENOMEM, NULL, "out of memory");
	ph_tree_free(&t);

	pthread_mutex_lock(&c->lock);
	c->fetching = false;
	c->finished++;
	c->last_ret = ret;
	if (ret < 0 && err)
		c->last_err = *err;
	if (d) {
		catalog_put(c->cur);
		c->cur = d;
		*out = data_ref(d);
	}
	pthread_cond_broadcast(&c->done);
	pthread_mutex_unlock(&c->lock);
	return ret;
}

unsigned long catalog_fetches(struct catalog *c)
{
	unsigned long n;

	pthread_mutex_lock(&c->lock);
	n = c->fetches;
	pthread_mutex_unlock(&c->lock);
	return n;
}

const struct ph_group *catalog_find_group(const struct catalog_data *d, const char *name_or_id)
{
	return ph_groups_find(d->groups, d->ngroups, name_or_id);
}
