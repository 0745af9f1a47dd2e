/*
 * tree.h - what the mount shows: the kinds of node and the fixed entries of
 * each directory, as one table, and path -> node parsing.  Pure.
 *
 *   /                      NODE_ROOT
 *   /.error                NODE_ROOT_ERROR
 *   /.status               NODE_ROOT_STATUS    (the mount's health, always there)
 *   /.changes              NODE_ROOT_CHANGES   (what this mount sent; not listed)
 *   /IMAGE                 NODE_IMAGE
 *   /IMAGE/spec.json       NODE_SPEC
 *   /IMAGE/status.json     NODE_STATUS
 *   /IMAGE/build.log       NODE_BUILD_LOG      (custom builds only)
 *   /IMAGE/.error          NODE_IMAGE_ERROR
 *   /IMAGE/spec.json.rejected NODE_REJECTED    (while a refused save is kept)
 *   /IMAGE/groups          NODE_GROUPS
 *   /IMAGE/groups/G        NODE_GROUP
 *   /IMAGE/groups/.TEMP    NODE_SCRATCH        (leaf "groups/.TEMP": a copy tool's
 *                                              temporary file, local only)
 *   /IMAGE/rebuild         NODE_REBUILD        (custom builds; not listed: touch it
 *                                              to build the same imageSpec again)
 *   /IMAGE/.history        NODE_HISTORY        (versions of spec.json kept on this
 *                                              machine; not listed)
 *   /IMAGE/.history/T.json NODE_HISTORY_FILE   (leaf "T.json": one version)
 *   /IMAGE/OTHER           NODE_SCRATCH        (editor scratch files, local only)
 *
 * Whether a node exists is decided by the caller against the snapshot and
 * staging; this module only says what a path would be.
 */
#ifndef PRIMEHUBFS_TREE_H
#define PRIMEHUBFS_TREE_H

#include <stdbool.h>
#include <sys/types.h>

#define TREE_NAME_MAX 255

enum node_kind {
	NODE_ROOT,
	NODE_ROOT_ERROR,
	NODE_ROOT_STATUS,
	NODE_ROOT_CHANGES,
	NODE_IMAGE,
	NODE_SPEC,
	NODE_STATUS,
	NODE_BUILD_LOG,
	NODE_IMAGE_ERROR,
	NODE_REJECTED,
	NODE_GROUPS,
	NODE_GROUP,
	NODE_REBUILD,
	NODE_SCRATCH,
	NODE_HISTORY,
	NODE_HISTORY_FILE,
};

struct node {
	enum node_kind kind;
	char image[TREE_NAME_MAX + 1]; /* "" for the root and /.error */
	char leaf[TREE_NAME_MAX + 1];  /* the group or scratch file name */
};

/* The fixed entries of an image directory, in listing order. */
struct tree_entry {
	const char *name;
	enum node_kind kind;
	mode_t mode;       /* S_IFREG|0644 ... */
	bool custom_only;  /* shown for custom-build images only */
	bool when_present; /* shown only when it has content (.error, .rejected) */
};
extern const struct tree_entry tree_image_entries[];
extern const unsigned tree_image_entry_count;

#define TREE_ROOT_ERROR_NAME   ".error"
#define TREE_ROOT_STATUS_NAME  ".status"
#define TREE_ROOT_CHANGES_NAME ".changes"
#define TREE_REJECTED_SUFFIX   ".rejected"
#define TREE_REBUILD_NAME      "rebuild"
#define TREE_HISTORY_NAME      ".history"
/* Scratch files in groups/ (dot names) are the image's scratch files with
 * this prefix; a real scratch name never holds a '/'. */
#define TREE_GROUPS_SCRATCH "groups/"

/* Parse an absolute path.  -ENOENT for paths that can never exist (too deep,
 * empty components), -ENAMETOOLONG for a component over TREE_NAME_MAX. */
int tree_parse(const char *path, struct node *out);

/* The fixed mode of a kind (S_IFDIR|0755, S_IFREG|0644, S_IFREG|0444, ...). */
mode_t tree_mode(enum node_kind kind);

/* True for names an image directory reserves (spec.json, status.json, ...):
 * they can never be scratch files. */
bool tree_is_reserved(const char *leaf);

#endif
