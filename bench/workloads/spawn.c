/* spawn.c - start a short-lived program many times, one after the other.
 *
 * Usage: spawn COUNT PROGRAM [ARGS...]
 *
 * Start-up cost is paid by every short-lived process - shell pipelines,
 * build steps, CGI - and an allocator adds to it: its constructor, the
 * first mapping of its heap, reading its configuration.  This runs PROGRAM
 * COUNT times with posix_spawn (cheap, no page-table copy) and waits for
 * each.  Preload the allocator into spawn itself and every child inherits
 * LD_PRELOAD, so the time is COUNT start-ups under that allocator plus a
 * small constant.  Prints the count of successful runs; any failed run
 * stops the program.
 */
#include <spawn.h>
#include <sys/wait.h>

#include "bench_common.h"

extern char **environ;

static void run_once(char **argv)
{
    pid_t pid;
    int rc = posix_spawn(&pid, argv[0], NULL, NULL, argv, environ);
    if (rc != 0)
        die("cannot start %s: %s", argv[0], strerror(rc));
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            die("waitpid failed: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        die("%s failed (status %#x)", argv[0], status);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s COUNT PROGRAM [ARGS...]\n", argv[0]);
        return 2;
    }
    uint64_t count = parse_count(argv[1], "COUNT", 1, 1000000);
    for (uint64_t i = 0; i < count; i++)
        run_once(argv + 2);
    printf("spawn runs=%llu\n", (unsigned long long)count);
    return 0;
}
