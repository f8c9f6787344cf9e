/*
 * test_arena.c — the per-request arena (src/core/arena.c): allocations are
 * aligned, distinct and usable; chunks grow as needed and large allocations
 * get their own; the max bounds what the arena holds, past it allocations
 * fail and say so, and allocations that still fit keep working.
 */
#include <criterion/criterion.h>
#include <stdalign.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "core/core.h"

Test(arena, small_allocations_are_aligned_distinct_and_usable) {
    arena *a = arena_new(1 << 20);
    cr_assert_not_null(a);
    char *prev = NULL;
    for (int i = 0; i < 1000; i++) {
        size_t n = (size_t)(i % 37) + 1;
        char *p = arena_alloc(a, n);
        cr_assert_not_null(p);
        cr_expect_eq((uintptr_t)p % alignof(max_align_t), 0, "allocation %d is aligned", i);
        memset(p, i & 0xff, n);
        if (prev) cr_expect_neq(p, prev);
        prev = p;
    }
    cr_expect_gt(arena_size(a), (size_t)ARENA_CHUNK, "1000 allocations took more than one chunk");
    cr_expect_not(arena_exhausted(a));
    void *z1 = arena_alloc(a, 0), *z2 = arena_alloc(a, 0);
    cr_expect(z1 && z2 && z1 != z2, "zero-byte allocations are valid and unique");
    arena_free(a);
}

Test(arena, strings_and_zeroed_memory) {
    arena *a = arena_new(ARENA_CHUNK);
    cr_assert_not_null(a);
    char *s = arena_strdup(a, "bucket/key");
    cr_expect_str_eq(s, "bucket/key");
    char *t = arena_strndup(a, "abcdef", 3);
    cr_expect_str_eq(t, "abc");
    char *e = arena_strndup(a, "", 0);
    cr_expect_str_eq(e, "");
    unsigned char *z = arena_calloc(a, 100, 3);
    cr_assert_not_null(z);
    for (int i = 0; i < 300; i++) cr_expect_eq(z[i], 0);
    arena_free(a);
}

Test(arena, a_large_allocation_gets_its_own_chunk_and_leaves_the_head_alone) {
    arena *a = arena_new(1 << 20);
    cr_assert_not_null(a);
    char *small = arena_alloc(a, 64);
    size_t before = arena_size(a);
    char *big = arena_alloc(a, 3 * ARENA_CHUNK);
    cr_assert_not_null(big);
    memset(big, 'x', 3 * ARENA_CHUNK);
    cr_expect_geq(arena_size(a), before + 3 * ARENA_CHUNK, "the big one has a chunk of its size");
    size_t after_big = arena_size(a);
    char *next = arena_alloc(a, 64);
    cr_expect_eq(arena_size(a), after_big, "the next small allocation fits the first chunk's room");
    cr_expect_eq(next, small + 64, "right after the previous small one");
    arena_free(a);
}

Test(arena, the_max_bounds_what_it_holds) {
    const size_t max = 3 * ARENA_CHUNK;
    arena *a = arena_new(max);
    cr_assert_not_null(a);
    size_t got = 0;
    while (arena_alloc(a, 1000)) {
        got += 1000;
        cr_assert_leq(arena_size(a), max, "never holds more than its max");
    }
    cr_expect(arena_exhausted(a), "the failure is the max's, not the system's");
    cr_expect_gt(got, 2 * ARENA_CHUNK, "close to the max is usable (%zu bytes of %zu)", got, max);
    cr_expect_leq(arena_size(a), max);
    /* What still fits the current chunk keeps working after a refusal. */
    arena_free(a);

    a = arena_new(max);
    cr_assert_not_null(a);
    cr_expect_null(arena_alloc(a, max), "one allocation as large as the max cannot fit beside the headers");
    cr_expect(arena_exhausted(a));
    cr_expect_not_null(arena_alloc(a, 100), "a small one still fits the first chunk");
    cr_expect_null(arena_calloc(a, SIZE_MAX / 2, 4), "count * size overflows");
    cr_expect_null(arena_alloc(a, SIZE_MAX));
    cr_expect_leq(arena_size(a), max);
    arena_free(a);
}

Test(arena, the_last_bytes_of_the_budget_are_usable) {
    /* With less than a full chunk left, a chunk of exactly the size needed. */
    const size_t max = ARENA_CHUNK + ARENA_CHUNK / 4 + 512;
    arena *a = arena_new(max);
    cr_assert_not_null(a);
    cr_assert_not_null(arena_alloc(a, ARENA_CHUNK - 1024), "most of the first chunk");
    cr_expect_not_null(arena_alloc(a, ARENA_CHUNK / 4), "a chunk of just this size fits the rest of the budget");
    cr_expect_not(arena_exhausted(a));
    cr_expect_null(arena_alloc(a, ARENA_CHUNK / 4));
    cr_expect(arena_exhausted(a));
    arena_free(a);
}

Test(arena, a_max_too_small_for_a_first_chunk_is_refused) {
    cr_expect_null(arena_new(0));
    cr_expect_null(arena_new(ARENA_MIN - 1));
    arena *a = arena_new(ARENA_MIN);
    cr_assert_not_null(a, "the smallest arena");
    cr_expect_leq(arena_size(a), (size_t)ARENA_MIN);
    cr_expect_not_null(arena_alloc(a, 16));
    arena_free(a);
    arena_free(NULL);
}
