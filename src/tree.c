/* tree.c - path -> node, and the table of an image directory's entries. */
#include "primehubfs/tree.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Listing order matters: `rm -r IMAGE` walks entries in this order, so
 * spec.json (which cannot be removed) comes before groups/ - see fs_dir.c for
 * how that keeps rm -r from disconnecting groups one by one. */
const struct tree_entry tree_image_entries[] = {
    {"spec.json", NODE_SPEC, S_IFREG | 0644, false, false},
    {"status.json", NODE_STATUS, S_IFREG | 0444, false, false},
    {"build.log", NODE_BUILD_LOG, S_IFREG | 0444, true, false},
    {".error", NODE_IMAGE_ERROR, S_IFREG | 0444, false, true},
    {"spec.json" TREE_REJECTED_SUFFIX, NODE_REJECTED, S_IFREG | 0444, false, true},
    {"groups", NODE_GROUPS, S_IFDIR | 0755, false, false},
};
const unsigned tree_image_entry_count = sizeof(tree_image_entries) / sizeof(tree_image_entries[0]);

mode_t tree_mode(enum node_kind kind)
{
	switch (kind) {
	case NODE_ROOT:
	case NODE_IMAGE:
	case NODE_GROUPS:
		return S_IFDIR | 0755;
	case NODE_HISTORY:
		return S_IFDIR | 0555; /* kept by the mount, read by anyone */
	case NODE_HISTORY_FILE:
		return S_IFREG | 0444;
	case NODE_SPEC:
	case NODE_SCRATCH:
		return S_IFREG | 0644;
	case NODE_GROUP:
		/* Empty marker files; writable so touch's utimens succeeds. */
		return S_IFREG | 0644;
	case NODE_REBUILD:
		/* A trigger: opening it for writing (touch) is the gesture. */
		return S_IFREG | 0200;
	case NODE_ROOT_ERROR:
	case NODE_ROOT_STATUS:
	case NODE_ROOT_CHANGES:
	case NODE_STATUS:
	case NODE_BUILD_LOG:
	case NODE_IMAGE_ERROR:
	case NODE_REJECTED:
		return S_IFREG | 0444;
	}
	return S_IFREG | 0444;
}

bool tree_is_reserved(const char *leaf)
{
	for (unsigned i = 0; i < tree_image_entry_count; i++)
		if (strcmp(leaf, tree_image_entries[i].name) == 0)
			return true;
	return strcmp(leaf, TREE_REBUILD_NAME) == 0 || strcmp(leaf, TREE_HISTORY_NAME) == 0;
}

/* Copy the next path component into buf; returns its length, or -errno. */
static int next_component(const char **p, char *buf)
{
	const char *start = *p, *end;
	size_t len;

	while (*start == '/')
		start++;
	end = strchr(start, '/');
	if (!end)
		end = start + strlen(start);
	len = (size_t)(end - start);
	if (len > TREE_NAME_MAX)
		return -ENAMETOOLONG;
	memcpy(buf, start, len);
	buf[len] = '\0';
	*p = end;
	return (int)len;
}

int tree_parse(const char *path, struct node *out)
{
	char comp[4][TREE_NAME_MAX + 1];
	const char *p = path;
	int n = 0;

	memset(out, 0, sizeof(*out));
	if (!path || path[0] != '/')
		return -ENOENT;
	for (;;) {
		char buf[TREE_NAME_MAX + 1];
		int len = next_component(&p, buf);

		if (len < 0)
			return len;
		if (len == 0)
			break;
		if (n == 3)
			return -ENOENT; /* nothing lives deeper than IMAGE/groups/G */
		if (strcmp(buf, ".") == 0 || strcmp(buf, "..") == 0)
			return -ENOENT;
		memcpy(comp[n++], buf, (size_t)len + 1);
	}

	if (n == 0) {
		out->kind = NODE_ROOT;
		return 0;
	}
	if (n == 1 && strcmp(comp[0], TREE_ROOT_ERROR_NAME) == 0) {
		out->kind = NODE_ROOT_ERROR;
		return 0;
	}
	if (n == 1 && strcmp(comp[0], TREE_ROOT_STATUS_NAME) == 0) {
		out->kind = NODE_ROOT_STATUS;
		return 0;
	}
	if (n == 1 && strcmp(comp[0], TREE_ROOT_CHANGES_NAME) == 0) {
		out->kind = NODE_ROOT_CHANGES;
		return 0;
	}
	memcpy(out->image, comp[0], sizeof(out->image));
	if (n == 1) {
		out->kind = NODE_IMAGE;
		return 0;
	}
	if (n == 2) {
		for (unsigned i = 0; i < tree_image_entry_count; i++) {
			if (strcmp(comp[1], tree_image_entries[i].name) == 0) {
				out->kind = tree_image_entries[i].kind;
				return 0;
			}
		}
		if (strcmp(comp[1], TREE_REBUILD_NAME) == 0) {
			out->kind = NODE_REBUILD;
			return 0;
		}
		if (strcmp(comp[1], TREE_HISTORY_NAME) == 0) {
			out->kind = NODE_HISTORY;
			return 0;
		}
		out->kind = NODE_SCRATCH;
		memcpy(out->leaf, comp[1], sizeof(out->leaf));
		return 0;
	}
	/* n == 3 */
	if (strcmp(comp[1], TREE_HISTORY_NAME) == 0) {
		out->kind = NODE_HISTORY_FILE;
		memcpy(out->leaf, comp[2], sizeof(out->leaf));
		return 0;
	}
	if (strcmp(comp[1], "groups") != 0)
		return -ENOENT;
	/* No group name starts with a dot (they are refused): such names are
	 * a copy tool's temporary files (rsync's .NAME.XXXXXX), kept locally
	 * as scratch files of the image under "groups/NAME". */
	if (comp[2][0] == '.') {
		if (strlen(TREE_GROUPS_SCRATCH) + strlen(comp[2]) > TREE_NAME_MAX)
			return -ENAMETOOLONG;
		out->kind = NODE_SCRATCH;
		snprintf(out->leaf, sizeof(out->leaf), "%s%s", TREE_GROUPS_SCRATCH, comp[2]);
		return 0;
	}
	out->kind = NODE_GROUP;
	memcpy(out->leaf, comp[2], sizeof(out->leaf));
	return 0;
}
