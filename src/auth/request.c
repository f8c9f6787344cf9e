/*
 * request.c — authenticating a request: who sent it, proven by its
 * signature.
 *
 * SigV4, or SigV2 when the request carries V2 credentials (sigv2_present)
 * and the gateway accepts them.  The request's access key names its secret:
 * the root user's comes from the configuration, every other key's from
 * metadata, sealed with the master key (secrets.c).  A request with no
 * credentials at all is anonymous, which is not a failure here: what an
 * anonymous caller may do is the caller's to judge.
 *
 * A V2 request's payload is PAYLOAD_UNSIGNED, so callers treat it as an
 * UNSIGNED-PAYLOAD request: no SHA-256 to check, no aws-chunked.
 */
#include "auth/auth.h"

#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <sodium.h>

_Static_assert(sizeof ((config_t *)0)->root_password <= AUTH_SECRET_MAX, "the root password is a secret");

static int refuse(auth_refusal *why, int rc, const char *code, const char *message) {
    why->code = code;
    why->message = message;
    return rc;
}

/* The error code of a malformed V4 credential scope: where it was sent. */
static const char *scope_error(const sigv4_auth *a) {
    return a->kind == SIGV4_PRESIGNED ? "AuthorizationQueryParametersError" : "AuthorizationHeaderMalformed";
}

/* Finds the access key's secret: the root's, or a key's from metadata
 * (opened into opened, which the caller wipes and frees). */
static int load_secret(const auth_keys *k, auth_identity *id, buf_t *opened, const char **secret, auth_refusal *why) {
    if (k->root_access_key && strcmp(id->cred.access_key, k->root_access_key) == 0) {
        *secret = k->root_secret;
        id->is_root = true;
        id->user_id = k->root_user_id;
        return 0;
    }
    meta_key key;
    int rc = meta_key_get(k->meta, id->cred.access_key, &key);
    if (rc == CAIRN_ENOTFOUND || (rc == 0 && !key.active)) return refuse(why, CAIRN_EAUTH, "InvalidAccessKeyId", NULL);
    if (rc != 0) return refuse(why, rc, "InternalError", "cannot load the access key");
    if (auth_secret_open(k->master_key, key.sealed_secret, opened) != 0)
        return refuse(why, CAIRN_EAUTH, "InternalError", "cannot load the access key");
    *secret = opened->data;
    id->user_id = key.user_id;
    id->is_root = key.user_id == k->root_user_id;
    return 0;
}

int auth_request(const auth_keys *k, const sigv4_request *r, const char *vhost_bucket, int64_t now, auth_identity *id,
                 auth_refusal *why) {
    memset(id, 0, sizeof *id);
    memset(why, 0, sizeof *why);
    const char *code = NULL, *msg = NULL;
    bool v2 = sigv2_present(r);
    if (v2 && !k->sigv2)
        /* What S3 answers in the regions that never had SigV2 (eu-central-1 and
         * every region opened since 2014): 400 InvalidRequest, not AccessDenied,
         * so clients see that the mechanism is refused, not their credentials. */
        return refuse(why, CAIRN_EAUTH, "InvalidRequest",
                      "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.");
    if ((v2 ? sigv2_parse(r, &id->cred, &code, &msg) : sigv4_parse(r, &id->cred, &code, &msg)) != 0)
        return refuse(why, CAIRN_EAUTH, code ? code : "AccessDenied", msg);
    if (id->cred.kind == SIGV4_ANONYMOUS) {
        id->anonymous = true;
        return 0;
    }
    if (!v2 && strcmp(id->cred.service, "s3") != 0)
        return refuse(why, CAIRN_EAUTH, scope_error(&id->cred), "The credential scope must name the service 's3'.");
    if (!v2 && strcmp(id->cred.region, k->region) != 0) {
        snprintf(why->text, sizeof why->text, "the region '%s' is wrong; expecting '%s'", id->cred.region, k->region);
        return refuse(why, CAIRN_EAUTH, scope_error(&id->cred), why->text);
    }
    const char *secret = NULL;
    buf_t opened;
    buf_init(&opened);
    int rc = load_secret(k, id, &opened, &secret, why);
    if (rc == 0) {
        rc = v2 ? sigv2_verify(r, &id->cred, vhost_bucket, secret, now, k->clock_skew, &code, &msg)
                : sigv4_verify(r, &id->cred, secret, now, k->clock_skew, &code, &msg);
        if (rc == 0) snprintf(id->secret, sizeof id->secret, "%s", secret);
        else if (rc == CAIRN_ENOMEM) /* could not compute it: a retry may succeed, a 403 would not */
            refuse(why, rc, "InternalError", "out of memory while checking the signature");
        else
            rc = refuse(why, CAIRN_EAUTH, code ? code : "SignatureDoesNotMatch", msg);
    }
    if (opened.data) sodium_memzero(opened.data, opened.len);
    buf_free(&opened);
    return rc;
}

/* A POST form's credential: "AKID/date/region/service/aws4_request", each
 * part non-empty and within its field of cred. */
static bool parse_form_credential(const char *c, sigv4_auth *cred) {
    const char *parts[5];
    size_t lens[5];
    const char *p = c;
    for (int i = 0; i < 5; i++) {
        parts[i] = p;
        lens[i] = strcspn(p, "/");
        p += lens[i];
        if (i < 4) {
            if (*p != '/') return false;
            p++;
        }
    }
    if (*p || !lens[0] || lens[0] >= sizeof cred->access_key || lens[1] != 8 || !lens[2] ||
        lens[2] >= sizeof cred->region || !lens[3] || lens[3] >= sizeof cred->service || lens[4] != 12 ||
        strncmp(parts[4], "aws4_request", 12) != 0)
        return false;
    for (size_t i = 0; i < 8; i++)
        if (parts[1][i] < '0' || parts[1][i] > '9') return false;
    memcpy(cred->access_key, parts[0], lens[0]);
    memcpy(cred->date, parts[1], 8);
    memcpy(cred->region, parts[2], lens[2]);
    memcpy(cred->service, parts[3], lens[3]);
    return true;
}

/* A POST form's signature of its base64 policy by id's access key: SigV4
 * (hex HMAC-SHA256 with the scope's signing key) or SigV2 (base64
 * HMAC-SHA1 with the secret).  0 with id->secret set, or refused. */
static int check_form_signature(const auth_keys *k, auth_identity *id, const char *policy_b64, const char *signature,
                                bool v4, auth_refusal *why) {
    const sigv4_auth *c = &id->cred;
    const char *secret = NULL;
    buf_t opened;
    buf_init(&opened);
    int rc = load_secret(k, id, &opened, &secret, why);
    if (rc == 0) {
        uint8_t key[32], mac[EVP_MAX_MD_SIZE];
        unsigned int ml = 0;
        char want[EVP_MAX_MD_SIZE * 2 + 1];
        if (v4) sigv4_signing_key(secret, c->date, c->region, c->service, key);
        bool ok = v4 ? HMAC(EVP_sha256(), key, 32, (const unsigned char *)policy_b64, strlen(policy_b64), mac, &ml) != NULL
                     : HMAC(EVP_sha1(), secret, (int)strlen(secret), (const unsigned char *)policy_b64,
                            strlen(policy_b64), mac, &ml) != NULL;
        size_t n = 0;
        if (ok && v4) {
            hex_encode(mac, ml, want);
            n = 2 * (size_t)ml;
        } else if (ok) {
            int e = EVP_EncodeBlock((unsigned char *)want, mac, (int)ml);
            ok = e > 0;
            n = ok ? (size_t)e : 0;
        }
        if (!ok) rc = refuse(why, CAIRN_ENOMEM, "InternalError", "out of memory while checking the signature");
        else if (strlen(signature) != n || CRYPTO_memcmp(want, signature, n) != 0)
            rc = refuse(why, CAIRN_EAUTH, "SignatureDoesNotMatch", NULL);
        else snprintf(id->secret, sizeof id->secret, "%s", secret);
        OPENSSL_cleanse(key, sizeof key);
        OPENSSL_cleanse(mac, sizeof mac);
    }
    if (opened.data) sodium_memzero(opened.data, opened.len);
    buf_free(&opened);
    return rc;
}

int auth_post_form(const auth_keys *k, const char *credential, const char *amz_date, const char *policy_b64,
                   const char *signature, auth_identity *id, auth_refusal *why) {
    memset(id, 0, sizeof *id);
    memset(why, 0, sizeof *why);
    sigv4_auth *c = &id->cred;
    if (!parse_form_credential(credential, c))
        return refuse(why, CAIRN_EAUTH, "InvalidArgument", "Invalid credential in the x-amz-credential field.");
    if (strlen(amz_date) != 16 || amz_date[8] != 'T' || amz_date[15] != 'Z' || strncmp(amz_date, c->date, 8) != 0)
        return refuse(why, CAIRN_EAUTH, "InvalidArgument",
                      "The x-amz-date field must be YYYYMMDDTHHMMSSZ of the x-amz-credential's date.");
    if (strcmp(c->service, "s3") != 0)
        return refuse(why, CAIRN_EAUTH, "InvalidArgument", "The credential scope must name the service 's3'.");
    if (strcmp(c->region, k->region) != 0) {
        snprintf(why->text, sizeof why->text, "the region '%s' is wrong; expecting '%s'", c->region, k->region);
        return refuse(why, CAIRN_EAUTH, "InvalidArgument", why->text);
    }
    c->kind = SIGV4_HEADER;
    c->payload = PAYLOAD_UNSIGNED;
    memcpy(c->amz_date, amz_date, 16);
    return check_form_signature(k, id, policy_b64, signature, true, why);
}

int auth_post_form_v2(const auth_keys *k, const char *access_key, const char *policy_b64, const char *signature,
                      auth_identity *id, auth_refusal *why) {
    memset(id, 0, sizeof *id);
    memset(why, 0, sizeof *why);
    sigv4_auth *c = &id->cred;
    if (!k->sigv2)
        return refuse(why, CAIRN_EAUTH, "InvalidRequest",
                      "The authorization mechanism you have provided is not supported. Please use AWS4-HMAC-SHA256.");
    size_t akl = strlen(access_key);
    if (!akl || akl >= sizeof c->access_key)
        return refuse(why, CAIRN_EAUTH, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.");
    memcpy(c->access_key, access_key, akl + 1);
    c->kind = SIGV2_HEADER;
    c->payload = PAYLOAD_UNSIGNED;
    return check_form_signature(k, id, policy_b64, signature, false, why);
}

void auth_identity_wipe(auth_identity *id) { sodium_memzero(id->secret, sizeof id->secret); }
