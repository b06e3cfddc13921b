// The invocation workload, included by workload.S and entered after pass 1
// has filled every page: a "function invocation" after a resume. It reports
// INVOCATION_READY_PASS with 0 pages (the snapshot point), then touches
// PARAM_TOUCH_PAGES distinct pages in a pseudo-random order: the page indexes
// a full-period LCG modulo PARAM_TOUCH_MASK + 1 (a power of two at least the
// page count) goes through from the seed, skipping those past the last page.
// The same pages in the same order on every run of the same parameters.
//
// Each touched page is read (its first word folded into the checksum) and
// then written (its last word stamped with the checksum); the checksum is the
// check, against the uninterrupted run's. A page costs 15 instructions: where
// KVM emulates every guest instruction (0.5-1 us each here), more would
// bury the page faults a working set saves under guest time that a real
// function, run natively, would not have.
//
// Registers as in workload.S, except: r9 the LCG state (the page index),
// r10 pages touched so far, r14 PARAM_TOUCH_MASK, r15 PARAM_TOUCH_PAGES,
// rsi and rcx the LCG's multiplier and increment.

	.code64
	.text
invocation:
	xor	%r10d, %r10d
	mov	$(INVOCATION_READY_PASS << 28), %eax
	call	report
	mov	PARAM_TOUCH_MASK(%rbp), %r14
	mov	PARAM_TOUCH_PAGES(%rbp), %r15
	movabs	$INVOCATION_LCG_MUL, %rsi
	movabs	$INVOCATION_LCG_ADD, %rcx
	mov	%r13, %r9
	and	%r14, %r9
	test	%r15, %r15
	jz	invoke_done
invoke_next:
	imul	%rsi, %r9
	add	%rcx, %r9
	and	%r14, %r9
	cmp	%r12, %r9
	jae	invoke_next
	mov	%r9, %rdi
	shl	$12, %rdi
	mov	GUEST_WORK_START(%rdi), %rax
	rol	$5, %rbx
	xor	%rax, %rbx
	imul	%r8, %rbx
	mov	%rbx, GUEST_WORK_START + 4088(%rdi)
	inc	%r10
	cmp	%r15, %r10
	jb	invoke_next
invoke_done:
	mov	%r10, %rcx
	jmp	results
