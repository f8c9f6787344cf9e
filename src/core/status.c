/*
 * status.c — cluster status events, the registry between the parts that see
 * them happen (membership, healing, jobs, the data store) and the one part
 * that carries them (the event bus, events/), which the lower parts may not
 * depend on.  cmd/ sets the sink once; with none set (tools, tests, the
 * embedded default with events off) status_emit does nothing.
 *
 * The sink pointer is read without a lock on every emit (an atomic load),
 * and set while the process is single-threaded or with the sink's owner
 * ensuring no emit runs concurrently with its teardown: cmd/ clears it
 * before it frees the bus.
 */
#include "core/core.h"

#include <stdarg.h>
#include <stdatomic.h>

typedef struct {
    status_sink_fn fn;
    void *ud;
} sink;

static sink sinks[2];
static _Atomic(sink *) current;

void status_set_sink(status_sink_fn fn, void *ud) {
    if (!fn) {
        atomic_store(&current, NULL);
        return;
    }
    /* Two slots: the one being replaced may still be read by an emit. */
    sink *next = atomic_load(&current) == &sinks[0] ? &sinks[1] : &sinks[0];
    next->fn = fn;
    next->ud = ud;
    atomic_store(&current, next);
}

void status_emit(const char *type, ...) {
    sink *s = atomic_load(&current);
    if (!s) return;
    const char *fields[2 * STATUS_MAX_FIELDS + 1];
    int n = 0;
    va_list ap;
    va_start(ap, type);
    for (const char *k; n < 2 * STATUS_MAX_FIELDS && (k = va_arg(ap, const char *));) {
        const char *v = va_arg(ap, const char *);
        fields[n++] = k;
        fields[n++] = v ? v : "";
    }
    va_end(ap);
    fields[n] = NULL;
    s->fn(s->ud, type, fields);
}
