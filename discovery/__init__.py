"""Scanners: read-only discovery of AWS, GCP and Kubernetes estates.

A scanner gets, transforms and returns a :class:`envlabel.model.ScanResult`;
it never labels and never writes storage. Providers load lazily, so boto3,
google and kubernetes are imported only for sources that use them.
"""

from __future__ import annotations

from importlib import import_module
from typing import Protocol

from envlabel.config import Source
from envlabel.model import ScanResult


class Scanner(Protocol):
    def scan(self) -> ScanResult: ...


#: source type -> "module:Class"; a new provider is one module and one line here.
SCANNERS: dict[str, str] = {
    "aws": "envlabel.discovery.aws:AwsScanner",
    "gcp": "envlabel.discovery.gcp:GcpScanner",
    "kubernetes": "envlabel.discovery.kubernetes:KubernetesScanner",
}


def scanner_for(source: Source) -> Scanner:
    module_name, _, class_name = SCANNERS[source.type].partition(":")
    scanner: Scanner = getattr(import_module(module_name), class_name)(source)
    return scanner
