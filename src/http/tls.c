/*
 * tls.c — the certificate an HTTPS listener serves (server.c), reloadable
 * while it runs (docs/deploy.md, "TLS").
 *
 * libmicrohttpd does TLS with GnuTLS.  Rather than hand MHD the PEM once
 * (MHD_OPTION_HTTPS_MEM_CERT), the listener gives it a certificate callback
 * (MHD_OPTION_HTTPS_CERT_CALLBACK): every handshake asks for the current
 * chain and key.  A reload (SIGHUP) parses the files again and swaps the
 * current pair; connections already established keep theirs, handshakes
 * after the swap get the new one, and nothing is dropped.  A pair that
 * fails to parse is refused and the old one stays.
 *
 * A handshake in progress may still hold the pair it was given, so
 * replaced pairs are kept until the process ends (a few KiB per reload).
 * The callback has no argument of its own, so the current pair is this
 * process's: one HTTPS listener per process (the S3 listener, or a node's
 * shard API), which is what cairn runs.
 *
 * Versions and ciphers: TLS 1.2 and 1.3 only, AEAD ciphers only (AES-GCM,
 * ChaCha20-Poly1305) with ECDHE key exchange, the server's order
 * (HTTP_TLS_PRIORITIES).
 */
#include "http/http.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>

#define MAX_CHAIN 16

typedef struct tls_pair {
    struct tls_pair *next;      /* the replaced ones, kept */
    gnutls_pcert_st chain[MAX_CHAIN];
    unsigned int nchain;
    gnutls_privkey_t key;
} tls_pair;

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static tls_pair *current;       /* under mu */
static tls_pair *retired;       /* under mu */

const char *const HTTP_TLS_PRIORITIES =
    "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+AES-128-GCM:+CHACHA20-POLY1305:"
    "-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA:%SERVER_PRECEDENCE";

static void pair_free(tls_pair *p) {
    if (!p) return;
    for (unsigned i = 0; i < p->nchain; i++) gnutls_pcert_deinit(&p->chain[i]);
    if (p->key) gnutls_privkey_deinit(p->key);
    free(p);
}

static int pair_parse(const char *cert_pem, const char *key_pem, tls_pair **out, char *err, size_t errlen) {
    *out = NULL;
    tls_pair *p = calloc(1, sizeof *p);
    if (!p) return CAIRN_ENOMEM;
    gnutls_datum_t c = {(unsigned char *)cert_pem, (unsigned)strlen(cert_pem)};
    gnutls_datum_t k = {(unsigned char *)key_pem, (unsigned)strlen(key_pem)};
    p->nchain = MAX_CHAIN;
    int rc = gnutls_pcert_list_import_x509_raw(p->chain, &p->nchain, &c, GNUTLS_X509_FMT_PEM, 0);
    if (rc < 0) {
        p->nchain = 0;
        snprintf(err, errlen, "the certificate does not parse: %s", gnutls_strerror(rc));
        pair_free(p);
        return CAIRN_EINVAL;
    }
    if ((rc = gnutls_privkey_init(&p->key)) < 0 ||
        (rc = gnutls_privkey_import_x509_raw(p->key, &k, GNUTLS_X509_FMT_PEM, NULL, 0)) < 0) {
        snprintf(err, errlen, "the private key does not parse: %s", gnutls_strerror(rc));
        pair_free(p);
        return CAIRN_EINVAL;
    }
    /* The key must be the certificate's: a mismatch would fail every
     * handshake after the swap. */
    gnutls_pubkey_t pub = NULL;
    gnutls_datum_t sig = {0}, data = {(unsigned char *)"cairn", 5};
    rc = gnutls_privkey_sign_data(p->key, GNUTLS_DIG_SHA256, 0, &data, &sig);
    if (rc >= 0) {
        pub = p->chain[0].pubkey;
        int algo = gnutls_pk_to_sign(gnutls_pubkey_get_pk_algorithm(pub, NULL), GNUTLS_DIG_SHA256);
        rc = gnutls_pubkey_verify_data2(pub, (gnutls_sign_algorithm_t)algo, 0, &data, &sig);
    }
    gnutls_free(sig.data);
    if (rc < 0) {
        snprintf(err, errlen, "the private key is not the certificate's");
        pair_free(p);
        return CAIRN_EINVAL;
    }
    *out = p;
    return 0;
}

int http_tls_set(const char *cert_pem, const char *key_pem, char *err, size_t errlen) {
    tls_pair *p;
    int rc = pair_parse(cert_pem, key_pem, &p, err, errlen);
    if (rc != 0) return rc;
    pthread_mutex_lock(&mu);
    if (current) {
        current->next = retired;
        retired = current;
    }
    current = p;
    pthread_mutex_unlock(&mu);
    return 0;
}

int http_tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_dn, int nreqs,
                      const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
                      unsigned int *pcert_length, gnutls_privkey_t *pkey) {
    (void)session, (void)req_ca_dn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
    pthread_mutex_lock(&mu);
    tls_pair *p = current;
    pthread_mutex_unlock(&mu);
    if (!p) return -1;
    *pcert = p->chain;
    *pcert_length = p->nchain;
    *pkey = p->key;
    return 0;
}

void http_tls_release_all(void) {
    pthread_mutex_lock(&mu);
    pair_free(current);
    current = NULL;
    while (retired) {
        tls_pair *n = retired->next;
        pair_free(retired);
        retired = n;
    }
    pthread_mutex_unlock(&mu);
}
