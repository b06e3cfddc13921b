// The guest program: a deterministic memory workload, entered in 64-bit long
// mode at GUEST_CODE with the stack at GUEST_STACK_TOP.
//
//   pass 1  writes PARAM_WORDS_PER_PAGE words, spread over every workload page,
//           from a PRNG seeded per page
//   pass 2  visits the pages in the order p = k * stride mod pages, regenerates
//           each page's words, counts the ones that differ, folds every word into
//           a running checksum and stamps the page's last word with it
//   pass 3  folds every page's stamp into the checksum, in page order
//
// Every page is touched in every pass, so every page faults once after a lazy
// restore. Few words per page keep the guest quick where KVM emulates guest
// instructions (software nested virtualisation); 512 fills whole pages.
//
// With PARAM_KIND == WORKLOAD_INVOCATION, pass 1 is followed by the
// invocation of guest/invocation.S instead of passes 2 and 3.
//
// Progress goes out on PORT_PROGRESS; the results go to the parameter page
// and PORT_RESULT says they are there. All state lives in registers and guest
// memory, so a snapshot taken at any exit resumes to the same results.
//
// Registers held across the whole run:
//   rbp params   r12 pages   r13 seed   r14 stride   r15 progress mask
//   rbx checksum r11 mismatches  r10 pages done in this pass  r9 page index
//   r8  the odd multiplier of the PRNG and the checksum
#include "guest_abi.h"

// rdi = the address of page r9; rsi = its PRNG state (seed ^ r9 * odd constant).
.macro PAGE_START
	mov	%r9, %rdi
	shl	$12, %rdi
	add	$GUEST_WORK_START, %rdi
	movabs	$0xD6E8FEB86659FD93, %rsi
	imul	%r9, %rsi
	xor	%r13, %rsi
.endm

// Advances rsi by the golden ratio and mixes it into rax; clobbers rdx.
.macro NEXT_WORD
	movabs	$0x9E3779B97F4A7C15, %rax
	add	%rax, %rsi
	mov	%rsi, %rax
	mov	%rax, %rdx
	shr	$31, %rdx
	xor	%rdx, %rax
	imul	%r8, %rax
.endm

// Reports (pass << 28) | r10 when r10 & r15 == 0, through `report`, so the
// stack holds a return address whenever the VMM sees a report.
.macro PROGRESS pass
	test	%r15, %r10
	jnz	1f
	mov	$(\pass << 28), %eax
	call	report
1:
.endm

	.code64
	.text
	.globl	_start
_start:
	mov	$GUEST_PARAMS, %ebp
	mov	PARAM_WORK_PAGES(%rbp), %r12
	mov	PARAM_SEED(%rbp), %r13
	mov	PARAM_STRIDE(%rbp), %r14
	mov	PARAM_PROGRESS_MASK(%rbp), %r15
	xor	%ebx, %ebx
	xor	%r11d, %r11d
	movabs	$0x9FB21C651E98DF25, %r8

// Pass 1: fill.
	xor	%r10d, %r10d
fill_page:
	cmp	%r12, %r10
	jae	fill_done
	mov	%r10, %r9
	PAGE_START
	mov	PARAM_WORDS_PER_PAGE(%rbp), %ecx
fill_word:
	NEXT_WORD
	mov	%rax, (%rdi)
	add	PARAM_WORD_STEP(%rbp), %rdi
	dec	%ecx
	jnz	fill_word
	inc	%r10
	PROGRESS 1
	jmp	fill_page
fill_done:
	cmpq	$WORKLOAD_INVOCATION, PARAM_KIND(%rbp)
	je	invocation

// Pass 2: walk in a permutation, verify, checksum, stamp.
	xor	%r10d, %r10d
	xor	%r9d, %r9d
walk_page:
	cmp	%r12, %r10
	jae	walk_done
	PAGE_START
	mov	PARAM_WORDS_PER_PAGE(%rbp), %ecx
walk_word:
	NEXT_WORD
	mov	(%rdi), %rdx
	cmp	%rax, %rdx
	je	2f
	inc	%r11
2:	rol	$5, %rbx
	xor	%rdx, %rbx
	imul	%r8, %rbx
	add	PARAM_WORD_STEP(%rbp), %rdi
	dec	%ecx
	jnz	walk_word
	mov	%r9, %rdi
	shl	$12, %rdi
	mov	%rbx, GUEST_WORK_START + 4088(%rdi)
	add	%r14, %r9
	cmp	%r12, %r9
	jb	3f
	sub	%r12, %r9
3:	inc	%r10
	PROGRESS 2
	jmp	walk_page
walk_done:

// Pass 3: fold the stamps.
	xor	%r10d, %r10d
	mov	$GUEST_WORK_START + 4088, %edi
stamp_page:
	cmp	%r12, %r10
	jae	stamp_done
	rol	$9, %rbx
	xor	(%rdi), %rbx
	imul	%r8, %rbx
	add	$4096, %rdi
	inc	%r10
	PROGRESS 3
	jmp	stamp_page
stamp_done:
	mov	%r12, %rcx

// The results: rbx checksum, r11 mismatches, rcx pages.
results:
	mov	%rbx, RESULT_CHECKSUM(%rbp)
	mov	%r11, RESULT_MISMATCHES(%rbp)
	mov	%rcx, RESULT_PAGES(%rbp)
	mov	$PORT_RESULT, %dx
	mov	$1, %eax
	out	%eax, %dx
halt:
	hlt
	jmp	halt

report:
	or	%r10d, %eax
	mov	$PORT_PROGRESS, %dx
	out	%eax, %dx
	ret

#include "invocation.S"
