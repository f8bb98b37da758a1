"""Parse nccl-tests ``*_perf`` output (NVIDIA/nccl-tests) into raw points.

The table is found by its column header, a comment line naming ``size``, ``count``,
``type`` and ``time``; columns are mapped by name, so both layouts parse:

- new (nccl-tests >= 2.10): ``size count type redop root time algbw busbw #wrong`` x2
- old (2019-era): ``size count type redop time algbw busbw error`` x2 (no ``root``;
  all_gather may lack ``redop`` too)

The first ``time`` column is out-of-place, the second in-place. nccl-tests prints the mean
time over iterations (averaged over ranks); we keep it as ``stat = nccl_tests_mean``.
Rows of size 0 (all_gather / reduce_scatter below ranks x 4 B) carry no information and
are dropped. Metadata, each overridable by the caller:

- ranks, hosts, GPU name from the device lines
  ``#  Rank  0 Group  0 Pid 1234 on host device  0 [0x07] NVIDIA A100-SXM4-40GB``;
  nodes = number of distinct hosts;
- NCCL version from ``# NCCL version 2.18.3+cuda12.2`` (printed by newer nccl-tests);
- the collective from a ``*_perf`` command or file name (all_reduce_perf, allreduce...);
- the comment lines ``# source:``, ``# gpus: N x NAME``, ``# nodes: N``, ``# collective:``
  written by whoever archived the log (as in shared/data/nccl/) when present.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from calibrate.nccl.raw import RawPoint
from solver.errors import InputError
from solver.inputs.profile import COLLECTIVES

_RANK_RE = re.compile(r"^#\s*Rank\s+(\d+)\s+(?:Group\s+\d+\s+)?Pid\s+\d+\s+on\s+(\S+)\s+device\s+\d+\s+"
                      r"\[[^\]]*\]\s+(.+?)\s*$")
_NCCL_RE = re.compile(r"NCCL version\s+(\d\S*)")
_HEADER_RE = re.compile(r"nThread\s+(\d+)\s+nGpus\s+(\d+).*?warmup iters:\s*(\d+)\s+iters:\s*(\d+)")
_RANGE_RE = re.compile(r"minBytes\s+(\d+)\s+maxBytes\s+(\d+)")
_GPUS_RE = re.compile(r"^#\s*gpus:\s*(\d+)\s*x\s*([^(;]+?)\s*(?:[(;].*)?$")
_NODES_RE = re.compile(r"^#\s*nodes:\s*(\d+)")
_SOURCE_RE = re.compile(r"^#\s*source:\s*(\S+)")
_COLL_RE = re.compile(r"^#\s*collective:\s*(\w+)")
# file / binary name spellings -> profile collective names
_ALIASES = {"allreduce": "all_reduce", "allgather": "all_gather", "reducescatter": "reduce_scatter",
            "broadcast": "broadcast", "sendrecv": "send_recv"}


@dataclass
class NcclLog:
    path: str
    collective: str | None
    ranks: int | None
    nodes: int | None
    gpu: str
    hosts: list[str]
    nccl: str
    source_url: str
    iters: int | None
    warmup: int | None
    sizes: list[int] = field(default_factory=list)
    time_us: list[float] = field(default_factory=list)
    time_inplace_us: list[float | None] = field(default_factory=list)
    dtype: str = ""
    header_max_bytes: int | None = None  # the ``maxBytes`` the run was asked for

    def truncation(self) -> str:
        """A warning when the rows end before the header's ``maxBytes`` (a cut-off log), else ''."""
        if self.header_max_bytes and self.sizes and max(self.sizes) < self.header_max_bytes:
            return (f"{self.path}: rows end at {max(self.sizes)} B but the header asked for up to "
                    f"{self.header_max_bytes} B: truncated log? the fit only covers the rows present")
        return ""


def collective_from_name(text: str) -> str | None:
    """``all_reduce_perf``, ``allreduce``, ``h100_reducescatter.log`` -> profile name."""
    flat = re.sub(r"[^a-z]", "", text.lower())
    for alias, name in _ALIASES.items():
        if alias in flat:
            return name
    return None


def _float(tok: str) -> float | None:
    try:
        return float(tok)
    except ValueError:
        return None  # 'N/A' in some in-place columns


def _columns(line: str) -> list[str] | None:
    toks = line.lstrip("#").split()
    if toks[:2] == ["size", "count"] and "time" in toks:
        return toks
    return None


def parse_text(text: str, where: str) -> NcclLog:
    """Parse one nccl-tests log. Raises :class:`InputError` naming the file and line."""
    cols = None
    ranks: dict[int, tuple[str, str]] = {}
    log = NcclLog(where, None, None, None, "", [], "", "", None, None)
    gpus_comment = nodes_comment = None
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            if (m := _RANK_RE.match(line)):
                ranks[int(m.group(1))] = (m.group(2), m.group(3))
            elif (m := _NCCL_RE.search(line)) and not log.nccl:
                log.nccl = m.group(1)
            elif (m := _HEADER_RE.search(line)):
                log.warmup, log.iters = int(m.group(3)), int(m.group(4))
                if (r := _RANGE_RE.search(line)):
                    log.header_max_bytes = int(r.group(2))
            elif (m := _GPUS_RE.match(line)):
                gpus_comment = (int(m.group(1)), m.group(2).strip())
            elif (m := _NODES_RE.match(line)):
                nodes_comment = int(m.group(1))
            elif (m := _SOURCE_RE.match(line)):
                log.source_url = m.group(1)
            elif (m := _COLL_RE.match(line)):
                log.collective = collective_from_name(m.group(1)) or log.collective
            elif line.startswith("# command:") or "_perf" in line:
                log.collective = log.collective or collective_from_name(line.split("_perf")[0][-20:] + "_perf"
                                                                        if "_perf" in line else "")
            elif cols is None:
                cols = _columns(line)
            continue
        if cols is None:
            continue  # text before the table (e.g. launcher output)
        toks = line.split()
        if not toks[0].isdigit():
            continue  # NCCL INFO / WARN lines between rows
        if len(toks) < len(cols) - cols.count("#wrong") - cols.count("error") - 2:
            raise InputError(where, f"line {lineno}", f"table row has {len(toks)} fields, header has {len(cols)}")
        t_idx = [i for i, c in enumerate(cols) if c == "time"]
        size, t_out = int(toks[0]), _float(toks[t_idx[0]])
        t_in = _float(toks[t_idx[1]]) if len(t_idx) > 1 and t_idx[1] < len(toks) else None
        if t_out is None:
            raise InputError(where, f"line {lineno}: time", f"not a number: {toks[t_idx[0]]!r}")
        if "type" in cols and not log.dtype:
            log.dtype = toks[cols.index("type")]
        if size == 0:
            continue
        log.sizes.append(size)
        log.time_us.append(t_out)
        log.time_inplace_us.append(t_in)
    if cols is None:
        raise InputError(where, "", "no nccl-tests table found (expected a '#  size  count  type ... time' header)")
    if not log.sizes:
        raise InputError(where, "", "the nccl-tests table has no rows with size > 0")
    if ranks:
        log.ranks = len(ranks)
        log.hosts = sorted({h for h, _ in ranks.values()})
        log.nodes = len(log.hosts)
        log.gpu = ranks[min(ranks)][1]
    elif gpus_comment:
        log.ranks, log.gpu = gpus_comment
    if nodes_comment and not ranks:
        log.nodes = nodes_comment
    if log.collective is None:
        log.collective = collective_from_name(Path(where).name)
    return log


def parse_file(path: str | Path) -> NcclLog:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as e:
        raise InputError(str(path), "", f"cannot read file ({e.strerror or e})") from None
    return parse_text(text, str(path))


def to_raw(log: NcclLog, *, collective: str | None = None, ranks: int | None = None,
           nodes: int | None = None, gpu: str | None = None, source: str = "published",
           ref: str | None = None, nccl: str | None = None) -> list[RawPoint]:
    """Raw points of ``log``; flags override what the log says. Missing ranks or
    collective is an error (nccl-tests tables do not print them)."""
    coll = collective or log.collective
    if coll not in COLLECTIVES:
        raise InputError(log.path, "collective", f"cannot tell which collective this log measured "
                                                 f"(got {coll!r}); pass --collective {'|'.join(COLLECTIVES)}")
    n = ranks or log.ranks
    if not n or n < 2:
        raise InputError(log.path, "ranks", "the log has no device lines; pass --ranks (total GPUs)")
    nn = nodes or log.nodes or 1
    where = ref if ref is not None else (log.source_url or log.path)
    return [RawPoint(collective=coll, ranks=n, nodes=nn, scope="inter_node" if nn > 1 else "intra_node",
                     size_bytes=s, time_us=t, stat="nccl_tests_mean", time_inplace_us=ti, dtype=log.dtype,
                     iters=log.iters, warmup=log.warmup, backend="nccl-tests", source=source, ref=where,
                     gpu=gpu or log.gpu, hosts=" ".join(log.hosts), nccl=nccl or log.nccl,
                     runtime=f"nccl-tests ({'nccl ' + (nccl or log.nccl) if (nccl or log.nccl) else 'nccl version not printed'})")
            for s, t, ti in zip(log.sizes, log.time_us, log.time_inplace_us)]
