/* The C yardstick for bench_engine.py: what the original daemon does for one tcp or http check,
 * and nothing else, so that "CPU per check" can be compared on the same machine at the same time.
 *
 * Per check, as the original's sd_start_real / sd_tester_process_events (reference section 4):
 * a non-blocking socket with SO_LINGER {1, 0}, EPOLL_CTL_ADD, connect (EINPROGRESS), the
 * writable event, for http a "GET url HTTP/1.0" request and a read of the status line, then
 * EPOLL_CTL_DEL and close (an RST). Checks start in batches every 10 ms, at the rate the Python
 * engine is scheduled for; a check that has not finished after `timeout_s` is counted failed.
 *
 *   cc -O2 -o c_checker c_checker.c
 *   c_checker tcp|http REALS RATE SECONDS PORT[,PORT...]
 *
 * Reals are 127.1.0.1 onwards (bench_engine.address). Prints one JSON line.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAXFD 65536
#define REQUEST "GET /health HTTP/1.0\r\nHost: bench.example.test\r\n\r\n"

struct flight {
    double started;
    int sent;
};

static struct flight flights[MAXFD];
static long done, failed;
static int highest;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void finish(int ep, int fd, int ok) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    close(fd);
    flights[fd].started = 0;
    done++;
    if (!ok)
        failed++;
}

static void start(int ep, long i, const int *ports, int nports) {
    struct linger rst = {1, 0};
    struct sockaddr_in sin = {.sin_family = AF_INET};
    long n = i + 1 + 65536;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || fd >= MAXFD) {
        if (fd >= 0)
            close(fd);
        failed++, done++;
        return;
    }
    if (fd > highest)
        highest = fd;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &rst, sizeof rst);
    struct epoll_event ev = {.events = EPOLLOUT, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    flights[fd].started = now();
    flights[fd].sent = 0;
    sin.sin_addr.s_addr = htonl(0x7f000000u | (unsigned long)(n & 0xffffff));
    sin.sin_port = htons(ports[i % nports]);
    if (connect(fd, (struct sockaddr *)&sin, sizeof sin) < 0 && errno != EINPROGRESS)
        finish(ep, fd, 0);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s tcp|http REALS RATE SECONDS PORT[,PORT...]\n", argv[0]);
        return 2;
    }
    int http = strcmp(argv[1], "http") == 0;
    long reals = atol(argv[2]);
    double rate = atof(argv[3]), seconds = atof(argv[4]), timeout_s = 5.0;
    int ports[64], nports = 0;
    for (char *p = strtok(argv[5], ","); p && nports < 64; p = strtok(NULL, ","))
        ports[nports++] = atoi(p);
    int ep = epoll_create1(0);
    struct epoll_event events[1024];
    char buf[4096];
    long next = 0;
    double t0 = now(), cpu0 = cpu(), owed = 0, last = t0, swept = t0;
    while (now() - t0 < seconds) {
        int n = epoll_wait(ep, events, 1024, 10);
        for (int k = 0; k < n; k++) {
            int fd = events[k].data.fd;
            if (events[k].events & EPOLLERR) {
                finish(ep, fd, 0);
            } else if (!http) {
                finish(ep, fd, 1);
            } else if (!flights[fd].sent) {
                flights[fd].sent = send(fd, REQUEST, sizeof REQUEST - 1, MSG_NOSIGNAL) > 0;
                struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
                epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
            } else {
                ssize_t got = recv(fd, buf, sizeof buf, 0);
                if (got < 0 && errno == EAGAIN)
                    continue;
                finish(ep, fd, got >= 12 && memcmp(buf + 8, " 200", 4) == 0);
            }
        }
        double t = now();
        owed += (t - last) * rate;  /* the scheduler pass: start what is due */
        last = t;
        for (; owed >= 1; owed--)
            start(ep, next++ % reals, ports, nports);
        if (t - swept < 0.1)
            continue;
        swept = t;  /* expiry every 100 ms, as the original's scheduler pass */
        for (int fd = 0; fd <= highest; fd++)
            if (flights[fd].started && t - flights[fd].started > timeout_s)
                finish(ep, fd, 0);
    }
    double elapsed = now() - t0, used = cpu() - cpu0;
    printf("{\"c_checks_per_s\": %.0f, \"c_cpu_us_per_check\": %.1f, \"c_failed\": %ld}\n",
           done / elapsed, done ? used / done * 1e6 : 0.0, failed);
    return 0;
}
