//! The C the generated project is built from that does not depend on the network: the kernel
//! library (`kernels/`: the kernels, the PULP path's layer drivers and runtime calls) and the
//! project's programs and Makefiles (`src/deploy/c/`), embedded in the binary and written next to
//! the generated `network.c`, which instantiates the kernels it uses and calls them.
//!
//! The programs live apart from the library because they are the deploy stage's scaffolding:
//! each includes `network.h`, which only a generated project has, while the library compiles and
//! runs on its own (tests/deploy.rs compiles it for every target).

/// The kernel library, by file name (the names the sources include each other by).
pub const KERNELS: [(&str, &str); 20] = [
    ("kernels.h", include_str!("../../kernels/kernels.h")),
    ("attributes.h", include_str!("../../kernels/attributes.h")),
    ("packed.h", include_str!("../../kernels/packed.h")),
    ("simd.h", include_str!("../../kernels/simd.h")),
    ("shape.h", include_str!("../../kernels/shape.h")),
    ("lanes.h", include_str!("../../kernels/lanes.h")),
    ("dot.h", include_str!("../../kernels/dot.h")),
    ("conv.h", include_str!("../../kernels/conv.h")),
    ("linear.h", include_str!("../../kernels/linear.h")),
    ("pool.h", include_str!("../../kernels/pool.h")),
    ("add.h", include_str!("../../kernels/add.h")),
    (
        "conv_blocked.h",
        include_str!("../../kernels/conv_blocked.h"),
    ),
    ("depthwise.h", include_str!("../../kernels/depthwise.h")),
    (
        "linear_blocked.h",
        include_str!("../../kernels/linear_blocked.h"),
    ),
    (
        "pool_blocked.h",
        include_str!("../../kernels/pool_blocked.h"),
    ),
    ("matmul.h", include_str!("../../kernels/matmul.h")),
    ("unpack.h", include_str!("../../kernels/unpack.h")),
    ("pulp_target.h", include_str!("../../kernels/pulp_target.h")),
    ("pulp_layers.h", include_str!("../../kernels/pulp_layers.h")),
    (
        "freestanding.c",
        include_str!("../../kernels/freestanding.c"),
    ),
];

/// The programs and Makefiles of a generated project.
pub const PROGRAMS: [(&str, &str); 6] = [
    // The host test program: every layer's packed output of every image of `inputs.bin`.
    ("main.c", include_str!("c/main.c")),
    // The rv32imc bare-metal program (QEMU, semihosting): the output on `test_input.h`.
    ("main_target.c", include_str!("c/main_target.c")),
    // The PULP/GAP SDK program: per-layer cycles and checksums on the cluster.
    ("main_pulp.c", include_str!("c/main_pulp.c")),
    // The CV32E40P program: every layer's cycles, DMA-copy cycles and output (`rtl_images.h`).
    ("main_rtl.c", include_str!("c/main_rtl.c")),
    // Host, emulated-PULP and rv32imc/QEMU builds.
    ("Makefile", include_str!("c/Makefile")),
    // The PULP/GAP SDK build.
    ("Makefile.pulp", include_str!("c/Makefile.pulp")),
];
