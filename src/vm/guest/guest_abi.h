// What the VMM and the guest program agree on: where things live in
// guest-physical memory, the parameter page, and the I/O ports. Plain #defines
// so both workload.S and C++ include this one file.
#pragma once

// Guest-physical layout (identity-mapped: virtual == physical).
#define GUEST_GDT 0x1000
#define GUEST_PML4 0x2000
#define GUEST_PDPT 0x3000
#define GUEST_PD 0x4000 /* GUEST_PD_PAGES pages, 2 MiB entries: 1 GiB each */
#define GUEST_PD_PAGES 4
#define GUEST_PARAMS 0x8000
#define GUEST_CODE 0x10000
#define GUEST_STACK_TOP 0x80000
#define GUEST_WORK_START 0x100000 /* the workload owns every page from here */

// The parameter page: written by the VMM before boot, read once by the guest.
#define PARAM_WORK_PAGES 0x00     /* pages the workload fills and walks */
#define PARAM_SEED 0x08           /* seeds every page's pattern */
#define PARAM_STRIDE 0x10         /* pass 2 visits page (k * stride) mod pages */
#define PARAM_PROGRESS_MASK 0x18  /* a progress report when (pages done & mask) == 0 */
#define PARAM_WORDS_PER_PAGE 0x20 /* words written, then verified, in every page */
#define PARAM_WORD_STEP 0x28      /* bytes between them: 4096 / words per page */
#define PARAM_KIND 0x30           /* WORKLOAD_WALK or WORKLOAD_INVOCATION */
#define PARAM_TOUCH_PAGES 0x38    /* invocation: pages it touches after the ready report */
#define PARAM_TOUCH_MASK 0x40     /* invocation: its LCG's modulus - 1 (>= pages - 1) */
// Written by the guest when it is done, read by the VMM.
#define RESULT_CHECKSUM 0x100
#define RESULT_MISMATCHES 0x108 /* words in pass 2 that differed from pass 1's */
#define RESULT_PAGES 0x110      /* pages walked, or touched by the invocation */

// Ports (32-bit `out`).
#define PORT_PROGRESS 0xf0 /* (pass << 28) | pages done in that pass */
#define PORT_RESULT 0xf1   /* the results are in the parameter page */

#define WORKLOAD_PASSES 3

// Workload kinds. The walk: fill, walk and stamps, every page in every pass.
// The invocation (guest/invocation.S): fill every page, report "ready" (the
// snapshot point), then touch a seeded, scattered fraction of the pages.
#define WORKLOAD_WALK 0
#define WORKLOAD_INVOCATION 1
#define INVOCATION_READY_PASS 2 /* the ready report: (2 << 28) | 0 */
// x -> x * MUL + ADD modulo a power of two: full period (ADD odd, MUL = 1 mod 4).
#define INVOCATION_LCG_MUL 0x5851F42D4C957F2D
#define INVOCATION_LCG_ADD 0x14057B7EF767814F
