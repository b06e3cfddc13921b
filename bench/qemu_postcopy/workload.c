/*
 * The guest's /init for the QEMU postcopy baseline (bench/qemu_postcopy).
 *
 * Allocates WL_MIB MiB (kernel command line `wl_mib=N`, which the kernel hands to init
 * as an environment variable; default 900; less if the guest has not that much free
 * memory plus RESERVE_MIB: the first line says how much it took), fills every 4 KiB
 * page with a pattern that depends on the page's index and the pass number, then
 * loops forever: each pass checks every 64-bit word of every page against the previous
 * pass's pattern and writes the next one. One line per pass goes to the console (the
 * serial port):
 *
 *   wl: pass 7 ok pages=230400 bad=0 ms=812
 *
 * and each wrong word (at most 8 lines a pass) is reported as
 *
 *   wl: CORRUPT pass=7 page=1234 word=5 got=... want=...
 *
 * Built with `gcc -static`; needs nothing in the initramfs but /dev/console (it mounts
 * devtmpfs itself if the console is missing). As init it must never exit.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096u
#define WORDS (PAGE / sizeof(uint64_t))
#define STEP 0x9E3779B97F4A7C15ull
/* Free memory (MiB) the workload leaves to the kernel at least (watermarks, the DMA
 * zone's reserve, page tables): 40 was too little for a 1 GiB guest. */
#define RESERVE_MIB 64

static void say(const char *fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  if (n < 0) return;
  if ((size_t)n >= sizeof buf) n = sizeof buf - 1;
  const char *p = buf;
  while (n > 0) {
    ssize_t w = write(1, p, (size_t)n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= (int)w;
  }
}

static void hang(void) {
  for (;;) pause();
}

/* The first word of page `page` in pass `pass`; word j adds j * STEP. */
static uint64_t seed(uint64_t page, uint64_t pass) {
  uint64_t z = page * 0xD6E8FEB86659FD93ull ^ (pass + 1) * 0xBF58476D1CE4E5B9ull;
  z ^= z >> 31;
  z *= 0x94D049BB133111EBull;
  z ^= z >> 29;
  return z;
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void console(void) {
  if (fcntl(1, F_GETFD) != -1) return;
  mkdir("/dev", 0755);
  mount("devtmpfs", "/dev", "devtmpfs", 0, NULL);
  int fd = open("/dev/console", O_RDWR);
  if (fd < 0) fd = open("/dev/ttyS0", O_RDWR);
  if (fd < 0) hang();
  dup2(fd, 0);
  dup2(fd, 1);
  dup2(fd, 2);
}

int main(void) {
  console();
  const char *env = getenv("wl_mib");
  size_t mib = env ? strtoul(env, NULL, 10) : 900;
  if (mib == 0) mib = 900;

  /* Leave the kernel some room: init cannot be OOM-killed, so an allocation that eats
   * into the watermarks deadlocks the guest ("System is deadlocked on memory"). */
  size_t want = mib;
  struct sysinfo si;
  if (sysinfo(&si) == 0) {
    size_t free_mib = (size_t)((uint64_t)si.freeram * si.mem_unit >> 20);
    if (free_mib < 64 + 16) {
      say("wl: ERROR not enough guest memory: free %zu MiB\n", free_mib);
      hang();
    }
    if (mib + RESERVE_MIB > free_mib) mib = free_mib - RESERVE_MIB;
    say("wl: start mib=%zu requested=%zu guest_total_mib=%lu guest_free_mib=%zu\n", mib, want,
        (unsigned long)((uint64_t)si.totalram * si.mem_unit >> 20), free_mib);
  }

  size_t pages = mib * (1u << 20) / PAGE;
  uint64_t *mem = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (mem == MAP_FAILED) {
    say("wl: ERROR mmap %zu MiB: %s\n", mib, strerror(errno));
    hang();
  }

  uint64_t t0 = now_ms();
  for (size_t pg = 0; pg < pages; pg++) {
    uint64_t *p = mem + pg * WORDS, v = seed(pg, 0);
    for (size_t j = 0; j < WORDS; j++, v += STEP) p[j] = v;
  }
  say("wl: filled pages=%zu ms=%lu\n", pages, (unsigned long)(now_ms() - t0));

  for (uint64_t pass = 1;; pass++) {
    uint64_t start = now_ms();
    size_t bad = 0;
    for (size_t pg = 0; pg < pages; pg++) {
      uint64_t *p = mem + pg * WORDS;
      uint64_t want = seed(pg, pass - 1), next = seed(pg, pass);
      for (size_t j = 0; j < WORDS; j++, want += STEP, next += STEP) {
        uint64_t got = p[j];
        if (got != want) {
          if (bad < 8)
            say("wl: CORRUPT pass=%lu page=%zu word=%zu got=%016lx want=%016lx\n",
                (unsigned long)pass, pg, j, (unsigned long)got, (unsigned long)want);
          bad++;
        }
        p[j] = next;
      }
    }
    say("wl: pass %lu %s pages=%zu bad=%zu ms=%lu\n", (unsigned long)pass,
        bad ? "CORRUPT" : "ok", pages, bad, (unsigned long)(now_ms() - start));
  }
}
