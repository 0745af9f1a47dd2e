/*
 * fs_write.c - saving spec.json, and the editors' scratch files.
 *
 * A handle opened for writing keeps its own buffer, started from the text the
 * writer opened (or empty with O_TRUNC).  Writes, truncates and O_TRUNC only
 * change that buffer.  The commit point is flush (close) or fsync of a handle
 * that has written since its last commit, and rename(scratch -> spec.json):
 * then the text is validated as a whole and turned into API calls by spec,
 * and the outcome decides what close/fsync/rename return.  A refused save
 * changes nothing on the server, leaves the reason in .error and the log,
 * and keeps the refused text as spec.json.rejected.
 */
#include "fs_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "primehubfs/log.h"
#include "primehubfs/spec.h"

/* ---- the write buffer ---- */

static int buf_reserve(struct phfs_handle *h, size_t want)
{
	size_t cap = h->buf_cap ? h->buf_cap : 4096;
	char *p;

	if (want <= h->buf_cap)
		return 0;
	while (cap < want)
		cap *= 2;
	p = realloc(h->buf, cap);
	if (!p)
		return -ENOMEM;
	h->buf = p;
	h->buf_cap = cap;
	return 0;
}

static int buf_set(struct phfs_handle *h, const char *text, size_t len)
{
	int ret = buf_reserve(h, len + 1);

	if (ret < 0)
		return ret;
	memcpy(h->buf, text, len);
	h->buf_len = len;
	return 0;
}

static char *dup_bytes(const char *src, size_t len)
{
	char *p = malloc(len + 1);

	if (p) {
		memcpy(p, src, len);
		p[len] = '\0';
	}
	return p;
}

int phfs_open_spec(struct phfs *fs, struct phfs_handle *h, int flags)
{
	struct snapshot *snap;
	const struct snap_image *e;
	char *tmpl = NULL;
	const char *text;
	size_t len = 0;
	int ret;

	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	e = snapshot_find(snap, h->node.image);
	if (e && snap_image_texts(e)) {
		h->entry = snap_image_get(e); /* keeps the texts alive */
		text = snap_image_texts(e)->spec;
		len = snap_image_texts(e)->spec_len;
	} else if (e) {
		ret = -ENOMEM;
	} else if (staging_pending_exists(fs->staging, h->node.image)) {
		tmpl = spec_render_template(h->node.image, &len);
		text = tmpl;
		h->pending = true;
		if (!tmpl)
			ret = -ENOMEM;
	} else {
		ret = -ENOENT;
	}
	snapshot_put(snap);
	if (ret < 0)
		return ret;

	if ((flags & O_ACCMODE) == O_RDONLY) {
		if (tmpl) {
			h->own_text = tmpl;
			h->ro_text = tmpl;
		} else {
			h->ro_text = text;
		}
		h->ro_len = len;
		return 0;
	}
	/* Writable: remember what the writer starts from (the diff base and
	 * the conflict check), and start the buffer from it unless O_TRUNC. */
	h->writable = true;
	h->base = dup_bytes(text, len);
	h->base_len = len;
	ret = h->base ? buf_set(h, (flags & O_TRUNC) ? "" : text, (flags & O_TRUNC) ? 0 : len)
	              : -ENOMEM;
	free(tmpl);
	return ret;
}

int phfs_spec_write(struct phfs_handle *h, const char *buf, size_t size, off_t off)
{
	size_t end = (size_t)off + size;
	int ret;

	if (off < 0)
		return -EINVAL;
	/* Refuse at once rather than after buffering a huge file: the limit
	 * is PrimeHub's, spec.json will never legitimately be this big. */
	if (end > SPEC_MAX_SIZE) {
		/* The writer may not look at write's result (a short write is
		 * not an error to many programs): close must say it too. */
		pthread_mutex_lock(&h->lock);
		h->too_big = true;
		h->dirty = true;
		pthread_mutex_unlock(&h->lock);
		return -EFBIG;
	}
	pthread_mutex_lock(&h->lock);
	ret = buf_reserve(h, end + 1);
	if (ret == 0) {
		if ((size_t)off > h->buf_len)
			memset(h->buf + h->buf_len, 0, (size_t)off - h->buf_len); /* a hole */
		memcpy(h->buf + off, buf, size);
		if (end > h->buf_len)
			h->buf_len = end;
		h->dirty = true;
		ret = (int)size;
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

int phfs_spec_truncate(struct phfs_handle *h, off_t size)
{
	int ret = 0;

	if (size < 0)
		return -EINVAL;
	if ((size_t)size > SPEC_MAX_SIZE)
		return -EFBIG;
	pthread_mutex_lock(&h->lock);
	h->too_big = false; /* truncating starts the content anew */
	if ((size_t)size > h->buf_len) {
		ret = buf_reserve(h, (size_t)size + 1);
		if (ret == 0)
			memset(h->buf + h->buf_len, 0, (size_t)size - h->buf_len);
	}
	if (ret == 0) {
		/* A truncate alone is not a save, but it is a change: vim's
		 * backupcopy=yes truncates, writes, then fsyncs. */
		h->buf_len = (size_t)size;
		h->dirty = true;
	}
	pthread_mutex_unlock(&h->lock);
	return ret;
}

/* ---- the commit ---- */

/* A copy of the spec.json the snapshot shows for image: what a writer who
 * did not open spec.json saw, and what a writer builds on after a save.
 * *text stays NULL (and 0 is returned) for an image the snapshot lacks. */
static int shown_spec_copy(struct phfs *fs, const char *image, char **text, size_t *len)
{
	const struct snap_image *e;
	const struct snap_texts *tx;
	struct snapshot *snap;
	int ret;

	*text = NULL;
	*len = 0;
	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ret;
	e = snapshot_find(snap, image);
	tx = e ? snap_image_texts(e) : NULL;
	if (e && !tx)
		ret = -ENOMEM;
	if (tx) {
		*text = dup_bytes(tx->spec, tx->spec_len);
		*len = tx->spec_len;
		if (!*text)
			ret = -ENOMEM;
	}
	snapshot_put(snap);
	return ret;
}

static void keep_rejected(struct phfs *fs, const char *image, const char *text, size_t len,
                          const struct ph_err *err)
{
	char what[TREE_NAME_MAX + 16];

	snprintf(what, sizeof(what), "%s/spec.json", image);
	staging_set_rejected(fs->staging, image, text, len);
	phfs_refuse(fs, image, what, err);
}

static void saved(struct phfs *fs, const char *image)
{
	staging_clear_rejected(fs->staging, image);
	phfs_succeeded(fs, image);
}

/* createImage for a pending directory, with the groups staged in it. */
static int commit_create(struct phfs *fs, const char *image, const char *text, size_t len,
                         struct ph_err *err)
{
	struct spec_context ctx = {.dir_name = image};
	struct ph_image_input in = {0};
	struct ph_strlist names = {0};
	struct ph_image *created = NULL;
	struct snapshot *snap;
	int ret;

	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ph_err_set(err, -ret, NULL, "cannot reach PrimeHub to check the secrets");
	ctx.secrets = snapshot_secrets(snap, &ctx.nsecrets);
	ret = spec_plan_create(text, len, &ctx, &in, err);
	snapshot_put(snap);
	if (ret == 0)
		ret = staging_pending_groups(fs->staging, image, &in.connect, &names);
	if (ret == 0)
		ret = ph_create_image(fs->api, &in, &created, err);
	ph_image_input_clear(&in);
	ph_strlist_free(&names);
	if (ret < 0) {
		/* A create can fail half-way (the image made, a group connect
		 * refused): look again rather than assume nothing happened. */
		if (ret != -EINVAL && ret != -EFBIG)
			store_invalidate(fs->store);
		return ret;
	}
	staging_pending_remove(fs->staging, image);
	log_info("created image %s", image);
	return store_put_image(fs->store, created);
}

/* Plan a save against `current`, with the pull secrets of the snapshot. */
static int plan_against(struct phfs *fs, const char *image, const char *text, size_t len,
                        const char *base, size_t base_len, const struct ph_image *current,
                        struct spec_update *plan, struct ph_err *err)
{
	struct spec_context ctx = {.dir_name = image};
	struct snapshot *snap;
	int ret;

	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ph_err_set(err, -ret, NULL, "cannot list the pull secrets");
	ctx.secrets = snapshot_secrets(snap, &ctx.nsecrets);
	ret = spec_plan_update(base, base_len, text, len, current, &ctx, plan, err);
	snapshot_put(snap);
	return ret;
}

/* updateImage / rebuildImage / cancelImageBuild for an existing image. */
static int commit_update(struct phfs *fs, const char *image, const char *text, size_t len,
                         const char *base, size_t base_len, struct ph_err *err)
{
	struct spec_update plan = {0};
	struct ph_image *current = NULL, *result = NULL;
	struct snapshot *snap;
	const struct snap_image *e;
	int ret;

	/* First against the snapshot: bad content and unchanged content are
	 * decided without a single request. */
	ret = phfs_snapshot(fs, &snap);
	if (ret < 0)
		return ph_err_set(err, -ret, NULL, "cannot reach PrimeHub");
	e = snapshot_find(snap, image);
	ret = e ? plan_against(fs, image, text, len, base, base_len, e->img, &plan, err)
	        : ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub", image);
	snapshot_put(snap);
	if (ret < 0 || spec_update_empty(&plan))
		goto out;
	spec_update_clear(&plan);

	/* Then against what the server holds now, not a snapshot up to ttl
	 * old: this is what catches someone else's concurrent change, and
	 * what the values PrimeHub needs re-sent are taken from. */
	ret = ph_get_image(fs->api, image, &current, err);
	if (ret < 0)
		goto out;
	if (!current) {
		ret = ph_err_set(err, ENOENT, NULL, "image %s no longer exists on PrimeHub", image);
		goto out;
	}
	ret = plan_against(fs, image, text, len, base, base_len, current, &plan, err);
	if (ret < 0)
		goto out;
	if (spec_update_empty(&plan)) {
		/* Someone already made the same change: nothing to send. */
		ret = store_put_image(fs->store, current);
		current = NULL;
		goto out;
	}
	if (plan.input.set) {
		ret = ph_update_image(fs->api, image, &plan.input, &result, err);
		if (ret < 0)
			goto partial;
	}
	if (plan.rebuild) {
		ph_image_free(result);
		result = NULL;
		ret = ph_rebuild_image(fs->api, image, plan.rebuild, &result, err);
		if (ret < 0)
			goto partial;
	}
	if (plan.cancel_build) {
		ph_image_free(result);
		result = NULL;
		ret = ph_cancel_image_build(fs->api, image, &result, err);
		if (ret < 0)
			goto partial;
	}
	log_info("saved image %s", image);
	ret = store_put_image(fs->store, result);
	result = NULL;
	goto out;
partial:
	/* Part of the save may have landed (PrimeHub applies a patch before a
	 * failing group step): the next look fetches the truth. */
	store_invalidate(fs->store);
out:
	ph_image_free(current);
	ph_image_free(result);
	spec_update_clear(&plan);
	return ret;
}

int phfs_commit_text(struct phfs *fs, const char *image, const char *text, size_t len,
                     const char *base, size_t base_len)
{
	struct ph_err err = {0};
	bool pending = staging_pending_exists(fs->staging, image);
	int ret;

	ret = pending ? commit_create(fs, image, text, len, &err)
	              : commit_update(fs, image, text, len, base, base_len, &err);
	if (ret < 0) {
		if (!err.msg[0])
			ph_err_set(&err, -ret, NULL, "%s", strerror(-ret));
		keep_rejected(fs, image, text, len, &err);
		return phfs_user_error(ret);
	}
	saved(fs, image);
	return 0;
}

int phfs_spec_commit(struct phfs *fs, struct phfs_handle *h)
{
	char *text, *base;
	size_t len, base_len;
	int ret;

	pthread_mutex_lock(&h->lock);
	if (!h->dirty) {
		pthread_mutex_unlock(&h->lock);
		return 0;
	}
	/* Take the text out of the handle so no lock is held over the
	 * network; a write racing this commit makes the handle dirty again. */
	text = dup_bytes(h->buf ? h->buf : "", h->buf_len);
	len = h->buf_len;
	/* The base too: another flush of this handle (a dup'd descriptor) may
	 * replace it meanwhile. */
	base = dup_bytes(h->base ? h->base : "", h->base_len);
	base_len = h->base_len;
	h->dirty = false;
	if (h->too_big) {
		struct ph_err err;

		h->too_big = false;
		pthread_mutex_unlock(&h->lock);
		ph_err_set(&err, EFBIG, NULL, "spec.json is limited to %d bytes; nothing was sent",
		           SPEC_MAX_SIZE);
		if (text)
			keep_rejected(fs, h->node.image, text, len, &err);
		free(text);
		free(base);
		return -EFBIG;
	}
	pthread_mutex_unlock(&h->lock);
	if (!text || !base) {
		free(text);
		free(base);
		return -ENOMEM;
	}

	ret = phfs_commit_text(fs, h->node.image, text, len, base, base_len);
	free(text);
	free(base);
	if (ret < 0)
		return ret;

	/* Saved: what this writer now builds on is what PrimeHub holds. */
	if (shown_spec_copy(fs, h->node.image, &base, &base_len) == 0 && base) {
		pthread_mutex_lock(&h->lock);
		free(h->base);
		h->base = base;
		h->base_len = base_len;
		h->pending = false;
		pthread_mutex_unlock(&h->lock);
	}
	return 0;
}

/* rename(scratch -> spec.json): the save of write-to-temp-then-rename
 * editors (sed -i, os.replace, gedit).  On success the scratch file is gone,
 * as rename promises; on refusal rename fails and the scratch file stays. */
int phfs_rename_onto_spec(struct phfs *fs, const struct node *from, const struct node *to)
{
	struct scratch *s;
	char *text = NULL, *base = NULL;
	size_t len = 0, base_len = 0;
	int ret;

	ret = staging_scratch_open(fs->staging, from->image, from->leaf, &s);
	if (ret < 0)
		return ret;
	ret = scratch_copy(s, &text, &len);
	scratch_put(s);
	if (ret < 0)
		return ret;
	/* The writer's base is what spec.json showed (none for a pending
	 * image: its save is a create). */
	ret = shown_spec_copy(fs, to->image, &base, &base_len);
	if (ret == 0)
		ret = phfs_commit_text(fs, to->image, text, len, base, base_len);
	if (ret == 0)
		staging_scratch_unlink(fs->staging, from->image, from->leaf);
	free(text);
	free(base);
	return ret;
}
