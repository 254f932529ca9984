"""Host time per prompt position of the prompt-logprob hand-off from vLLM to the scorer (CPU, no model):
vLLM's own `LogprobsProcessor._update_prompt_logprobs` (pythonizes every item of the [n, k+1] tensors into
FlatLogprobs lists) against the scorer's capture (vpmoe/teacher/engine.py: a numpy copy, vLLM's lists fed
the actual token's column only) plus `captured_arrays`. On a GPU this work runs on one host core beside the
engine, so it caps scoring throughput at 1e6 / (us per position) positions/s.

    python benchmarks/bench_capture.py [--positions 2000] [--k 64 1024] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import time


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=2000)
    ap.add_argument("--k", type=int, nargs="+", default=[64, 1024])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    import torch
    import vllm
    from vllm.logprobs import create_prompt_logprobs
    from vllm.v1.engine.logprobs import LogprobsProcessor
    from vllm.v1.outputs import LogprobsTensors

    from vpmoe.teacher.engine import captured_arrays, install_prompt_logprob_capture

    vllm_own = LogprobsProcessor._update_prompt_logprobs
    if getattr(vllm_own, "_vpmoe_capture", False):
        vllm_own = vllm_own.__wrapped__
    install_prompt_logprob_capture()
    capture = LogprobsProcessor._update_prompt_logprobs
    n = args.positions
    rows = []
    for k in args.k:
        g = torch.Generator().manual_seed(k)
        tensors = LogprobsTensors(
            torch.randint(0, 201088, (n, k + 1), dtype=torch.int32, generator=g),
            torch.randn(n, k + 1, generator=g),
            torch.randint(0, 9, (n,), generator=g),
        )
        for name, fn in (("vllm_own", vllm_own), ("capture", capture)):
            best = float("inf")
            for _ in range(args.repeats):
                proc = LogprobsProcessor(
                    tokenizer=None, logprobs=None, prompt_logprobs=create_prompt_logprobs(True),
                    cumulative_logprob=None, num_logprobs=None, num_prompt_logprobs=k,
                )  # fmt: skip
                start = time.perf_counter()
                fn(proc, tensors)
                if name == "capture":
                    captured_arrays(proc.prompt_logprobs, k)
                best = min(best, time.perf_counter() - start)
            us = best / n * 1e6
            rows.append({"k": k, "path": name, "us_per_position": round(us, 2),
                         "positions_per_s_one_core": round(1e6 / us)})  # fmt: skip
            print(f"k={k:5d} {name:9s} {us:8.2f} us/position  {1e6 / us:>12,.0f} positions/s (one core)")
    print(json.dumps({"host": platform.processor() or platform.machine(), "vllm": vllm.__version__,
                      "positions": n, "rows": rows}))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
