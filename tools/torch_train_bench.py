#!/usr/bin/env python3
"""PyTorch (CPU) training throughput on the network `zoo:fashion-cnn` describes, at batch 128:
conv 1->16, 16->32, 32->64 (3x3, padding 1) each with batch norm and ReLU, 2x2 max pooling after
the first two, flatten, linear 3136->192, ReLU, linear 192->10; Adam; the same timing protocol as
`cargo bench --bench train` (warm-up, then the median of 5 runs of 40 steps)."""

import json
import statistics
import sys
import time

import torch
import torch.nn as nn

BATCH, STEPS, RUNS = 128, 40, 5


def network():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(
        *block(1, 16), nn.MaxPool2d(2), *block(16, 32), nn.MaxPool2d(2), *block(32, 64),
        nn.Flatten(), nn.Linear(3136, 192), nn.ReLU(), nn.Linear(192, 10),
    )


def main():
    torch.manual_seed(0)
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else torch.get_num_threads()
    torch.set_num_threads(threads)
    net = network()
    optim = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x = torch.rand(BATCH, 1, 28, 28)
    y = torch.randint(0, 10, (BATCH,))

    def run(steps):
        started = time.perf_counter()
        for _ in range(steps):
            optim.zero_grad()
            loss = loss_fn(net(x), y)
            loss.backward()
            optim.step()
        return steps * BATCH / (time.perf_counter() - started)

    run(5)
    rates = sorted(run(STEPS) for _ in range(RUNS))
    print(json.dumps({"torch": torch.__version__, "threads": threads, "images_per_second": statistics.median(rates), "runs": rates}))


if __name__ == "__main__":
    main()
