"""Findings: what a scan saw that is wrong, risky or untidy, each naming the path and the value.

Severity decides what a finding means for the user:

- `damage`: something the registry cannot serve, something its own garbage collector aborts on, or
  something that makes regprune's picture of the store untrustworthy. `check` exits 3; deletions refuse.
- `warning`: works today but is a risk (a repository one registry version would not see, schema1
  manifests that 3.x cannot serve, a pull-through-cache store).
- `housekeeping`: leftovers that waste space or clutter the tree and harm nothing (NAS litter, uploads
  without `startedat`, links to blobs that are gone, stray temporary files).
"""

from __future__ import annotations

from typing import NamedTuple

DAMAGE = "damage"
WARNING = "warning"
HOUSEKEEPING = "housekeeping"
SEVERITIES = (DAMAGE, WARNING, HOUSEKEEPING)

# code -> (severity, one-line description used in docs)
CODES = {
    "link-empty": (DAMAGE, "a link file is empty (full disk or crash); the registry rejects it"),
    "link-malformed": (DAMAGE, "a link file's body is not exactly `sha256:<64 hex>`"),
    "link-mismatch": (DAMAGE, "a link file's body names another digest than its path"),
    "revision-blob-missing": (DAMAGE, "a revision link names a manifest whose blob is not stored"),
    "manifest-unparseable": (DAMAGE, "a revision's manifest blob does not parse"),
    "manifest-unknown-type": (DAMAGE, "a revision's manifest has a media type regprune does not know"),
    "blob-missing": (DAMAGE, "a manifest references a blob that is not stored"),
    "alias-unresolved": (DAMAGE, "a manifest names a sha384/sha512 blob with no alias link in the repo"),
    "index-child-missing": (DAMAGE, "an index names a child manifest that is not a revision of the repo"),
    "tag-target-missing": (DAMAGE, "a tag's current link names a manifest that is not a revision"),
    "blob-outside-layout": (DAMAGE, "an entry under blobs/ is not where a digest would put it"),
    "blob-digest-mismatch": (DAMAGE, "a blob's content does not hash to its digest (--verify-digests)"),
    "blob-size-mismatch": (DAMAGE, "a blob's size differs from a descriptor naming it (--verify-digests)"),
    "invalid-repository-name": (DAMAGE, "a directory under repositories/ is not a valid name"),
    "symlink": (DAMAGE, "a symbolic link in the store (never followed)"),
    "unreadable": (DAMAGE, "an entry could not be read"),
    "schema1": (WARNING, "a schema1 manifest: registry 3.x cannot serve it and its GC aborts"),
    "repository-invisible-2.8": (WARNING, "a repository without _layers: registry 2.8 does not see it"),
    "repository-invisible-3": (WARNING, "a repository without _manifests: registry 3.x does not see it"),
    "pull-through-cache": (WARNING, "scheduler-state.json: this store is a pull-through cache"),
    "nas-litter": (HOUSEKEEPING, "NAS metadata (@eaDir, #recycle, .DS_Store, ...); never interpreted"),
    "unexpected-entry": (HOUSEKEEPING, "an entry the layout does not have; ignored"),
    "stray-temporary": (HOUSEKEEPING, "a leftover `*.tmp` file beside a link; ignored"),
    "tag-no-current": (HOUSEKEEPING, "a tag directory without current/link; the registry skips it"),
    "upload-no-startedat": (HOUSEKEEPING, "an upload without a readable startedat; never purged"),
    "layer-link-dangling": (HOUSEKEEPING, "a _layers link whose blob is not stored"),
}

NAS_LITTER = frozenset({"@eaDir", "#recycle", "#snapshot", ".DS_Store", "._.DS_Store", "Thumbs.db",
                        "desktop.ini", ".AppleDouble", "@tmp", ".@__thumb"})


def is_litter(name: str) -> bool:
    return name in NAS_LITTER or name.startswith("._") or name.startswith("@")


class Finding(NamedTuple):
    code: str
    path: str
    value: str
    detail: str = ""

    @property
    def severity(self) -> str:
        return CODES[self.code][0]

    def sort_key(self) -> tuple:
        return (SEVERITIES.index(self.severity), self.path, self.code, self.value, self.detail)

    def to_json(self) -> dict:
        out = {"code": self.code, "severity": self.severity, "path": self.path, "value": self.value}
        if self.detail:
            out["detail"] = self.detail
        return out

    def message(self) -> str:
        text = f"{self.path}: {self.code}: {self.value!r}"
        return f"{text} ({self.detail})" if self.detail else text
