/* fuzz_http.c - libFuzzer target: allocd's HTTP server end to end.  One
 * allocd core (store in a temporary SQLite file, collector, HTTP server on
 * an ephemeral loopback port) is started once; every input is sent as the
 * raw bytes of a request on a new connection and the answer is read to the
 * end.  Parsing (libmicrohttpd), routing, query and body handling all run;
 * a crash or sanitizer report in any server thread fails the run.  Seeds
 * carry the token "fuzz-token-0123456789" so that write paths are reached. */
#include "api.h"
#include "collector.h"
#include "rules.h"
#include "store.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int port;

static void start_server(void) {
  char dir[] = "/tmp/fuzz-http.XXXXXX", db[64], err[256] = "";
  if (!mkdtemp(dir)) abort();
  snprintf(db, sizeof db, "%s/allocd.db", dir);
  store_limits_t limits = {.raw_ms = 3600000, .minute_ms = 86400000, .hour_ms = 86400000, .process_minute_ms = 86400000,
                            .process_hour_ms = 86400000, .max_bytes = 64 << 20};
  store_t *store = store_open(db, &limits, err, sizeof err);
  collector_t *collector = store ? collector_new(store, dir) : NULL;
  rules_t *rules = collector ? rules_start(store, collector, 100) : NULL;
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof a;
  if (!rules || fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 64) ||
      getsockname(fd, (struct sockaddr *)&a, &len))
    abort();
  port = ntohs(a.sin_port);
  static const char *const hosts[] = {"x"};   /* the corpus's Host: the others get 421 */
  api_config_t cfg = {.listen_fd = fd, .token = "fuzz-token-0123456789", .push_timeout_ms = 100, .max_connections = 32,
                      .connection_timeout_s = 5, .request_timeout_s = 5, .listen_host = "127.0.0.1",
                      .allow_hosts = hosts, .nallow_hosts = 1};
  if (!api_start(&cfg, store, collector, rules, err, sizeof err)) abort();
}

/* A connection to the server.  The client closes with a reset (linger 0)
 * so that thousands of runs do not exhaust ephemeral ports in TIME_WAIT;
 * a refused or full listen queue (the server at its connection limit) is
 * retried for a while; a server that stays unreachable is a finding. */
static int connect_server(void) {
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                          .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  struct linger lg = {1, 0};
  for (int tries = 0; tries < 5000; tries++) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) abort();
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return fd;
    close(fd);
    usleep(1000);
  }
  fprintf(stderr, "fuzz_http: the server stopped accepting connections\n");
  abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!port) start_server();
  int fd = connect_server();
  size_t off = 0;
  while (off < size) {
    ssize_t n = send(fd, data + off, size - off, MSG_NOSIGNAL);
    if (n <= 0) break;
    off += (size_t)n;
  }
  shutdown(fd, SHUT_WR);
  char buf[4096];
  struct pollfd p = {fd, POLLIN, 0};
  while (poll(&p, 1, 2000) > 0 && recv(fd, buf, sizeof buf, 0) > 0) {
  }
  close(fd);
  return 0;
}
