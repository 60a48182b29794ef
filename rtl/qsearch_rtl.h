/* What a program on the CV32E40P harness may use instead of a C library: output through the
 * MMIO and the cycle and instruction counters. */
#ifndef QSEARCH_RTL_H
#define QSEARCH_RTL_H

#include <stdint.h>
#include "mmio.h"

static inline void rtl_putc(char c) {
  *(volatile uint32_t *)(RTL_MMIO_BASE + RTL_MMIO_PUTCHAR) = (uint8_t)c;
}

static inline void rtl_puts(const char *s) {
  while (*s) rtl_putc(*s++);
}

/* Prints v in decimal. */
static inline void rtl_putd(int32_t v) {
  char digits[11];
  int n = 0;
  uint32_t u = v < 0 ? 0u - (uint32_t)v : (uint32_t)v;
  if (v < 0) rtl_putc('-');
  do {
    digits[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  while (n) rtl_putc(digits[--n]);
}

/* The low words of mcycle and minstret: enough to time a region of under 2^32 cycles. */
static inline uint32_t rtl_cycles(void) {
  uint32_t v;
  __asm__ volatile("csrr %0, mcycle" : "=r"(v));
  return v;
}

static inline uint32_t rtl_instructions(void) {
  uint32_t v;
  __asm__ volatile("csrr %0, minstret" : "=r"(v));
  return v;
}

#endif
