/*
 * test_routes.c — the S3 route table (src/s3/routes.c): every operation we
 * serve is reached by the requests S3 clients send for it, with the handler,
 * credentials and body plan it needs; every combination we do not serve
 * ends in a route without a handler, refused with the code S3 answers
 * (MethodNotAllowed for a verb a resource does not take, NotImplemented for
 * a subresource we lack), and keeps an operation name for the access log.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "s3/internal.h"

/* A request's routing input: method, resource kind, "a=1&b" style query
 * (names and values as decoded), whether x-amz-copy-source is present. */
static const s3_route *route(const char *method, s3_resource res, const char *query, bool copy) {
    static char text[256];
    static s3_query_param params[8];
    snprintf(text, sizeof text, "%s", query);
    int n = 0;
    for (char *p = text; *p && n < 8;) {
        char *amp = strchr(p, '&');
        if (amp) *amp = '\0';
        char *eq = strchr(p, '=');
        if (eq) *eq = '\0';
        params[n++] = (s3_query_param){p, eq ? eq + 1 : (char *)""};
        if (!amp) break;
        p = amp + 1;
    }
    s3_route_input in = {method, res, params, n, copy};
    const s3_route *r = s3_route_find(&in);
    cr_assert_not_null(r, "%s %d ?%s", method, res, query);
    return r;
}

#define B S3_RES_BUCKET
#define O S3_RES_OBJECT
#define S S3_RES_SERVICE

/* A request (method, resource kind, query, copy source) and where it goes. */
typedef struct {
    const char *method;
    s3_resource res;
    const char *query;
    bool copy;
    const char *api;
    s3_op op;                   /* served: the operation and its handler */
    void (*handler)(s3_req *q);
    const char *code;           /* refused: the S3 error code */
} route_case;

Test(routes, every_operation_resolves_to_its_handler) {
    static const route_case cases[] = {
        {"GET", S, "", false, "ListBuckets", OP_LIST_BUCKETS, s3_list_buckets},
        {"PUT", B, "", false, "CreateBucket", OP_CREATE_BUCKET, s3_create_bucket},
        {"HEAD", B, "", false, "HeadBucket", OP_HEAD_BUCKET, s3_head_bucket},
        {"DELETE", B, "", false, "DeleteBucket", OP_DELETE_BUCKET, s3_delete_bucket},
        {"GET", B, "location", false, "GetBucketLocation", OP_GET_BUCKET_LOCATION, s3_get_bucket_location},
        {"GET", B, "", false, "ListObjects", OP_LIST_OBJECTS, s3_list_objects_v1},
        {"GET", B, "list-type=1", false, "ListObjects", OP_LIST_OBJECTS, s3_list_objects_v1},
        {"GET", B, "list-type=2&prefix=a", false, "ListObjectsV2", OP_LIST_OBJECTS_V2, s3_list_objects_v2},
        {"POST", B, "delete", false, "DeleteObjects", OP_DELETE_OBJECTS, s3_delete_objects},
        {"POST", B, "", false, "PostObject", OP_POST_OBJECT, s3_post_object},
        {"GET", B, "versioning", false, "GetBucketVersioning", OP_GET_BUCKET_VERSIONING, s3_bucket_subresource},
        {"GET", B, "acl", false, "GetBucketAcl", OP_GET_BUCKET_ACL, s3_get_bucket_acl},
        {"PUT", B, "acl", false, "PutBucketAcl", OP_PUT_BUCKET_ACL, s3_put_bucket_acl},
        {"PUT", B, "policy", false, "PutBucketPolicy", OP_PUT_BUCKET_POLICY, s3_put_bucket_policy},
        {"DELETE", B, "policy", false, "DeleteBucketPolicy", OP_DELETE_BUCKET_POLICY, s3_delete_bucket_policy},
        {"GET", B, "policyStatus", false, "GetBucketPolicyStatus", OP_GET_BUCKET_POLICY_STATUS, s3_get_bucket_policy_status},
        {"PUT", B, "publicAccessBlock", false, "PutPublicAccessBlock", OP_PUT_PUBLIC_ACCESS_BLOCK, s3_put_public_access_block},
        {"GET", B, "publicAccessBlock", false, "GetPublicAccessBlock", OP_GET_PUBLIC_ACCESS_BLOCK, s3_get_public_access_block},
        {"DELETE", B, "publicAccessBlock", false, "DeletePublicAccessBlock", OP_DELETE_PUBLIC_ACCESS_BLOCK, s3_delete_public_access_block},
        {"GET", B, "cors", false, "GetBucketCors", OP_GET_BUCKET_CORS, s3_get_bucket_cors},
        {"PUT", B, "cors", false, "PutBucketCors", OP_PUT_BUCKET_CORS, s3_put_bucket_cors},
        {"DELETE", B, "cors", false, "DeleteBucketCors", OP_DELETE_BUCKET_CORS, s3_delete_bucket_cors},
        {"PUT", B, "encryption", false, "PutBucketEncryption", OP_PUT_BUCKET_ENCRYPTION, s3_put_bucket_encryption},
        {"GET", B, "encryption", false, "GetBucketEncryption", OP_GET_BUCKET_ENCRYPTION, s3_get_bucket_encryption},
        {"DELETE", B, "encryption", false, "DeleteBucketEncryption", OP_DELETE_BUCKET_ENCRYPTION,
         s3_delete_bucket_encryption},
        /* a browser's preflight, on a bucket or an object, whatever the query */
        {"OPTIONS", B, "", false, "PreflightRequest", OP_CORS_PREFLIGHT, s3_cors_preflight},
        {"OPTIONS", B, "cors", false, "PreflightRequest", OP_CORS_PREFLIGHT, s3_cors_preflight},
        {"OPTIONS", O, "", false, "PreflightRequest", OP_CORS_PREFLIGHT_OBJECT, s3_cors_preflight},
        {"OPTIONS", O, "uploadId=u&partNumber=1", false, "PreflightRequest", OP_CORS_PREFLIGHT_OBJECT, s3_cors_preflight},
        {"GET", B, "tagging", false, "GetBucketTagging", OP_GET_BUCKET_TAGGING, s3_get_bucket_tagging},
        {"PUT", B, "tagging", false, "PutBucketTagging", OP_PUT_BUCKET_TAGGING, s3_put_bucket_tagging},
        {"DELETE", B, "tagging", false, "DeleteBucketTagging", OP_DELETE_BUCKET_TAGGING, s3_delete_bucket_tagging},
        {"PUT", B, "lifecycle", false, "PutBucketLifecycleConfiguration", OP_PUT_BUCKET_LIFECYCLE, s3_put_bucket_lifecycle},
        {"GET", B, "lifecycle", false, "GetBucketLifecycleConfiguration", OP_GET_BUCKET_LIFECYCLE, s3_get_bucket_lifecycle},
        {"DELETE", B, "lifecycle", false, "DeleteBucketLifecycle", OP_DELETE_BUCKET_LIFECYCLE, s3_delete_bucket_lifecycle},
        {"GET", B, "policy", false, "GetBucketPolicy", OP_GET_BUCKET_POLICY, s3_get_bucket_policy},
        {"GET", B, "uploads", false, "ListMultipartUploads", OP_LIST_MULTIPART_UPLOADS, s3_list_uploads},
        {"PUT", B, "ownershipControls", false, "PutBucketOwnershipControls", OP_PUT_BUCKET_OWNERSHIP,
         s3_put_bucket_ownership},
        {"GET", B, "ownershipControls", false, "GetBucketOwnershipControls", OP_GET_BUCKET_OWNERSHIP,
         s3_get_bucket_ownership},
        {"DELETE", B, "ownershipControls", false, "DeleteBucketOwnershipControls", OP_DELETE_BUCKET_OWNERSHIP,
         s3_delete_bucket_ownership},
        {"GET", S, "max-buckets=2&prefix=a&continuation-token=x", false, "ListBuckets", OP_LIST_BUCKETS,
         s3_list_buckets},
        {"PUT", O, "", false, "PutObject", OP_PUT_OBJECT, s3_put_object},
        {"PUT", O, "", true, "CopyObject", OP_COPY_OBJECT, s3_copy_object},
        {"GET", O, "", false, "GetObject", OP_GET_OBJECT, s3_get_object},
        {"GET", O, "partNumber=2&versionId=null", false, "GetObject", OP_GET_OBJECT, s3_get_object},
        {"HEAD", O, "partNumber=1", false, "HeadObject", OP_HEAD_OBJECT, s3_head_object},
        {"DELETE", O, "versionId=null", false, "DeleteObject", OP_DELETE_OBJECT, s3_delete_object},
        {"GET", O, "acl", false, "GetObjectAcl", OP_GET_OBJECT_ACL, s3_get_object_acl},
        {"PUT", O, "acl", false, "PutObjectAcl", OP_PUT_OBJECT_ACL, s3_put_object_acl},
        {"GET", O, "tagging", false, "GetObjectTagging", OP_GET_OBJECT_TAGGING, s3_get_object_tagging},
        {"GET", O, "tagging&versionId=null", false, "GetObjectTagging", OP_GET_OBJECT_TAGGING, s3_get_object_tagging},
        {"PUT", O, "tagging", false, "PutObjectTagging", OP_PUT_OBJECT_TAGGING, s3_put_object_tagging},
        {"PUT", O, "tagging", true, "PutObjectTagging", OP_PUT_OBJECT_TAGGING, s3_put_object_tagging},
        {"DELETE", O, "tagging&versionId=v", false, "DeleteObjectTagging", OP_DELETE_OBJECT_TAGGING,
         s3_delete_object_tagging},
        {"GET", O, "attributes", false, "GetObjectAttributes", OP_GET_OBJECT_ATTRIBUTES, s3_get_object_attributes},
        {"POST", O, "uploads", false, "CreateMultipartUpload", OP_CREATE_MULTIPART, s3_create_multipart},
        {"PUT", O, "partNumber=1&uploadId=u", false, "UploadPart", OP_UPLOAD_PART, s3_upload_part},
        {"PUT", O, "uploadId=u&partNumber=1", true, "UploadPartCopy", OP_UPLOAD_PART_COPY, s3_upload_part_copy},
        {"POST", O, "uploadId=u", false, "CompleteMultipartUpload", OP_COMPLETE_MULTIPART, s3_complete_multipart},
        {"DELETE", O, "uploadId=u", false, "AbortMultipartUpload", OP_ABORT_MULTIPART, s3_abort_multipart},
        {"GET", O, "uploadId=u&max-parts=2", false, "ListParts", OP_LIST_PARTS, s3_list_parts},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const route_case *c = &cases[i];
        const s3_route *r = route(c->method, c->res, c->query, c->copy);
        cr_expect_eq(s3_route_op(r), c->op, "%s ?%s: op %d, want %d", c->method, c->query, s3_route_op(r), c->op);
        cr_expect_str_eq(r->api, c->api, "%s ?%s", c->method, c->query);
        cr_expect(r->handler == c->handler, "%s ?%s: the wrong handler", c->method, c->query);
        cr_expect_null(s3_route_refusal(r, c->method), "%s ?%s is served", c->method, c->query);
        cr_expect_eq(r->resource, c->res, "%s ?%s", c->method, c->query);
    }
}

Test(routes, what_each_route_asks_of_the_pipeline) {
    /* Anonymous callers reach only the reads a public-read bucket allows. */
    for (s3_op op = OP_NONE + 1; op < OP__COUNT; op++) {
        const s3_route *r = s3_route_get(op);
        bool public_read = op == OP_GET_OBJECT || op == OP_HEAD_OBJECT || op == OP_LIST_OBJECTS ||
                           op == OP_LIST_OBJECTS_V2 || op == OP_HEAD_BUCKET || op == OP_GET_BUCKET_LOCATION ||
                           op == OP_LIST_OBJECT_VERSIONS;
        if (!r->handler) cr_expect_eq(r->auth, S3_AUTH_PUBLIC, "%s: the refusal is for anyone", r->api);
        else if (op == OP_EVENTS_WS) cr_expect_eq(r->auth, S3_AUTH_SIGNED, "the event stream needs a signature");
        else if (op == OP_CORS_PREFLIGHT || op == OP_CORS_PREFLIGHT_OBJECT)
            cr_expect_eq(r->auth, S3_AUTH_NONE, "a browser's preflight carries no credentials");
        else if (op == OP_POST_OBJECT)
            cr_expect(r->auth == S3_AUTH_NONE && !r->bucket, "a form's credentials are its fields: post.c judges them");
        else if (r->resource == S3_RES_OPERATOR) cr_expect_eq(r->auth, S3_AUTH_NONE, "%s", r->api);
        else cr_expect_eq(r->auth, public_read ? S3_AUTH_PUBLIC : S3_AUTH_SIGNED, "%s", r->api);
    }
    /* Bodies: object data for PUT and UploadPart, buffered XML where S3 takes a document. */
    cr_expect_eq(s3_route_get(OP_PUT_OBJECT)->body, BODY_OBJECT);
    cr_expect(s3_route_get(OP_PUT_OBJECT)->begin == s3_object_begin);
    cr_expect_eq(s3_route_get(OP_POST_OBJECT)->body, BODY_FORM);
    cr_expect(s3_route_get(OP_POST_OBJECT)->begin == s3_post_begin);
    cr_expect_eq(s3_route_get(OP_UPLOAD_PART)->body, BODY_OBJECT);
    cr_expect(s3_route_get(OP_UPLOAD_PART)->begin == s3_upload_part_begin);
    cr_expect_eq(s3_route_get(OP_DELETE_OBJECTS)->body, BODY_BUFFER);
    cr_expect_eq(s3_route_get(OP_CREATE_BUCKET)->body, BODY_BUFFER);
    cr_expect_eq(s3_route_get(OP_COMPLETE_MULTIPART)->body, BODY_BUFFER);
    cr_expect_eq(s3_route_get(OP_COPY_OBJECT)->body, BODY_IGNORE);
    cr_expect_eq(s3_route_get(OP_GET_OBJECT)->body, BODY_IGNORE);
}

Test(routes, operator_endpoints_by_exact_path_and_get_only) {
    cr_expect_eq(s3_route_op(s3_route_operator("GET", "/health/live", false)), OP_HEALTH_LIVE);
    cr_expect_eq(s3_route_op(s3_route_operator("GET", "/health/ready", false)), OP_HEALTH_READY);
    cr_expect_eq(s3_route_op(s3_route_operator("GET", "/metrics", false)), OP_METRICS);
    cr_expect_str_eq(s3_route_operator("GET", "/metrics", false)->api, "Metrics");
    cr_expect_str_eq(s3_route_operator("GET", "/health/live", false)->api, "Health");
    cr_expect(s3_route_operator("GET", "/health/live", false)->handler == s3_serve_live);
    cr_expect_null(s3_route_operator("HEAD", "/metrics", false), "HEAD /metrics is the bucket \"metrics\"");
    cr_expect_null(s3_route_operator("GET", "/metrics/", false));
    cr_expect_null(s3_route_operator("GET", "/health", false));
    cr_expect_null(s3_route_operator("GET", "/health/live?x", false));
}

Test(routes, the_event_stream_is_an_upgrade_else_an_object_of_bucket_events) {
    const s3_route *ws = s3_route_operator("GET", "/events/ws", true);
    cr_assert_not_null(ws);
    cr_expect_eq(s3_route_op(ws), OP_EVENTS_WS);
    cr_expect_eq(ws->auth, S3_AUTH_SIGNED, "the stream needs a signed (presigned) upgrade");
    cr_expect_null(s3_route_operator("GET", "/events/ws", false), "a plain GET is the object ws of bucket events");
    cr_expect_null(s3_route_operator("PUT", "/events/ws", true));
    cr_expect_null(s3_route_operator("GET", "/metrics", true));
}

Test(routes, unsupported_combinations_are_refused_with_the_code_s3_answers) {
    static const route_case cases[] = {
        /* the service takes only GET */
        {"PUT", S, "", false, "ListBuckets", .code = "MethodNotAllowed"},
        {"POST", S, "", false, "ListBuckets", .code = "MethodNotAllowed"},
        {"PATCH", S, "", false, "ListBuckets", .code = "MethodNotAllowed"},
        /* a verb S3 does not have, anywhere */
        {"PATCH", B, "", false, "Bucket", .code = "MethodNotAllowed"},
        {"OPTIONS", S, "", false, "ListBuckets", .code = "MethodNotAllowed"},
        {"PATCH", B, "website", false, "PutBucketSubresource", .code = "MethodNotAllowed"},
        {"get", O, "", false, "Object", .code = "MethodNotAllowed"},
        /* bucket configuration we do not store: only GET is answered */
        {"PUT", B, "website", false, "PutBucketSubresource", .code = "NotImplemented"},
        {"DELETE", B, "website", false, "PutBucketSubresource", .code = "NotImplemented"},
        {"POST", B, "delete&lifecycle", false, "PutBucketSubresource", .code = "NotImplemented"},
        {"POST", B, "tagging", false, "PutBucketSubresource", .code = "NotImplemented"},
        /* other subresources of a bucket */
        {"PUT", B, "versions", false, "BucketSubresource", .code = "NotImplemented"},
        /* multipart without the right parameters */
        {"PUT", O, "uploadId=u", false, "Multipart", .code = "NotImplemented"},
        {"HEAD", O, "uploadId=u", false, "Multipart", .code = "NotImplemented"},
        {"GET", O, "uploads", false, "Multipart", .code = "NotImplemented"},
        {"PUT", O, "partNumber=1", false, "Multipart", .code = "NotImplemented"},
        {"DELETE", O, "partNumber=1", false, "Multipart", .code = "NotImplemented"},
        /* object subresources */
        {"POST", O, "acl", false, "ObjectSubresource", .code = "NotImplemented"},
        {"POST", O, "tagging", false, "ObjectSubresource", .code = "NotImplemented"},
        {"POST", O, "retention", false, "ObjectSubresource", .code = "NotImplemented"},
        {"DELETE", O, "legal-hold", false, "ObjectSubresource", .code = "NotImplemented"},
        {"DELETE", B, "object-lock", false, "PutBucketSubresource", .code = "NotImplemented"},
        {"POST", O, "restore", false, "ObjectSubresource", .code = "NotImplemented"},
        {"GET", O, "torrent", false, "ObjectSubresource", .code = "NotImplemented"},
        {"POST", O, "", false, "Object", .code = "NotImplemented"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const route_case *c = &cases[i];
        const s3_route *r = route(c->method, c->res, c->query, c->copy);
        cr_expect_null(r->handler, "%s ?%s has no handler", c->method, c->query);
        cr_expect_str_eq(r->api, c->api, "%s ?%s", c->method, c->query);
        const char *code = s3_route_refusal(r, c->method);
        cr_expect_str_eq(code ? code : "(none)", c->code, "%s ?%s", c->method, c->query);
    }
}

Test(routes, the_first_matching_rule_wins) {
    /* A GET of an object's ACL is GetObjectAcl even with an upload id. */
    cr_expect_eq(s3_route_op(route("GET", O, "acl&uploadId=u", false)), OP_GET_OBJECT_ACL);
    /* Bucket configuration outranks DeleteObjects and the other subresources. */
    cr_expect_eq(s3_route_op(route("POST", B, "delete&policy", false)), OP_UNSUPPORTED_BUCKET_CONFIG);
    cr_expect_eq(s3_route_op(route("GET", B, "location&acl", false)), OP_GET_BUCKET_LOCATION);
    /* A PUT with a copy source and no upload is CopyObject; with an upload id and no part number, refused. */
    cr_expect_eq(s3_route_op(route("PUT", O, "", true)), OP_COPY_OBJECT);
    cr_expect_eq(s3_route_op(route("PUT", O, "uploadId=u", true)), OP_UNSUPPORTED_MULTIPART);
    /* PUT ?versioning is PutBucketVersioning, not CreateBucket (it was, before versioning). */
    cr_expect_eq(s3_route_op(route("PUT", B, "versioning", false)), OP_PUT_BUCKET_VERSIONING);
    cr_expect_eq(s3_route_op(route("GET", B, "versions&prefix=a", false)), OP_LIST_OBJECT_VERSIONS);
    /* Object lock: the bucket's configuration, a version's retention and legal hold. */
    cr_expect_eq(s3_route_op(route("PUT", B, "object-lock", false)), OP_PUT_OBJECT_LOCK_CONFIG);
    cr_expect_eq(s3_route_op(route("GET", B, "object-lock", false)), OP_GET_OBJECT_LOCK_CONFIG);
    cr_expect_eq(s3_route_op(route("PUT", O, "retention&versionId=null", false)), OP_PUT_OBJECT_RETENTION);
    cr_expect_eq(s3_route_op(route("GET", O, "retention", false)), OP_GET_OBJECT_RETENTION);
    cr_expect_eq(s3_route_op(route("PUT", O, "legal-hold", false)), OP_PUT_OBJECT_LEGAL_HOLD);
    cr_expect_eq(s3_route_op(route("GET", O, "legal-hold", false)), OP_GET_OBJECT_LEGAL_HOLD);
    /* list-type other than 2 is V1 */
    cr_expect_eq(s3_route_op(route("GET", B, "list-type=3", false)), OP_LIST_OBJECTS);
}
