"""The evaluation protocol: everything that defines a number, in one versioned, hashed object.

Two unlearning papers can report the same baseline under the same attack at 79.6 % and
19.7 % success because detector, threshold, prompts, seeds, sampler and attack budget all
differ and none is written down. Here every ``results.json`` carries the ``Protocol`` it
was measured under and its hash, and a report refuses to put results of different
protocols side by side unless told to, naming the fields that differ.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

PROTOCOL_VERSION = 1
"""Bumped whenever the meaning of a field or a metric's implementation changes."""


@dataclasses.dataclass(frozen=True)
class Protocol:
    """What a figure was measured under. Two results are comparable only if these agree."""

    name: str
    """'shapeworld-study' or 'real-model'."""
    model: dict
    """The base pipeline: its id and, where it is local, a digest of its denoiser's weights."""
    detector: dict
    """The concept detector's settings: name, classes or concept, threshold, weights digest."""
    prompt_sets: dict
    """Per prompt group: where the prompts come from (a function or a file and its digest), how many."""
    seeds: tuple[int, ...]
    """Seeds of the study; each seed has its own pairs, training seed, prompts and attack seeds."""
    num_inference_steps: int
    """Denoising steps of every evaluation and attack image."""
    guidance_scale: float
    """Classifier-free guidance of every evaluation and attack image."""
    scheduler: str
    """The pipeline's scheduler class (the sampler is part of what a number means)."""
    metrics: dict
    """Per figure: the implementation and its interval."""
    attacks: dict
    """Per attack: budget actually spent, attack prompts, images per prompt."""
    version: int = PROTOCOL_VERSION

    def to_dict(self) -> dict:
        return json.loads(json.dumps(dataclasses.asdict(self)))  # tuples -> lists, as in results.json

    def digest(self) -> str:
        return protocol_hash(self.to_dict())


def protocol_hash(protocol: dict) -> str:
    """sha256 of the protocol's canonical JSON (sorted keys), first 16 hex digits."""
    canonical = json.dumps(protocol, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def protocol_differences(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the fields where two protocol dicts differ ('detector.threshold')."""
    if isinstance(a, dict) and isinstance(b, dict):
        found = []
        for key in sorted(set(a) | set(b)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                found.append(path)
            else:
                found += protocol_differences(a[key], b[key], path)
        return found
    return [] if a == b else [prefix or "(whole protocol)"]


class ProtocolMismatch(ValueError):
    """Results measured under different protocols were asked to share a table."""


def require_same_protocol(results: dict[str, dict], allow_mixed: bool = False) -> list[str]:
    """Check that every results dict (by source name) carries the same protocol. Raises
    ``ProtocolMismatch`` naming the differing fields and sources, unless ``allow_mixed``;
    then returns the differing fields so the report can say it mixes protocols."""
    names = list(results)
    if not names:
        return []
    first = results[names[0]].get("protocol")
    differing: list[str] = []
    for name in names[1:]:
        other = results[name].get("protocol")
        if first is None or other is None:
            fields = ["protocol (missing: results written before protocols were recorded)"]
        else:
            fields = protocol_differences(first, other)
        if fields and not allow_mixed:
            raise ProtocolMismatch(
                f"{names[0]} and {name} were measured under different protocols (differing: {', '.join(fields)}); "
                "their figures are not comparable. Re-run one of them under the other's protocol, or pass "
                "--allow-mixed-protocols to put them side by side anyway (the report then says so).")
        differing += [f for f in fields if f not in differing]
    return differing
