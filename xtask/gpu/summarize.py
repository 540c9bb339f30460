"""Writes summary.md of the CUDA check from what check.sh left in its output folder.

Reads bench.jsonl (one `autolora bench` report per run, or an error line), tests.log (the test
binaries' output) and the carry's manifest.json. Standard library only: it runs under whatever
python3 the GPU machine has.
"""

import argparse
import json
import re
import time
from pathlib import Path

# The search-step targets the speed issue sets on the CPU, relative to our own plain step; on a
# GPU they are a reference point, not a promise.
CPU_TARGETS = {"fd": 5.0, "fd-norollback": 4.0, "exact": 4.0}
MODE_ORDER = ["plain", "fo", "fd", "fd-norollback", "exact"]


def load_runs(path):
    runs = []
    if not path.exists():
        return runs
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        try:
            runs.append(json.loads(line))
        except json.JSONDecodeError as err:
            runs.append({"shape": "?", "mode": "?", "batch": 0, "seq": 0,
                         "error": f"bench.jsonl line {number} is not JSON: {err}"})
    return runs


def test_results(path):
    """(binary, outcome) per test binary, from the `=== name` blocks check.sh writes."""
    results = []
    if not path.exists():
        return results
    name, summary, listed_only, listed = None, None, False, 0
    for line in path.read_text().splitlines():
        end = re.match(r"^=== (\S+) exit (\d+)$", line)
        start = re.match(r"^=== (\S+)( \(listed only.*\))?$", line)
        if end:
            code = int(end.group(2))
            if listed_only:
                outcome = f"listed only (no GPU): {listed} tests"
            else:
                outcome = summary or "no test summary line"
            results.append((end.group(1), f"exit {code}: {outcome}"))
            name = None
        elif start:
            name, summary, listed_only, listed = start.group(1), None, bool(start.group(2)), 0
        elif name and line.startswith("test result:"):
            summary = line.removeprefix("test result: ")
        elif name and listed_only and line.endswith(": test"):
            listed += 1
    return results


def fmt(value, digits=1):
    return "n/a" if value is None else f"{value:,.{digits}f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--carry", type=Path, required=True)
    parser.add_argument("--device", required=True)
    parser.add_argument("--gpu", default="none found")
    parser.add_argument("--stopped", help="why the check stopped before running anything")
    args = parser.parse_args()

    manifest = {}
    try:
        manifest = json.loads((args.carry / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        pass
    runs = load_runs(args.out / "bench.jsonl")
    tests = test_results(args.out / "tests.log")

    md = ["# CUDA check", ""]
    if args.stopped:
        md += [f"**Stopped before running: {args.stopped}**", ""]
    if args.device != "cuda":
        md += ["**Dry run on the CPU (DEVICE=cpu) with a tiny random model: these numbers only "
               "show that the script works, they say nothing about a GPU.**", ""]
    md += [
        f"- Written: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- GPU (name, driver, memory): {args.gpu}",
        f"- Binaries: commit {manifest.get('commit', '?')}"
        f"{' (uncommitted changes)' if manifest.get('dirty') else ''}, "
        f"profile {manifest.get('profile', '?')}, features {manifest.get('features', '?')}, "
        f"built against torch {manifest.get('torch_version', '?')}",
        "",
        "## Tests",
        "",
    ]
    if tests:
        md += ["| binary | result |", "|---|---|"]
        md += [f"| {name} | {outcome} |" for name, outcome in tests]
    else:
        md.append("No test binary ran.")
    md.append("")

    ok = [r for r in runs if "error" not in r]
    failed = [r for r in runs if "error" in r]
    md += ["## Bench", ""]
    if ok:
        first = ok[0]
        md += [
            f"`autolora bench` on {first.get('device')}: random base weights stored as "
            f"{first.get('base_dtype')}, LoRA rank 8 on query and value, computation in f32; "
            f"{first.get('warmup')} untimed then {first.get('steps')} timed steps per run, "
            "median reported. Ratio: median step time over the plain LoRA step's at the same "
            "shape and batch x seq.",
            "",
        ]
        memory = any("gpu_memory_peak_mib" in r for r in ok)
        if memory:
            md += ["GPU memory: the peak of nvidia-smi's `memory.used` sampled every 100 ms during "
                   "the run (the CUDA context and what libtorch's caching allocator reserved).", ""]
        md += [
            "| shape | batch x seq | mode | attention | median ms | min ms | tokens/s | x plain |"
            + (" GPU MiB | mem x plain |" if memory else ""),
            "|---|---|---|---|---:|---:|---:|---:|" + ("---:|---:|" if memory else ""),
        ]
        plain = {(r["shape"], r["batch"], r["seq"]): r["median_step_seconds"]
                 for r in ok if r["mode"] == "plain"}
        plain_memory = {(r["shape"], r["batch"], r["seq"]): r.get("gpu_memory_peak_mib")
                        for r in ok if r["mode"] == "plain"}

        def key(r):
            mode = MODE_ORDER.index(r["mode"]) if r["mode"] in MODE_ORDER else len(MODE_ORDER)
            return (r["shape"], r["batch"], r["seq"], mode)

        for r in sorted(ok, key=key):
            base = plain.get((r["shape"], r["batch"], r["seq"]))
            ratio = r["median_step_seconds"] / base if base else None
            row = (f"| {r['shape']} | {r['batch']}x{r['seq']} | {r['mode']} | {r['attention']} | "
                   f"{fmt(r['median_step_seconds'] * 1e3)} | {fmt(r['min_step_seconds'] * 1e3)} | "
                   f"{fmt(r['tokens_per_second'], 0)} | {fmt(ratio, 2)} |")
            if memory:
                used = r.get("gpu_memory_peak_mib")
                base_used = plain_memory.get((r["shape"], r["batch"], r["seq"]))
                mem_ratio = used / base_used if used and base_used else None
                row += f" {fmt(used, 0)} | {fmt(mem_ratio, 2)} |"
            md.append(row)
        md.append("")
        ratios = []
        for (shape, batch, seq), base in plain.items():
            row = {m: None for m in CPU_TARGETS}
            for r in ok:
                if (r["shape"], r["batch"], r["seq"]) == (shape, batch, seq) and r["mode"] in row:
                    row[r["mode"]] = r["median_step_seconds"] / base
            ratios.append((shape, batch, seq, row))
        if ratios:
            md += [
                "### Search step over plain LoRA step",
                "",
                "| shape | batch x seq | " + " | ".join(
                    f"{m} (CPU target <= {t:g}x)" for m, t in CPU_TARGETS.items()) + " |",
                "|---|---|" + "---:|" * len(CPU_TARGETS),
            ]
            for shape, batch, seq, row in sorted(ratios):
                md.append(f"| {shape} | {batch}x{seq} | "
                          + " | ".join(fmt(row[m], 2) for m in CPU_TARGETS) + " |")
            md.append("")
    else:
        md += ["No bench run finished.", ""]
    if failed:
        md += ["### Runs that did not finish", "", "| shape | batch x seq | mode | why |",
               "|---|---|---|---|"]
        md += [f"| {r.get('shape')} | {r.get('batch')}x{r.get('seq')} | {r.get('mode')} | "
               f"{r.get('error')} |" for r in failed]
        md.append("")
    md += ["Raw reports: bench.jsonl; logs: check.log, tests.log, bench.log.", ""]
    (args.out / "summary.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
