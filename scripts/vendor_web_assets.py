"""Fetch the dashboard's third-party assets from the npm registry, pinned, and check their hashes.

Run ``python scripts/vendor_web_assets.py`` to re-fetch (needs ``npm``, only at vendoring time:
nothing needs Node.js to run Bastion), ``--check`` to verify the vendored copies against the
manifest without any network. The manifest (``src/bastion/web/static/vendor/MANIFEST.json``) records
each package's version, licence, the npm tarball's integrity and the SHA-256 of every file taken.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "src" / "bastion" / "web" / "static" / "vendor"
MANIFEST = VENDOR / "MANIFEST.json"
# package, version, licence, {path inside the tarball: file name under vendor/}
PACKAGES: list[tuple[str, str, str, dict[str, str]]] = [
    ("htmx.org", "2.0.11", "0BSD", {"package/dist/htmx.min.js": "htmx.min.js"}),
    (
        "uplot",
        "1.6.32",
        "MIT",
        {"package/dist/uPlot.iife.min.js": "uPlot.iife.min.js", "package/dist/uPlot.min.css": "uPlot.min.css"},
    ),
    ("axe-core", "4.14.1", "MPL-2.0", {"package/axe.min.js": "axe.min.js"}),
]


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch() -> None:
    manifest: dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, version, licence, files in PACKAGES:
            spec = f"{name}@{version}"
            info = json.loads(subprocess.check_output(["npm", "view", spec, "dist", "license", "--json"]))
            if info["license"] != licence:
                raise SystemExit(f"{spec}: licence is {info['license']}, expected {licence}")
            out = subprocess.check_output(["npm", "pack", spec, "--silent"], cwd=tmp, text=True).strip()
            tarball = Path(tmp) / out.splitlines()[-1]
            algo, _, digest = info["dist"]["integrity"].partition("-")
            actual = base64.b64encode(hashlib.new(algo, tarball.read_bytes()).digest()).decode()
            if actual != digest:
                raise SystemExit(f"{spec}: tarball integrity mismatch")
            taken: dict[str, str] = {}
            with tarfile.open(tarball) as tar:
                for member, target in files.items():
                    extracted = tar.extractfile(member)
                    if extracted is None:
                        raise SystemExit(f"{spec}: {member} missing")
                    (VENDOR / target).write_bytes(extracted.read())
                    taken[target] = sha256(VENDOR / target)
                licence_file = next((m for m in tar.getnames() if m.lower().startswith("package/licen")), None)
                if licence_file:
                    data = tar.extractfile(licence_file)
                    assert data is not None
                    (VENDOR / f"{name}.LICENSE.txt").write_bytes(data.read())
            manifest[name] = {
                "version": version,
                "license": licence,
                "integrity": info["dist"]["integrity"],
                "files": taken,
            }
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"vendored {len(manifest)} packages into {VENDOR}")


def check() -> int:
    manifest = json.loads(MANIFEST.read_text())
    bad = [
        f"{pkg}:{name}"
        for pkg, entry in manifest.items()
        for name, digest in entry["files"].items()
        if not (VENDOR / name).is_file() or sha256(VENDOR / name) != digest
    ]
    for item in bad:
        print(f"hash mismatch: {item}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the vendored files only")
    args = parser.parse_args()
    if args.check:
        sys.exit(check())
    fetch()
