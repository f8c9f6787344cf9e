/*
 * frame.c — RFC 6455 framing for the event stream: the incremental parser of
 * what clients send, and the builders of what the server sends (frame
 * headers, close frames, the handshake's Sec-WebSocket-Accept).
 *
 * Wire format of a client frame:
 *   byte 0      FIN | RSV1-3 | opcode (4 bits)
 *   byte 1      MASK | 7-bit length (126: a 16-bit length follows,
 *                                     127: a 64-bit length follows)
 *   [2 or 8]    the extended length, big-endian
 *   4           the masking key (clients must mask)
 *   len         the payload, byte i XORed with key[i % 4]
 *
 * How it works.  The header is gathered one byte at a time into p->head, and
 * each check runs at the byte that decides it: opcode, reserved bits and the
 * fragmentation rules at byte 0; the mask bit and a control frame's length at
 * byte 1; the length's encoding and the message size once the (extended)
 * length is complete, before the masking key; so a bad header is refused
 * without waiting for the rest of it.  Payload is then consumed in whatever
 * runs the caller's buffer holds.  Data payloads are never kept: text is
 * unmasked only to drive the UTF-8 state machine (utf8_step), whose state
 * lives in the parser, so a sequence may straddle frames and reads; binary is
 * counted and skipped.  Control payloads (at most 125 bytes) are unmasked into
 * p->ctl and reported whole.  A close frame's code is checked as soon as its
 * two bytes are in and its reason re-scanned as it grows (at most 123 bytes,
 * and the text message's UTF-8 state may be in use, so it gets no state of
 * its own).
 *
 * Every decision depends only on the bytes seen so far, never on where the
 * reads cut them, so any split of a stream gives the same events and the same
 * error (tests/unit/test_ws_frame.c and tests/fuzz/fuzz_ws_frame.c check it).
 * Errors are sticky.  An event is reported by the call that consumes the
 * frame's last byte, so nothing is ever pending between calls.
 */
#include "events/ws.h"

#include <assert.h>
#include <string.h>

#include <openssl/evp.h>

#include "core/core.h"

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define CLOSE_REASON_MAX 123

/* ---- UTF-8 ---------------------------------------------------------------- */

/* The validator's state: 0 at a boundary, else the sequence's total length
 * (2-4) times 4 plus the continuation bytes it still needs (1-3).  cp holds
 * the bits gathered so far. */
#define U8_STATE(total, left) ((uint32_t)(total) << 2 | (uint32_t)(left))

/* Takes one byte; false as soon as no valid UTF-8 can continue what was seen.
 * Overlongs, surrogates and code points past U+10FFFF are all decided by the
 * lead byte and the first continuation, so that is where they fail. */
static bool utf8_step(uint32_t *state, uint32_t *cp, uint8_t b) {
    if (*state == 0) {
        if (b < 0x80) return true;
        if (b < 0xC2) return false; /* a continuation, or C0/C1 (overlong 2-byte) */
        if (b >= 0xF5) return false; /* past U+10FFFF, or never UTF-8 */
        if (b < 0xE0) {
            *state = U8_STATE(2, 1);
            *cp = b & 0x1F;
        } else if (b < 0xF0) {
            *state = U8_STATE(3, 2);
            *cp = b & 0x0F;
        } else {
            *state = U8_STATE(4, 3);
            *cp = b & 0x07;
        }
        return true;
    }
    if ((b & 0xC0) != 0x80) return false;
    uint32_t total = *state >> 2, left = (*state & 3) - 1;
    *cp = *cp << 6 | (b & 0x3F);
    if (left == total - 2) { /* the first continuation: the range is known */
        if (total == 3 && (*cp < (0x800 >> 6) || (*cp >= (0xD800 >> 6) && *cp <= (0xDFFF >> 6))))
            return false;
        if (total == 4 && (*cp < (0x10000 >> 12) || *cp > (0x10FFFF >> 12))) return false;
    }
    *state = left ? U8_STATE(total, left) : 0;
    return true;
}

/* Runs s[0..n) through the validator; false at the first byte that fails. */
static bool utf8_scan(const uint8_t *s, size_t n, uint32_t *state, uint32_t *cp) {
    for (size_t i = 0; i < n; i++) {
        if (*state == 0 && s[i] < 0x80) continue;
        if (!utf8_step(state, cp, s[i])) return false;
    }
    return true;
}

bool ws_utf8_valid(const char *s, size_t n) {
    uint32_t state = 0, cp = 0;
    return utf8_scan((const uint8_t *)s, n, &state, &cp) && state == 0;
}

/* ---- the parser ----------------------------------------------------------- */

void ws_parser_init(ws_parser *p, uint64_t max_message) {
    memset(p, 0, sizeof *p);
    p->max_message = max_message;
}

static int fail(ws_parser *p, unsigned code, const char *reason) {
    p->error = code;
    p->error_reason = reason;
    return WS_ERROR;
}

static bool is_control(uint8_t opcode) { return opcode & 0x8; }

static uint64_t be_load(const uint8_t *s, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) v = v << 8 | s[i];
    return v;
}

/* Byte 0: the opcode and the fragmentation rules. */
static int on_byte0(ws_parser *p, uint8_t b) {
    p->fin = b & 0x80;
    p->opcode = b & 0x0F;
    if (b & 0x70) return fail(p, WS_CLOSE_PROTOCOL, "reserved bit set");
    switch (p->opcode) {
    case WS_OP_CONT:
        if (!p->msg_opcode) return fail(p, WS_CLOSE_PROTOCOL, "continuation with no message begun");
        return 0;
    case WS_OP_TEXT:
    case WS_OP_BINARY:
        if (p->msg_opcode) return fail(p, WS_CLOSE_PROTOCOL, "new data frame inside a fragmented message");
        p->msg_opcode = p->opcode;
        assert(p->msg_len == 0 && p->utf8_state == 0);
        return 0;
    case WS_OP_CLOSE:
    case WS_OP_PING:
    case WS_OP_PONG:
        if (!p->fin) return fail(p, WS_CLOSE_PROTOCOL, "fragmented control frame");
        return 0;
    default:
        return fail(p, WS_CLOSE_PROTOCOL, "unknown opcode");
    }
}

/* Byte 1: the mask bit, and from the length field the header's size. */
static int on_byte1(ws_parser *p, uint8_t b) {
    if (!(b & 0x80)) return fail(p, WS_CLOSE_PROTOCOL, "unmasked client frame");
    uint8_t len7 = b & 0x7F;
    if (is_control(p->opcode) && len7 > 125)
        return fail(p, WS_CLOSE_PROTOCOL, "control frame longer than 125 bytes");
    p->head_need = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + 4;
    return 0;
}

/* The length is complete (the masking key is still to come). */
static int on_length(ws_parser *p) {
    uint8_t len7 = p->head[1] & 0x7F;
    if (len7 < 126) {
        p->len = len7;
    } else if (len7 == 126) {
        p->len = be_load(p->head + 2, 2);
        if (p->len < 126) return fail(p, WS_CLOSE_PROTOCOL, "length not in its shortest encoding");
    } else {
        p->len = be_load(p->head + 2, 8);
        if (p->len >> 63) return fail(p, WS_CLOSE_PROTOCOL, "64-bit length with its top bit set");
        if (p->len < 65536) return fail(p, WS_CLOSE_PROTOCOL, "length not in its shortest encoding");
    }
    if (p->opcode == WS_OP_CLOSE && p->len == 1) return fail(p, WS_CLOSE_PROTOCOL, "close payload of 1 byte");
    /* msg_len never exceeds max_message, so the subtraction cannot wrap. */
    assert(is_control(p->opcode) || p->msg_len <= p->max_message);
    if (!is_control(p->opcode) && p->len > p->max_message - p->msg_len)
        return fail(p, WS_CLOSE_TOO_BIG, "message too big");
    return 0;
}

/* One header byte has been added to p->head. */
static int on_head_byte(ws_parser *p) {
    uint8_t b = p->head[p->head_len - 1];
    int rc = 0;
    if (p->head_len == 1) return on_byte0(p, b);
    if (p->head_len == 2 && (rc = on_byte1(p, b)) != 0) return rc;
    assert(p->head_need >= 6 && p->head_len <= p->head_need);
    if (p->head_len == p->head_need - 4 && (rc = on_length(p)) != 0) return rc;
    if (p->head_len == p->head_need) {
        memcpy(p->mask, p->head + p->head_need - 4, 4);
        p->pos = 0;
    }
    return 0;
}

/* A close frame's payload has grown to p->pos bytes: the code once it is in,
 * then the reason so far (a sequence cut short is left for the frame's end).
 * Re-scans from the start (at most 125 bytes) and sets *at to the 1-based
 * payload position of the byte that fails; earlier calls passed the bytes
 * before this call's, so that byte is among the new ones. */
static int check_close_payload(ws_parser *p, size_t *at) {
    uint32_t state = 0, cp = 0;
    for (size_t k = 0; k < p->pos; k++) {
        *at = k + 1;
        if (k == 1 && !ws_close_code_valid((unsigned)be_load(p->ctl, 2)))
            return fail(p, WS_CLOSE_PROTOCOL, "close code that may not be sent");
        if (k >= 2 && !utf8_step(&state, &cp, p->ctl[k]))
            return fail(p, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
    }
    return 0;
}

/* Consumes n payload bytes of the current frame (n fits in what is left);
 * *took gets how many, up to and including the byte an error is found at. */
static int on_payload(ws_parser *p, const uint8_t *s, size_t n, size_t *took) {
    assert(n <= p->len - p->pos);
    *took = n;
    if (is_control(p->opcode)) {
        assert(p->pos + n <= sizeof p->ctl);
        size_t from = (size_t)p->pos, at = 0;
        for (size_t i = 0; i < n; i++) p->ctl[from + i] = s[i] ^ p->mask[(from + i) & 3];
        p->pos += n;
        if (p->opcode != WS_OP_CLOSE || check_close_payload(p, &at) == 0) return 0;
        assert(at > from && at <= from + n);
        *took = at - from;
        return WS_ERROR;
    }
    if (p->msg_opcode == WS_OP_TEXT) {
        for (size_t i = 0; i < n; i++) {
            uint8_t b = s[i] ^ p->mask[(p->pos + i) & 3];
            if ((p->utf8_state != 0 || b >= 0x80) && !utf8_step(&p->utf8_state, &p->utf8_cp, b)) {
                *took = i + 1;
                return fail(p, WS_CLOSE_INVALID_DATA, "text message is not UTF-8");
            }
        }
    }
    p->pos += n;
    p->msg_len += n;
    return 0;
}

/* The current frame's payload is all in: WS_EVENT with *ev filled, 0 when the
 * frame completes nothing (a fragment that is not the last), or WS_ERROR. */
static int on_frame_end(ws_parser *p, ws_event *ev) {
    memset(ev, 0, sizeof *ev);
    if (is_control(p->opcode)) {
        ev->opcode = p->opcode;
        ev->payload = p->ctl;
        ev->len = (size_t)p->len;
        if (p->opcode != WS_OP_CLOSE) return WS_EVENT;
        if (p->len == 0) {
            ev->close_code = WS_CLOSE_NO_STATUS;
            return WS_EVENT;
        }
        assert(p->len >= 2); /* 1 was refused at the header, the code checked at 2 */
        if (!ws_utf8_valid((const char *)p->ctl + 2, (size_t)p->len - 2))
            return fail(p, WS_CLOSE_INVALID_DATA, "close reason is not UTF-8");
        ev->close_code = (unsigned)be_load(p->ctl, 2);
        ev->reason = (const char *)p->ctl + 2;
        ev->reason_len = (size_t)p->len - 2;
        return WS_EVENT;
    }
    if (!p->fin) return 0;
    if (p->msg_opcode == WS_OP_TEXT && p->utf8_state != 0)
        return fail(p, WS_CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence");
    ev->opcode = p->msg_opcode;
    ev->len = (size_t)p->msg_len;
    p->msg_opcode = 0;
    p->msg_len = 0;
    p->utf8_cp = 0;
    return WS_EVENT;
}

int ws_parse(ws_parser *p, const uint8_t *data, size_t n, size_t *used, ws_event *ev) {
    *used = 0;
    if (p->error) return WS_ERROR;
    size_t i = 0;
    while (i < n) {
        int rc;
        if (p->head_need == 0 || p->head_len < p->head_need) {
            assert(p->head_len < sizeof p->head);
            p->head[p->head_len++] = data[i++];
            if ((rc = on_head_byte(p)) != 0) {
                *used = i;
                return rc;
            }
            if (p->head_need == 0 || p->head_len < p->head_need) continue;
        } else {
            uint64_t left = p->len - p->pos;
            size_t take = left < n - i ? (size_t)left : n - i;
            size_t took;
            rc = on_payload(p, data + i, take, &took);
            i += took;
            if (rc != 0) {
                *used = i;
                return rc;
            }
        }
        if (p->pos < p->len) continue;
        rc = on_frame_end(p, ev);
        p->head_len = 0;
        p->head_need = 0;
        if (rc != 0) {
            *used = i;
            return rc;
        }
    }
    *used = n;
    return WS_NEED_MORE;
}

/* ---- what the server sends ------------------------------------------------ */

size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], int opcode, uint64_t len) {
    assert(opcode >= 0 && opcode <= 0xF);
    assert(!is_control((uint8_t)opcode) || len <= 125);
    assert(len >> 63 == 0);
    out[0] = (uint8_t)(0x80 | opcode);
    size_t ext = len < 126 ? 0 : len <= 0xFFFF ? 2 : 8;
    out[1] = (uint8_t)(ext == 0 ? len : ext == 2 ? 126 : 127);
    for (size_t i = 0; i < ext; i++) out[2 + i] = (uint8_t)(len >> (8 * (ext - 1 - i)));
    return 2 + ext;
}

size_t ws_close_frame(uint8_t out[WS_CLOSE_FRAME_MAX], unsigned code, const char *reason) {
    out[0] = 0x80 | WS_OP_CLOSE;
    if (code == 0) {
        out[1] = 0;
        return 2;
    }
    assert(ws_close_code_valid(code));
    size_t n = reason ? strlen(reason) : 0;
    if (n > CLOSE_REASON_MAX) {
        /* Back up to the start of the sequence the cut falls in (at most
         * three continuation bytes in UTF-8). */
        n = CLOSE_REASON_MAX;
        for (int k = 0; k < 3 && n > 0 && ((uint8_t)reason[n] & 0xC0) == 0x80; k++) n--;
    }
    out[1] = (uint8_t)(2 + n);
    out[2] = (uint8_t)(code >> 8);
    out[3] = (uint8_t)code;
    if (n) memcpy(out + 4, reason, n);
    return 4 + n;
}

bool ws_close_code_valid(unsigned code) {
    return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) ||
           (code >= 3000 && code <= 4999);
}

/* ---- the handshake -------------------------------------------------------- */

static int b64_value(char c) {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

/* Is key the base64 of 16 bytes: 22 characters, "==", and the last
 * character's 4 unused bits zero (the one encoding 16 bytes have)? */
static bool key_is_16_bytes(const char *key) {
    if (strlen(key) != 24 || key[22] != '=' || key[23] != '=') return false;
    for (int i = 0; i < 22; i++)
        if (b64_value(key[i]) < 0) return false;
    return (b64_value(key[21]) & 0x0F) == 0;
}

int ws_accept_key(const char *key, char out[29]) {
    if (!key || !key_is_16_bytes(key)) return CAIRN_EINVAL;
    char in[24 + sizeof WS_GUID];
    memcpy(in, key, 24);
    memcpy(in + 24, WS_GUID, sizeof WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(in, 24 + strlen(WS_GUID), md, &mdlen, EVP_sha1(), NULL) || mdlen != 20)
        return CAIRN_ENOMEM;
    int w = EVP_EncodeBlock((unsigned char *)out, md, 20);
    assert(w == 28 && out[28] == '\0');
    (void)w;
    return 0;
}
