/* The memory map the CV32E40P harness (sim.cpp) and the programs it runs (crt0.S, qsearch_rtl.h)
 * share. RAM sits where PULP's L2 does; the MMIO registers are write-only words. */
#ifndef QSEARCH_RTL_MMIO_H
#define QSEARCH_RTL_MMIO_H

#define RTL_RAM_BASE 0x1c000000
#define RTL_RAM_SIZE 0x00400000
#define RTL_MMIO_BASE 0x10000000
#define RTL_MMIO_PUTCHAR 0x00    /* the low byte goes to standard output */
#define RTL_MMIO_CYCLES 0x04     /* mcycle (low, then high word) at exit */
#define RTL_MMIO_CYCLESH 0x08
#define RTL_MMIO_INSTRET 0x0c    /* minstret (low, then high word) at exit */
#define RTL_MMIO_INSTRETH 0x10
#define RTL_MMIO_TRAP_PC 0x14    /* mepc of a trap, written before its cause */
#define RTL_MMIO_TRAP_CAUSE 0x18 /* mcause of a trap: ends the run */
#define RTL_MMIO_EXIT 0x1c       /* the exit code: ends the run */

#endif
