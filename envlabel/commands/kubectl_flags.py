"""kubectl's flags, as pflag reads them: which take a value, which are switches, and the short letters.

A flag not listed here is ambiguous to :func:`envlabel.commands.options.parse` (it may take the next word), so
:mod:`envlabel.commands.kubectl` does not read a changing command that has one: add new kubectl flags here.
"""

from __future__ import annotations

from envlabel.commands.options import FlagSpec

_GLOBAL_VALUES = {
    "kubeconfig", "context", "cluster", "user", "namespace", "server", "token", "as", "as-group", "as-uid",
    "certificate-authority", "client-certificate", "client-key", "tls-server-name", "username", "password",
    "request-timeout", "cache-dir", "v", "vmodule", "log-backtrace-at", "log-dir", "log-file", "log-file-max-size",
    "log-flush-frequency", "stderrthreshold", "profile", "profile-output", "kuberc",
}
_VALUES = _GLOBAL_VALUES | {
    "filename", "kustomize", "selector", "field-selector", "output", "template", "sort-by", "label-columns",
    "chunk-size", "grace-period", "timeout", "raw", "field-manager", "prune-allowlist", "prune-whitelist", "applyset",
    "patch", "type", "patch-file", "replicas", "current-replicas", "resource-version", "container", "image", "env",
    "port", "labels", "restart", "overrides", "pod-running-timeout", "address", "min", "max", "cpu-percent", "name",
    "target-port", "protocol", "external-ip", "session-affinity", "cluster-ip", "load-balancer-ip", "generator",
    "to-revision", "revision", "pod-selector", "skip-wait-for-delete-timeout", "copy-to", "target",
    "image-pull-policy", "from", "from-literal", "from-file", "from-env-file", "docker-server", "docker-username",
    "docker-password", "docker-email", "cert", "key", "schedule", "rule", "resource", "verb", "resource-name",
    "clusterrole", "role", "serviceaccount", "group", "duration", "audience", "bound-object-kind",
    "bound-object-name", "bound-object-uid", "subresource", "for", "limits", "requests", "keys", "prefix",
    "containers", "tail", "since", "since-time", "max-log-requests", "limit-bytes", "retries", "api-group",
    "api-version", "output-version", "hostport", "class", "default-backend", "tcp", "node-port", "clusterip",
    "external-name", "aggregation-rule", "non-resource-url", "value", "description", "preemption-policy", "hard",
    "scopes", "min-available", "max-unavailable", "custom", "env-file", "annotations", "local-port",
}
_BOOLS = {
    "insecure-skip-tls-verify", "match-server-version", "warnings-as-errors", "disable-compression", "help",
    "all", "all-namespaces", "now", "force", "wait", "ignore-not-found", "prune", "recursive", "watch", "watch-only",
    "show-kind", "show-labels", "no-headers", "stdin", "tty", "quiet", "rm", "privileged", "command", "expose",
    "delete-emptydir-data", "delete-local-data", "ignore-daemonsets", "disable-eviction", "local", "list", "resolve",
    "allow-missing-template-keys", "server-print", "ignore-errors", "all-containers", "previous", "follow",
    "timestamps", "server-side", "force-conflicts", "overwrite", "record", "save-config", "attach", "share-processes",
    "keep-annotations", "keep-labels", "keep-liveness", "keep-readiness", "keep-startup", "keep-init-containers",
    "same-node", "show-events", "output-watch-events", "show-managed-fields", "insecure-skip-tls-verify-backend",
    "leave-stdin-open", "namespaced", "cached", "recursive-flag", "edit-last-applied", "windows-line-endings",
    "skip-dry-run", "exit-code", "alsologtostderr", "logtostderr", "add-dir-header", "skip-headers", "one-output",
}
SPEC = FlagSpec(values=_VALUES, bools=_BOOLS, optional={"dry-run", "cascade", "validate"}, shorts={
    "n": "namespace", "f": "filename", "k": "kustomize", "l": "selector", "o": "output", "L": "label-columns",
    "R": "recursive", "A": "all-namespaces", "w": "watch", "c": "container", "i": "stdin", "t": "tty", "q": "quiet",
    "p": "patch", "s": "server", "v": "v", "r": "replicas", "h": "help", "e": "env",
})
