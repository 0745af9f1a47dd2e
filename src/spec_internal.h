/*
 * spec_internal.h - what the spec layer's files share (spec_parse.c,
 * spec_check.c, spec_render.c, spec_plan.c).  Not for other layers: they use
 * primehubfs/spec.h.
 */
#ifndef PRIMEHUBFS_SPEC_INTERNAL_H
#define PRIMEHUBFS_SPEC_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <cjson/cJSON.h>

#include "primehubfs/error.h"
#include "primehubfs/image.h"
#include "primehubfs/spec.h"

/*
 * A parsed spec.json.  Strings point into `root` (borrowed from it); NULL
 * means the key was absent or null, because for an update "removed" and
 * null mean the same thing.  image_spec is owned.  Only the shape is checked
 * here (keys, types); the rules about values are applied by the planner to
 * what changed.
 */
struct spec_doc {
	cJSON *root;
	const char *name;
	const char *display_name;
	const char *description;
	const char *type;
	const char *url;
	const char *url_for_gpu;
	const char *pull_secret; /* useImagePullSecret */
	bool global;             /* absent or null: false */
	/* NULL: imageSpec absent or null.  has_packages is true when packages
	 * was an object with at least one key (the CLI's "packages is
	 * required"); lists left out are empty; cancel null is false. */
	struct ph_build_spec *image_spec;
};

/* 0, or -EFBIG/-EINVAL/-ENOMEM with the reason in err.  On error *doc is
 * left empty (spec_doc_free is still safe). */
int spec_doc_parse(struct spec_doc *doc, const char *text, size_t len, struct ph_err *err);
/* The same without the SPEC_MAX_SIZE limit, for texts we rendered ourselves
 * (the opened version, the server's image): a huge description on the server
 * must not make every save of that image fail. */
int spec_doc_parse_trusted(struct spec_doc *doc, const char *text, size_t len, struct ph_err *err);
/* The doc of what spec_render shows for img: comparing parsed with parsed
 * keeps every normalisation (null packages, non-UTF-8 bytes) on both sides. */
int spec_doc_from_image(struct spec_doc *doc, const struct ph_image *img, struct ph_err *err);
void spec_doc_free(struct spec_doc *doc);

/* Rules (spec_check.c).  Each returns 0 or -EINVAL naming the field. */
int spec_check_type(const char *type, struct ph_err *err);
int spec_check_pull_secret(const char *field, const char *id, const struct spec_context *ctx,
                           struct ph_err *err);
/*
 * The CLI's imageSpec rules on `bs` (url beside it, baseImage required,
 * packages required) and ours (baseImage a valid reference, package names
 * non-empty one-line text, pullSecret a pull secret).  Ours are applied only
 * to the parts that differ from `old` (NULL: all parts), so that a rebuild
 * is not refused over an odd value the server already holds.
 */
int spec_check_build_spec(const struct ph_build_spec *bs, const struct ph_build_spec *old,
                          bool url_beside, const char *url_field, const struct spec_context *ctx,
                          struct ph_err *err);

bool spec_streq(const char *a, const char *b); /* NULL equals only NULL */
/* Same baseImage, pullSecret and package lists (cancel and update_time are
 * not content; has_packages is not either: a missing list is an empty one). */
bool spec_build_content_equal(const struct ph_build_spec *a, const struct ph_build_spec *b);

#endif
