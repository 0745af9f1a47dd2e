/* test_inodes.c - the kernel's inode numbers and their paths. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "primehubfs/inodes.h"
#include "unit.h"

static const char *path_of(struct inodes *t, uint64_t ino)
{
	static char buf[256];

	return inodes_path(t, ino, buf, sizeof(buf)) == 0 ? buf : NULL;
}

int main(void)
{
	struct inodes *t = inodes_new();
	uint64_t img, spec, spec2, groups, g, other, dir;
	char buf[64], small[8];

	CHECK(t != NULL);
	CHECK_STR(path_of(t, INODES_ROOT), "/");
	CHECK_INT(inodes_count(t), 1);

	/* Lookups number names once; each lookup counts. */
	img = inodes_ref(t, INODES_ROOT, "tf-2");
	CHECK(img > INODES_ROOT);
	CHECK_INT(inodes_ref(t, INODES_ROOT, "tf-2"), img);
	spec = inodes_ref(t, img, "spec.json");
	groups = inodes_ref(t, img, "groups");
	g = inodes_ref(t, groups, "example-group-1");
	CHECK_STR(path_of(t, img), "/tf-2");
	CHECK_STR(path_of(t, spec), "/tf-2/spec.json");
	CHECK_STR(path_of(t, g), "/tf-2/groups/example-group-1");
	CHECK_INT(inodes_find(t, "/tf-2/groups/example-group-1"), g);
	CHECK_INT(inodes_find(t, "/tf-2/"), img);
	CHECK_INT(inodes_find(t, "/"), INODES_ROOT);
	CHECK_INT(inodes_find(t, "/tf-2/nothing"), 0);
	CHECK_INT(inodes_child_path(t, img, "status.json", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "/tf-2/status.json");
	CHECK_INT(inodes_child_path(t, INODES_ROOT, "x", buf, sizeof(buf)), 0);
	CHECK_STR(buf, "/x");
	CHECK_INT(inodes_path(t, g, small, sizeof(small)), -ENAMETOOLONG);
	CHECK_INT(inodes_ref(t, 9999, "x"), 0); /* unknown parent */
	CHECK_INT(inodes_path(t, 9999, buf, sizeof(buf)), -ESTALE);

	/* Forget: the node goes when every lookup is forgotten, and its
	 * number is never given again. */
	CHECK_INT(inodes_forget(t, img, 1), 0); /* one lookup left: it stays */
	CHECK_STR(path_of(t, img), "/tf-2");
	CHECK_INT(inodes_forget(t, g, 1), groups); /* gone: the directory it was in */
	CHECK_INT(inodes_find(t, "/tf-2/groups/example-group-1"), 0);
	CHECK(path_of(t, g) == NULL);
	CHECK(inodes_ref(t, groups, "example-group-1") > g);
	inodes_forget(t, INODES_ROOT, 100); /* the root stays */
	CHECK_STR(path_of(t, INODES_ROOT), "/");

	/* Rename over an existing name: the old one is detached (an open
	 * file keeps its number, with no path), the moved one keeps its
	 * number under the new name. */
	other = inodes_ref(t, img, ".spec.json.swp");
	CHECK_INT(inodes_rename(t, img, ".spec.json.swp", img, "spec.json"), 0);
	CHECK_STR(path_of(t, other), "/tf-2/spec.json");
	CHECK_INT(inodes_path(t, spec, buf, sizeof(buf)), -ESTALE);
	CHECK_INT(inodes_find(t, "/tf-2/spec.json"), other);
	spec2 = inodes_ref(t, img, "spec.json");
	CHECK_INT(spec2, other);
	CHECK_INT(inodes_forget(t, spec, 1), 0); /* a detached node goes quietly */

	/* A renamed directory takes its children along. */
	dir = inodes_ref(t, INODES_ROOT, ".git");
	other = inodes_ref(t, dir, "HEAD");
	CHECK_INT(inodes_rename(t, INODES_ROOT, ".git", INODES_ROOT, ".git2"), 0);
	CHECK_STR(path_of(t, other), "/.git2/HEAD");

	/* Unlink detaches; the name can be looked up afresh. */
	inodes_unlink(t, img, "spec.json");
	CHECK(path_of(t, spec2) == NULL);
	CHECK(inodes_ref(t, img, "spec.json") != spec2);

	/* Many names: the table grows and finds them all. */
	for (int i = 0; i < 5000; i++) {
		snprintf(buf, sizeof(buf), "image-%05d", i);
		CHECK(inodes_ref(t, INODES_ROOT, buf) != 0);
	}
	CHECK_INT(inodes_find(t, "/image-04321"), inodes_ref(t, INODES_ROOT, "image-04321"));
	CHECK_STR(path_of(t, inodes_find(t, "/image-00007")), "/image-00007");
	inodes_free(t);
	UNIT_DONE();
}
