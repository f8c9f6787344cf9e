/*
 * errors.c — the one table mapping S3 error codes to HTTP statuses and
 * default messages (from the S3 API reference's error code list).
 */
#include "s3/internal.h"

#include <string.h>

typedef struct {
    const char *code;
    unsigned status;
    const char *message;
} s3_error_def;

static const s3_error_def errors[] = {
    {"AccessDenied", 403, "Access Denied"},
    /* Not in the reference's table: what S3 answers a CORS preflight it refuses. */
    {"AccessForbidden", 403, "CORSResponse: This CORS request is not allowed."},
    {"BadRequest", 400, "Bad Request"},
    {"AuthorizationHeaderMalformed", 400, "The authorization header is malformed."},
    {"AuthorizationQueryParametersError", 400, "Error parsing the X-Amz-Credential parameter."},
    {"BadDigest", 400, "The Content-MD5 you specified did not match what we received."},
    {"BucketAlreadyExists", 409, "The requested bucket name is not available. The bucket namespace is shared by all users of the system. Please select a different name and try again."},
    {"BucketAlreadyOwnedByYou", 409, "Your previous request to create the named bucket succeeded and you already own it."},
    {"AccessControlListNotSupported", 400, "The bucket does not allow ACLs."},
    {"InvalidBucketAclWithObjectOwnership", 400, "Bucket cannot have ACLs set with ObjectOwnership's BucketOwnerEnforced setting."},
    {"MalformedACLError", 400, "The XML you provided was not well-formed or did not validate against our published schema."},
    {"MalformedPolicy", 400, "Policy has invalid resource."},
    {"UnexpectedContent", 400, "This request does not support content."},
    {"UnresolvableGrantByEmailAddress", 400, "The email address you provided does not match any account on record."},
    {"BucketNotEmpty", 409, "The bucket you tried to delete is not empty"},
    {"EntityTooLarge", 400, "Your proposed upload exceeds the maximum allowed object size."},
    {"EntityTooSmall", 400, "Your proposed upload is smaller than the minimum allowed object size."},
    {"IllegalLocationConstraintException", 400, "The location constraint is incompatible with the region of this endpoint."},
    {"IncompleteBody", 400, "You did not provide the number of bytes specified by the Content-Length HTTP header."},
    {"InternalError", 500, "We encountered an internal error. Please try again."},
    {"InvalidAccessKeyId", 403, "The AWS access key ID you provided does not exist in our records."},
    {"InvalidArgument", 400, "Invalid Argument"},
    {"InvalidEncryptionAlgorithmError", 400, "The encryption request you specified is not valid. The valid value is AES256."},
    {"KMS.NotFoundException", 400, "The KMS key does not exist."},
    {"KMS.DisabledException", 400, "The KMS key is disabled."},
    {"InvalidBucketName", 400, "The specified bucket is not valid."},
    {"InvalidDigest", 400, "The Content-MD5 you specified is not valid."},
    {"InvalidLocationConstraint", 400, "The specified location constraint is not valid."},
    {"InvalidRange", 416, "The requested range is not satisfiable"},
    /* The reference's table says 416; S3 answers a part number beyond an
     * object's parts with 400, and clients treat 4xx alike. */
    {"InvalidPartNumber", 400, "The requested partnumber is not satisfiable"},
    {"InvalidPart", 400, "One or more of the specified parts could not be found."},
    {"InvalidPartOrder", 400, "The list of parts was not in ascending order."},
    {"InvalidRequest", 400, "Invalid Request"},
    {"InvalidStorageClass", 400, "The storage class you specified is not valid."},
    {"InvalidTag", 400, "The tag provided was not a valid tag."},
    {"KeyTooLongError", 400, "Your key is too long."},
    {"MalformedPOSTRequest", 400, "The body of your POST request is not well-formed multipart/form-data."},
    {"MaxPostPreDataLengthExceededError", 400, "Your POST request fields preceding the upload file were too large."},
    {"InvalidPolicyDocument", 400, "The content of the form does not meet the conditions specified in the policy document."},
    {"AccessControlListNotSupported", 400, "The bucket does not allow ACLs"},
    {"MalformedXML", 400, "The XML you provided was not well-formed or did not validate against our published schema."},
    {"MetadataTooLarge", 400, "Your metadata headers exceed the maximum allowed metadata size."},
    {"MethodNotAllowed", 405, "The specified method is not allowed against this resource."},
    {"MissingContentLength", 411, "You must provide the Content-Length HTTP header."},
    {"MissingSecurityHeader", 400, "Your request is missing a required header."},
    {"NoSuchBucket", 404, "The specified bucket does not exist."},
    {"NoSuchBucketPolicy", 404, "The bucket policy does not exist."},
    {"NoSuchCORSConfiguration", 404, "The CORS configuration does not exist."},
    {"NoSuchKey", 404, "The specified key does not exist."},
    {"NoSuchLifecycleConfiguration", 404, "The lifecycle configuration does not exist."},
    {"NoSuchTagSet", 404, "The TagSet does not exist."},
    {"NoSuchUpload", 404, "The specified upload does not exist."},
    {"NoSuchVersion", 404, "The specified version does not exist."},
    {"OperationAborted", 409, "A conflicting conditional operation is currently in progress against this resource. Try again."},
    {"InvalidURI", 400, "Couldn't parse the specified URI."},
    {"NoSuchWebsiteConfiguration", 404, "The specified bucket does not have a website configuration."},
    {"NoSuchPublicAccessBlockConfiguration", 404, "The public access block configuration was not found."},
    {"OwnershipControlsNotFoundError", 404, "The bucket ownership controls were not found."},
    {"ReplicationConfigurationNotFoundError", 404, "The replication configuration was not found."},
    {"NotImplemented", 501, "A header or query you provided implies functionality that is not implemented."},
    {"ObjectLockConfigurationNotFoundError", 404, "Object Lock configuration does not exist for this bucket."},
    {"NoSuchObjectLockConfiguration", 404, "The specified object does not have a ObjectLock configuration."},
    {"IllegalVersioningConfigurationException", 400, "The versioning configuration specified in the request is invalid."},
    {"InvalidBucketState", 409, "The request is not valid with the current state of the bucket."},
    {"PreconditionFailed", 412, "At least one of the pre-conditions you specified did not hold."},
    {"ConditionalRequestConflict", 409, "A conflicting operation occurred. If using PutObject you can retry the request. "
                                        "If using multipart upload you should initiate another CreateMultipartUpload "
                                        "request and re-upload each part."},
    {"RequestTimeTooSkewed", 403, "The difference between the request time and the server's time is too large."},
    {"RequestTimeout", 400, "Your socket connection to the server was not read from or written to within the timeout period."},
    {"ServerSideEncryptionConfigurationNotFoundError", 404, "The server side encryption configuration was not found."},
    {"ServiceUnavailable", 503, "Please reduce your request rate."},
    {"UpgradeRequired", 426, "This endpoint speaks WebSocket version 13 only."},
    {"SignatureDoesNotMatch", 403, "The request signature we calculated does not match the signature you provided. Check your key and signing method."},
    {"SlowDown", 503, "Please reduce your request rate."},
    {"InsufficientStorage", 507, "The storage is full."},
    {"XAmzContentSHA256Mismatch", 400, "The provided 'x-amz-content-sha256' header does not match what was computed."},
    {"InvalidObjectState", 403, "The operation is not valid for the current state of the object."},
    {"NotModified", 304, "Not Modified"},
};

static const s3_error_def *find(const char *code) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (strcmp(errors[i].code, code) == 0) return &errors[i];
    return NULL;
}

bool s3_meta_unavailable(int rc) { return rc == CAIRN_EBUSY || rc == CAIRN_ETIMEDOUT || rc == CAIRN_EIO; }

void s3_meta_error(s3_req *q, int rc, const char *code, const char *message) {
    if (!s3_meta_unavailable(rc)) {
        s3_error(q, code, message);
        return;
    }
    http_req *r = q->http;
    bool down = rc == CAIRN_EIO;
    /* The client's SDK retries a 503 after Retry-After (or its own backoff);
     * the log says which of the two it was, for the operator. */
    log_write(LOG_WARN, r->request_id,
              down ? "metadata database unavailable: answering 503" : "metadata database busy: answering 503",
              "api", r->api ? r->api : "", "error", cairn_strerror(rc), NULL);
    if (!http_responded(r)) http_add_header(r, "Retry-After", "1");
    s3_error(q, down ? "ServiceUnavailable" : "SlowDown",
             down ? "The metadata database cannot be reached. Please retry." : NULL);
}

bool s3_commit_failed_drop_ok(s3_req *q, int rc, const char *version_id) {
    if (rc != CAIRN_EIO) return true;
    log_write(LOG_WARN, q->http->request_id, "commit outcome unknown: the new version's bytes are kept",
              "version_id", version_id, NULL);
    return false;
}

unsigned s3_error_status(const char *code) {
    const s3_error_def *d = find(code);
    return d ? d->status : 500;
}

/* Sets the error response: the status from the table, the XML body. */
static void respond_error(http_req *r, const char *code, const char *message, const char *const *elems,
                          const char *bucket, const char *key, size_t key_len, bool close) {
    const s3_error_def *d = find(code);
    unsigned status = d ? d->status : 500;
    if (!message) message = d ? d->message : "Error";
    buf_t b;
    buf_init(&b);
    buf_puts(&b, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>");
    buf_puts(&b, code);
    buf_puts(&b, "</Code><Message>");
    buf_xml_escape(&b, message, strlen(message));
    buf_puts(&b, "</Message>");
    for (const char *const *e = elems; e && e[0]; e += 2) {
        buf_printf(&b, "<%s>", e[0]);
        buf_xml_escape(&b, e[1], strlen(e[1]));
        buf_printf(&b, "</%s>", e[0]);
    }
    if (bucket[0]) {
        buf_puts(&b, "<BucketName>");
        buf_xml_escape(&b, bucket, strlen(bucket));
        buf_puts(&b, "</BucketName>");
    }
    if (key) {
        buf_puts(&b, "<Key>");
        buf_xml_escape(&b, key, key_len);
        buf_puts(&b, "</Key>");
    }
    buf_puts(&b, "<Resource>");
    buf_xml_escape(&b, r->raw_path, strlen(r->raw_path));
    buf_puts(&b, "</Resource><RequestId>");
    buf_puts(&b, r->request_id);
    buf_puts(&b, "</RequestId></Error>");
    if (b.oom) {
        buf_free(&b);
        http_respond(r, status, "", 0);
        return;
    }
    http_add_header(r, "Content-Type", "application/xml");
    /* An error answered before the body was read ends the connection: the rest of
     * the body is still on the wire. */
    if (close) http_add_header(r, "Connection", "close");
    size_t len = b.len;
    http_respond_take(r, status, buf_steal(&b), len);
}

void s3_error(s3_req *q, const char *code, const char *message) { s3_error_elems(q, code, message, NULL); }

void s3_error_elems(s3_req *q, const char *code, const char *message, const char *const *elems) {
    http_req *r = q->http;
    if (http_responded(r)) return;
    snprintf(q->error_code, sizeof q->error_code, "%s", code);
    /* An error ends any upload of this request: remove its temporary shards
     * now, before the answer goes out, not when the connection is done. */
    s3_object_abort_writer(q);
    bool with_key = q->has_key && strcmp(code, "NoSuchKey") == 0;
    respond_error(r, code, message, elems, q->bucket, with_key ? q->key : NULL, q->key_len,
                  !q->body_done && r->content_length > 0);
}

void s3_error_http(http_req *r, const char *code, const char *message) {
    if (http_responded(r)) return;
    log_write(LOG_WARN, r->request_id, "request refused before the gateway took it", "error", code, NULL);
    respond_error(r, code, message, NULL, "", NULL, 0, r->content_length > 0);
}

const char *s3_nomem_message(const http_req *r) {
    return arena_exhausted(r->arena) ? "This request needs more memory than the per-request limit allows." : NULL;
}

void s3_error_nomem(s3_req *q) {
    const char *msg = s3_nomem_message(q->http);
    if (msg) {
        char held[24];
        log_write(LOG_WARN, q->http->request_id, "request arena limit reached", "arena_bytes",
                  log_int(held, (long long)arena_size(q->http->arena)), NULL);
    }
    s3_error(q, "InternalError", msg);
}
