/*
 * access.h — who may do what to a bucket and its objects, as S3 decides it
 * (access.c): bucket policies in the IAM JSON grammar, access control
 * lists, the bucket's public access block and its owner, judged together
 * by one function (access_decide).  Pure: no I/O, no gateway; the
 * pipeline's authorize stage (pipeline.c) gathers what it judges and the
 * handlers of the configurations (acl.c) parse and store them.
 *
 * Principals: a cairn user is its own account.  Its canonical id and its
 * account id are its user id (as ListBuckets' Owner ID shows); a policy
 * names it as "*", {"AWS": "*"}, {"AWS": "<id>"},
 * {"AWS": "arn:aws:iam::<id>:root"}, {"AWS": "arn:aws:iam::<any>:user/<name>"}
 * or {"CanonicalUser": "<id>"}.
 */
#ifndef CAIRN_S3_ACCESS_H
#define CAIRN_S3_ACCESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"

/* ---- the request judged ----------------------------------------------------------------- */

typedef struct access_ctx access_ctx;
struct access_ctx {
    bool anonymous;
    bool is_root;                /* the operator's root credentials */
    int64_t user_id;             /* when !anonymous */
    const char *action;          /* "s3:GetObject" */
    const char *bucket;
    int64_t bucket_owner;
    const char *key;             /* NULL: a bucket-level request */
    size_t key_len;
    const char *source_ip;       /* "1.2.3.4" or "::1" */
    bool secure;                 /* TLS */
    int64_t now_s;
    /* The value of a condition key that depends on the request or on
     * stored state (aws:username, s3:prefix, s3:x-amz-acl, s3:VersionId,
     * s3:ExistingObjectTag/<k>, ...), or NULL when the request has none.
     * Asked only when a policy names the key.  The string lives at least
     * until the next call.  NULL lookup: no such keys. */
    const char *(*lookup)(void *ud, const char *key);
    void *ud;
};

/* ---- bucket policies -------------------------------------------------------------------- */

#define ACCESS_POLICY_MAX 20480  /* bytes: S3's limit for a bucket policy */

typedef struct access_policy access_policy;

typedef enum { ACCESS_NONE = 0, ACCESS_ALLOW, ACCESS_DENY } access_effect;

/* Parses and validates the policy text of bucket (its resources must be
 * the bucket's).  Returns 0 with *out, CAIRN_EINVAL with why (S3's
 * MalformedPolicy message, static), or CAIRN_ENOMEM. */
int access_policy_parse(const char *text, size_t len, const char *bucket, access_policy **out, const char **why);
void access_policy_free(access_policy *p);
/* The policy's verdict on c: an explicit deny, an allow, or neither. */
access_effect access_policy_eval(const access_policy *p, const access_ctx *c);
/* Whether the policy grants access to anyone (S3's "public": an Allow to a
 * wildcard principal not pinned by a condition on a fixed value of the
 * caller's address, account or identity). */
bool access_policy_is_public(const access_policy *p);

/* IAM's wildcard match: '*' any run, '?' any one character. */
bool access_wildcard(const char *pat, const char *s, size_t n, bool nocase);

/* ---- access control lists --------------------------------------------------------------- */

typedef enum {
    ACL_READ = 1,
    ACL_WRITE = 2,
    ACL_READ_ACP = 4,
    ACL_WRITE_ACP = 8,
    ACL_FULL_CONTROL = 15,
} access_perm;

typedef enum { GRANTEE_USER = 1, GRANTEE_ALL_USERS, GRANTEE_AUTH_USERS, GRANTEE_LOG_DELIVERY } access_grantee;

#define ACCESS_MAX_GRANTS 100    /* S3's limit */

typedef struct {
    uint8_t grantee;             /* access_grantee */
    uint8_t perm;                /* access_perm (FULL_CONTROL: all four) */
    int64_t id;                  /* GRANTEE_USER */
} access_grant;

typedef struct {
    int64_t owner;
    int n;
    access_grant g[ACCESS_MAX_GRANTS];
} access_acl;

/* The canned ACL name for a bucket (object false) or an object owned by
 * owner in a bucket owned by bucket_owner.  0, or CAIRN_EINVAL for a name
 * S3 does not have. */
int access_acl_canned(const char *name, bool object, int64_t owner, int64_t bucket_owner, access_acl *out);
/* Adds the grantees of one x-amz-grant-* header value (perm: what the
 * header grants): id="...", uri="...", emailAddress="...".  0; CAIRN_EINVAL
 * with why naming the code (InvalidArgument, or
 * UnresolvableGrantByEmailAddress for an address: cairn users have none). */
int access_acl_add_header(access_acl *a, uint8_t perm, const char *value, const char **code, const char **why);
/* Parses an AccessControlPolicy document.  0; CAIRN_EINVAL with code and why
 * (MalformedACLError, InvalidArgument, UnresolvableGrantByEmailAddress). */
int access_acl_parse_xml(const char *doc, size_t len, access_acl *out, const char **code, const char **why);
/* The stored form: one line per grant, "<perm> <u:id|all|auth|log>",
 * after a first line "owner <id>".  Round-trips exactly. */
void access_acl_to_text(const access_acl *a, buf_t *out);
int access_acl_from_text(const char *text, access_acl *out);
/* The AccessControlPolicy document of a (owner_xml: the Owner element). */
void access_acl_to_xml(const access_acl *a, buf_t *out);
/* Whether a grants anything to AllUsers or AuthenticatedUsers. */
bool access_acl_is_public(const access_acl *a);
/* The permissions a gives c's caller (ignore_public: IgnorePublicAcls). */
uint8_t access_acl_perms(const access_acl *a, const access_ctx *c, bool ignore_public);
/* The permission of a bucket's ACL an action needs (0: none grants it). */
uint8_t access_bucket_acl_need(const char *action);
/* The permission of an object's ACL an action needs (0: none grants it). */
uint8_t access_object_acl_need(const char *action);

/* ---- the public access block ------------------------------------------------------------ */

enum {
    PAB_BLOCK_PUBLIC_ACLS = 1,
    PAB_IGNORE_PUBLIC_ACLS = 2,
    PAB_BLOCK_PUBLIC_POLICY = 4,
    PAB_RESTRICT_PUBLIC_BUCKETS = 8,
};

/* ---- the decision ----------------------------------------------------------------------- */

typedef struct {
    const access_policy *policy;     /* NULL: none */
    const access_acl *bucket_acl;    /* NULL: none (or ACLs disabled) */
    bool acls_enabled;               /* ObjectOwnership is not BucketOwnerEnforced */
    int pab;                         /* PAB_* */
    bool legacy_public_read;         /* `cairn admin bucket set-public` before policies */
} access_bucket;

typedef enum {
    ACCESS_DENIED = 0,
    ACCESS_GRANTED,
    /* Nothing at the bucket grants it, but the object's own ACL may: the
     * handler judges once it has the object (access_object_allows). */
    ACCESS_OBJECT_ACL,
} access_verdict;

/* S3's order: root is the operator; an explicit deny in the policy wins
 * (except over the bucket owner managing the policy itself); then an
 * allow from the policy, the owner, or the bucket's ACL. */
access_verdict access_decide(const access_ctx *c, const access_bucket *b);
/* The deferred part: whether the object's ACL (owner and grants) lets c do
 * its action. */
bool access_object_allows(const access_ctx *c, const access_bucket *b, const access_acl *object_acl);

#endif
