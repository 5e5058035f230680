// The least a proxy can do, as a yardstick for benches/proxy_cpu.sh: each
// client connection is paired with its own backend connection when accepted,
// and bytes are copied both ways as they come. No parsing, no pool, no
// timeouts, no error answers: not a server, only a floor for what a proxy's
// sockets cost the machine. Level-triggered epoll, one read and one write per
// readiness.
//
//   gcc -O2 -o null_proxy benches/null_proxy.c && ./null_proxy PORT BACKEND_PORT
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_FDS 65536
static int peer[MAX_FDS];
static char buf[65536];

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s PORT BACKEND_PORT (both on 127.0.0.1)\n", argv[0]);
    return 2;
  }
  int one = 1;
  struct sockaddr_in front = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1]))};
  inet_pton(AF_INET, "127.0.0.1", &front.sin_addr);
  struct sockaddr_in back = front;
  back.sin_port = htons(atoi(argv[2]));
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(listener, (void *)&front, sizeof front) || listen(listener, 1024)) {
    perror("listen");
    return 1;
  }
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = listener}, events[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  for (;;) {
    int n = epoll_wait(ep, events, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = events[i].data.fd;
      if (fd == listener) {
        int client;
        while ((client = accept4(listener, 0, 0, SOCK_NONBLOCK)) >= 0) {
          // A blocking connect is fine here: wrk opens its connections once.
          int backend = socket(AF_INET, SOCK_STREAM, 0);
          if (client >= MAX_FDS || backend >= MAX_FDS ||
              connect(backend, (void *)&back, sizeof back)) {
            close(client);
            close(backend);
            continue;
          }
          fcntl(backend, F_SETFL, O_NONBLOCK);
          setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          setsockopt(backend, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          peer[client] = backend;
          peer[backend] = client;
          ev.data.fd = client;
          epoll_ctl(ep, EPOLL_CTL_ADD, client, &ev);
          ev.data.fd = backend;
          epoll_ctl(ep, EPOLL_CTL_ADD, backend, &ev);
        }
        continue;
      }
      ssize_t got = read(fd, buf, sizeof buf);
      if (got < 0 && errno == EAGAIN)
        continue;
      if (got <= 0) {
        close(peer[fd]);
        close(fd);
        continue;
      }
      // 1 KiB answers fit any socket buffer; a full one is waited out here.
      for (ssize_t off = 0; off < got;) {
        ssize_t sent = write(peer[fd], buf + off, got - off);
        if (sent > 0)
          off += sent;
        else if (errno != EAGAIN)
          break;
      }
    }
  }
}
