/* Bare-metal startup for programs on the CV32E40P harness: trap handler, counters, stack, bss,
 * main, and the exit that reports mcycle/minstret and the exit code through the MMIO (mmio.h).
 * The ELF loader fills .data and zeroes .bss already; clearing .bss here keeps a program correct
 * if it is ever loaded by something that does not. */
#include "mmio.h"

    .section .text.start, "ax"
    .globl _start
_start:
    la t0, trap
    csrw mtvec, t0
    /* mcountinhibit resets to 1 on the CV32E40P: mcycle and minstret count only once cleared. */
    csrw mcycle, zero
    csrw mcycleh, zero
    csrw minstret, zero
    csrw minstreth, zero
    csrw mcountinhibit, zero
    la sp, __stack_top
    la t0, __bss_start
    la t1, __bss_end
1:  bgeu t0, t1, 2f
    sw zero, 0(t0)
    addi t0, t0, 4
    j 1b
2:  call main
    /* fall through: main's return value (a0) is the exit code */

    .globl _exit
_exit:
    li t0, RTL_MMIO_BASE
    csrr t1, mcycle
    csrr t2, mcycleh
    csrr t3, minstret
    csrr t4, minstreth
    sw t1, RTL_MMIO_CYCLES(t0)
    sw t2, RTL_MMIO_CYCLESH(t0)
    sw t3, RTL_MMIO_INSTRET(t0)
    sw t4, RTL_MMIO_INSTRETH(t0)
    sw a0, RTL_MMIO_EXIT(t0)
3:  j 3b

    /* Exceptions go to mtvec's base (256-byte aligned). The handler uses no stack, so a program
     * that broke its stack still reports the trap. */
    .balign 256
trap:
    li t0, RTL_MMIO_BASE
    csrr t1, mepc
    sw t1, RTL_MMIO_TRAP_PC(t0)
    csrr t1, mcause
    sw t1, RTL_MMIO_TRAP_CAUSE(t0)
4:  j 4b
