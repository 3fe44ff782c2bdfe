"""What the collector costs and how much it takes: exec and connect storms, watched and not.

Runs a collector with the eBPF sensor (root and bpftrace needed) in this process and storm
processes beside it:

* ``idle``: nothing happens; the collector's own background cost.
* ``unwatched``: a connect + exec storm by processes the collector does not watch. The kernel
  program drops their events before user space, so the collector's CPU should not move.
* ``watched@5000``: a watched storm paced at 5,000 events/s; collector CPU at that rate.
* ``watched@RATE``: watched storms paced at each of ``--rates`` in turn (25,000, 35,000 and
  50,000 events/s by default), until one loses events or falls short; events/s handled (stored
  by the collector, end to end from the kernel through bpftrace) and lost.
* ``pipeline``: recorded bpftrace output replayed through the user-space pipeline alone.

Collector CPU is this process (receiver, correlation, store) plus its bpftrace child, in % of
one core. Each connect is one kernel event; each exec is three (fork, exec, exit). The storm is a
small C program compiled here with ``cc`` (a Python loop when there is no compiler).

    sudo .venv/bin/python bench/collector.py
    sudo .venv/bin/python bench/collector.py --seconds 5 --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

TARGET_EVENTS_PER_SECOND = 20_000
TARGET_CPU_AT_5000 = 25.0
TARGET_UNWATCHED_CPU = 1.0

# A storm process: waits for "go", then for SECONDS makes connect calls (one kernel event each)
# and every EXEC_EVERY-th time runs CHILD (three events: fork, exec, exit), at RATE events/s
# (0: as fast as it can). Prints how many events it caused. The connects are of one UDP socket to
# a loopback port: connect() on a datagram socket sends nothing, so each costs the storm one cheap
# system call, while the kernel program sees (and reports) exactly what it sees for any connect.
# A storm of TCP connects to a closed port (--tcp) costs the storm several times more per event.
STORM = r"""
import os, socket, sys, time
rate, seconds, exec_every = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
tcp, child = sys.argv[4] == "tcp", sys.argv[5]
sys.stdin.readline()
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
target = ("127.0.0.1", 9)
events = 0
n = 0
start = time.perf_counter()
deadline = start + seconds
while True:
    now = time.perf_counter()
    if now >= deadline:
        break
    if rate and events > (now - start) * rate:
        time.sleep(0.0002)
        continue
    for _ in range(16):
        n += 1
        if exec_every and n % exec_every == 0:
            os.waitpid(os.posix_spawn(child, [child], {}), 0)
            events += 3
        elif tcp:
            s = socket.socket()
            s.connect_ex(target)
            s.close()
            events += 1
        else:
            udp.connect(target)
            events += 1
print(events, time.perf_counter() - start, flush=True)
"""

# The same storm in C, used when a C compiler is at hand: a Python loop spends more of the
# machine's two cores on itself than the collector does on the events it causes.
STORM_C = r"""
#include <arpa/inet.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
extern char **environ;
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                          return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
    if (argc < 6) return 2;
    double rate = atof(argv[1]), seconds = atof(argv[2]); long exec_every = atol(argv[3]);
    int tcp = strcmp(argv[4], "tcp") == 0;
    char line[16]; if (!fgets(line, sizeof line, stdin)) return 1;
    struct sockaddr_in addr = {0}; addr.sin_family = AF_INET; addr.sin_port = htons(9);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int udp = socket(AF_INET, SOCK_DGRAM, 0);
    char *child[] = {argv[5], NULL};
    long events = 0, n = 0; double start = now(), deadline = start + seconds, t;
    while ((t = now()) < deadline) {
        if (rate > 0 && events > (t - start) * rate) { usleep(100); continue; }
        for (int i = 0; i < 16; i++) {
            n++;
            if (exec_every && n % exec_every == 0) {
                pid_t pid; if (posix_spawn(&pid, argv[5], NULL, NULL, child, environ) == 0) {
                    waitpid(pid, NULL, 0); events += 3; }
            } else if (tcp) {
                int s = socket(AF_INET, SOCK_STREAM, 0);
                connect(s, (struct sockaddr *)&addr, sizeof addr); close(s); events++;
            } else {
                connect(udp, (struct sockaddr *)&addr, sizeof addr); events++;
            }
        }
    }
    printf("%ld %f\n", events, now() - start); return 0;
}
"""


# The program the storms execute: a static binary that returns at once when it builds here.
# /bin/true is dynamically linked and spends most of a millisecond in the loader, which limits a
# storm to about a thousand executions per second.
CHILD_C = "int main(void) { return 0; }\n"


def _compile(workdir: str, name: str, source: str, *flags: str) -> str | None:
    path = os.path.join(workdir, name)
    with open(path + ".c", "w") as handle:
        handle.write(source)
    try:
        subprocess.run(["cc", "-O2", *flags, "-o", path, path + ".c"], check=True,
                       capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return path


def storm_command(workdir: str) -> list[str]:
    """The C storm when it compiles here, else the Python one."""
    binary = _compile(workdir, "storm", STORM_C)
    return [binary] if binary else [sys.executable, "-c", STORM]


def child_program(workdir: str) -> str:
    """What the storms execute: a static no-op when it builds, else /bin/true."""
    return _compile(workdir, "agtrue", CHILD_C, "-static") or "/bin/true"


def cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def storm(collector: Any, command: list[str], *, count: int, rate: float, seconds: float,
          exec_every: int, watched: bool, transport: str = "udp",
          child: str = "/bin/true") -> dict[str, Any]:
    """Run ``count`` storm processes; returns what they caused and what the collector saw."""
    me = psutil.Process()
    sensor = collector.sensor
    bpftrace = psutil.Process(sensor.process_pid)
    processes = [subprocess.Popen([*command, str(rate / count), str(seconds), str(exec_every),
                                   transport, child],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
                 for _ in range(count)]
    for process in processes:
        if watched:
            collector.watch(process.pid, "bench", agent=False)
    collector.sync()
    before_events = collector.snapshot()["events"]
    before_lost = sensor.stats()["lost"]
    before_cpu = cpu_seconds([me]), cpu_seconds([bpftrace])
    started = time.perf_counter()
    for process in processes:
        assert process.stdin is not None
        process.stdin.write("go\n")
        process.stdin.flush()
    caused = 0
    for process in processes:
        out, _ = process.communicate(timeout=seconds * 10 + 60)
        caused += int(out.split()[0])
    storm_done = time.perf_counter()
    collector.sync(timeout=120)
    # The collector is done when it has stored everything the storm caused.
    drained = time.perf_counter()
    after_cpu = cpu_seconds([me]), cpu_seconds([bpftrace])
    elapsed = drained - started
    received = collector.snapshot()["events"] - before_events
    lost = sensor.stats()["lost"] - before_lost
    return {
        "caused": caused,
        "received": received,
        "lost": lost,
        "storm_seconds": round(storm_done - started, 2),
        "drain_seconds": round(drained - storm_done, 2),
        "events_per_second": round(received / elapsed) if elapsed else 0,
        "collector_cpu_percent": round(100 * (after_cpu[0] - before_cpu[0]) / elapsed, 1),
        "bpftrace_cpu_percent": round(100 * (after_cpu[1] - before_cpu[1]) / elapsed, 1),
    }


def pipeline(tmp: str, events: int) -> dict[str, Any]:
    """The user-space side alone: recorded bpftrace output (connects and execs of a watched
    process) parsed, correlated and stored as fast as one core allows."""
    from agentguard.collector.daemon import Collector
    from agentguard.collector.ebpf import BpftraceSensor
    from agentguard.collector.sensor import WatchSet
    from agentguard.collector.settings import load_settings

    def line(text: str) -> bytes:
        # Exactly as bpftrace -f json prints a printf record.
        return (json.dumps({"type": "printf", "data": text + "\n"}) + "\n").encode()

    argv = "".join(f"\\x{byte:02x}" for byte in b"true\0")
    lines: list[bytes] = []
    base = time.monotonic_ns()
    pid = 4_000_000
    caused = 0
    while caused < events:
        ts = base + len(lines) * 1000
        if len(lines) % 50 == 0:
            pid += 1
            lines += [line(f"F 3999999 3999999 {pid} {ts}"),
                      line(f"E {pid} {pid} 3999999 0 {ts} 1 5 /usr/bin/true"),
                      line(f"V {pid} 0 {argv}"), line(f"X {pid} {ts} 0")]
            caused += 3
        else:
            lines.append(line(f"C 3999999 3999999 {ts} 2 256 -111 127.0.0.1"))
            caused += 1
    collector = Collector(load_settings(
        {"db": os.path.join(tmp, "pipeline.db"), "otlp_grpc": "off", "otlp_http": "off",
         "sensor": "none", "discover": False, "queue_size": 10 * events}, environ={})).start()
    try:
        me = psutil.Process()
        before = cpu_seconds([me])
        started = time.perf_counter()
        BpftraceSensor(WatchSet()).replay(lines, collector._on_kernel_event)
        collector.sync(timeout=300)
        elapsed = time.perf_counter() - started
        cpu = cpu_seconds([me]) - before
        received = collector.snapshot()["events"]
    finally:
        collector.stop()
    return {"caused": caused, "received": received, "lost": 0,
            "events_per_second": round(received / elapsed),
            "collector_cpu_percent": round(100 * cpu / elapsed, 1), "bpftrace_cpu_percent": 0.0,
            "drain_seconds": round(elapsed, 2)}


def idle(collector: Any, seconds: float) -> dict[str, Any]:
    me = psutil.Process()
    bpftrace = psutil.Process(collector.sensor.process_pid)
    before = cpu_seconds([me]), cpu_seconds([bpftrace])
    time.sleep(seconds)
    after = cpu_seconds([me]), cpu_seconds([bpftrace])
    return {"collector_cpu_percent": round(100 * (after[0] - before[0]) / seconds, 2),
            "bpftrace_cpu_percent": round(100 * (after[1] - before[1]) / seconds, 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each storm")
    parser.add_argument("--storms", type=int, default=2,
                        help="storm processes in the unwatched and the fast watched phases")
    parser.add_argument("--rates", default="25000,35000,50000",
                        help="paced watched rates to try, in order, until one loses events or "
                             "falls short (events/s, comma-separated)")
    parser.add_argument("--tcp", action="store_true",
                        help="TCP connects to a closed port instead of UDP connects")
    parser.add_argument("--python-storm", action="store_true",
                        help="use the Python storm even when a C compiler is available")
    parser.add_argument("--exec-every", type=int, default=50,
                        help="every N-th act is an exec (0: connects only)")
    parser.add_argument("--pipeline-events", type=int, default=100_000,
                        help="recorded events replayed through the user-space pipeline")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    from agentguard.collector.daemon import Collector
    from agentguard.collector.sensor import ebpf_unavailable_reason
    from agentguard.collector.settings import load_settings

    reason = ebpf_unavailable_reason()
    if reason is not None:
        print(f"bench/collector.py needs the eBPF sensor: {reason}", file=sys.stderr)
        return 2
    # As `agentguard collector run` sets it up for its process.
    from agentguard.collector.daemon import tune_gc

    tune_gc()
    with tempfile.TemporaryDirectory() as tmp:
        replayed = pipeline(tmp, args.pipeline_events)
        command = [sys.executable, "-c", STORM] if args.python_storm else storm_command(tmp)
        collector = Collector(load_settings(
            {"db": os.path.join(tmp, "bench.db"), "otlp_grpc": "off", "otlp_http": "127.0.0.1:0",
             "sensor": "ebpf", "discover": False, "queue_size": 1_000_000}, environ={})).start()
        try:
            assert collector.wait_ready(60), "eBPF sensor did not attach"
            transport = "tcp" if args.tcp else "udp"
            common = {"seconds": args.seconds, "exec_every": args.exec_every,
                      "transport": transport, "child": child_program(tmp)}
            results = {
                "idle": idle(collector, args.seconds),
                "unwatched": storm(collector, command, count=args.storms, rate=0, watched=False,
                                   **common),
                "watched@5000": storm(collector, command, count=1, rate=5000, watched=True,
                                      **common),
            }
            for rate in [float(r) for r in args.rates.split(",") if r.strip()]:
                row = storm(collector, command, count=args.storms, rate=rate, watched=True,
                            **common)
                results[f"watched@{rate:.0f}"] = row
                if row["lost"] or row["events_per_second"] < 0.95 * rate:
                    break
            results["pipeline"] = replayed
        finally:
            collector.stop()
    idle_cpu = results["idle"]["collector_cpu_percent"] + results["idle"]["bpftrace_cpu_percent"]
    unwatched = results["unwatched"]
    unwatched_added = unwatched["collector_cpu_percent"] + unwatched["bpftrace_cpu_percent"] - idle_cpu
    at_5000 = results["watched@5000"]
    clean = [row["events_per_second"] for name, row in results.items()
             if name.startswith("watched@") and name != "watched@5000" and row["lost"] == 0]
    best = max(clean, default=0)
    replay = results["pipeline"]
    verdicts = {
        f"end to end >= 20000 events/s with 0 lost (best {best})":
            best >= TARGET_EVENTS_PER_SECOND,
        "user-space pipeline >= 20000 events/s": replay["events_per_second"]
        >= TARGET_EVENTS_PER_SECOND,
        "collector CPU <= 25% at 5000 events/s":
            at_5000["collector_cpu_percent"] + at_5000["bpftrace_cpu_percent"] <= TARGET_CPU_AT_5000,
        "unwatched storm adds < 1% CPU": unwatched_added < TARGET_UNWATCHED_CPU,
    }
    if args.json:
        print(json.dumps({"results": results, "unwatched_added_cpu_percent": unwatched_added,
                          "load_average": os.getloadavg(), "targets_met": verdicts}, indent=2))
        return 0
    print(f"{'phase':<15}{'caused':>9}{'received':>10}{'lost':>7}{'events/s':>10}"
          f"{'collector%':>12}{'bpftrace%':>11}{'drain s':>9}")
    for name, row in results.items():
        print(f"{name:<15}{row.get('caused', '-')!s:>9}{row.get('received', '-')!s:>10}"
              f"{row.get('lost', '-')!s:>7}{row.get('events_per_second', '-')!s:>10}"
              f"{row['collector_cpu_percent']:>12}{row['bpftrace_cpu_percent']:>11}"
              f"{row.get('drain_seconds', '-')!s:>9}")
    load = os.getloadavg()
    print(f"\nload average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores; "
          f"storm: {'C' if command[0] != sys.executable else 'Python'}, "
          f"{'TCP' if args.tcp else 'UDP'} connects, an exec every {args.exec_every} acts")
    print(f"unwatched storm adds {unwatched_added:.2f}% CPU over idle "
          f"(caused {unwatched['caused']} events, {unwatched['received']} reached user space)")
    for name, ok in verdicts.items():
        print(f"{'met ' if ok else 'MISSED'}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
