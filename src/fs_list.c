/*
 * fs_list.c - directory listings.  A listing is taken once, from one
 * snapshot, at the first READDIR of a directory (offset 0), and kept for
 * the READDIRs that follow, so every page of one `ls` sees the same
 * entries whatever refreshes meanwhile; it is handed out with offsets,
 * which is what lets READDIRPLUS carry real entries.  Attributes come from
 * the snapshot, so `ls -l` of 10,000 images costs no request beyond the
 * one listing.  There are no directory handles (fs_ll.c says why): kept
 * listings live in a few slots keyed by inode, dropped when read to their
 * end or pushed out by newer ones.
 *
 * A directory's mtime also answers "has the listing changed": the kernel
 * keeps listings in its cache and drops one when the mtime it is given
 * differs (phfs_dir_mtime).
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
	bool dot;    /* "." or "..": no attributes to give */
	mode_t type; /* S_IFDIR or S_IFREG, for entries listed without attributes */
};

struct phfs_dirlist {
	int refs;              /* under phfs.handles_lock */
	struct snapshot *snap; /* the snapshot the listing was taken from */
	struct node dir;
	struct list_ent *ents;
	size_t n, cap;
	int error; /* -ENOMEM while building */
	/* Taken only to be hashed (phfs_dir_mtime): each entry is chained
	 * into hash as it comes, nothing is copied and ents stays empty. */
	bool hash_only;
	uint64_t hash;
};

/* The hash of one entry, chained: a listing's hash is that of its names
 * and kinds in order (the offsets given out), dots left out. */
static uint64_t entry_hash(uint64_t h, const char *name, enum node_kind kind)
{
	unsigned char k = (unsigned char)kind;

	h = phfs_kcache_hash(name, strlen(name) + 1, h);
	return phfs_kcache_hash(&k, 1, h);
}

static void list_add(struct phfs_dirlist *l, const char *name, enum node_kind kind, bool dot)
{
	struct list_ent *ents;

	if (l->error)
		return;
	if (l->hash_only) {
		if (!dot)
			l->hash = entry_hash(l->hash, name, kind);
		return;
	}
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
	l->ents[l->n].type = kind == NODE_ROOT ? S_IFDIR : tree_mode(kind) & S_IFMT;
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

/* The root's entries: the images of the snapshot, the ones pending here,
 * the top's .error when there is one, and .status. */
static void list_root(struct phfs *fs, struct phfs_dirlist *l)
{
	const struct snapshot *snap = l->snap;
	struct ph_strlist pending;
	size_t len;

	if (l->hash_only) /* which images: kept with the snapshot (snapshot.h) */
		l->hash = phfs_kcache_hash(&snap->ids_sum, sizeof(snap->ids_sum), l->hash);
	else
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

static void add_history_entry(void *arg, const char *name)
{
	list_add(arg, name, NODE_HISTORY_FILE, false);
}

static void add_sink_entry(void *arg, const char *name, bool is_dir)
{
	struct phfs_dirlist *l = arg;
	size_t n = l->n;

	list_add(l, name, NODE_SCRATCH, true); /* the kernel looks them up */
	if (l->n > n)
		l->ents[n].type = is_dir ? S_IFDIR : S_IFREG;
}

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

/* Take the listing of path: from snap (borrowed) when given, else from
 * the snapshot its readers would see (fetching if need be).  hash_only:
 * see struct phfs_dirlist. */
static int list_take(struct phfs *fs, const char *path, struct snapshot *snap, bool hash_only,
                     struct phfs_dirlist **out)
{
	struct phfs_dirlist *l;
	bool sink = phfs_sink_path(path); /* a directory a copy tool made beside the images */
	int ret;

	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->refs = 1;
	l->hash_only = hash_only;
	ret = sink ? 0 : tree_parse(path, &l->dir);
	if (ret == 0 && !sink && snap)
		l->snap = snapshot_ref(snap);
	else if (ret == 0 && !sink)
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
	*out = l;
	return 0;
}

int phfs_list_get(struct phfs *fs, uint64_t ino, const char *path, off_t off,
                  struct phfs_dirlist **out)
{
	struct phfs_dirlist *l = NULL, *old = NULL;
	unsigned oldest = 0;
	int ret;

	if (off > 0) {
		pthread_mutex_lock(&fs->handles_lock);
		for (unsigned i = 0; i < PHFS_KEPT_LISTINGS && !l; i++) {
			if (fs->listings[i].l && fs->listings[i].ino == ino) {
				l = fs->listings[i].l;
				l->refs++;
				fs->listings[i].used = ++fs->listings_clock;
			}
		}
		pthread_mutex_unlock(&fs->handles_lock);
		if (l) {
			*out = l;
			return 0;
		}
	}
	if (strcmp(path, "/") == 0)
		phfs_walkers_note_root(fs->walkers);
	ret = list_take(fs, path, NULL, false, &l);
	if (ret < 0)
		return ret;
	phfs_kcache_dir_listed(fs->kcache, path);
	pthread_mutex_lock(&fs->handles_lock);
	/* The slot of this directory's last listing, else an empty one, else
	 * the least recently used. */
	for (unsigned i = 0, found = 0; i < PHFS_KEPT_LISTINGS && !found; i++) {
		if (fs->listings[i].l && fs->listings[i].ino == ino) {
			oldest = i;
			found = 1;
		} else if (!fs->listings[oldest].l) {
			continue; /* an empty slot already found */
		} else if (!fs->listings[i].l || fs->listings[i].used < fs->listings[oldest].used) {
			oldest = i;
		}
	}
	old = fs->listings[oldest].l;
	if (old && --old->refs > 0)
		old = NULL;
	fs->listings[oldest].l = l;
	fs->listings[oldest].ino = ino;
	fs->listings[oldest].used = ++fs->listings_clock;
	l->refs++;
	pthread_mutex_unlock(&fs->handles_lock);
	list_free(old);
	*out = l;
	return 0;
}

void phfs_list_put(struct phfs *fs, uint64_t ino, struct phfs_dirlist *l, bool ended)
{
	struct phfs_dirlist *gone = NULL;

	if (!l)
		return;
	pthread_mutex_lock(&fs->handles_lock);
	if (ended) {
		for (unsigned i = 0; i < PHFS_KEPT_LISTINGS; i++) {
			if (fs->listings[i].l == l && fs->listings[i].ino == ino) {
				fs->listings[i].l = NULL;
				l->refs--;
			}
		}
	}
	if (--l->refs == 0)
		gone = l;
	pthread_mutex_unlock(&fs->handles_lock);
	list_free(gone);
}

void phfs_dirlists_free(struct phfs *fs)
{
	for (unsigned i = 0; i < PHFS_KEPT_LISTINGS; i++) {
		list_free(fs->listings[i].l);
		fs->listings[i].l = NULL;
	}
}

struct timespec phfs_dir_changed(struct phfs *fs, const char *path, struct timespec base)
{
	uint64_t stamp = 0;

	/* A listing no directory has: the hash of nothing, with a counter. */
	stamp = phfs_kcache_hash(&stamp, sizeof(stamp),
	                         __atomic_add_fetch(&fs->dir_changes, 1, __ATOMIC_RELAXED));
	return phfs_kcache_dir_mtime(fs->kcache, path, stamp, base);
}

struct timespec phfs_dir_mtime(struct phfs *fs, const char *path, struct snapshot *snap,
                               struct timespec base)
{
	struct phfs_dirlist *l;

	/* Hashed as listed, nothing copied (the root has 300,000 names). */
	if (!path || !snap || list_take(fs, path, snap, true, &l) < 0)
		return base;
	base = phfs_kcache_dir_mtime(fs->kcache, path, l->hash, base);
	list_free(l);
	return base;
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

int phfs_list_fill(struct phfs *fs, struct phfs_dirlist *l, const char *path, off_t offset,
                   bool plus, phfs_list_add_fn add, void *arg)
{
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
		if (plus && !e->dot && l->snap && e->kind != NODE_BUILD_LOG &&
		    (e->kind != NODE_STATUS || status_attrs_fresh(fs, l, &n)) &&
		    phfs_stat_node(fs, l->snap, &n, &st) == 0) {
			if ((e->kind == NODE_SPEC || e->kind == NODE_STATUS) && path) {
				char file[2 * TREE_NAME_MAX + 16];

				snprintf(file, sizeof(file), "%s/%s", path, e->name);
				phfs_report_node(fs, l->snap, &n, file);
			}
			full = add(arg, e->name, st.st_mode & S_IFMT, &st, (off_t)(i + 1));
		} else {
			full = add(arg, e->name, e->type, NULL, (off_t)(i + 1));
		}
		if (full)
			return 1;
	}
	return 0;
}
