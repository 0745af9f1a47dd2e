/*
 * test_kcache.c - when the kernel may keep cached pages (src/fs_kcache.c):
 * a version kept only once it was both reported and opened, forgotten by a
 * local change until the kernel's attributes of that moment expire, and no
 * path lost to another at any number of paths.
 */
#include "../../src/fs_internal.h"
#include "unit.h"

#include <stdio.h>
#include <time.h>

static void sleep_ms(long ms)
{
	struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&t, NULL);
}

/* Whether an open keeps the kernel's cached pages. */
static bool kept(struct phfs_kcache *k, const char *path, uint64_t version)
{
	return phfs_kcache_open(k, path, version) == PHFS_KCACHE_KEEP;
}

int main(void)
{
	struct phfs_kcache *k = phfs_kcache_new(0); /* settles in 1 s */
	const uint64_t v1 = 0x1234567890abcdeeULL, v2 = 0x0fedcba987654320ULL;
	char path[64];

	CHECK(k != NULL);
	/* Opened before any attributes were given: read past the cache. */
	CHECK(!kept(k, "/a/spec.json", v1));
	/* Reported, then opened: the next open of that version keeps. */
	phfs_kcache_reported(k, "/b/spec.json", v1);
	CHECK(!kept(k, "/b/spec.json", v1));
	CHECK(kept(k, "/b/spec.json", v1));
	phfs_kcache_reported(k, "/b/spec.json", v1); /* the same again: still kept */
	CHECK(kept(k, "/b/spec.json", v1));
	/* The first open of a reported version fills the cache; one of
	 * another version reads past it. */
	phfs_kcache_reported(k, "/g/spec.json", v1);
	CHECK_INT(phfs_kcache_open(k, "/g/spec.json", v1), PHFS_KCACHE_FILL);
	CHECK_INT(phfs_kcache_open(k, "/g/spec.json", v1), PHFS_KCACHE_KEEP);
	CHECK_INT(phfs_kcache_open(k, "/g/spec.json", v2), PHFS_KCACHE_BYPASS);
	CHECK_INT(phfs_kcache_open(k, "/g/spec.json", v1), PHFS_KCACHE_FILL);
	CHECK_INT(phfs_kcache_open(k, "/h/spec.json", v1), PHFS_KCACHE_BYPASS); /* never reported */
	/* A new version reported: the cached pages are the old one's. */
	phfs_kcache_reported(k, "/b/spec.json", v2);
	CHECK(!kept(k, "/b/spec.json", v2));
	CHECK(kept(k, "/b/spec.json", v2));
	/* Opened as another version than reported: never kept. */
	CHECK(!kept(k, "/b/spec.json", v1));
	CHECK(!kept(k, "/b/spec.json", v1));

	/* A local change: nothing kept until the attributes have expired
	 * (ttl + 1 s), even once reported and opened again. */
	phfs_kcache_reported(k, "/c/spec.json", v1);
	CHECK(!kept(k, "/c/spec.json", v1));
	phfs_kcache_forget(k, "/c/spec.json");
	phfs_kcache_reported(k, "/c/spec.json", v1);
	CHECK(!kept(k, "/c/spec.json", v1));
	CHECK(!kept(k, "/c/spec.json", v1));
	/* Another path is not touched by it. */
	CHECK(kept(k, "/b/spec.json", v1) == false); /* v1 != reported v2 */
	phfs_kcache_reported(k, "/d/spec.json", v2);
	CHECK(!kept(k, "/d/spec.json", v2));
	CHECK(kept(k, "/d/spec.json", v2));
	sleep_ms(1100);
	CHECK(kept(k, "/c/spec.json", v1));

	/* Many paths (more than a fixed table of 65,536 slots held without
	 * collisions): every one is kept. */
	for (int i = 0; i < 300000; i++) {
		snprintf(path, sizeof(path), "/img-%d/spec.json", i);
		phfs_kcache_reported(k, path, v1 + (uint64_t)i * 2);
		kept(k, path, v1 + (uint64_t)i * 2);
	}
	{
		int nkept = 0;

		for (int i = 0; i < 300000; i++) {
			snprintf(path, sizeof(path), "/img-%d/spec.json", i);
			nkept += kept(k, path, v1 + (uint64_t)i * 2);
		}
		CHECK_INT(nkept, 300000);
	}
	CHECK(kept(k, "/d/spec.json", v2)); /* kept through the growth */

	phfs_kcache_free(k);

	/* Nothing changed here yet means "long ago": a ttl longer than the
	 * machine's uptime still lets unchanged pages be kept. */
	k = phfs_kcache_new(1000L * 1000 * 1000 * 1000);
	phfs_kcache_reported(k, "/f/spec.json", v1);
	CHECK(!kept(k, "/f/spec.json", v1));
	CHECK(kept(k, "/f/spec.json", v1));
	phfs_kcache_free(k);

	/* Directories: the base mtime until the listing changes, then the
	 * time it was seen to change (never a time shown before). */
	k = phfs_kcache_new(0);
	{
		struct timespec base = {1000, 5}, t1, t2, t3;

		t1 = phfs_kcache_dir_mtime(k, "/e", v1, base);
		CHECK(t1.tv_sec == 1000 && t1.tv_nsec == 5);
		t1 = phfs_kcache_dir_mtime(k, "/e", v1, base);
		CHECK(t1.tv_sec == 1000 && t1.tv_nsec == 5);
		t2 = phfs_kcache_dir_mtime(k, "/e", v2, base);
		CHECK(t2.tv_sec > 1000);
		t3 = phfs_kcache_dir_mtime(k, "/e", v1, base);
		CHECK(t3.tv_sec > t2.tv_sec || (t3.tv_sec == t2.tv_sec && t3.tv_nsec > t2.tv_nsec));
		CHECK(phfs_kcache_dir_mtime(k, "/e", v1, base).tv_nsec == t3.tv_nsec);
		/* A base later than the change wins (the image itself changed). */
		base.tv_sec = t3.tv_sec + 100;
		CHECK(phfs_kcache_dir_mtime(k, "/e", v1, base).tv_sec == base.tv_sec);
		/* Many directories: the table grows and keeps each. */
		for (int i = 0; i < 20000; i++) {
			snprintf(path, sizeof(path), "/img-%d", i);
			phfs_kcache_dir_mtime(k, path, v1, (struct timespec){7, 0});
		}
		for (int i = 0; i < 20000; i += 997) {
			snprintf(path, sizeof(path), "/img-%d", i);
			CHECK(phfs_kcache_dir_mtime(k, path, v2, (struct timespec){7, 0}).tv_sec >
			      7);
		}
	}
	phfs_kcache_free(k);

	/* A listing handed out ttl ago counts as a change: the kernel's
	 * entries from it have expired, so it should list again. */
	k = phfs_kcache_new(200);
	{
		struct timespec base = {1000, 0}, t;

		phfs_kcache_dir_listed(k, "/x"); /* listed before first asked */
		CHECK(phfs_kcache_dir_mtime(k, "/x", v1, base).tv_sec == 1000);
		CHECK(phfs_kcache_dir_mtime(k, "/x", v1, base).tv_sec == 1000);
		sleep_ms(250);
		t = phfs_kcache_dir_mtime(k, "/x", v1, base);
		CHECK(t.tv_sec > 1000);
		/* Not listed since: no further change. */
		sleep_ms(250);
		CHECK(phfs_kcache_dir_mtime(k, "/x", v1, base).tv_nsec == t.tv_nsec);
		phfs_kcache_dir_listed(k, "/x");
		CHECK(phfs_kcache_dir_mtime(k, "/x", v1, base).tv_nsec == t.tv_nsec);
	}
	phfs_kcache_free(k);
	UNIT_DONE();
}
