"""The fake Cloud Resource Manager is faithful: its replies parse strictly into the API's own messages,
through the real client library and by raw HTTP, with Google's paging, error bodies and permission checks."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import asset_v1
from google.cloud import resourcemanager_v3 as rm
from google.protobuf import json_format

from envlabel.service.demo.fakes.gcp_crm import CRM, ORG_ID, FakeCrm

ORG = f"organizations/{ORG_ID}"


def client(cls: Any, url: str) -> Any:
    return cls(transport="rest", credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
               client_options={"api_endpoint": url})


def get(url: str, path: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url + path, timeout=5) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def strict(message_cls: Any, body: dict[str, Any]) -> Any:
    """Parse like a strict client: an unknown or mistyped field fails."""
    return json_format.ParseDict(body, message_cls.pb(message_cls()), ignore_unknown_fields=False)


def test_every_reply_parses_strictly_into_the_api_messages(gcp_crm: FakeCrm, gcp_url: str) -> None:
    prod = gcp_crm.folder_named("Production")
    project = gcp_crm.nodes[gcp_crm.project_number("payments-prod")]
    key = gcp_crm.tag_value(f"{ORG_ID}/environment/Production")
    cases = [
        (f"/v3/{ORG}", rm.Organization), (f"/v3/{prod}", rm.Folder), (f"/v3/{project.name}", rm.Project),
        (f"/v3/folders?parent={ORG}&pageSize=300", rm.ListFoldersResponse),
        (f"/v3/projects?parent={prod}", rm.ListProjectsResponse),
        ("/v3/projects:search", rm.SearchProjectsResponse),
        (f"/v3/tagKeys?parent={ORG}", rm.ListTagKeysResponse),
        (f"/v3/{key}", rm.TagValue),
        (f"/v3/tagBindings?parent={CRM}{prod}", rm.ListTagBindingsResponse),
        (f"/v3/effectiveTags?parent={CRM}{project.name}", rm.ListEffectiveTagsResponse),
    ]
    for path, message in cases:
        status, body = get(gcp_url, path)
        assert status == 200, (path, body)
        strict(message, body)
    status, body = get(gcp_url, f"/v3/{project.name}")
    assert body["labels"] == {"env": "prod", "team": "payments"} and body["projectId"] == "payments-prod"


def test_paging_follows_next_page_token_through_the_client(gcp_crm: FakeCrm, gcp_url: str) -> None:
    folders = list(client(rm.FoldersClient, gcp_url).list_folders(request={"parent": ORG, "page_size": 300}))
    assert [f.display_name for f in folders] == ["Production", "Staging", "Sandbox", "Shared"]
    tokens = [r.params.get("pageToken") for r in gcp_crm.requests if r.path == "/v3/folders"]
    assert tokens[0] is None and len(tokens) == 2 and tokens[1]  # capped at 2 a page: two pages
    status, body = get(gcp_url, f"/v3/folders?parent={ORG}&pageToken=garbage")
    assert status == 400 and body["error"]["status"] == "INVALID_ARGUMENT"


def test_deleted_projects_only_with_show_deleted(gcp_crm: FakeCrm, gcp_url: str) -> None:
    sandbox = gcp_crm.folder_named("Sandbox")
    projects = client(rm.ProjectsClient, gcp_url)
    assert [p.project_id for p in projects.list_projects(parent=sandbox)] == ["ml-playground"]
    everything = projects.list_projects(request={"parent": sandbox, "show_deleted": True})
    states = {p.project_id: p.state for p in everything}
    assert states == {"ml-playground": rm.Project.State.ACTIVE, "old-experiment": rm.Project.State.DELETE_REQUESTED}


def test_effective_tags_inherit_and_a_nearer_binding_hides_a_farther_one(gcp_crm: FakeCrm, gcp_url: str) -> None:
    tags = client(rm.TagBindingsClient, gcp_url)
    payments = gcp_crm.nodes[gcp_crm.project_number("payments-prod")]
    effective = {t.namespaced_tag_value: t.inherited for t in tags.list_effective_tags(parent=CRM + payments.name)}
    assert effective == {f"{ORG_ID}/team/payments": True, f"{ORG_ID}/environment/Production": True}
    gcp_crm.bind(payments.name, gcp_crm.tag_value(f"{ORG_ID}/environment/Staging"))
    effective = {t.namespaced_tag_value: t.inherited for t in tags.list_effective_tags(parent=CRM + payments.name)}
    assert effective == {f"{ORG_ID}/environment/Staging": False, f"{ORG_ID}/team/payments": True}
    bindings = list(tags.list_tag_bindings(parent=f"{CRM}projects/payments-prod"))  # by project id too
    assert [b.tag_value_namespaced_name for b in bindings] == [f"{ORG_ID}/environment/Staging"]
    assert bindings[0].parent == CRM + payments.name


def test_faults_come_back_as_the_client_library_exceptions(gcp_crm: FakeCrm, gcp_url: str) -> None:
    folders = client(rm.FoldersClient, gcp_url)
    prod = gcp_crm.folder_named("Production")
    gcp_crm.deny(prod, "resourcemanager.folders.list")
    with pytest.raises(exceptions.Forbidden) as denied:
        list(folders.list_folders(parent=prod, retry=None))
    assert denied.value.reason == "IAM_PERMISSION_DENIED"
    assert "resourcemanager.folders.list" in str(denied.value)
    list(client(rm.ProjectsClient, gcp_url).list_projects(parent=prod))  # only that permission is denied
    gcp_crm.break_resource(prod)
    with pytest.raises(exceptions.InternalServerError):
        list(client(rm.ProjectsClient, gcp_url).list_projects(parent=prod, retry=None))
    gcp_crm.throttle(1)
    with pytest.raises(exceptions.TooManyRequests) as throttled:
        folders.list_folders(parent=ORG, retry=None)
    assert throttled.value.reason == "RATE_LIMIT_EXCEEDED"
    assert [f.display_name for f in folders.list_folders(parent=ORG)][:1] == ["Production"]  # the next call is fine


def test_missing_resources_are_403_as_google_answers_and_writes_are_refused(gcp_url: str) -> None:
    status, body = get(gcp_url, "/v3/folders/999")
    assert status == 403 and "(or it may not exist)" in body["error"]["message"]
    status, body = get(gcp_url, "/v3/folders")
    assert status == 400 and "parent" in body["error"]["message"]
    request = urllib.request.Request(gcp_url + "/v3/folders", data=b"{}", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 501


def test_grant_only_refuses_permissions_outside_the_grant(gcp_crm: FakeCrm, gcp_url: str) -> None:
    gcp_crm.grant_only(["resourcemanager.organizations.get"])
    client(rm.OrganizationsClient, gcp_url).get_organization(name=ORG)
    with pytest.raises(exceptions.Forbidden):
        list(client(rm.FoldersClient, gcp_url).list_folders(parent=ORG))
    assert [(r.permission, r.status) for r in gcp_crm.requests] == [
        ("resourcemanager.organizations.get", 200), ("resourcemanager.folders.list", 403)]


# -- Cloud Asset Inventory ----------------------------------------------------------------------------
SEARCH = f"/v1/{ORG}:searchAllResources"


def test_asset_search_replies_parse_strictly_and_page_through_the_client(gcp_crm: FakeCrm, gcp_url: str) -> None:
    status, body = get(gcp_url, SEARCH + "?assetTypes=compute.googleapis.com/Instance&pageSize=1")
    assert status == 200 and body["nextPageToken"]
    page = strict(asset_v1.SearchAllResourcesResponse, body)
    trainer = page.results[0]
    assert (trainer.asset_type, dict(trainer.labels), trainer.parent_full_resource_name) == (
        "compute.googleapis.com/Instance", {"env": "prod"}, CRM + "projects/ml-playground")
    assert trainer.project == gcp_crm.project_number("ml-playground") and trainer.organization == ORG
    assert list(trainer.folders) == [gcp_crm.folder_named("Sandbox")]
    assets = client(asset_v1.AssetServiceClient, gcp_url)
    found = list(assets.search_all_resources(request={"scope": ORG, "page_size": 1000}))
    assert len(found) == len(gcp_crm.assets.assets)
    sizes = [r.params["pageSize"] for r in gcp_crm.requests if r.path == SEARCH]
    assert sizes[-1] == "1000"  # asked for; the fake caps a page at 500 as Google does
    in_folder = assets.search_all_resources(request={"scope": gcp_crm.folder_named("Sandbox"),
                                                     "asset_types": ["compute.googleapis.com.*"]})
    assert {r.name.rsplit("/", 1)[-1] for r in in_folder} == {"trainer", "vm1"}  # instances and their disks
    masked = get(gcp_url, SEARCH + "?readMask=name,labels&pageSize=1")[1]["results"][0]
    assert set(masked) <= {"name", "labels"}


def test_asset_search_faults_come_back_as_the_client_library_exceptions(gcp_crm: FakeCrm, gcp_url: str) -> None:
    assets = client(asset_v1.AssetServiceClient, gcp_url)
    gcp_crm.deny(ORG, "cloudasset.assets.searchAllResources")
    with pytest.raises(exceptions.Forbidden) as denied:
        list(assets.search_all_resources(scope=ORG, retry=None))
    assert denied.value.reason == "IAM_PERMISSION_DENIED" and "cloudasset.assets.searchAllResources" in str(
        denied.value)
    gcp_crm.clear_faults()
    gcp_crm.throttle(1, path_contains=":searchAllResources")
    with pytest.raises(exceptions.TooManyRequests):
        list(assets.search_all_resources(scope=ORG, retry=None))
    gcp_crm.assets.fail_after(1)
    pager = assets.search_all_resources(request={"scope": ORG, "page_size": 2}, retry=None)
    with pytest.raises(exceptions.InternalServerError):
        list(pager)  # the first page came back, the second did not
    for path, code in ((SEARCH + "?pageToken=garbage", 400), (SEARCH + "?query=owner:alice", 400),
                       ("/v1/organizations/999:searchAllResources", 403), ("/v1/assets", 404)):
        status, body = get(gcp_url, path)
        assert (status, body["error"]["code"]) == (code, code), path
    gcp_crm.grant_only(["resourcemanager.organizations.get"])
    assert get(gcp_url, SEARCH)[0] == 403
