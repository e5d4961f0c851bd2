"""envlabel.guard.awscli: the real ``aws`` command (awscli v1 from PyPI, run as a subprocess) with the envlabel
plugin installed the documented way (``aws configure set plugins.envlabel envlabel.guard.awscli``), against
the moto server, checked by the real envlabel API over a store scanned from a moto Organization with the
production, staging and sandbox ``orders-db`` twins."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from envlabel.config import config_from_dict
from envlabel.service.core.pipeline import run_source
from envlabel.service.daemon.server import BackgroundServer
from envlabel.store import open_store
from tests.aws_estate import ROLE, _Account
from tests.conftest import free_port
from tests.test_incident import REGION, build_twins

AWS = Path(sys.executable).parent / "aws"  # the CLI installed beside the interpreter running the tests (dev extra)
OUS = ("Production", "Staging", "Sandbox")
BUCKET = "orders-prod-exports"


@dataclass
class Shell:
    """A machine where ``aws`` carries the envlabel plugin: one profile per twin account, in files of its own."""

    moto: str
    envlabel: str
    home: Path
    accounts: dict[str, _Account] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        # nothing of the test process's AWS_* or ENVLABEL_* settings: only these files and this envlabel
        base = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ENVLABEL_"))}
        return {**base, "HOME": str(self.home), "AWS_CONFIG_FILE": str(self.home / "config"),
                "AWS_SHARED_CREDENTIALS_FILE": str(self.home / "credentials"), "AWS_EC2_METADATA_DISABLED": "true",
                "ENVLABEL_URL": self.envlabel, **extra}

    def aws(self, profile: str, *argv: str, **extra: str) -> subprocess.CompletedProcess[str]:
        """Run ``aws --profile PROFILE ARGV...`` against moto, as an agent's shell would."""
        command = [str(AWS), "--profile", profile, "--endpoint-url", self.moto, *argv]
        return subprocess.run(command, capture_output=True, text=True, env=self.env(**extra), check=False,
                              timeout=120)

    def databases(self, ou: str) -> set[str]:
        """What really exists in that account, asked of moto with boto3 and no guard."""
        rds = self.accounts[ou].client("rds", REGION)
        return {d["DBInstanceIdentifier"] for d in rds.describe_db_instances()["DBInstances"]}

    def objects(self) -> list[str]:
        listing = self.accounts["Production"].client("s3", REGION).list_objects_v2(Bucket=BUCKET)
        return [o["Key"] for o in listing.get("Contents", [])]


def write_profiles(home: Path, accounts: dict[str, _Account]) -> None:
    lines = []
    for ou, account in accounts.items():
        frozen = account.session.get_credentials().get_frozen_credentials()
        lines += [f"[{ou.lower()}]", f"aws_access_key_id = {frozen.access_key}",
                  f"aws_secret_access_key = {frozen.secret_key}", f"aws_session_token = {frozen.token}", ""]
    (home / "credentials").write_text("\n".join(lines))
    (home / "config").write_text("".join(f"[profile {ou.lower()}]\nregion = {REGION}\n" for ou in accounts))


@pytest.fixture(scope="module")
def shell(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    """Built once for the module: tests delete only what no other test looks at (sandbox databases)."""
    assert AWS.exists(), f"{AWS} is missing: install the dev extra (it holds awscli)"
    with urllib.request.urlopen(urllib.request.Request(f"{moto_url}/moto-api/reset", method="POST"), timeout=10):
        pass
    accounts = build_twins(moto_url)
    for name in ("scratch-db", "spare-db"):
        accounts["Sandbox"].client("rds", REGION).create_db_instance(
            DBInstanceIdentifier=name, DBInstanceClass="db.t3.micro", Engine="postgres", MasterUsername="admin",
            MasterUserPassword="not-a-secret-1", AllocatedStorage=20)
    s3 = accounts["Production"].client("s3", REGION)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="orders.csv", Body=b"id\n1\n")
    home = tmp_path_factory.mktemp("awscli")
    config = config_from_dict({
        "store": f"sqlite:///{home / 'envlabel.db'}",
        "approvers": {"staging": ["orders-oncall"]},
        "sources": [{"name": "aws", "type": "aws", "endpoint_url": moto_url, "regions": [REGION],
                     "organization": True, "assume_role": ROLE}],
    })
    store = open_store(config.store)
    summary = run_source(config, store, config.sources[0])
    assert summary.complete, summary.errors
    write_profiles(home, accounts)
    with BackgroundServer(config, store) as server:
        shell = Shell(moto_url, server.url, home, accounts)
        # the documented install step, run with the real CLI against this machine's config file
        done = subprocess.run([str(AWS), "configure", "set", "plugins.envlabel", "envlabel.guard.awscli"],
                              capture_output=True, text=True, env=shell.env(), check=False, timeout=120)
        assert done.returncode == 0, done.stderr
        assert "[plugins]\nenvlabel = envlabel.guard.awscli" in (home / "config").read_text()
        yield shell


def test_deleting_the_production_twin_is_refused_with_the_evidence(shell: Shell) -> None:
    done = shell.aws("production", "rds", "delete-db-instance", "--db-instance-identifier", "orders-db",
                     "--skip-final-snapshot")
    assert done.returncode != 0
    account = shell.accounts["Production"].id
    assert f"rds:DeleteDBInstance on arn:aws:rds:{REGION}:{account}:db:orders-db (production) is denied" \
        in done.stderr
    assert "/Root/Production" in done.stderr  # the evidence: the account's OU
    assert "policy: delete in production is deny" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert "orders-db" in shell.databases("Production")


def test_the_staging_twin_needs_approval_and_names_the_approvers(shell: Shell) -> None:
    done = shell.aws("staging", "rds", "delete-db-instance", "--db-instance-identifier", "orders-db",
                     "--skip-final-snapshot")
    assert done.returncode != 0
    assert "(staging) requires approval" in done.stderr
    assert "Ask orders-oncall to approve it" in done.stderr
    assert "orders-db" in shell.databases("Staging")


def test_the_production_arn_is_refused_even_with_staging_credentials(shell: Shell) -> None:
    arn = f"arn:aws:rds:{REGION}:{shell.accounts['Production'].id}:db:orders-db"
    done = shell.aws("staging", "rds", "delete-db-instance", "--db-instance-identifier", arn,
                     "--skip-final-snapshot")
    assert done.returncode != 0
    assert f"on {arn} (production) is denied" in done.stderr
    assert "orders-db" in shell.databases("Production")


def test_the_sandbox_twin_is_deleted(shell: Shell) -> None:
    done = shell.aws("sandbox", "rds", "delete-db-instance", "--db-instance-identifier", "orders-db",
                     "--skip-final-snapshot")
    assert done.returncode == 0, done.stderr
    assert '"DBInstanceIdentifier": "orders-db"' in done.stdout
    assert "orders-db" not in shell.databases("Sandbox")
    assert "orders-db" in shell.databases("Production") and "orders-db" in shell.databases("Staging")


def test_an_s3_transfer_command_is_checked_object_by_object(shell: Shell) -> None:
    done = shell.aws("production", "s3", "rm", f"s3://{BUCKET}/orders.csv")
    assert done.returncode != 0
    assert f"s3:DeleteObject on arn:aws:s3:::{BUCKET} (production) is denied" in done.stderr
    assert shell.objects() == ["orders.csv"]
    done = shell.aws("production", "s3", "rb", f"s3://{BUCKET}", "--force")
    assert done.returncode != 0
    assert shell.objects() == ["orders.csv"]


def test_reads_and_presigned_downloads_do_not_ask_envlabel(shell: Shell) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens: a read that asked would fail
    done = shell.aws("production", "rds", "describe-db-instances", ENVLABEL_URL=dead)
    assert done.returncode == 0, done.stderr
    assert "orders-db" in done.stdout
    # `aws s3 presign` only signs GetObject (a read): a download link to a production object is allowed
    done = shell.aws("production", "s3", "presign", f"s3://{BUCKET}/orders.csv", ENVLABEL_URL=dead)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{shell.moto}/{BUCKET}/orders.csv?")


def test_a_presigned_delete_made_through_the_clis_session_is_refused_before_signing(shell: Shell) -> None:
    # The AWS CLI presigns nothing but downloads; a customization or alias that presigns through the CLI's
    # session (the session `aws` builds, plugins loaded from the config file) meets the guard before signing.
    script = (
        "import sys\n"
        "from awscli.clidriver import create_clidriver\n"
        "session = create_clidriver().session\n"
        "session.set_config_variable('profile', 'production')\n"
        f"s3 = session.create_client('s3', endpoint_url={shell.moto!r})\n"
        "try:\n"
        f"    url = s3.generate_presigned_url('delete_object', Params={{'Bucket': {BUCKET!r}, 'Key': 'orders.csv'}})\n"
        "except Exception as exc:\n"
        "    print(type(exc).__name__, exc)\n"
        "    sys.exit(3)\n"
        "print(url)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=shell.env(),
                          check=False, timeout=120)
    assert done.returncode == 3, done.stdout + done.stderr
    assert done.stdout.startswith("ActionDenied envlabel: s3:DeleteObject on arn:aws:s3:::" + BUCKET)
    assert shell.objects() == ["orders.csv"]


def test_envlabel_down_fails_closed_and_fail_open_lets_the_command_through_with_a_warning(shell: Shell) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    done = shell.aws("production", "rds", "delete-db-instance", "--db-instance-identifier", "orders-db",
                     "--skip-final-snapshot", ENVLABEL_URL=dead)
    assert done.returncode != 0
    assert f"envlabel could not check this command, so it was not sent: envlabel at {dead} did not answer" \
        in done.stderr
    assert "envlabel serve" in done.stderr and "Traceback" not in done.stderr
    assert "orders-db" in shell.databases("Production")

    done = shell.aws("sandbox", "rds", "delete-db-instance", "--db-instance-identifier", "scratch-db",
                     "--skip-final-snapshot", ENVLABEL_URL=dead, ENVLABEL_FAIL_OPEN="1")
    assert done.returncode == 0, done.stderr
    assert "warning: envlabel unreachable, letting rds:DeleteDBInstance" in done.stderr
    assert "ENVLABEL_FAIL_OPEN" in done.stderr
    assert "scratch-db" not in shell.databases("Sandbox")


def test_a_command_without_credentials_is_refused(shell: Shell, tmp_path: Path) -> None:
    # --no-sign-request: no credentials, so no account to decide in; the guard refuses rather than guess
    done = shell.aws("sandbox", "rds", "delete-db-instance", "--db-instance-identifier", "spare-db",
                     "--skip-final-snapshot", "--no-sign-request")
    assert done.returncode != 0
    assert "envlabel refused this command, so it was not sent" in done.stderr
    assert "found no AWS credentials" in done.stderr
    assert "spare-db" in shell.databases("Sandbox")


def test_a_bad_envlabel_setting_refuses_every_request_and_says_which(shell: Shell) -> None:
    done = shell.aws("sandbox", "rds", "describe-db-instances", ENVLABEL_TIMEOUT="soon")
    assert done.returncode != 0
    assert "envlabel refused this command, so it was not sent: ENVLABEL_TIMEOUT='soon' is not a number" \
        in done.stderr
    assert "Traceback" not in done.stderr
    # a command that sends nothing still runs, so the setting can be looked at and fixed
    done = shell.aws("sandbox", "configure", "get", "region", ENVLABEL_TIMEOUT="soon")
    assert (done.returncode, done.stdout.strip()) == (0, REGION), done.stderr
