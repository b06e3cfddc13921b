// The invocation workload, included by workload.S and entered after pass 1
// has filled every page: a "function invocation" after a resume. It reports
// INVOCATION_READY_PASS with 0 pages (the snapshot point), then touches
// PARAM_TOUCH_PAGES distinct pages in a pseudo-random order: the page indexes
// a full-period LCG modulo PARAM_TOUCH_MASK + 1 (a power of two at least the
// page count) goes through from the seed, skipping those past the last page.
// The same pages in the same order on every run of the same parameters, and
// only a few instructions per page touched (KVM here may emulate every one).
// Each touched page is read (its words regenerated, compared and folded into
// the checksum, as pass 2 does) and then written (its last word stamped with
// the checksum).
//
// Registers as in workload.S, except: r9 the LCG state (the page index),
// r10 pages touched so far, r14 PARAM_TOUCH_MASK, r15 PARAM_TOUCH_PAGES.

	.code64
	.text
invocation:
	xor	%r10d, %r10d
	mov	$(INVOCATION_READY_PASS << 28), %eax
	call	report
	mov	PARAM_TOUCH_MASK(%rbp), %r14
	mov	PARAM_TOUCH_PAGES(%rbp), %r15
	mov	%r13, %r9
	and	%r14, %r9
invoke_page:
	cmp	%r15, %r10
	jae	invoke_done
invoke_next:
	movabs	$INVOCATION_LCG_MUL, %rax
	imul	%rax, %r9
	movabs	$INVOCATION_LCG_ADD, %rax
	add	%rax, %r9
	and	%r14, %r9
	cmp	%r12, %r9
	jae	invoke_next
	PAGE_START
	mov	PARAM_WORDS_PER_PAGE(%rbp), %ecx
invoke_word:
	NEXT_WORD
	mov	(%rdi), %rdx
	cmp	%rax, %rdx
	je	4f
	inc	%r11
4:	rol	$5, %rbx
	xor	%rdx, %rbx
	imul	%r8, %rbx
	add	PARAM_WORD_STEP(%rbp), %rdi
	dec	%ecx
	jnz	invoke_word
	mov	%r9, %rdi
	shl	$12, %rdi
	mov	%rbx, GUEST_WORK_START + 4088(%rdi)
	inc	%r10
	jmp	invoke_page
invoke_done:
	mov	%r10, %rcx
	jmp	results
