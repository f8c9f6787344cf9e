/*
 * redis_proc.h — a real redis-server for unit tests: Debian's binary on a
 * free loopback port in a temp dir, killed with the test (PR_SET_PDEATHSIG),
 * stopped and started again on the same port for outage tests.  Include
 * after criterion.h.
 */
#ifndef CAIRN_TEST_REDIS_PROC_H
#define CAIRN_TEST_REDIS_PROC_H

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct {
    pid_t pid;
    int port;
    char dir[64];
    char url[64];
} redis_proc;

static int free_port(void) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t l = sizeof a;
    getsockname(s, (struct sockaddr *)&a, &l);
    close(s);
    return ntohs(a.sin_port);
}

static bool redis_answers(int port) {
    struct timeval tv = {0, 200000};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    bool ok = false;
    if (c && !c->err) {
        redisReply *r = redisCommand(c, "PING");
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r) freeReplyObject(r);
    }
    if (c) redisFree(c);
    return ok;
}

static void redis_start(redis_proc *r) {
    char port[16];
    snprintf(port, sizeof port, "%d", r->port);
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        /* Dies with the test, even one an assertion ended; and keeps the
         * runner's pipes free, which it waits on. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, 1);
        dup2(devnull, 2);
        execl("/usr/bin/redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "",
              "--appendonly", "no", "--dir", r->dir, (char *)NULL);
        _exit(127);
    }
    r->pid = pid;
    for (int i = 0; i < 500 && !redis_answers(r->port); i++) usleep(10000);
    cr_assert(redis_answers(r->port), "redis-server did not start on port %d", r->port);
}

static void redis_new(redis_proc *r) {
    memset(r, 0, sizeof *r);
    strcpy(r->dir, "/tmp/cairn-test-redis-XXXXXX");
    cr_assert_not_null(mkdtemp(r->dir));
    r->port = free_port();
    snprintf(r->url, sizeof r->url, "redis://127.0.0.1:%d", r->port);
    redis_start(r);
}

static void redis_stop(redis_proc *r) {
    if (r->pid <= 0) return;
    kill(r->pid, SIGKILL);
    waitpid(r->pid, NULL, 0);
    r->pid = 0;
}

static void redis_free(redis_proc *r) {
    redis_stop(r);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", r->dir);
    cr_assert_eq(system(cmd), 0);
}

#endif
