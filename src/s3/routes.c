/*
 * routes.c — the route table: which handler serves a request, as data.
 *
 * A request is matched on its method, the kind of resource it names (the
 * service, a bucket, an object; or an operator endpoint by its exact path)
 * and its query subresources.  The rules below are tried in order and the
 * first that matches names the route, so a more specific rule (GET ?acl)
 * stands above a general one (GET on a bucket).  Every combination ends in
 * some route: those S3 has but we do not serve go to an unsupported route,
 * which keeps its operation name for the access log and the metrics and is
 * refused once the caller is authenticated (MethodNotAllowed or
 * NotImplemented, s3_route_refusal).
 *
 * A route also says what the pipeline (pipeline.c) does around its handler:
 * which credentials it needs, whether the request's bucket must exist (and
 * is loaded for the handler), whether it names an object (its resource
 * kind), and what becomes of the body.  Adding an operation is one row in routes[] and
 * one in rules[].
 */
#include "s3/internal.h"

#include <assert.h>
#include <string.h>

/* ---- the routes ---------------------------------------------------------------------------- */

/* Shorthands for the table's columns. */
#define SIGNED S3_AUTH_SIGNED
#define PUBLIC S3_AUTH_PUBLIC
#define ANYONE S3_AUTH_NONE
#define SERVICE S3_RES_SERVICE
#define BUCKET S3_RES_BUCKET
#define OBJECT S3_RES_OBJECT
#define OPERATOR S3_RES_OPERATOR
#define LOAD true
#define NONE false

static const s3_route routes[] = {
    /*  op                          api                        resource  auth    bucket body         begin                  handler  action (IAM, for audit events) */
    [OP_HEALTH_LIVE] =             {"Health",                  OPERATOR, ANYONE, NONE, BODY_IGNORE, NULL,                  s3_serve_live, "s3:Unknown"},
    [OP_HEALTH_READY] =            {"Health",                  OPERATOR, ANYONE, NONE, BODY_IGNORE, NULL,                  s3_serve_ready, "s3:Unknown"},
    [OP_METRICS] =                 {"Metrics",                 OPERATOR, ANYONE, NONE, BODY_IGNORE, NULL,                  s3_serve_metrics, "s3:Unknown"},
    [OP_EVENTS_WS] =               {"EventsSubscribe",         OPERATOR, SIGNED, NONE, BODY_IGNORE, NULL,                  s3_events_ws, "cairn:SubscribeEvents"},
    [OP_LIST_BUCKETS] =            {"ListBuckets",             SERVICE,  SIGNED, NONE, BODY_IGNORE, NULL,                  s3_list_buckets, "s3:ListAllMyBuckets"},
    [OP_CREATE_BUCKET] =           {"CreateBucket",            BUCKET,   SIGNED, NONE, BODY_BUFFER, NULL,                  s3_create_bucket, "s3:CreateBucket"},
    [OP_HEAD_BUCKET] =             {"HeadBucket",              BUCKET,   PUBLIC, LOAD, BODY_IGNORE, NULL,                  s3_head_bucket, "s3:ListBucket"},
    [OP_DELETE_BUCKET] =           {"DeleteBucket",            BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_bucket, "s3:DeleteBucket"},
    [OP_GET_BUCKET_LOCATION] =     {"GetBucketLocation",       BUCKET,   PUBLIC, LOAD, BODY_IGNORE, NULL,                  s3_get_bucket_location, "s3:GetBucketLocation"},
    [OP_LIST_OBJECTS] =            {"ListObjects",             BUCKET,   PUBLIC, LOAD, BODY_IGNORE, NULL,                  s3_list_objects_v1, "s3:ListBucket"},
    [OP_LIST_OBJECTS_V2] =         {"ListObjectsV2",           BUCKET,   PUBLIC, LOAD, BODY_IGNORE, NULL,                  s3_list_objects_v2, "s3:ListBucket"},
    [OP_DELETE_OBJECTS] =          {"DeleteObjects",           BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_delete_objects, "s3:DeleteObject"},
    [OP_GET_BUCKET_VERSIONING] =   {"GetBucketVersioning",     BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_bucket_subresource, "s3:GetBucketVersioning"},
    [OP_GET_BUCKET_ACL] =          {"GetBucketAcl",            BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_bucket_acl, "s3:GetBucketAcl"},
    [OP_PUT_BUCKET_ACL] =          {"PutBucketAcl",            BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_bucket_acl, "s3:PutBucketAcl"},
    [OP_PUT_BUCKET_POLICY] =       {"PutBucketPolicy",         BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_bucket_policy, "s3:PutBucketPolicy"},
    [OP_GET_BUCKET_POLICY] =       {"GetBucketPolicy",         BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_bucket_policy, "s3:GetBucketPolicy"},
    [OP_DELETE_BUCKET_POLICY] =    {"DeleteBucketPolicy",      BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_bucket_policy, "s3:DeleteBucketPolicy"},
    [OP_GET_BUCKET_POLICY_STATUS] = {"GetBucketPolicyStatus",  BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_bucket_policy_status, "s3:GetBucketPolicyStatus"},
    [OP_PUT_PUBLIC_ACCESS_BLOCK] = {"PutPublicAccessBlock",    BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_public_access_block, "s3:PutBucketPublicAccessBlock"},
    [OP_GET_PUBLIC_ACCESS_BLOCK] = {"GetPublicAccessBlock",    BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_public_access_block, "s3:GetBucketPublicAccessBlock"},
    /* IAM has no action of its own for the delete: it is the put's. */
    [OP_DELETE_PUBLIC_ACCESS_BLOCK] = {"DeletePublicAccessBlock", BUCKET, SIGNED, LOAD, BODY_IGNORE, NULL,              s3_delete_public_access_block, "s3:PutBucketPublicAccessBlock"},
    [OP_BUCKET_SUBRESOURCE_EMPTY] ={"GetBucketSubresource",    BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_bucket_subresource, "s3:GetBucketConfiguration"},
    [OP_PUT_BUCKET_NOTIFICATION] = {"PutBucketNotificationConfiguration", BUCKET, SIGNED, LOAD, BODY_BUFFER, NULL,   s3_put_bucket_notification, "s3:PutBucketNotification"},
    [OP_GET_BUCKET_NOTIFICATION] = {"GetBucketNotificationConfiguration", BUCKET, SIGNED, LOAD, BODY_IGNORE, NULL,   s3_get_bucket_notification, "s3:GetBucketNotification"},
    [OP_PUT_BUCKET_VERSIONING] =   {"PutBucketVersioning",     BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_bucket_versioning, "s3:PutBucketVersioning"},
    [OP_LIST_OBJECT_VERSIONS] =    {"ListObjectVersions",      BUCKET,   PUBLIC, LOAD, BODY_IGNORE, NULL,                  s3_list_object_versions, "s3:ListBucketVersions"},
    [OP_PUT_BUCKET_CORS] =         {"PutBucketCors",           BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_bucket_cors, "s3:PutBucketCORS"},
    [OP_GET_BUCKET_CORS] =         {"GetBucketCors",           BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_bucket_cors, "s3:GetBucketCORS"},
    [OP_DELETE_BUCKET_CORS] =      {"DeleteBucketCors",        BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_bucket_cors, "s3:PutBucketCORS"},
    [OP_PUT_BUCKET_ENCRYPTION] =   {"PutBucketEncryption",     BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_bucket_encryption, "s3:PutEncryptionConfiguration"},
    [OP_GET_BUCKET_ENCRYPTION] =   {"GetBucketEncryption",     BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_bucket_encryption, "s3:GetEncryptionConfiguration"},
    /* IAM has no action of its own for the delete: it is the put's. */
    [OP_DELETE_BUCKET_ENCRYPTION] = {"DeleteBucketEncryption", BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_bucket_encryption, "s3:PutEncryptionConfiguration"},
    /* A browser's preflight carries no credentials: anyone, and the bucket
     * is the handler's to look up (a missing one is a CORS refusal, 403). */
    [OP_CORS_PREFLIGHT] =          {"PreflightRequest",        BUCKET,   ANYONE, NONE, BODY_IGNORE, NULL,                  s3_cors_preflight, "s3:Unknown"},
    [OP_CORS_PREFLIGHT_OBJECT] =   {"PreflightRequest",        OBJECT,   ANYONE, NONE, BODY_IGNORE, NULL,                  s3_cors_preflight, "s3:Unknown"},
    [OP_PUT_BUCKET_OWNERSHIP] =    {"PutBucketOwnershipControls", BUCKET,  SIGNED, LOAD, BODY_BUFFER, NULL,              s3_put_bucket_ownership, "s3:PutBucketOwnershipControls"},
    [OP_GET_BUCKET_OWNERSHIP] =    {"GetBucketOwnershipControls", BUCKET,  SIGNED, LOAD, BODY_IGNORE, NULL,              s3_get_bucket_ownership, "s3:GetBucketOwnershipControls"},
    /* IAM has no action of its own for the delete: it is the put's. */
    [OP_DELETE_BUCKET_OWNERSHIP] = {"DeleteBucketOwnershipControls", BUCKET, SIGNED, LOAD, BODY_IGNORE, NULL,            s3_delete_bucket_ownership, "s3:PutBucketOwnershipControls"},
    [OP_PUT_OBJECT_LOCK_CONFIG] =  {"PutObjectLockConfiguration", BUCKET, SIGNED, LOAD, BODY_BUFFER, NULL,              s3_put_object_lock_config, "s3:PutBucketObjectLockConfiguration"},
    [OP_GET_OBJECT_LOCK_CONFIG] =  {"GetObjectLockConfiguration", BUCKET, SIGNED, LOAD, BODY_IGNORE, NULL,              s3_get_object_lock_config, "s3:GetBucketObjectLockConfiguration"},
    [OP_PUT_OBJECT_RETENTION] =    {"PutObjectRetention",      OBJECT,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_object_retention, "s3:PutObjectRetention"},
    [OP_GET_OBJECT_RETENTION] =    {"GetObjectRetention",      OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_object_retention, "s3:GetObjectRetention"},
    [OP_PUT_OBJECT_LEGAL_HOLD] =   {"PutObjectLegalHold",      OBJECT,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_object_legal_hold, "s3:PutObjectLegalHold"},
    [OP_GET_OBJECT_LEGAL_HOLD] =   {"GetObjectLegalHold",      OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_object_legal_hold, "s3:GetObjectLegalHold"},
    [OP_PUT_BUCKET_TAGGING] =      {"PutBucketTagging",        BUCKET,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_bucket_tagging, "s3:PutBucketTagging"},
    [OP_GET_BUCKET_TAGGING] =      {"GetBucketTagging",        BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_bucket_tagging, "s3:GetBucketTagging"},
    /* IAM has no action of its own for the delete: it is the put's. */
    [OP_DELETE_BUCKET_TAGGING] =   {"DeleteBucketTagging",     BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_bucket_tagging, "s3:PutBucketTagging"},
    [OP_PUT_BUCKET_LIFECYCLE] =    {"PutBucketLifecycleConfiguration", BUCKET, SIGNED, LOAD, BODY_BUFFER, NULL,     s3_put_bucket_lifecycle, "s3:PutLifecycleConfiguration"},
    [OP_GET_BUCKET_LIFECYCLE] =    {"GetBucketLifecycleConfiguration", BUCKET, SIGNED, LOAD, BODY_IGNORE, NULL,     s3_get_bucket_lifecycle, "s3:GetLifecycleConfiguration"},
    /* IAM has no action of its own for the delete: it is the put's. */
    [OP_DELETE_BUCKET_LIFECYCLE] = {"DeleteBucketLifecycle",   BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_bucket_lifecycle, "s3:PutLifecycleConfiguration"},
    [OP_LIST_MULTIPART_UPLOADS] =  {"ListMultipartUploads",    BUCKET,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_list_uploads, "s3:ListBucketMultipartUploads"},
    /* Unsigned as far as the pipeline knows, and no bucket loaded for it:
     * the form's fields carry the credentials, so begin loads the bucket
     * and the form's handler authenticates and authorizes (post.c). */
    [OP_POST_OBJECT] =             {"PostObject",              BUCKET,   ANYONE, NONE, BODY_FORM,   s3_post_begin,         s3_post_object, "s3:PutObject"},
    [OP_PUT_OBJECT] =              {"PutObject",               OBJECT,   SIGNED, LOAD, BODY_OBJECT, s3_object_begin,       s3_put_object, "s3:PutObject"},
    [OP_COPY_OBJECT] =             {"CopyObject",              OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_copy_object, "s3:PutObject"},
    [OP_GET_OBJECT] =              {"GetObject",               OBJECT,   PUBLIC, LOAD, BODY_IGNORE, NULL,                  s3_get_object, "s3:GetObject"},
    [OP_HEAD_OBJECT] =             {"HeadObject",              OBJECT,   PUBLIC, LOAD, BODY_IGNORE, NULL,                  s3_head_object, "s3:GetObject"},
    [OP_DELETE_OBJECT] =           {"DeleteObject",            OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_object, "s3:DeleteObject"},
    [OP_GET_OBJECT_ACL] =          {"GetObjectAcl",            OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_object_acl, "s3:GetObjectAcl"},
    [OP_PUT_OBJECT_ACL] =          {"PutObjectAcl",            OBJECT,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_object_acl, "s3:PutObjectAcl"},
    [OP_GET_OBJECT_TAGGING] =      {"GetObjectTagging",        OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_object_tagging, "s3:GetObjectTagging"},
    [OP_PUT_OBJECT_TAGGING] =      {"PutObjectTagging",        OBJECT,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_put_object_tagging, "s3:PutObjectTagging"},
    [OP_DELETE_OBJECT_TAGGING] =   {"DeleteObjectTagging",     OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_delete_object_tagging, "s3:DeleteObjectTagging"},
    /* Signed: a public-read bucket grants GetObject, and S3 asks
     * s3:GetObjectAttributes besides for this. */
    [OP_GET_OBJECT_ATTRIBUTES] =   {"GetObjectAttributes",     OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_get_object_attributes, "s3:GetObjectAttributes"},
    [OP_CREATE_MULTIPART] =        {"CreateMultipartUpload",   OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_create_multipart, "s3:PutObject"},
    [OP_UPLOAD_PART] =             {"UploadPart",              OBJECT,   SIGNED, LOAD, BODY_OBJECT, s3_upload_part_begin,  s3_upload_part, "s3:PutObject"},
    [OP_UPLOAD_PART_COPY] =        {"UploadPartCopy",          OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_upload_part_copy, "s3:PutObject"},
    [OP_COMPLETE_MULTIPART] =      {"CompleteMultipartUpload", OBJECT,   SIGNED, LOAD, BODY_BUFFER, NULL,                  s3_complete_multipart, "s3:PutObject"},
    [OP_ABORT_MULTIPART] =         {"AbortMultipartUpload",    OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_abort_multipart, "s3:AbortMultipartUpload"},
    [OP_LIST_PARTS] =              {"ListParts",               OBJECT,   SIGNED, LOAD, BODY_IGNORE, NULL,                  s3_list_parts, "s3:ListMultipartUploadParts"},
    /* Unsupported: no handler.  Anyone reaches the refusal, signed or not,
     * so an anonymous caller learns the operation is not served rather
     * than AccessDenied. */
    [OP_UNSUPPORTED_SERVICE] =     {"ListBuckets",             SERVICE,  PUBLIC, NONE, BODY_IGNORE, NULL,                  NULL, "s3:Unknown"},
    [OP_UNSUPPORTED_BUCKET] =      {"Bucket",                  BUCKET,   PUBLIC, NONE, BODY_IGNORE, NULL,                  NULL, "s3:Unknown"},
    [OP_UNSUPPORTED_BUCKET_CONFIG] = {"PutBucketSubresource",  BUCKET,   PUBLIC, NONE, BODY_IGNORE, NULL,                  NULL, "s3:Unknown"},
    [OP_UNSUPPORTED_BUCKET_SUB] =  {"BucketSubresource",       BUCKET,   PUBLIC, NONE, BODY_IGNORE, NULL,                  NULL, "s3:Unknown"},
    [OP_UNSUPPORTED_MULTIPART] =   {"Multipart",               OBJECT,   PUBLIC, NONE, BODY_IGNORE, NULL,                  NULL, "s3:Unknown"},
    [OP_UNSUPPORTED_OBJECT_SUB] =  {"ObjectSubresource",       OBJECT,   PUBLIC, NONE, BODY_IGNORE, NULL,                  NULL, "s3:Unknown"},
    [OP_UNSUPPORTED_OBJECT] =      {"Object",                  OBJECT,   PUBLIC, NONE, BODY_IGNORE, NULL,                  NULL, "s3:Unknown"},
};

const s3_route *s3_route_get(s3_op op) {
    assert(op > OP_NONE && op < OP__COUNT && routes[op].api);
    return &routes[op];
}

s3_op s3_route_op(const s3_route *r) {
    assert(r >= routes && r < routes + OP__COUNT);
    return (s3_op)(r - routes);
}

/* ---- the rules ------------------------------------------------------------------------------ */

enum { M_GET = 1, M_HEAD = 2, M_PUT = 4, M_POST = 8, M_DELETE = 16, M_OPTIONS = 32, M_OTHER = 64, M_ANY = 127 };

/* Copy source: whether the rule cares about an x-amz-copy-source header. */
enum { COPY_ANY = 0, COPY_YES, COPY_NO };

/* Configuration subresources of a bucket we store nothing for: a GET
 * answers as S3 does for a bucket without that configuration. */
static const char *const bucket_config[] = {
    "policy", "lifecycle", "cors", "tagging", "encryption", "object-lock", "website",
    "replication", "notification", "logging", "accelerate", "requestPayment", "ownershipControls",
    "publicAccessBlock", "policyStatus", "intelligent-tiering", "inventory", "metrics", "analytics", NULL,
};

/* Other subresources S3 has, of buckets and objects, that we do not serve. */
static const char *const other_subresources[] = {
    "acl", "tagging", "versions", "retention", "legal-hold", "torrent", "restore", "select", "attributes", NULL,
};

typedef struct {
    int methods;                 /* M_* mask */
    s3_resource resource;
    const char *path;            /* operator endpoints: the raw path, exactly */
    const char *param;           /* a query parameter that must be present */
    const char *value;           /* ... with this value, when set */
    const char *param2;          /* a second parameter that must be present */
    const char *const *any_of;   /* at least one of these parameters present */
    int copy;                    /* COPY_* */
    bool upgrade;                /* operator endpoints: only with Upgrade: websocket */
    s3_op op;
} s3_rule;

static const s3_rule rules[] = {
    /* operator endpoints: answered whatever credentials come along; the
     * bucket names "health" and "metrics" are reserved, so these paths are
     * never S3 */
    {M_GET, OPERATOR, .path = "/health/live", .op = OP_HEALTH_LIVE},
    {M_GET, OPERATOR, .path = "/health/ready", .op = OP_HEALTH_READY},
    {M_GET, OPERATOR, .path = "/metrics", .op = OP_METRICS},
    /* the event stream: only as a WebSocket upgrade, so a plain GET of
     * /events/ws is still the object "ws" of a bucket named "events" */
    {M_GET, OPERATOR, .path = "/events/ws", .upgrade = true, .op = OP_EVENTS_WS},

    /* the service: GET / */
    {M_GET, SERVICE, .op = OP_LIST_BUCKETS},
    {M_ANY, SERVICE, .op = OP_UNSUPPORTED_SERVICE},

    /* a bucket: a CORS preflight whatever the query, the subresources, then the plain verbs */
    {M_OPTIONS, BUCKET, .op = OP_CORS_PREFLIGHT},
    {M_PUT, BUCKET, .param = "cors", .op = OP_PUT_BUCKET_CORS},
    {M_GET, BUCKET, .param = "cors", .op = OP_GET_BUCKET_CORS},
    {M_DELETE, BUCKET, .param = "cors", .op = OP_DELETE_BUCKET_CORS},
    {M_PUT, BUCKET, .param = "encryption", .op = OP_PUT_BUCKET_ENCRYPTION},
    {M_GET, BUCKET, .param = "encryption", .op = OP_GET_BUCKET_ENCRYPTION},
    {M_DELETE, BUCKET, .param = "encryption", .op = OP_DELETE_BUCKET_ENCRYPTION},
    {M_GET, BUCKET, .param = "location", .op = OP_GET_BUCKET_LOCATION},
    {M_GET, BUCKET, .param = "versioning", .op = OP_GET_BUCKET_VERSIONING},
    {M_PUT, BUCKET, .param = "versioning", .op = OP_PUT_BUCKET_VERSIONING},
    {M_GET, BUCKET, .param = "versions", .op = OP_LIST_OBJECT_VERSIONS},
    {M_GET, BUCKET, .param = "acl", .op = OP_GET_BUCKET_ACL},
    {M_PUT, BUCKET, .param = "acl", .op = OP_PUT_BUCKET_ACL},
    {M_PUT, BUCKET, .param = "policy", .op = OP_PUT_BUCKET_POLICY},
    {M_GET, BUCKET, .param = "policy", .op = OP_GET_BUCKET_POLICY},
    {M_DELETE, BUCKET, .param = "policy", .op = OP_DELETE_BUCKET_POLICY},
    {M_GET, BUCKET, .param = "policyStatus", .op = OP_GET_BUCKET_POLICY_STATUS},
    {M_PUT, BUCKET, .param = "publicAccessBlock", .op = OP_PUT_PUBLIC_ACCESS_BLOCK},
    {M_GET, BUCKET, .param = "publicAccessBlock", .op = OP_GET_PUBLIC_ACCESS_BLOCK},
    {M_DELETE, BUCKET, .param = "publicAccessBlock", .op = OP_DELETE_PUBLIC_ACCESS_BLOCK},
    {M_GET, BUCKET, .param = "uploads", .op = OP_LIST_MULTIPART_UPLOADS},
    {M_PUT, BUCKET, .param = "notification", .op = OP_PUT_BUCKET_NOTIFICATION},
    {M_GET, BUCKET, .param = "notification", .op = OP_GET_BUCKET_NOTIFICATION},
    {M_PUT, BUCKET, .param = "ownershipControls", .op = OP_PUT_BUCKET_OWNERSHIP},
    {M_GET, BUCKET, .param = "ownershipControls", .op = OP_GET_BUCKET_OWNERSHIP},
    {M_DELETE, BUCKET, .param = "ownershipControls", .op = OP_DELETE_BUCKET_OWNERSHIP},
    {M_PUT, BUCKET, .param = "object-lock", .op = OP_PUT_OBJECT_LOCK_CONFIG},
    {M_GET, BUCKET, .param = "object-lock", .op = OP_GET_OBJECT_LOCK_CONFIG},
    {M_PUT, BUCKET, .param = "tagging", .op = OP_PUT_BUCKET_TAGGING},
    {M_GET, BUCKET, .param = "tagging", .op = OP_GET_BUCKET_TAGGING},
    {M_DELETE, BUCKET, .param = "tagging", .op = OP_DELETE_BUCKET_TAGGING},
    {M_PUT, BUCKET, .param = "lifecycle", .op = OP_PUT_BUCKET_LIFECYCLE},
    {M_GET, BUCKET, .param = "lifecycle", .op = OP_GET_BUCKET_LIFECYCLE},
    {M_DELETE, BUCKET, .param = "lifecycle", .op = OP_DELETE_BUCKET_LIFECYCLE},
    {M_GET, BUCKET, .any_of = bucket_config, .op = OP_BUCKET_SUBRESOURCE_EMPTY},
    {M_ANY, BUCKET, .any_of = bucket_config, .op = OP_UNSUPPORTED_BUCKET_CONFIG},
    {M_POST, BUCKET, .param = "delete", .op = OP_DELETE_OBJECTS},
    {M_ANY, BUCKET, .any_of = other_subresources, .op = OP_UNSUPPORTED_BUCKET_SUB},
    {M_POST, BUCKET, .op = OP_POST_OBJECT},
    {M_PUT, BUCKET, .op = OP_CREATE_BUCKET},
    {M_HEAD, BUCKET, .op = OP_HEAD_BUCKET},
    {M_DELETE, BUCKET, .op = OP_DELETE_BUCKET},
    {M_GET, BUCKET, .param = "list-type", .value = "2", .op = OP_LIST_OBJECTS_V2},
    {M_GET, BUCKET, .op = OP_LIST_OBJECTS},
    {M_ANY, BUCKET, .op = OP_UNSUPPORTED_BUCKET},

    /* an object: a CORS preflight, subresources, then multipart (?uploadId), then plain verbs */
    {M_OPTIONS, OBJECT, .op = OP_CORS_PREFLIGHT_OBJECT},
    {M_GET, OBJECT, .param = "acl", .op = OP_GET_OBJECT_ACL},
    {M_PUT, OBJECT, .param = "acl", .op = OP_PUT_OBJECT_ACL},
    {M_GET, OBJECT, .param = "tagging", .op = OP_GET_OBJECT_TAGGING},
    {M_PUT, OBJECT, .param = "tagging", .op = OP_PUT_OBJECT_TAGGING},
    {M_DELETE, OBJECT, .param = "tagging", .op = OP_DELETE_OBJECT_TAGGING},
    {M_GET, OBJECT, .param = "attributes", .op = OP_GET_OBJECT_ATTRIBUTES},
    {M_PUT, OBJECT, .param = "retention", .op = OP_PUT_OBJECT_RETENTION},
    {M_GET, OBJECT, .param = "retention", .op = OP_GET_OBJECT_RETENTION},
    {M_PUT, OBJECT, .param = "legal-hold", .op = OP_PUT_OBJECT_LEGAL_HOLD},
    {M_GET, OBJECT, .param = "legal-hold", .op = OP_GET_OBJECT_LEGAL_HOLD},
    {M_POST, OBJECT, .param = "uploads", .op = OP_CREATE_MULTIPART},
    {M_PUT, OBJECT, .param = "uploadId", .param2 = "partNumber", .copy = COPY_YES, .op = OP_UPLOAD_PART_COPY},
    {M_PUT, OBJECT, .param = "uploadId", .param2 = "partNumber", .op = OP_UPLOAD_PART},
    {M_POST, OBJECT, .param = "uploadId", .op = OP_COMPLETE_MULTIPART},
    {M_DELETE, OBJECT, .param = "uploadId", .op = OP_ABORT_MULTIPART},
    {M_GET, OBJECT, .param = "uploadId", .op = OP_LIST_PARTS},
    {M_ANY, OBJECT, .param = "uploadId", .op = OP_UNSUPPORTED_MULTIPART},
    {M_ANY, OBJECT, .param = "uploads", .op = OP_UNSUPPORTED_MULTIPART},
    /* GET and HEAD take ?partNumber to read one part; other verbs need an upload */
    {M_ANY & ~(M_GET | M_HEAD), OBJECT, .param = "partNumber", .op = OP_UNSUPPORTED_MULTIPART},
    {M_ANY, OBJECT, .any_of = other_subresources, .op = OP_UNSUPPORTED_OBJECT_SUB},
    {M_PUT, OBJECT, .copy = COPY_YES, .op = OP_COPY_OBJECT},
    {M_PUT, OBJECT, .op = OP_PUT_OBJECT},
    {M_GET, OBJECT, .op = OP_GET_OBJECT},
    {M_HEAD, OBJECT, .op = OP_HEAD_OBJECT},
    {M_DELETE, OBJECT, .op = OP_DELETE_OBJECT},
    {M_ANY, OBJECT, .op = OP_UNSUPPORTED_OBJECT},
};

static int method_bit(const char *m) {
    static const struct { const char *name; int bit; } known[] = {
        {"GET", M_GET}, {"HEAD", M_HEAD}, {"PUT", M_PUT}, {"POST", M_POST}, {"DELETE", M_DELETE}, {"OPTIONS", M_OPTIONS},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if (!strcmp(m, known[i].name)) return known[i].bit;
    return M_OTHER;
}

static const char *param_of(const s3_param *params, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(params[i].name, name)) return params[i].value;
    return NULL;
}

static bool rule_matches(const s3_rule *u, const s3_route_input *in, int method) {
    if (!(u->methods & method) || u->resource != in->resource) return false;
    if (u->param) {
        const char *v = param_of(in->params, in->nparams, u->param);
        if (!v || (u->value && strcmp(v, u->value) != 0)) return false;
    }
    if (u->param2 && !param_of(in->params, in->nparams, u->param2)) return false;
    if (u->any_of) {
        bool any = false;
        for (const char *const *p = u->any_of; *p && !any; p++) any = param_of(in->params, in->nparams, *p) != NULL;
        if (!any) return false;
    }
    if (u->copy != COPY_ANY && (u->copy == COPY_YES) != in->copy_source) return false;
    return true;
}

const s3_route *s3_route_operator(const char *method, const char *raw_path, bool upgrade) {
    int m = method_bit(method);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rules[i].resource == OPERATOR && (rules[i].methods & m) && !strcmp(rules[i].path, raw_path) &&
            rules[i].upgrade == upgrade)
            return s3_route_get(rules[i].op);
    return NULL;
}

const s3_route *s3_route_find(const s3_route_input *in) {
    assert(in->resource != OPERATOR);
    int m = method_bit(in->method);
    for (size_t i = 0; i < sizeof rules / sizeof rules[0]; i++)
        if (rule_matches(&rules[i], in, m)) return s3_route_get(rules[i].op);
    /* Every resource kind ends in a catch-all rule. */
    assert(!"no rule matched");
    return NULL;
}

/* The IAM action of a GET of a bucket configuration subresource we store
 * nothing for, by the subresource named. */
static const struct { const char *param, *action; } config_actions[] = {
    {"policy", "s3:GetBucketPolicy"}, {"lifecycle", "s3:GetLifecycleConfiguration"}, {"cors", "s3:GetBucketCORS"},
    {"tagging", "s3:GetBucketTagging"}, {"encryption", "s3:GetEncryptionConfiguration"},
    {"object-lock", "s3:GetBucketObjectLockConfiguration"}, {"website", "s3:GetBucketWebsite"},
    {"replication", "s3:GetReplicationConfiguration"}, {"notification", "s3:GetBucketNotification"},
    {"logging", "s3:GetBucketLogging"}, {"accelerate", "s3:GetAccelerateConfiguration"},
    {"requestPayment", "s3:GetBucketRequestPayment"},
    {"publicAccessBlock", "s3:GetBucketPublicAccessBlock"}, {"policyStatus", "s3:GetBucketPolicyStatus"},
    {"intelligent-tiering", "s3:GetIntelligentTieringConfiguration"}, {"inventory", "s3:GetInventoryConfiguration"},
    {"metrics", "s3:GetMetricsConfiguration"}, {"analytics", "s3:GetAnalyticsConfiguration"},
};

const char *s3_route_action(const s3_route *route, const s3_param *params, int nparams) {
    if (!route) return "s3:Unknown";
    if (s3_route_op(route) == OP_BUCKET_SUBRESOURCE_EMPTY)
        for (size_t i = 0; i < sizeof config_actions / sizeof config_actions[0]; i++)
            if (param_of(params, nparams, config_actions[i].param)) return config_actions[i].action;
    return route->action ? route->action : "s3:Unknown";
}

const char *s3_route_refusal(const s3_route *route, const char *method) {
    if (route->handler) return NULL;
    /* A verb S3 does not have, or one the service does not take, is not
     * allowed; a known verb on a subresource we lack is not implemented. */
    return method_bit(method) == M_OTHER || route->resource == SERVICE ? "MethodNotAllowed" : "NotImplemented";
}
