/* The physical floor: posix_spawn `/bin/sh -c CMD` N times, at most P at a time, and nothing else.
 *
 *   cc -O2 -o floor bench/floor.c && ./floor N P [CMD]      (CMD defaults to "true")
 *
 * Exits 0 when every child exited 0, 1 otherwise. bench/run.py times it from the outside,
 * the same way it times every other peer.
 */
#include <errno.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

extern char **environ;

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s N P [CMD]\n", argv[0]);
        return 2;
    }
    long n = atol(argv[1]);
    long p = atol(argv[2]);
    char *cmd = argc > 3 ? argv[3] : "true";
    if (n < 0 || p < 1) {
        fprintf(stderr, "floor: N must be >= 0 and P >= 1\n");
        return 2;
    }
    char *child_argv[] = {"/bin/sh", "-c", cmd, NULL};
    long started = 0, running = 0, failed = 0;
    while (started < n || running > 0) {
        while (started < n && running < p) {
            pid_t pid;
            int err = posix_spawn(&pid, "/bin/sh", NULL, NULL, child_argv, environ);
            if (err != 0) {
                fprintf(stderr, "floor: posix_spawn: error %d\n", err);
                return 1;
            }
            started++;
            running++;
        }
        int status;
        pid_t done = waitpid(-1, &status, 0);
        if (done < 0) {
            if (errno == EINTR)
                continue;
            perror("floor: waitpid");
            return 1;
        }
        running--;
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    if (failed) {
        fprintf(stderr, "floor: %ld of %ld children failed\n", failed, n);
        return 1;
    }
    return 0;
}
