"""Infrastructure-as-code tools through plan_command: what may change anything is not understood (decided
fail closed, with the way to have it decided: check the plan), what only reads or plans is nothing."""

from __future__ import annotations

import pytest

from envlabel.commands import decide_command, plan_command


@pytest.mark.parametrize(("line", "says"), [
    ("terraform destroy -auto-approve", "terraform plan -destroy -out=tfplan"),
    ("cd infra && terraform apply", "terraform plan -out=tfplan"),
    ("tofu apply tfplan", "tofu show -json tfplan | envlabel check-plan -"),
    ("terraform apply -var env=prod", "terraform plan -out=tfplan"),
    ("terraform state rm aws_db_instance.orders", "terraform state rm"),
    ("terragrunt run-all destroy", "check-plan"),
    ("pulumi up --yes", "pulumi up"),
    ("pulumi destroy", "pulumi destroy"),
    ("cdk deploy --all", "cdk deploy"),
    ("eksctl delete cluster --name prod", "eksctl delete"),
    ("bash -c 'terraform destroy'", "terraform destroy"),
])
def test_a_change_is_not_understood_and_says_how_to_check_it(line: str, says: str) -> None:
    plan = plan_command(line)
    assert not plan.operations and len(plan.unparsed) == 1, plan
    assert says in plan.unparsed[0].reason
    # decided without asking anything: not understood, no scope -> require_approval
    answer = decide_command(plan, lambda op: pytest.fail(f"nothing to check, asked about {op}"))
    assert answer["decision"] == "require_approval"


@pytest.mark.parametrize("line", [
    "terraform plan -out=tfplan", "terraform -chdir=infra init", "terraform show -json tfplan", "terraform fmt",
    "terraform validate", "terraform state list", "terraform workspace select prod", "terraform output",
    "terraform --help", "tofu version", "pulumi preview", "pulumi stack ls", "cdk synth", "cdk diff",
    "eksctl get cluster", "terraform state pull > state.json",
])
def test_reading_and_planning_is_nothing_to_check(line: str) -> None:
    assert not plan_command(line).touches_infrastructure
