/* What a program without a C library (the CV32E40P harness) needs of one: the compiler emits
 * calls to memcpy and memset even where the source has none (struct copies, zeroing loops).
 * Word by word where the buffers allow it, since the PULP path's DMA copies and output zeroing
 * go through them. */
#include <stddef.h>
#include <stdint.h>

void *memcpy(void *to, const void *from, size_t bytes);
void *memset(void *to, int value, size_t bytes);

void *memcpy(void *to, const void *from, size_t bytes)
{
    unsigned char *t = to;
    const unsigned char *f = from;
    if ((((uintptr_t)t | (uintptr_t)f) & 3u) == 0) {
        for (; bytes >= 4; bytes -= 4, t += 4, f += 4) {
            *(uint32_t *)t = *(const uint32_t *)f;
        }
    }
    while (bytes--) {
        *t++ = *f++;
    }
    return to;
}

void *memset(void *to, int value, size_t bytes)
{
    unsigned char *t = to;
    if (((uintptr_t)t & 3u) == 0) {
        uint32_t word = 0x01010101u * (unsigned char)value;
        for (; bytes >= 4; bytes -= 4, t += 4) {
            *(uint32_t *)t = word;
        }
    }
    while (bytes--) {
        *t++ = (unsigned char)value;
    }
    return to;
}
