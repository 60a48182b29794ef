#!/usr/bin/env python3
"""Optuna's NSGA-II on the problem qsearch exported (cost and sensitivity tables as JSON).

Evaluates assignments exactly as qsearch's cost table does (same tables, same L2/L3 placement
rule, same constraint violation) and reports how long Optuna takes until its best feasible
primary objective is within the target. Used by scripts/bench-optuna.sh.
"""

import argparse
import json
import math
import time

import optuna


def load(path):
    with open(path) as f:
        return json.load(f)


class Problem:
    def __init__(self, p):
        self.p = p
        self.bits_index = {b: i for i, b in enumerate(p["bits_index"])}
        self.vars = p["variables"]

    def bits(self, genes, var):
        return self.vars[var]["choices"][genes[var]]

    def evaluate(self, genes):
        p, bi = self.p, self.bits_index
        idx = lambda var: bi[self.bits(genes, var)]
        c2 = c3 = 0.0
        flash = 0
        staging = 0
        fits_l1 = True
        for layer in p["layers"]:
            f = idx(layer["first_var"]) if layer["first_var"] is not None else bi[8]
            i, o = idx(layer["input_var"]), idx(layer["output_var"])
            s = layer["staging"][f][i][o]
            if s is None:
                fits_l1 = False
            else:
                staging = max(staging, s)
                c2 += layer["cycles_l2"][f][i][o]
                c3 += layer["cycles_l3"][f][i][o]
            w = layer["weight_var"]
            flash += layer["flash"][idx(w) if w is not None else bi[8]]
        ram = 0
        for step in p["live"]:
            ram = max(ram, sum(p["buffers"][t]["bytes"][idx(p["buffers"][t]["var"])] for t in step))
        l2 = p["l2_bytes"]
        in_l3 = p["has_l3"] and flash + ram > l2
        if in_l3:
            cycles, ram = c3, ram + staging
            fits_l2 = ram <= l2
        else:
            cycles = c2
            fits_l2 = flash + ram <= l2
        loss = sum(p["loss"][v][g] for v, g in enumerate(genes))
        energy = (p["energy_per_cycle"] or 0.0) * cycles
        metrics = {"latency": cycles, "flash": flash, "ram": ram, "memory": flash + ram, "energy": energy, "accuracy": loss}
        violation = float(not fits_l1) + float(not fits_l2)
        for limit in p["limits"]:
            value = metrics[limit["metric"]]
            if value > limit["max"]:
                violation += (value - limit["max"]) / max(limit["max"], 1e-12)
        return metrics, violation


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("problem")
    ap.add_argument("--target", type=float, required=True, help="primary objective value to reach")
    ap.add_argument("--time-limit", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--population", type=int, default=50)
    args = ap.parse_args()

    problem = Problem(load(args.problem))
    primary = problem.p["minimize"][0]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Optuna 5 reads constraints the trial sets; older versions take a constraints function.
    native_constraints = hasattr(optuna.trial.Trial, "set_constraint")
    extra = {} if native_constraints else {"constraints_func": lambda t: [t.user_attrs["violation"]]}
    sampler = optuna.samplers.NSGAIISampler(population_size=args.population, seed=args.seed, **extra)
    study = optuna.create_study(direction="minimize", sampler=sampler)
    state = {"best": math.inf, "reached": None, "trials": 0}
    started = time.perf_counter()

    def objective(trial):
        genes = [trial.suggest_categorical(f"v{k}", list(range(len(v["choices"])))) for k, v in enumerate(problem.vars)]
        metrics, violation = problem.evaluate(genes)
        if native_constraints:
            trial.set_constraint("violation", violation)
        else:
            trial.set_user_attr("violation", violation)
        value = metrics[primary]
        state["trials"] += 1
        if violation == 0 and value < state["best"]:
            state["best"] = value
            if value <= args.target and state["reached"] is None:
                state["reached"] = time.perf_counter() - started
                trial.study.stop()
        if time.perf_counter() - started > args.time_limit:
            trial.study.stop()
        return value

    study.optimize(objective, n_trials=None, timeout=args.time_limit)
    print(json.dumps({
        "reached_seconds": state["reached"],
        "trials": state["trials"],
        "best": state["best"],
        "elapsed": time.perf_counter() - started,
    }))


if __name__ == "__main__":
    main()
