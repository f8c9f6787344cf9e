/*
 * obs — metrics in Prometheus text format.
 *
 * A registry counts requests by API and status code, keeps a latency
 * histogram per API, totals bytes in and out, and tracks in-flight requests;
 * process RSS and open fds are read from /proc when scraped.  Modules may add
 * their own named counters (obs_counter_add) and gauges (obs_gauge_set)
 * without a schema change.
 *
 * Thread-safety: all functions are thread-safe (one mutex; the critical
 * sections are a few additions).
 */
#ifndef CAIRN_OBS_H
#define CAIRN_OBS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/core.h"

typedef struct obs_registry obs_registry;

obs_registry *obs_new(void);
void obs_free(obs_registry *o);
/* metrics_enabled false: every recording call returns at once, nothing is
 * kept (set before the registry is shared). */
void obs_set_enabled(obs_registry *o, bool on);

/* Records one finished request.  api must be a string that lives forever. */
void obs_request(obs_registry *o, const char *api, unsigned status, double seconds,
                 uint64_t bytes_in, uint64_t bytes_out);
void obs_inflight(obs_registry *o, int delta);
/* Adds to a free-form counter; name (static) is the full metric name, help its help text. */
void obs_counter_add(obs_registry *o, const char *name, const char *help, uint64_t v);
/* Sets a gauge: name (static) is the metric's name, labels its label set as
 * Prometheus writes it (copied, at most 63 bytes: role="scrub"; "" for
 * none), help (static) its help text.  Gauges of one name are rendered
 * together under one HELP line. */
void obs_gauge_set(obs_registry *o, const char *name, const char *labels, const char *help, int64_t v);
/* Appends the exposition text. */
void obs_render(obs_registry *o, buf_t *out);

/* Reads process RSS in bytes and open fd count; 0 on success. */
int obs_process_rss(int64_t *rss_bytes);
int obs_process_fds(int64_t *fds);

#endif
