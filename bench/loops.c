/* The sandbox benchmark's client loops, timed with CLOCK_MONOTONIC:
 *   files DIR N ROUNDS   open, fstat, read 4 KiB, close each of DIR/f0 .. DIR/f(N-1), ROUNDS times:
 *                        prints operations (open+fstat+read+close) per second
 *   open PATH ROUNDS     open(PATH, O_RDONLY) ROUNDS times (closing what opens): prints the mean
 *                        nanoseconds per open and how many failed with which errno */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "files")) {
		int n = atoi(argv[3]), rounds = atoi(argv[4]);
		char path[4096], buf[4096];
		struct stat st;
		double start = now();
		for (int r = 0; r < rounds; r++)
			for (int i = 0; i < n; i++) {
				snprintf(path, sizeof(path), "%s/f%d", argv[2], i);
				int fd = open(path, O_RDONLY);
				if (fd < 0) { perror(path); return 1; }
				if (fstat(fd, &st) < 0 || read(fd, buf, sizeof(buf)) < 0) { perror(path); return 1; }
				close(fd);
			}
		printf("%.1f\n", (double)n * rounds / (now() - start));
		return 0;
	}
	if (argc == 4 && !strcmp(argv[1], "open")) {
		int rounds = atoi(argv[3]), failed = 0, err = 0;
		double start = now();
		for (int r = 0; r < rounds; r++) {
			int fd = open(argv[2], O_RDONLY);
			if (fd >= 0) close(fd);
			else { failed++; err = errno; }
		}
		printf("%.1f %d %s\n", (now() - start) * 1e9 / rounds, failed, failed ? strerror(err) : "-");
		return 0;
	}
	fprintf(stderr, "usage: loops files DIR N ROUNDS | loops open PATH ROUNDS\n");
	return 2;
}
