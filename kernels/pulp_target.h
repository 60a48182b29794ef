/* The PULP runtime calls of the PULP path's layer drivers (pulp_layers.h), on each target:
 *  - the PULP/GAP SDK (PMSIS): the real cluster fork and DMA;
 *  - QSEARCH_PULP_EMULATED: the host runs the same code, the cores one after another and the DMA
 *    transfers as copies (the XpulpV2 dot products are simd.h's portable C);
 *  - QSEARCH_PULP_BAREMETAL: one bare-metal core (the CV32E40P RTL) computes every core's share in
 *    turn, L1 is a static buffer in RAM and the DMA transfers are copies whose cycles are counted
 *    apart in pulp_dma_cycles, since the DMA engine is not part of the core. The program supplies
 *    memcpy and memset (freestanding.c) and rtl_cycles (qsearch_rtl.h). */
#ifndef PULP_TARGET_H
#define PULP_TARGET_H
#include <stdint.h>

#ifndef NUM_CORES
#define NUM_CORES 8
#endif

/* The drivers a network does not use are not an error. */
#define DRIVER static __attribute__((unused))

#if defined(QSEARCH_PULP_EMULATED) || defined(QSEARCH_PULP_BAREMETAL)

#if defined(QSEARCH_PULP_BAREMETAL)
#include <stddef.h>
#include "qsearch_rtl.h"
void *memcpy(void *to, const void *from, size_t bytes);
void *memset(void *to, int value, size_t bytes);

/* Cycles spent in the copies that stand in for DMA transfers. */
static uint32_t pulp_dma_cycles;

DRIVER void dma_copy(void *to, const void *from, uint32_t bytes)
{
    uint32_t started = rtl_cycles();
    memcpy(to, from, bytes);
    pulp_dma_cycles += rtl_cycles() - started;
}
#else
#include <string.h>
#define dma_copy(to, from, bytes) memcpy((to), (from), (bytes))
#endif

static int emulated_core;
#define CORE_ID() emulated_core
#define L1_DATA
typedef int dma_cmd;
#define DMA_IN(local, external, bytes, cmd) ((void)(cmd), dma_copy((local), (external), (bytes)))
#define DMA_OUT(external, local, bytes, cmd) ((void)(cmd), dma_copy((external), (local), (bytes)))
#define DMA_WAIT(cmd) ((void)(cmd))

DRIVER void cluster_fork(void (*entry)(void *), void *arg)
{
    for (emulated_core = 0; emulated_core < NUM_CORES; emulated_core++) {
        entry(arg);
    }
    emulated_core = 0;
}

#else

#include <string.h>
#include "pmsis.h"
#define CORE_ID() ((int)pi_core_id())
#define L1_DATA PI_L1
/* A transfer of zero bytes (a tile that reads only padding) is neither issued nor waited for. */
typedef struct {
    pi_cl_dma_cmd_t cmd;
    int pending;
} dma_cmd;

DRIVER void dma_start(uint32_t external, uint32_t local, uint32_t bytes, pi_cl_dma_dir_e dir,
    dma_cmd *c)
{
    c->pending = bytes > 0;
    if (c->pending) {
        pi_cl_dma_cmd(external, local, bytes, dir, &c->cmd);
    }
}

DRIVER void dma_wait(dma_cmd *c)
{
    if (c->pending) {
        pi_cl_dma_cmd_wait(&c->cmd);
    }
    c->pending = 0;
}

#define DMA_IN(local, external, bytes, cmd) \
    dma_start((uint32_t)(external), (uint32_t)(local), (bytes), PI_CL_DMA_DIR_EXT2LOC, (cmd))
#define DMA_OUT(external, local, bytes, cmd) \
    dma_start((uint32_t)(external), (uint32_t)(local), (bytes), PI_CL_DMA_DIR_LOC2EXT, (cmd))
#define DMA_WAIT(cmd) dma_wait(cmd)

DRIVER void cluster_fork(void (*entry)(void *), void *arg)
{
    pi_cl_team_fork(NUM_CORES, entry, arg);
}

#endif
#endif
