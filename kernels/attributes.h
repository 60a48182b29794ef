/* How the library's functions are compiled: the generic bodies (qk_conv_int32_t, ...) inline
 * into each named kernel so that the bit widths they take become constants, and the named
 * kernels are never inlined into, nor specialised to, one caller: every layer that calls a kernel
 * runs the code the microbenchmarks measure. */
#ifndef QSEARCH_KERNELS_ATTRIBUTES_H
#define QSEARCH_KERNELS_ATTRIBUTES_H

#if defined(__GNUC__)
#define QK_INLINE static inline __attribute__((always_inline))
#else
#define QK_INLINE static inline
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define QK_KERNEL static __attribute__((noinline, noclone))
#elif defined(__GNUC__)
#define QK_KERNEL static __attribute__((noinline))
#else
#define QK_KERNEL static
#endif

/* A kernel a program may leave uncalled (and the compiler then drops). */
#if defined(__GNUC__)
#define QK_UNUSED __attribute__((unused))
#else
#define QK_UNUSED
#endif

/* a##b after expanding a and b: the name of a generic body for the accumulator type QK_ACC. */
#define QK_CAT_(a, b) a##b
#define QK_CAT(a, b) QK_CAT_(a, b)

#endif
