"""Provides the per-bucket summary on the wire: a bucket of nodes folded into one key (issue 18, 10,000 nodes).

At 10,000 nodes a reader of every node's digest spends ~10 µs of Python a node each refresh (key, reply,
inflate, decode, view, sums): the overview's whole budget. So every host falls into one of ``BUCKETS``
buckets (``bucket_of``: CRC-32 of its name, stable across processes and versions), and an agent holding
that bucket's lease (``summary_lease``, agents among the configured summary nodes) reads the bucket's
digests once per interval, folds them into a ``BucketSummary`` (totals, alerts, each host's state, the
busiest cards, the GPU table's sort columns) and writes it to ``summary_key(bucket)``. The overview then
reads ~64 summaries and the digests of the tiles in view instead of 10,000 digests.

Trust (docs/security.md "Bucket summaries"): any summary node may take any bucket's lease, so a summary is
signed with the folder's node key over its body's exact bytes (``SignedSummary``: no canonical re-encoding,
which would cost ~1 ms a summary; domain "summary"), and a reader believes it only when an enrolled node
signed it, when every host it names is of its bucket, and when it is fresh. Anything else, and every host the
index lists that no believed summary covers, is read from its own digest: a summary only saves work, it
never hides a node. A compromised summary node can misstate its buckets' figures (as an alert node can
misstate alerts), never forge a node's sealed digest or speak for a bucket under another node's name.
"""

from __future__ import annotations

import zlib

import msgspec

from clustertop.wire import PREFIX
from clustertop.wire.schema import SCHEMA_VERSION, Base, Payload

#: Buckets of hosts. Every writer and reader must agree (a summary names the count it was folded for, and a
#: reader refuses another): 10,000 nodes -> ~156 a bucket, 64 keys a read; 100,000 GPUs -> ~195 nodes.
BUCKETS = 64
#: The busiest cards a summary keeps (the overview lists ~25 at most; the merge of every bucket's top N holds
#: the cluster's top N).
TOP_GPUS = 32
#: Alerts a summary keeps, most severe first; the rest are counted in ``alerts_left_out``.
ALERTS_MAX = 500


def bucket_of(host: str, buckets: int = BUCKETS) -> int:
    """The bucket ``host`` falls into: CRC-32 of its UTF-8 name (hostile names included) modulo ``buckets``."""
    return zlib.crc32(host.encode("utf-8", "surrogateescape")) % buckets


class BucketCheckMemo:
    """The hosts a reader already found to fall into their bucket (``bucket_of``: ~1 µs a host, 10,000 a read),
    kept by that reader from read to read (``read.reader.Reader.bucket_check``, handed to
    ``control.summary.open_summary``): a summary naming only hosts found of its bucket before is not checked
    again; one naming any other host has them all checked. ``checked``: (bucket, buckets) -> the hosts of the
    last summary whose every host was found of that bucket (replaced, not grown: hosts that left are forgotten;
    a host never checked, or found of another bucket, is never in it)."""

    __slots__ = ("checked",)

    def __init__(self) -> None:
        self.checked: dict[tuple[int, int], frozenset[str]] = {}


def summary_key(bucket: int) -> str:
    """The key of one bucket's summary; hash-tagged per bucket, so on a Redis Cluster the 64 keys spread
    over the shards rather than all landing on one master."""
    return f"{PREFIX}:summary:{{b{bucket}}}"


def summary_lease(bucket: int) -> str:
    """The lease name (agents/lease.py) one summary node holds to fold ``bucket``."""
    return f"summary:{bucket}"


#: Every bucket's summary key, as an ACL key pattern (``clustertop acl --summary-node``).
SUMMARY_KEYS = f"{PREFIX}:summary:*"
#: Every bucket's lease name, as a pattern (its key is ``wire.lease_key`` of it).
SUMMARY_LEASES = "summary:*"


#: Per-host state letters in ``BucketSummary.states`` (as the reader decides them: read.model.NodeView.state).
STATE_LETTERS = {"up": "u", "stale": "s", "down": "d", "bad": "b"}
LETTER_STATES = {v: k for k, v in STATE_LETTERS.items()}


class SummaryTotals(Base):
    """The summable parts of ``read.model.Totals`` over one bucket's nodes; merging buckets is adding these
    (``read.summary.merge``), so the cluster's totals from summaries equal ``read.cluster.summarize`` over
    the same digests. None = no node of the bucket reports it (N/A), as everywhere."""

    nodes_up: int = 0
    nodes_stale: int = 0
    nodes_down: int = 0
    nodes_bad: int = 0
    cpu_cores: int | None = None
    cpu_util_weighted: float = 0.0  # Σ util % x cores over nodes reporting both ...
    cpu_reporting_cores: int = 0  # ... and Σ those cores: the core-weighted mean is their quotient
    cpu_nodes: int = 0
    load1: float | None = None
    mem_total_bytes: int | None = None
    mem_used_bytes: int | None = None
    mem_nodes: int = 0
    gpus_total: int | None = None
    gpus_busy: int | None = None
    gpus_lost: int = 0
    gpu_util_sum: int = 0
    gpu_util_n: int = 0
    vram_total_bytes: int | None = None
    vram_used_bytes: int | None = None
    power_mw: int | None = None
    power_limit_mw: int | None = None
    cuda_cores: int | None = None
    gpu_nodes: int = 0
    gpu_procs: int | None = None
    net_rx_bytes_s: float | None = None
    net_tx_bytes_s: float | None = None
    bonds_total: int | None = None
    bonds_degraded: int | None = None
    models: dict[str, int] | None = None


class SummaryAlert(Base, array_like=True):
    """One alert of ``read.cluster.alerts`` for a node of the bucket (its state, its digest's alerts)."""

    severity: str
    source: str
    node: str | None
    subject: str
    message: str
    rule: str = ""


class TopGpu(Base, array_like=True):
    """One of the bucket's busiest cards."""

    host: str
    index: int
    util_pct: int


class GpuColumns(Base):
    """Every live-or-lost card of the bucket's up nodes as columns (one entry per card, node order then
    card order), for the GPU table's sort at 10,000 nodes: msgspec decodes lists of ints at C speed, where
    80,000 ``schema.Gpu`` structs cost ~150 ms. ``node`` is the card's host's position in
    ``BucketSummary.hosts``; ``seq`` per host in ``BucketSummary.seqs`` says which tick the figures are of."""

    node: list[int] = []
    index: list[int | None] = []
    util_pct: list[int | None] = []
    mem_used_bytes: list[int | None] = []
    mem_total_bytes: list[int | None] = []
    temp_c: list[int | None] = []
    power_mw: list[int | None] = []
    #: Positions (into these columns, ascending) of the cards that fell off the bus (``Gpu.lost``): the GPU table
    #: sorts them by util below every real figure and says LOST, as a read of the briefs does. Empty from an older
    #: folder: its lost cards sort as N/A until their row is in view.
    lost: list[int] = []


class BucketSummary(Payload):
    """One bucket of hosts folded by a summary node (``folder``) from the digests it read at ``read_ts``."""

    v: int = SCHEMA_VERSION
    bucket: int = 0
    buckets: int = BUCKETS
    folder: str = ""  # the node that folded and signed it
    ts: float = 0.0  # when it was written (the folder's clock)
    seq: int = 0
    interval_s: float = 1.0  # how often it is rewritten: a reader calls it stale after a few of these
    read_ts: float | None = None  # the folder's clock when it read the digests (figures are this old + their own age)
    hosts: list[str] = []  # every host of this bucket the index listed, sorted
    states: str = ""  # one STATE_LETTERS letter per host in ``hosts``
    seqs: list[int | None] = []  # per host: the ``seq`` of the digest folded (None: none folded)
    totals: SummaryTotals = msgspec.field(default_factory=SummaryTotals)
    alerts: list[SummaryAlert] = []
    alerts_left_out: int = 0
    top_gpus: list[TopGpu] = []
    gpus: GpuColumns | None = None  # None: not folded (an older folder, or cards unknown)


class SignedSummary(Payload):
    """What ``summary_key`` holds: the summary's msgpack bytes as the folder encoded them, and its node key's
    signature over the domain "summary" and exactly those bytes (``control.signing``)."""

    v: int = SCHEMA_VERSION
    body: bytes = b""
    key_id: str = ""
    sig: str = ""
