/*
 * fs_list.c - directory listings.  opendir takes the listing once, from one
 * snapshot, so every readdir of one `ls` sees the same entries whatever
 * refreshes meanwhile; readdir hands them out with offsets, which is what
 * lets libfuse answer READDIRPLUS with real entries (with zero offsets it
 * sends attributes the kernel cannot use, and `ls -l` then looks every entry
 * up again).  Attributes come from the snapshot, so `ls -l` of 10,000 images
 * costs no request beyond the one listing.
 */
#include "fs_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "primehubfs/log.h"

struct list_ent {
	char *name;
	enum node_kind kind;
	bool dot; /* "." or "..": no attributes to give */
};

struct phfs_dirlist {
	struct phfs_dirlist *prev, *next; /* in phfs.dirlists */
	struct snapshot *snap;            /* the snapshot the listing was taken from */
	struct node dir;
	struct list_ent *ents;
	size_t n, cap;
	int error; /* -ENOMEM while building */
};

static void list_add(struct phfs_dirlist *l, const char *name, enum node_kind kind, bool dot)
{
	struct list_ent *ents;

	if (l->error)
		return;
	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 16;

		ents = realloc(l->ents, cap * sizeof(*ents));
		if (!ents) {
			l->error = -ENOMEM;
			return;
		}
		l->ents = ents;
		l->cap = cap;
	}
	l->ents[l->n].name = strdup(name);
	if (!l->ents[l->n].name) {
		l->error = -ENOMEM;
		return;
	}
	l->ents[l->n].kind = kind;
	l->ents[l->n].dot = dot;
	l->n++;
}

static void list_free(struct phfs_dirlist *l)
{
	if (!l)
		return;
	for (size_t i = 0; i < l->n; i++)
		free(l->ents[i].name);
	free(l->ents);
	snapshot_put(l->snap);
	free(l);
}

/* The node an entry of the listed directory stands for. */
static void entry_node(const struct phfs_dirlist *l, const struct list_ent *e, struct node *n)
{
	*n = l->dir;
	n->kind = e->kind;
	if (l->dir.kind == NODE_ROOT) {
		if (e->kind == NODE_IMAGE)
			snprintf(n->image, sizeof(n->image), "%s", e->name);
	} else if (e->kind == NODE_SCRATCH || e->kind == NODE_GROUP) {
		snprintf(n->leaf, sizeof(n->leaf), "%s", e->name);
	}
}

static void list_root(struct phfs *fs, struct phfs_dirlist *l)
{
	const struct snapshot *snap = l->snap;
	struct ph_strlist pending;
	size_t len;

	for (size_t i = 0; i < snap->nimages; i++)
		list_add(l, snap->images[i]->img->id, NODE_IMAGE, false);
	if (staging_pending_list(fs->staging, &pending) == 0) {
		for (size_t i = 0; i < pending.n; i++)
			if (!snapshot_find(snap, pending.items[i]))
				list_add(l, pending.items[i], NODE_IMAGE, false);
		ph_strlist_free(&pending);
	}
	if (staging_has_error(fs->staging, "", &len))
		list_add(l, TREE_ROOT_ERROR_NAME, NODE_ROOT_ERROR, false);
	list_add(l, TREE_ROOT_STATUS_NAME, NODE_ROOT_STATUS, false);
}

static int list_image(struct phfs *fs, struct phfs_dirlist *l)
{
	const struct snap_image *e = snapshot_find(l->snap, l->dir.image);
	struct ph_strlist scratch;
	struct node n = l->dir;

	if (!e && !staging_pending_exists(fs->staging, l->dir.image))
		return -ENOENT;
	for (unsigned i = 0; i < tree_image_entry_count; i++) {
		const struct tree_entry *te = &tree_image_entries[i];
		struct stat st;

		n.kind = te->kind;
		if (te->custom_only && (!e || !e->img->image_spec))
			continue;
		if (te->kind == NODE_STATUS && !e)
			continue; /* a pending image has no server state yet */
		if (te->when_present && phfs_stat_node(fs, l->snap, &n, &st) < 0)
			continue;
		list_add(l, te->name, te->kind, false);
	}
	if (staging_scratch_list(fs->staging, l->dir.image, &scratch) == 0) {
		for (size_t i = 0; i < scratch.n; i++)
			if (!strchr(scratch.items[i], '/')) /* groups/.TEMP: not here */
				list_add(l, scratch.items[i], NODE_SCRATCH, false);
		ph_strlist_free(&scratch);
	}
	return 0;
}

/* A name that cannot be a directory entry, or would be unsafe to show: a
 * '/', ".", "..", too long, or control characters, invisible format
 * characters or bytes that are not UTF-8 (what ph_escape_line would
 * escape). */
static bool unlistable(const char *name)
{
	char shown[4 * TREE_NAME_MAX + 8];
	size_t len = strlen(name);

	if (len == 0 || len > TREE_NAME_MAX || strchr(name, '/') || strcmp(name, ".") == 0 ||
	    strcmp(name, "..") == 0)
		return true;
	return ph_escape_line(name, shown, sizeof(shown)) != len || strcmp(shown, name) != 0;
}

static int list_groups(struct phfs *fs, struct phfs_dirlist *l)
{
	const struct snap_image *e = snapshot_find(l->snap, l->dir.image);
	struct ph_strlist ids, names;

	if (e) {
		const char *skipped = NULL;
		size_t nskipped = 0;

		for (size_t i = 0; i < e->img->ngroups; i++) {
			const struct ph_group *g = &e->img->groups[i];
			const char *name = g->name ? g->name : g->id;

			if (unlistable(name)) {
				/* Skip it rather than fail the whole listing; it
				 * stays reachable by its id. */
				if (!skipped)
					skipped = g->id;
				nskipped++;
				continue;
			}
			list_add(l, name, NODE_GROUP, false);
		}
		if (nskipped) {
			long long stamp = (long long)l->snap->fetched.tv_sec * 1000000000LL +
			                  l->snap->fetched.tv_nsec;

			if (__atomic_exchange_n(&fs->bad_names_warned, stamp, __ATOMIC_RELAXED) !=
			    stamp)
				log_warn(
				    "%s/groups: %zu group(s) not listed: their names cannot be "
				    "file names (a '/', '.', '..' or control characters); "
				    "touch/rm IMAGE/groups/ID still work, e.g. id %s",
				    l->dir.image, nskipped, skipped ? skipped : "?");
		}
		return 0;
	}
	/* A pending image: the groups staged for its creation. */
	if (staging_pending_groups(fs->staging, l->dir.image, &ids, &names) < 0)
		return -ENOENT;
	for (size_t i = 0; i < names.n; i++)
		list_add(l, names.items[i], NODE_GROUP, false);
	ph_strlist_free(&ids);
	ph_strlist_free(&names);
	return 0;
}

/* What a listing holds: names and kinds in order (the offsets given out). */
static uint64_t listing_hash(const struct phfs_dirlist *l)
{
	uint64_t h = 0;

	for (size_t i = 0; i < l->n; i++) {
		unsigned char kind = (unsigned char)l->ents[i].kind;

		h = phfs_kcache_hash(l->ents[i].name, strlen(l->ents[i].name) + 1, h);
		h = phfs_kcache_hash(&kind, 1, h);
	}
	return h;
}

static void add_history_entry(void *arg, const char *name)
{
	list_add(arg, name, NODE_HISTORY_FILE, false);
}

static void add_sink_entry(void *arg, const char *name, bool is_dir)
{
	(void)is_dir;
	list_add(arg, name, NODE_SCRATCH, true); /* the kernel looks them up */
}

static void list_register(struct phfs *fs, struct phfs_dirlist *l);

/* The entries of l->dir, from l->snap. */
static int list_dir(struct phfs *fs, struct phfs_dirlist *l)
{
	switch (l->dir.kind) {
	case NODE_ROOT:
		list_root(fs, l);
		return 0;
	case NODE_IMAGE:
		return list_image(fs, l);
	case NODE_GROUPS:
		return list_groups(fs, l);
	case NODE_HISTORY:
		return snapshot_find(l->snap, l->dir.image)
		           ? phfs_history_list(fs, l->dir.image, add_history_entry, l)
		           : -ENOENT;
	default:
		return -ENOTDIR;
	}
}

int phfs_opendir(const char *path, struct fuse_file_info *fi)
{
	struct phfs *fs = phfs_ctx();
	struct phfs_dirlist *l;
	bool sink = phfs_sink_path(path); /* a directory a copy tool made beside the images */
	int ret;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	ret = sink ? 0 : tree_parse(path, &l->dir);
	if (ret == 0 && !sink && l->dir.kind == NODE_ROOT)
		phfs_walkers_note_root(fs->walkers);
	if (ret == 0 && !sink)
		ret = l->dir.kind == NODE_GROUPS  ? phfs_snapshot_groups(fs, l->dir.image, &l->snap)
		      : l->dir.kind == NODE_IMAGE ? phfs_snapshot_shown(fs, l->dir.image, &l->snap)
		                                  : phfs_snapshot(fs, &l->snap);
	if (ret < 0) {
		list_free(l);
		return ret;
	}
	list_add(l, ".", NODE_ROOT, true);
	list_add(l, "..", NODE_ROOT, true);
	ret = sink ? phfs_sink_list(fs->sink, path, add_sink_entry, l) : list_dir(fs, l);
	if (ret == 0)
		ret = l->error;
	if (ret < 0) {
		list_free(l);
		return ret;
	}
	fi->fh = (uintptr_t)l;
	list_register(fs, l);
	if (sink)
		return 0; /* changes as the copy goes: never cached */
	/* The kernel may cache the listing (readdir from its page cache) and
	 * keep it across opens while it is what this opendir listed: an
	 * unchanged directory is then listed without a READDIR. */
	fi->cache_readdir = 1;
	fi->keep_cache = phfs_kcache_listing(fs->kcache, path, listing_hash(l));
	return 0;
}

/* status.json's size depends on the image's groups: listing an image
 * directory does not fetch them (`ls IMAGE`, `cd` cost nothing), so its
 * attributes go with the listing only while the groups are fresh; else the
 * kernel asks for them (GETATTR), which fetches. */
static bool status_attrs_fresh(struct phfs *fs, const struct phfs_dirlist *l, const struct node *n)
{
	const struct snap_image *e = snapshot_find(l->snap, n->image);

	return e && store_groups_fresh(fs->store, e);
}

int phfs_readdir(const char *path, void *buf, fuse_fill_dir_t filler, off_t offset,
                 struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
	struct phfs *fs = phfs_ctx();
	struct phfs_dirlist *l = (struct phfs_dirlist *)(uintptr_t)fi->fh;

	(void)path;
	if (l->snap && l->dir.kind == NODE_ROOT)
		phfs_walkers_note_root(fs->walkers); /* a long listing's end counts */
	for (size_t i = offset > 0 ? (size_t)offset : 0; i < l->n; i++) {
		const struct list_ent *e = &l->ents[i];
		struct node n;
		struct stat st;
		int full;

		entry_node(l, e, &n);
		/* readdirplus: every entry's attributes from the snapshot
		 * (build.log excepted: its size needs the log, fetched only
		 * when someone looks at it). */
		if ((flags & FUSE_READDIR_PLUS) && !e->dot && e->kind != NODE_BUILD_LOG &&
		    (e->kind != NODE_STATUS || status_attrs_fresh(fs, l, &n)) &&
		    phfs_stat_node(fs, l->snap, &n, &st) == 0) {
			if ((e->kind == NODE_SPEC || e->kind == NODE_STATUS) && path) {
				char file[2 * TREE_NAME_MAX + 16];

				snprintf(file, sizeof(file), "%s/%s", path, e->name);
				phfs_report_node(fs, l->snap, &n, file);
			}
			full = filler(buf, e->name, &st, (off_t)(i + 1), FUSE_FILL_DIR_PLUS);
		} else
			full = filler(buf, e->name, NULL, (off_t)(i + 1), 0);
		if (full)
			break;
	}
	return 0;
}

/* Kept in a list, so that listings whose RELEASEDIR never came (the loop
 * ended first: SIGTERM right after ls) are still freed. */
static void list_register(struct phfs *fs, struct phfs_dirlist *l)
{
	pthread_mutex_lock(&fs->handles_lock);
	l->next = fs->dirlists;
	if (l->next)
		l->next->prev = l;
	fs->dirlists = l;
	pthread_mutex_unlock(&fs->handles_lock);
}

static void list_unlink(struct phfs *fs, struct phfs_dirlist *l)
{
	pthread_mutex_lock(&fs->handles_lock);
	if (l->prev)
		l->prev->next = l->next;
	else
		fs->dirlists = l->next;
	if (l->next)
		l->next->prev = l->prev;
	pthread_mutex_unlock(&fs->handles_lock);
}

int phfs_releasedir(const char *path, struct fuse_file_info *fi)
{
	struct phfs_dirlist *l = (struct phfs_dirlist *)(uintptr_t)fi->fh;

	(void)path;
	if (l) {
		list_unlink(phfs_ctx(), l);
		list_free(l);
	}
	return 0;
}

void phfs_dirlists_free(struct phfs *fs)
{
	while (fs->dirlists) {
		struct phfs_dirlist *l = fs->dirlists;

		list_unlink(fs, l);
		list_free(l);
	}
}
