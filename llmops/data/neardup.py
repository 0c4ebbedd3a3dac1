"""Near-duplicate rows for validate-data (opt-in): MinHash over word 5-gram shingles, candidates from an LSH index
(datasketch), confirmed by the estimated Jaccard similarity >= threshold.

Memory grows with the data (about ``num_perm`` x 8 bytes per row for the index), which is why it is off by default.
Rows already reported as exact duplicates are not indexed again.
"""
from __future__ import annotations

from llmops.data.checks import words

SHINGLE = 5


class NearDuplicates:
    def __init__(self, threshold: float = 0.8, num_perm: int = 64):
        from datasketch import MinHash, MinHashLSH

        self.threshold = threshold
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.sigs: dict[int, object] = {}
        self._seed = MinHash(num_perm=num_perm)  # reuse its permutations: building them is the slow part

    def _signature(self, text: str):
        ws = words(text)
        shingles = {" ".join(ws[i:i + SHINGLE]) for i in range(max(1, len(ws) - SHINGLE + 1))}
        m = self._seed.copy()  # an empty MinHash sharing the permutations (works across datasketch versions)
        m.update_batch([s.encode("utf-8") for s in shingles if s])
        return m

    def add(self, key: int, text: str) -> tuple[int, float] | None:
        """Index a row; return ``(key_of_similar_row, jaccard)`` when an earlier row is a near-duplicate."""
        sig = self._signature(text)
        best = None
        for other in self.lsh.query(sig):
            score = sig.jaccard(self.sigs[other])
            if score >= self.threshold and (best is None or score > best[1]):
                best = (other, score)
        if best is None:
            self.lsh.insert(key, sig, check_duplication=False)
            self.sigs[key] = sig
        return best
