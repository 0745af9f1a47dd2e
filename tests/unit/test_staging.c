/* test_staging.c - pending images, scratch files and their bounds, notes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/staging.h"
#include "unit.h"

int main(void)
{
	struct staging *st;
	struct scratch *s, *s2;
	struct scratch_stat ss;
	struct ph_strlist names, ids;
	struct ph_err err;
	char buf[64], *text, *big;
	size_t len;

	CHECK_INT(staging_new(&st), 0);

	/* Pending images and their staged groups. */
	CHECK_INT(staging_pending_add(st, "new-image"), 0);
	CHECK_INT(staging_pending_add(st, "new-image"), -EEXIST);
	CHECK(staging_pending_exists(st, "new-image"));
	CHECK_INT(staging_pending_group_add(st, "new-image", "id-1", "g1"), 0);
	CHECK_INT(staging_pending_group_add(st, "new-image", "id-1", "g1"), 0); /* idempotent */
	CHECK_INT(staging_pending_group_add(st, "new-image", "id-2", "g2"), 0);
	CHECK_INT(staging_pending_groups(st, "new-image", &ids, &names), 0);
	CHECK_INT(ids.n, 2);
	CHECK_STR(names.items[1], "g2");
	ph_strlist_free(&ids);
	ph_strlist_free(&names);
	CHECK_INT(staging_pending_group_remove(st, "new-image", "g1"), 0);
	CHECK_INT(staging_pending_group_remove(st, "new-image", "g1"), -ENOENT);
	CHECK_INT(staging_pending_group_remove(st, "new-image", "id-2"), 0); /* by id */
	CHECK_INT(staging_pending_group_add(st, "new-image", "id-2", "g2"), 0);
	CHECK_INT(staging_pending_group_add(st, "not-pending", "id", "g"), -ENOENT);
	CHECK_INT(staging_pending_list(st, &names), 0);
	CHECK_INT(names.n, 1);
	ph_strlist_free(&names);
	CHECK_INT(staging_pending_remove(st, "new-image"), 0);
	CHECK(!staging_pending_exists(st, "new-image"));

	/* Scratch files: random-offset writes, holes, truncate, rename, unlink. */
	CHECK_INT(staging_scratch_create(st, "tf-2", ".spec.json.swp", 0600, true, &s, &err), 0);
	CHECK_INT(scratch_write(st, s, "world", 5, 6, &err), 5);
	CHECK_INT(scratch_write(st, s, "hello", 5, 0, &err), 5);
	CHECK_INT(scratch_read(s, buf, sizeof(buf), 0), 11);
	CHECK(memcmp(buf, "hello\0world", 11) == 0);
	CHECK_INT(scratch_truncate(st, s, 5, &err), 0);
	scratch_stat(s, &ss);
	CHECK_INT(ss.size, 5);
	CHECK_INT(ss.mode, 0600);
	CHECK_INT(staging_scratch_create(st, "tf-2", ".spec.json.swp", 0600, true, &s2, &err),
	          -EEXIST);
	CHECK_INT(staging_scratch_rename(st, "tf-2", ".spec.json.swp", "spec.json~"), 0);
	CHECK(!staging_scratch_exists(st, "tf-2", ".spec.json.swp"));
	CHECK(staging_scratch_exists(st, "tf-2", "spec.json~"));
	CHECK_INT(staging_scratch_open(st, "tf-2", "spec.json~", &s2), 0);
	CHECK(s2 == s);
	scratch_put(s2);
	/* Unlinked while open: the handle still reads it. */
	CHECK_INT(staging_scratch_unlink(st, "tf-2", "spec.json~"), 0);
	CHECK_INT(staging_scratch_unlink(st, "tf-2", "spec.json~"), -ENOENT);
	CHECK_INT(scratch_read(s, buf, sizeof(buf), 0), 5);
	CHECK_INT(scratch_copy(s, &text, &len), 0);
	CHECK_STR(text, "hello");
	free(text);
	scratch_put(s);

	/* rename replaces an existing target */
	CHECK_INT(staging_scratch_create(st, "img", "a", 0644, true, &s, &err), 0);
	scratch_write(st, s, "A", 1, 0, &err);
	scratch_put(s);
	CHECK_INT(staging_scratch_create(st, "img", "b", 0644, true, &s, &err), 0);
	scratch_put(s);
	CHECK_INT(staging_scratch_rename(st, "img", "a", "b"), 0);
	CHECK_INT(staging_scratch_list(st, "img", &names), 0);
	CHECK_INT(names.n, 1);
	CHECK_STR(names.items[0], "b");
	ph_strlist_free(&names);

	/* Bounds: count per directory, and size per file. */
	for (int i = 0; i < STAGING_MAX_FILES + 1; i++) {
		char name[32];
		int ret;

		snprintf(name, sizeof(name), "f%d", i);
		ret = staging_scratch_create(st, "many", name, 0644, true, &s, &err);
		if (i < STAGING_MAX_FILES) {
			CHECK_INT(ret, 0);
			scratch_put(s);
		} else {
			CHECK_INT(ret, -ENOSPC);
			CHECK_CONTAINS(err.msg, "at most");
		}
	}
	big = calloc(1, STAGING_MAX_FILE_SIZE + 1);
	CHECK_INT(staging_scratch_create(st, "img", "big", 0644, true, &s, &err), 0);
	CHECK_INT(scratch_write(st, s, big, STAGING_MAX_FILE_SIZE + 1, 0, &err), -EFBIG);
	CHECK_INT(scratch_write(st, s, big, 1000, 0, &err), 1000);
	scratch_put(s);
	free(big);
	staging_drop_dir(st, "many");
	CHECK(!staging_scratch_exists(st, "many", "f1"));

	/* Notes. */
	staging_set_error(st, "", "mkdir Bad: nope");
	CHECK_INT(staging_get_error(st, "", &text, &len), 0);
	CHECK_STR(text, "mkdir Bad: nope\n");
	CHECK_INT(len, 16);
	free(text);
	staging_clear_error(st, "");
	CHECK_INT(staging_get_error(st, "", &text, &len), 0);
	CHECK(text == NULL);
	CHECK_INT(staging_set_rejected(st, "tf-2", "{bad", 4), 0);
	CHECK_INT(staging_get_rejected(st, "tf-2", &text, &len), 0);
	CHECK_STR(text, "{bad");
	free(text);
	staging_clear_rejected(st, "tf-2");

	/* .error is terminal-safe whatever names the line holds. */
	staging_set_error(st, "x", "mkdir a\nb\x1b[31m \xe2\x80\xae: nope");
	CHECK_INT(staging_get_error(st, "x", &text, &len), 0);
	CHECK_STR(text, "mkdir a\\nb\\x1b[31m \\u202e: nope\n");
	CHECK_INT(len, strlen(text));
	free(text);
	staging_clear_error(st, "x");

	/* rm -r guard */
	staging_note_spec_unlink(st, "tf-2", 1234);
	CHECK(staging_recent_spec_unlink(st, "tf-2", 1234, 10000));
	CHECK(!staging_recent_spec_unlink(st, "tf-2", 99, 10000));
	CHECK(!staging_recent_spec_unlink(st, "tf-1", 1234, 10000));

	staging_free(st);

	/* Refused drafts count in STAGING_MAX_TOTAL: 300 drafts of 1 MiB keep
	 * the newest 128, the oldest go first and their .error says so. */
	CHECK_INT(staging_new(&st), 0);
	big = malloc(1 << 20);
	memset(big, '{', 1 << 20);
	for (int i = 0; i < 300; i++) {
		char name[32];
		int ret;

		snprintf(name, sizeof(name), "d%03d", i);
		ret = staging_set_rejected(st, name, big, 1 << 20);
		CHECK_INT(ret, i < 128 ? 0 : 1);
	}
	{
		int kept = 0;

		for (int i = 0; i < 300; i++) {
			char name[32];

			snprintf(name, sizeof(name), "d%03d", i);
			kept += staging_has_rejected(st, name, &len);
		}
		CHECK_INT(kept, 128);
	}
	CHECK(!staging_has_rejected(st, "d000", &len));
	CHECK(!staging_has_rejected(st, "d171", &len));
	CHECK(staging_has_rejected(st, "d172", &len));
	CHECK(staging_has_rejected(st, "d299", &len));
	CHECK_INT(staging_get_error(st, "d000", &text, &len), 0);
	CHECK_CONTAINS(text, "spec.json.rejected");
	CHECK_CONTAINS(text, "dropped");
	free(text);
	/* A directory's new draft replaces its old one without dropping others. */
	CHECK_INT(staging_set_rejected(st, "d299", "{x", 2), 0);
	CHECK(staging_has_rejected(st, "d172", &len));
	/* An 8 MiB draft makes room by dropping the oldest: 127 MiB + 2 bytes
	 * are held, so 8 go (d172..d179). */
	free(big);
	big = calloc(1, 8 << 20);
	CHECK_INT(staging_set_rejected(st, "eight", big, 8 << 20), 8);
	CHECK(!staging_has_rejected(st, "d179", &len));
	CHECK(staging_has_rejected(st, "d180", &len));
	/* Drafts freed (cleared or dropped with their directory) give the
	 * memory back to scratch files. */
	for (int i = 0; i < 300; i++) {
		char name[32];

		snprintf(name, sizeof(name), "d%03d", i);
		staging_clear_rejected(st, name);
	}
	staging_drop_dir(st, "eight");
	/* Scratch files filling the budget: no draft fits, none is kept. */
	for (int i = 0; i < STAGING_MAX_TOTAL / STAGING_MAX_FILE_SIZE; i++) {
		char name[32];

		snprintf(name, sizeof(name), "s%d", i);
		CHECK_INT(staging_scratch_create(st, "full", name, 0644, true, &s, &err), 0);
		CHECK_INT(scratch_write(st, s, big, STAGING_MAX_FILE_SIZE, 0, &err),
		          STAGING_MAX_FILE_SIZE);
		scratch_put(s);
	}
	CHECK_INT(staging_set_rejected(st, "late", "{", 1), -ENOSPC);
	CHECK(!staging_has_rejected(st, "late", &len));
	staging_drop_dir(st, "full");
	CHECK_INT(staging_set_rejected(st, "late", "{", 1), 0);
	free(big);
	staging_free(st);
	UNIT_DONE();
}
