/*
 * image.h - the data model: PrimeHub images, groups and secrets as plain C
 * values, decoded once from the API and shared read-only by every layer.
 *
 * Pure: no I/O.  Ownership: every char* and array inside these structs is
 * owned by the struct and freed by its *_free function.  A NULL char* means
 * the API answered null (or left the field out); "" is kept distinct from
 * NULL because PrimeHub keeps them apart (useImagePullSecret is "" after
 * create and null after an update that left it out).
 */
#ifndef PRIMEHUBFS_IMAGE_H
#define PRIMEHUBFS_IMAGE_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

struct ph_strlist {
	char **items;
	size_t n;
};

/* ImageSpec: the recipe of a custom build. */
struct ph_build_spec {
	char *base_image;
	char *pull_secret; /* pull secret of the *base* image, NULL if none */
	bool has_packages; /* false: packages is null */
	struct ph_strlist apt, pip, conda;
	bool cancel;
	char *update_time; /* server-set, read-only */
};

struct ph_group {
	char *id;
	char *name;
	char *display_name;
};

struct ph_secret {
	char *id;
	char *name;
	char *type; /* "kubernetes" or "opaque" */
};

struct ph_image {
	char *id; /* == name */
	char *name;
	char *display_name;
	char *description;
	char *type; /* normally cpu/gpu/both, but the server stores any string */
	char *url;
	char *url_for_gpu;
	char *group_name;            /* NULL for admin (system) images */
	char *use_image_pull_secret; /* NULL, "" or a secret id */
	bool global;
	bool is_ready;
	struct ph_group *groups; /* connected groups, everyone excluded */
	size_t ngroups;
	/* Whether groups says anything: the tree query leaves membership out
	 * (PrimeHub resolves it per group from Keycloak, at a cost that grows
	 * with images x groups), so listed images have groups_known false until
	 * their membership is fetched (snapshot.h, store_get_groups). */
	bool groups_known;
	char *log_endpoint;
	struct ph_build_spec *image_spec; /* NULL for plain images */
	bool has_job_status;
	char *job_phase; /* NULL when unknown */
	char *job_image;
};

/* Which keys of an ImageCreateInput / ImageUpdateInput to send. */
enum ph_input_field {
	PH_IN_NAME = 1u << 0,
	PH_IN_DISPLAY_NAME = 1u << 1,
	PH_IN_DESCRIPTION = 1u << 2,
	PH_IN_TYPE = 1u << 3,
	PH_IN_URL = 1u << 4,
	PH_IN_URL_FOR_GPU = 1u << 5,
	PH_IN_GLOBAL = 1u << 6,
	PH_IN_USE_IMAGE_PULL_SECRET = 1u << 7,
	PH_IN_GROUP_NAME = 1u << 8,
	PH_IN_IMAGE_SPEC = 1u << 9, /* createImage only: ImageUpdateInput has no imageSpec */
};

/*
 * The data of a createImage or updateImage call.  A key is sent when its bit
 * is in `set`; a sent string key whose pointer is NULL is sent as JSON null
 * (which, on update, deletes the stored value).  connect/disconnect hold
 * group ids; empty lists are not sent.
 */
struct ph_image_input {
	unsigned set;
	char *name;
	char *display_name;
	char *description;
	char *type;
	char *url;
	char *url_for_gpu;
	char *use_image_pull_secret;
	char *group_name;
	bool global;
	struct ph_build_spec *image_spec;
	struct ph_strlist connect;
	struct ph_strlist disconnect;
};

void ph_strlist_free(struct ph_strlist *l); /* frees items, zeroes l */
int ph_strlist_dup(struct ph_strlist *dst, const struct ph_strlist *src); /* 0 or -ENOMEM */
int ph_strlist_append(struct ph_strlist *l, const char *s);               /* copies s */
bool ph_strlist_equal(const struct ph_strlist *a, const struct ph_strlist *b);

void ph_build_spec_free(struct ph_build_spec *s); /* NULL-safe, frees s itself */
struct ph_build_spec *
ph_build_spec_dup(const struct ph_build_spec *s); /* NULL on ENOMEM or s NULL */

void ph_group_clear(struct ph_group *g); /* frees members, not g */
void ph_secret_clear(struct ph_secret *s);

void ph_image_free(struct ph_image *img); /* NULL-safe, frees img itself */

void ph_image_input_clear(struct ph_image_input *in); /* frees members, zeroes in */

/* Replace img's groups by copies of g[0..n) and mark them known; 0 or
 * -ENOMEM (img unchanged then). */
int ph_image_set_groups(struct ph_image *img, const struct ph_group *g, size_t n);

/* Whether img's build is under way (Pending, Preparing, Running), or, with
 * or_unknown, may still be (the pod's phase Unknown too). */
bool ph_image_building(const struct ph_image *img, bool or_unknown);

/* FNV-1a, 64 bits, never 0 (0 means "none"); seed 0 starts afresh, else
 * continues from an earlier value.  Names a version of a text. */
uint64_t ph_hash_bytes(const void *data, size_t len, uint64_t seed);

/* Whether group id is among img's connected groups. */
bool ph_image_has_group(const struct ph_image *img, const char *group_id);
/* One of n groups by exact name, or else by id; NULL if none (the lookup of
 * IMAGE/groups/NAME: ls shows names, ids work too). */
const struct ph_group *ph_groups_find(const struct ph_group *groups, size_t n,
                                      const char *name_or_id);
/* One of img's connected groups, by ph_groups_find. */
const struct ph_group *ph_image_find_group(const struct ph_image *img, const char *name_or_id);

/* Every field equal (NULL only equals NULL). */
bool ph_image_equal(const struct ph_image *a, const struct ph_image *b);
/* The same, leaving out groups and groups_known (what the tree query says). */
bool ph_image_equal_except_groups(const struct ph_image *a, const struct ph_image *b);

/* A deep copy; NULL on ENOMEM. */
struct ph_image *ph_image_dup(const struct ph_image *src);

/* strdup that keeps NULL as NULL; returns false only on ENOMEM. */
bool ph_strdup_opt(char **dst, const char *src);

#endif
