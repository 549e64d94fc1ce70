"""CPU and memory of a subject's processes, from /proc (Linux).

CPU is utime + stime of each process and its descendants (/proc/PID/stat), read at both ends of
the measurement window: CPU % = CPU seconds used in the window / wall seconds x 100, summed over
processes, so 200 % is two cores kept busy.  Memory is VmRSS (now) and VmHWM (peak) from
/proc/PID/status, summed.  A process that ended between two readings simply drops out.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# /proc/PID/stat after the ")" that ends the command name: field 3 (state) is index 0, so
# utime (field 14) and stime (field 15) are indexes 11 and 12.
UTIME_INDEX, STIME_INDEX = 11, 12


def parse_stat_cpu_ticks(stat: str) -> int:
    """utime + stime in clock ticks from the text of /proc/PID/stat.  The command name may hold
    spaces and parentheses, so the fields are counted from the last ")"."""
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[UTIME_INDEX]) + int(fields[STIME_INDEX])


def parse_status_kib(status: str, key: str) -> int:
    """A "kB" line of /proc/PID/status (e.g. VmRSS), in KiB; 0 if absent (a kernel thread)."""
    for line in status.splitlines():
        name, _, rest = line.partition(":")
        if name == key:
            return int(rest.split()[0])
    return 0


def process_tree(pid: int) -> list[int]:
    """`pid` and its living descendants (through /proc/PID/task/TID/children)."""
    tree: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        if current in tree:
            continue
        tree.append(current)
        try:
            for task in (PROC / str(current) / "task").iterdir():
                todo.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:  # ended meanwhile, or no permission
            continue
    return tree


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


@dataclass(frozen=True)
class CpuReading:
    at: float  # time.monotonic()
    seconds: dict[int, float]  # CPU seconds used so far, per process


def read_cpu(pids: Iterable[int]) -> CpuReading:
    seconds: dict[int, float] = {}
    for root in pids:
        for pid in process_tree(root):
            stat = _read(PROC / str(pid) / "stat")
            if stat is not None:
                seconds[pid] = parse_stat_cpu_ticks(stat) / CLOCK_TICKS
    return CpuReading(time.monotonic(), seconds)


def cpu_percent(start: CpuReading, end: CpuReading) -> float:
    """CPU used between two readings as a percentage of one core (processes new at `end` count
    from zero; ones gone at `end` are left out)."""
    wall = end.at - start.at
    if wall <= 0:
        return 0.0
    used = sum(max(0.0, s - start.seconds.get(pid, 0.0)) for pid, s in end.seconds.items())
    return 100.0 * used / wall


@dataclass(frozen=True)
class Memory:
    rss_mib: float  # resident now
    peak_mib: float  # the most each process was resident at, summed


def read_memory(pids: Iterable[int]) -> Memory:
    rss = peak = 0
    for root in pids:
        for pid in process_tree(root):
            status = _read(PROC / str(pid) / "status")
            if status is not None:
                rss += parse_status_kib(status, "VmRSS")
                peak += parse_status_kib(status, "VmHWM")
    return Memory(rss / 1024, peak / 1024)
