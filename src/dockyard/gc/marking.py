"""Mark: which manifests of one repository are garbage. Pure functions over rows the sweep read.

A manifest is *live* when it is a root, or an index that is live lists it, or it refers (`subject`)
to a live manifest. Roots:
- every manifest younger than the safety window (and so, whatever it lists or refers to);
- with `delete_untagged`: tagged manifests; without it: every manifest;
- except, with `delete_referrers_with_subject`, manifests that have a subject: they live only
  through their subject (or an index listing them, or their youth), tagged or not.
The rest is garbage, returned parents and subjects first, so deleting in that order never leaves
an index without a child or a referrer whose subject is still there.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class ManifestNode:
    id: int
    digest: str
    subject: str | None
    tagged: bool
    created_at: datetime
    size: int
    children: tuple[str, ...] = ()  # the digests of the manifests an index lists


@dataclass(frozen=True)
class MarkRules:
    cutoff: datetime  # created before this: old enough to collect
    delete_untagged: bool
    referrers_with_subject: bool

    def bound_to_subject(self, node: ManifestNode) -> bool:
        return self.referrers_with_subject and node.subject is not None

    def is_root(self, node: ManifestNode) -> bool:
        if node.created_at >= self.cutoff:
            return True
        if self.bound_to_subject(node):
            return False
        return node.tagged or not self.delete_untagged


def garbage(nodes: list[ManifestNode], rules: MarkRules) -> list[ManifestNode]:
    """The manifests no root keeps, ordered parents and subjects before what they keep."""
    by_digest = {node.digest: node for node in nodes}
    referrers: dict[str, list[ManifestNode]] = defaultdict(list)
    for node in nodes:
        if node.subject is not None:
            referrers[node.subject].append(node)
    live: set[int] = set()
    queue = deque(node for node in nodes if rules.is_root(node))
    while queue:
        node = queue.popleft()
        if node.id in live:
            continue
        live.add(node.id)
        kept = [by_digest[digest] for digest in node.children if digest in by_digest]
        queue.extend(kept + referrers.get(node.digest, []))
    dead = [node for node in nodes if node.id not in live]
    return _parents_first(dead, by_digest, referrers)


def _parents_first(
    dead: list[ManifestNode], by_digest: dict[str, ManifestNode], referrers: dict[str, list[ManifestNode]]
) -> list[ManifestNode]:
    """Kahn's order on the garbage: an index before the children it lists, a subject before its
    referrers. Digests make the graph acyclic (a manifest cannot list its own digest)."""
    dead_ids = {node.id for node in dead}
    dependents: dict[int, list[ManifestNode]] = defaultdict(list)
    waiting_on: dict[int, int] = {node.id: 0 for node in dead}
    for node in dead:
        kept = [by_digest[d] for d in node.children if d in by_digest] + referrers.get(node.digest, [])
        for other in kept:
            if other.id in dead_ids and other.id != node.id:
                dependents[node.id].append(other)
                waiting_on[other.id] += 1
    ready = deque(sorted((node for node in dead if waiting_on[node.id] == 0), key=lambda n: n.id))
    ordered: list[ManifestNode] = []
    while ready:
        node = ready.popleft()
        ordered.append(node)
        for other in dependents[node.id]:
            waiting_on[other.id] -= 1
            if waiting_on[other.id] == 0:
                ready.append(other)
    return ordered
