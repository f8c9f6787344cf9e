/*
 * arena.c — the per-request bump allocator declared in core.h.
 *
 * An arena is a list of chunks, newest first; an allocation takes the next
 * aligned bytes of the head chunk and, when they do not fit, a new chunk
 * becomes the head.  An allocation of more than half a chunk gets a chunk of
 * its own, linked behind the head, so the head keeps its free room for the
 * small allocations that follow.  The arena's own record lives at the start
 * of the first chunk, so an arena that serves a few small allocations costs
 * one malloc and one free.
 *
 * The max counts whole chunks, headers included: what the arena holds from
 * the system, not what was asked of it.  When a full-sized chunk would pass
 * the max, a chunk of exactly the size needed is tried, so the last bytes of
 * the budget are usable.
 */
#include "core/core.h"

#include <assert.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define ALIGN alignof(max_align_t)

typedef struct chunk {
    struct chunk *next;
    size_t size;                /* bytes of data[] */
    size_t used;
    alignas(max_align_t) unsigned char data[];
} chunk;

struct arena {
    chunk *head;
    size_t held;                /* bytes of every chunk, headers included */
    size_t max;
    bool exhausted;
};

static size_t round_up(size_t n) { return (n + ALIGN - 1) & ~(ALIGN - 1); }

/* A chunk with room for n bytes, or NULL; counted against the max. */
static chunk *chunk_new(arena *a, size_t n) {
    size_t want = n > ARENA_CHUNK ? n : ARENA_CHUNK;
    if (a->held + sizeof(chunk) + want > a->max) want = n;   /* the budget's last bytes */
    if (a->held + sizeof(chunk) + want > a->max) {
        a->exhausted = true;
        return NULL;
    }
    chunk *c = malloc(sizeof(chunk) + want);
    if (!c) return NULL;
    c->size = want;
    c->used = 0;
    a->held += sizeof(chunk) + want;
    return c;
}

arena *arena_new(size_t max) {
    if (max < ARENA_MIN) return NULL;
    size_t first = max - sizeof(chunk) < ARENA_CHUNK ? max - sizeof(chunk) : ARENA_CHUNK;
    chunk *c = malloc(sizeof(chunk) + first);
    if (!c) return NULL;
    c->next = NULL;
    c->size = first;
    c->used = round_up(sizeof(arena));
    assert(c->used <= c->size);
    arena *a = (arena *)c->data;
    *a = (arena){.head = c, .held = sizeof(chunk) + first, .max = max};
    return a;
}

void arena_free(arena *a) {
    if (!a) return;
    /* The record lives in the first chunk: the loop reads it once, then
     * only the chunks. */
    for (chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
}

void *arena_alloc(arena *a, size_t n) {
    if (n == 0) n = 1;
    if (n > SIZE_MAX - ALIGN || n > a->max) {
        a->exhausted = true;
        return NULL;
    }
    n = round_up(n);
    chunk *h = a->head;
    if (h->size - h->used >= n) {
        void *p = h->data + h->used;
        h->used += n;
        return p;
    }
    chunk *c = chunk_new(a, n);
    if (!c) return NULL;
    c->used = n;
    if (n > ARENA_CHUNK / 2) {
        /* A chunk of its own, behind the head, whose room stays in use. */
        c->next = h->next;
        h->next = c;
    } else {
        c->next = h;
        a->head = c;
    }
    return c->data;
}

void *arena_calloc(arena *a, size_t count, size_t size) {
    if (size && count > SIZE_MAX / size) {
        a->exhausted = true;
        return NULL;
    }
    void *p = arena_alloc(a, count * size);
    if (p) memset(p, 0, count * size);
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) {
        a->exhausted = true;
        return NULL;
    }
    char *p = arena_alloc(a, n + 1);
    if (!p) return NULL;
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

size_t arena_size(const arena *a) { return a->held; }

bool arena_exhausted(const arena *a) { return a->exhausted; }
