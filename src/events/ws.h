/*
 * ws.h — RFC 6455 WebSocket framing, pure: no sockets, no threads, no
 * allocation.  The event stream (hub.c) reads client bytes into a buffer and
 * feeds them to a ws_parser, which validates every frame as it arrives and
 * reports control frames and completed data messages; the server's own
 * frames are built with ws_frame_header and ws_close_frame.
 *
 * What the parser enforces (each a close code, the first one hit wins):
 *   1002 protocol error  an unmasked client frame, a reserved bit set, an
 *                        unknown opcode, a control frame fragmented or with
 *                        more than 125 payload bytes, a continuation with no
 *                        message begun, a new data frame inside a fragmented
 *                        message, a 64-bit length with its top bit set, a
 *                        length not in its shortest encoding, a close payload
 *                        of 1 byte or with a code that may not be sent
 *   1007 invalid data    a text message (or a close reason) that is not
 *                        UTF-8: found as early as the bytes allow, across
 *                        frame and buffer boundaries, and at the message's
 *                        end for a sequence cut short
 *   1009 too big         a data message longer than max_message in total
 *
 * Data message payloads are validated and skipped, never buffered: the
 * stream needs nothing clients send but control frames.  A control frame's
 * payload (at most 125 bytes) is kept in the parser until it is reported.
 *
 * Thread-safety: a parser is one connection's; the functions without a
 * parser are pure.
 */
#ifndef CAIRN_EVENTS_WS_H
#define CAIRN_EVENTS_WS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    WS_OP_CONT = 0x0,
    WS_OP_TEXT = 0x1,
    WS_OP_BINARY = 0x2,
    WS_OP_CLOSE = 0x8,
    WS_OP_PING = 0x9,
    WS_OP_PONG = 0xA,
};

enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,
    WS_CLOSE_PROTOCOL = 1002,
    WS_CLOSE_NO_STATUS = 1005,    /* reported for a close frame without a code; never sent */
    WS_CLOSE_INVALID_DATA = 1007,
    WS_CLOSE_POLICY = 1008,
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL = 1011,
};

/* Largest server frame header: 2 bytes + a 64-bit length. */
#define WS_HEADER_MAX 10
/* Largest close frame: header 2 + code 2 + reason 123. */
#define WS_CLOSE_FRAME_MAX 127

typedef struct {
    /* configuration */
    uint64_t max_message;        /* largest data message accepted, in bytes */
    /* the frame being read */
    uint8_t head[14];            /* header bytes gathered so far */
    uint8_t head_len;            /* how many of head are in */
    uint8_t head_need;           /* the header's full length once known, else 0 */
    uint8_t opcode;              /* of this frame */
    bool fin;
    uint8_t mask[4];
    uint64_t len;                /* payload length of this frame */
    uint64_t pos;                /* payload bytes of this frame consumed */
    /* the data message in progress (fragmented over frames) */
    uint8_t msg_opcode;          /* WS_OP_TEXT or WS_OP_BINARY; 0 when none */
    uint64_t msg_len;            /* its bytes so far */
    uint32_t utf8_state;         /* UTF-8 validator state across bytes (0 = at a boundary) */
    uint32_t utf8_cp;            /* code point being assembled */
    /* a control frame's payload, unmasked */
    uint8_t ctl[125];
    /* after an error */
    unsigned error;              /* the close code to send, 0 while none */
    const char *error_reason;    /* static text for the close frame and the log */
} ws_parser;

/* What one call of ws_parse reports. */
typedef struct {
    int opcode;                  /* WS_OP_PING, WS_OP_PONG, WS_OP_CLOSE, or WS_OP_TEXT /
                                  * WS_OP_BINARY for a data message completed */
    const uint8_t *payload;      /* control frames: the payload (in the parser; valid until the next call) */
    size_t len;                  /* control frames: payload bytes; data messages: the message's length */
    unsigned close_code;         /* WS_OP_CLOSE: the peer's code, WS_CLOSE_NO_STATUS when it sent none */
    const char *reason;          /* WS_OP_CLOSE: the peer's reason (not NUL-terminated), reason_len bytes */
    size_t reason_len;
} ws_event;

enum { WS_NEED_MORE = 0, WS_EVENT = 1, WS_ERROR = -1 };

/* A parser at the start of a connection's byte stream. */
void ws_parser_init(ws_parser *p, uint64_t max_message);

/* Consumes bytes of data[0..n) until one event or the end of the bytes.
 * *used gets how many were consumed (always all of them with WS_NEED_MORE).
 * Returns WS_EVENT (*ev filled: call again with the rest), WS_NEED_MORE, or
 * WS_ERROR (p->error and p->error_reason say why; *used counts the bytes up
 * to and including the one that decided it; every later call returns
 * WS_ERROR again and consumes nothing).  Nothing after a close frame is
 * meant to be parsed: the caller stops reading. */
int ws_parse(ws_parser *p, const uint8_t *data, size_t n, size_t *used, ws_event *ev);

/* Writes the header of an unmasked, final server frame of opcode carrying
 * len payload bytes into out; returns its length (2, 4 or 10). */
size_t ws_frame_header(uint8_t out[WS_HEADER_MAX], int opcode, uint64_t len);

/* Writes a whole close frame with code and reason (NULL: none; cut to at
 * most 123 bytes, at a UTF-8 boundary) into out; returns its length. */
size_t ws_close_frame(uint8_t out[WS_CLOSE_FRAME_MAX], unsigned code, const char *reason);

/* May a peer send this close code (RFC 6455 7.4)?  1000-1003, 1007-1014 and
 * 3000-4999 may; 1004, 1005, 1006, 1015 and the unassigned may not. */
bool ws_close_code_valid(unsigned code);

/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: base64 of the
 * SHA-1 of key and the RFC's GUID, NUL-terminated in out.  Returns 0,
 * CAIRN_EINVAL when key is not the base64 of 16 bytes (RFC 6455 4.1: 22
 * characters, "==", no stray bits in the last character), or CAIRN_ENOMEM
 * when libcrypto cannot compute the digest. */
int ws_accept_key(const char *key, char out[29]);

/* Is s[0..n) UTF-8 (no overlongs, no surrogates, nothing past U+10FFFF)? */
bool ws_utf8_valid(const char *s, size_t n);

#endif
