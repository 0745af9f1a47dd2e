/*
 * catalog.h - the server's groups and image pull secrets, fetched only when
 * something needs them and kept for ttl.
 *
 * The tree (snapshot.h) lists images only.  PrimeHub charges a Keycloak
 * read per group for its root `groups` list, and only a few operations use
 * it: touch IMAGE/groups/NAME (the group's id, by name), and a save or
 * create that sets a pull secret (which secrets are valid).  Where groups
 * are shown (groups/, status.json) they come with the image's membership,
 * names included, so listing and reading never ask for the catalog.
 *
 * One fetch at a time: a caller that needs a fresher catalog than the one
 * kept waits for the fetch under way (bounded by the network timeouts)
 * instead of starting another.  A failed fetch is the caller's error; the
 * next need asks again (every need is one user action, so a failing server
 * is asked at most as often as the admin acts).
 *
 * Ownership: catalog_new/catalog_free.  catalog_get returns a counted
 * reference, dropped with catalog_put; pointers into it stay valid until
 * then.
 */
#ifndef PRIMEHUBFS_CATALOG_H
#define PRIMEHUBFS_CATALOG_H

#include <stddef.h>
#include "primehubfs/error.h"
#include "primehubfs/image.h"
#include "primehubfs/primehub.h"

struct catalog_data {
	int refs; /* atomic */
	struct ph_group *groups;
	size_t ngroups;
	struct ph_secret *secrets; /* valid as pull secrets (type kubernetes) */
	size_t nsecrets;
	long long fetched_ms; /* CLOCK_MONOTONIC ms of the fetch it came from */
};

/* Fetch groups and secrets (ph_fetch_catalog in the daemon, a fake in
 * tests): fills groups and secrets of *out, leaves images empty. */
typedef int (*catalog_fetch_fn)(void *arg, struct ph_tree *out, struct ph_err *err);

struct catalog;

int catalog_new(long ttl_ms, catalog_fetch_fn fetch, void *arg, struct catalog **out);
void catalog_free(struct catalog *c);

/* A catalog at most max_age_ms old (ttl when max_age_ms < 0), fetched now
 * if the kept one is older.  0, or -errno with err set. */
int catalog_get(struct catalog *c, long max_age_ms, struct catalog_data **out, struct ph_err *err);
void catalog_put(struct catalog_data *d);
/* Fetches since catalog_new (for tests and /.status). */
unsigned long catalog_fetches(struct catalog *c);

/* A group by exact name, or else by id; NULL if none. */
const struct ph_group *catalog_find_group(const struct catalog_data *d, const char *name_or_id);

#endif
