/*
 * spec_render.c - image -> spec.json, status.json and the template of a new
 * directory.  The bytes are exact and stable (json_text.c's writer): the
 * same image always renders the same text, and the FUSE layer reports
 * st_size from it.
 *
 * Decisions (see also spec.h):
 *   - every key is always present, null where the server has no value, so
 *     that a person sees what can be set;
 *   - imageSpec.packages that the server holds as null renders as three
 *     empty lists: the same build, in the only shape the CLI's create
 *     accepts ("packages is required"), and with the place to add packages
 *     already there;
 *   - groupName is never shown (admin images have none; the planner
 *     re-sends the server's value on every update).
 */
#include "primehubfs/spec.h"

#include <stdlib.h>

#include "primehubfs/json_text.h"

static void render_list(struct jt_writer *w, const char *key, const struct ph_strlist *l)
{
	jt_array_begin(w, key);
	for (size_t i = 0; i < l->n; i++)
		jt_string(w, NULL, l->items[i]);
	jt_array_end(w);
}

static void render_build_spec(struct jt_writer *w, const struct ph_build_spec *bs)
{
	jt_object_begin(w, "imageSpec");
	jt_string(w, "baseImage", bs->base_image);
	jt_string(w, "pullSecret", bs->pull_secret);
	jt_object_begin(w, "packages");
	render_list(w, "apt", &bs->apt);
	render_list(w, "pip", &bs->pip);
	render_list(w, "conda", &bs->conda);
	jt_object_end(w);
	jt_bool(w, "cancel", bs->cancel);
	jt_object_end(w);
}

char *spec_render(const struct ph_image *img, size_t *len)
{
	struct jt_writer w;

	if (!img)
		return NULL;
	jt_init(&w);
	jt_object_begin(&w, NULL);
	jt_string(&w, "name", img->name ? img->name : img->id);
	jt_string(&w, "displayName", img->display_name);
	jt_string(&w, "description", img->description);
	jt_string(&w, "type", img->type);
	/* On a custom build url/urlForGpu are the builder's output: status.json. */
	if (!img->image_spec) {
		jt_string(&w, "url", img->url);
		jt_string(&w, "urlForGpu", img->url_for_gpu);
	}
	jt_bool(&w, "global", img->global);
	/* PrimeHub stores "" for "none" on create and null after an update
	 * cleared it; both mean none.  One spelling, so that diff -r of two
	 * mounts (or of a backup) shows only real differences. */
	jt_string(&w, "useImagePullSecret",
	          img->use_image_pull_secret && *img->use_image_pull_secret
	              ? img->use_image_pull_secret
	              : NULL);
	if (img->image_spec)
		render_build_spec(&w, img->image_spec);
	jt_object_end(&w);
	return jt_finish(&w, len);
}

char *spec_render_status(const struct ph_image *img, size_t *len)
{
	const struct ph_build_spec *bs;
	struct jt_writer w;

	if (!img)
		return NULL;
	bs = img->image_spec;
	jt_init(&w);
	jt_object_begin(&w, NULL);
	jt_string(&w, "id", img->id ? img->id : img->name);
	jt_bool(&w, "isReady", img->is_ready);
	jt_string(&w, "url", img->url);
	jt_string(&w, "urlForGpu", img->url_for_gpu);
	jt_bool(&w, "customBuild", bs != NULL);
	jt_string(&w, "buildPhase", img->has_job_status ? img->job_phase : NULL);
	jt_string(&w, "buildImage", img->has_job_status ? img->job_image : NULL);
	jt_string(&w, "updateTime", bs ? bs->update_time : NULL);
	jt_bool(&w, "cancelRequested", bs && bs->cancel);
	jt_array_begin(&w, "groups");
	for (size_t i = 0; i < img->ngroups; i++) {
		jt_object_begin(&w, NULL);
		jt_string(&w, "id", img->groups[i].id);
		jt_string(&w, "name", img->groups[i].name);
		jt_string(&w, "displayName", img->groups[i].display_name);
		jt_object_end(&w);
	}
	jt_array_end(&w);
	/* No logEndpoint: it names the server's host, so two servers' copies
	 * of one image would always differ (build.log is that log). */
	jt_object_end(&w);
	return jt_finish(&w, len);
}

char *spec_render_template(const char *name, size_t *len)
{
	struct jt_writer w;

	if (!name)
		return NULL;
	jt_init(&w);
	jt_object_begin(&w, NULL);
	jt_string(&w, "name", name);
	jt_string(&w, "displayName", name);
	jt_null(&w, "description");
	jt_string(&w, "type", "both");
	jt_null(&w, "url");
	jt_null(&w, "urlForGpu");
	jt_bool(&w, "global", false);
	jt_null(&w, "useImagePullSecret");
	jt_object_end(&w);
	return jt_finish(&w, len);
}
