// Embeds the assembled guest program (workload.bin, made by the build) in the
// faultline binary.
	.section .rodata
	.balign	16
	.globl	faultline_guest_workload_start
	.globl	faultline_guest_workload_end
faultline_guest_workload_start:
	.incbin	"workload.bin"
faultline_guest_workload_end:
	.section .note.GNU-stack, "", @progbits
