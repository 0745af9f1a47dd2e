/* test_tree.c - path -> node parsing and the entry table. */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "primehubfs/tree.h"
#include "unit.h"

static enum node_kind kind_of(const char *path)
{
	struct node n;

	return tree_parse(path, &n) == 0 ? n.kind : (enum node_kind) - 1;
}

int main(void)
{
	struct node n;
	char longname[400];

	CHECK_INT(kind_of("/"), NODE_ROOT);
	CHECK_INT(kind_of("/.error"), NODE_ROOT_ERROR);
	CHECK_INT(kind_of("/.status"), NODE_ROOT_STATUS);
	CHECK_INT(kind_of("/img/.status"), NODE_SCRATCH); /* only the top's is special */
	CHECK_INT(tree_mode(NODE_ROOT_STATUS), S_IFREG | 0444);
	CHECK_INT(kind_of("/tf-2"), NODE_IMAGE);
	CHECK_INT(kind_of("/tf-2/"), NODE_IMAGE);
	CHECK_INT(kind_of("/tf-2/spec.json"), NODE_SPEC);
	CHECK_INT(kind_of("/tf-2/status.json"), NODE_STATUS);
	CHECK_INT(kind_of("/tf-2/build.log"), NODE_BUILD_LOG);
	CHECK_INT(kind_of("/tf-2/.error"), NODE_IMAGE_ERROR);
	CHECK_INT(kind_of("/tf-2/spec.json.rejected"), NODE_REJECTED);
	CHECK_INT(kind_of("/tf-2/groups"), NODE_GROUPS);
	CHECK_INT(kind_of("/tf-2/groups/example-group-1"), NODE_GROUP);
	CHECK_INT(kind_of("/tf-2/.history"), NODE_HISTORY);
	CHECK_INT(tree_parse("/tf-2/.history/2026-12-01T10:02:11.250Z.json", &n), 0);
	CHECK_INT(n.kind, NODE_HISTORY_FILE);
	CHECK_STR(n.leaf, "2026-12-01T10:02:11.250Z.json");
	CHECK(tree_is_reserved(".history"));
	CHECK_INT(tree_mode(NODE_HISTORY_FILE), S_IFREG | 0444);

	CHECK_INT(tree_parse("/tf-2/.spec.json.swp", &n), 0);
	CHECK_INT(n.kind, NODE_SCRATCH);
	CHECK_STR(n.image, "tf-2");
	CHECK_STR(n.leaf, ".spec.json.swp");

	CHECK_INT(tree_parse("/base-notebook/groups/example-group-2", &n), 0);
	CHECK_STR(n.image, "base-notebook");
	CHECK_STR(n.leaf, "example-group-2");

	/* Nothing lives deeper, and only groups/ has children at depth 3. */
	CHECK_INT(tree_parse("/a/groups/g/x", &n), -ENOENT);
	CHECK_INT(tree_parse("/a/spec.json/x", &n), -ENOENT);
	CHECK_INT(tree_parse("relative", &n), -ENOENT);
	CHECK_INT(tree_parse("/a/..", &n), -ENOENT);

	memset(longname, 'a', sizeof(longname) - 1);
	longname[0] = '/';
	longname[sizeof(longname) - 1] = '\0';
	CHECK_INT(tree_parse(longname, &n), -ENAMETOOLONG);

	CHECK(tree_is_reserved("spec.json"));
	CHECK(tree_is_reserved("groups"));
	CHECK(!tree_is_reserved("spec.json~"));
	CHECK(!tree_is_reserved("4913"));

	CHECK_INT(tree_mode(NODE_SPEC), S_IFREG | 0644);
	CHECK_INT(tree_mode(NODE_STATUS), S_IFREG | 0444);
	CHECK_INT(tree_mode(NODE_IMAGE), S_IFDIR | 0755);
	/* rm -r walks in listing order: spec.json must come before groups/. */
	CHECK_STR(tree_image_entries[0].name, "spec.json");
	CHECK_STR(tree_image_entries[tree_image_entry_count - 1].name, "groups");
	UNIT_DONE();
}
