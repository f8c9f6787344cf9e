/*
 * ratelimit_int.h — between ratelimit.c (the limiter) and ratelimit_redis.c
 * (its limits shared through Redis); private to auth/.
 */
#ifndef CAIRN_AUTH_RATELIMIT_INT_H
#define CAIRN_AUTH_RATELIMIT_INT_H

#include "auth/auth.h"

typedef struct rl_remote rl_remote;

int rl_remote_new(const rl_shared *o, rl_remote **out, char *why, size_t whylen);
void rl_remote_free(rl_remote *r);
/* One request of s by Redis's buckets (lim: the limits; tau_us: each
 * bucket's depth).  *decided false when Redis failed or its breaker is open
 * (the caller decides alone); else 0 or CAIRN_EBUSY with *why. */
int rl_remote_admit(rl_remote *r, const rl_subject *s, const rl_limits *lim, const int64_t tau_us[RL__DIMS],
                    rl_refusal *why, bool *decided);
/* Charges bytes to s's byte buckets in Redis: 0 with *wait_ns, or CAIRN_EIO. */
int rl_remote_charge(rl_remote *r, const rl_subject *s, const rl_limits *lim, const int64_t tau_us[RL__DIMS],
                     uint64_t bytes, int64_t *wait_ns);
/* Live gateways when Redis last answered (>= 1), and whether it answers. */
int rl_remote_gateways(rl_remote *r);
bool rl_remote_up(rl_remote *r);

#endif
