"""The OCI distribution-spec conformance suite against a live registry.

``scripts/install-tools`` builds the suite into ``.cache/bin/conformance``. It
runs once per session against ``live_registry`` (hamn, or the server named by
``HAMN_TEST_REGISTRY``) and the tests here read its reports: one asserts the
whole suite passed, and one per workflow of the spec (pull, push, content
discovery, content management) asserts that every API the workflow needs was
exercised and passed, so a failure names the workflow that broke.

The suite marks an API "Skip" when the registry answers that it does not
support it; only the APIs the spec leaves optional may do that here.

It authenticates as the registry's owner (``OCI_USERNAME`` / ``OCI_PASSWORD``):
the suite answers the server's Bearer challenge at its token endpoint, as
docker and containers/image do.
"""

from __future__ import annotations

import os
import subprocess
import uuid
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SUITE_BINARY = Path(os.environ.get("HAMN_CONFORMANCE_BIN", REPO_ROOT / ".cache/bin/conformance"))
# The suite makes ~850 checks; Distribution runs it in under 10 s on this machine.
SUITE_TIMEOUT = 240

# One run of the suite (a module fixture) feeds every test here; scripts/test
# uses --dist loadscope so xdist keeps a module's tests on one worker.
pytestmark = pytest.mark.timeout(SUITE_TIMEOUT + 90)


@dataclass(frozen=True)
class Workflow:
    """A workflow category of the distribution spec, as the suite's API names."""

    name: str
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()


WORKFLOWS = (
    Workflow(
        "pull",
        required=(
            "Ping",
            "Manifest get by digest",
            "Manifest get by tag",
            "Manifest head by digest",
            "Manifest head by tag",
            "Blob get",
            "Blob head",
        ),
        optional=("Blob get range",),
    ),
    Workflow(
        "push",
        required=(
            "Blob push",
            "Blob post put",
            "Blob chunked",
            "Blob streaming",
            "Blob mount",
            "Manifest put by digest",
            "Manifest put by tag",
            "Manifest put with subject",
        ),
        # The spec lets a registry ignore a body on POST and an anonymous mount
        # (answering 202 to start an ordinary upload); cancel and ?tag= are only
        # tested with OCI_VERSION=dev.
        optional=(
            "Blob post only",
            "Blob anonymous mount",
            "Blob upload cancel",
            "Manifest put with tag params",
        ),
    ),
    Workflow("content-discovery", required=("Tag listing", "Referrers")),
    Workflow(
        "content-management",
        required=(
            "Tag delete",
            "Tag delete atomic",
            "Manifest delete",
            "Manifest delete atomic",
            "Blob delete",
            "Blob delete atomic",
        ),
    ),
)


class Registry(Protocol):
    """What this module needs of ``live_registry``."""

    host: str
    username: str
    password: str

    def log(self) -> str: ...


@dataclass(frozen=True)
class Spec:
    """One leaf check of the suite, e.g. ``OCI Conformance Test/Image/push/blob-post-put``."""

    name: str
    status: str  # junit: passed, skipped, failure or error
    message: str

    @property
    def failed(self) -> bool:
        return self.status in ("failure", "error")

    @property
    def workflow(self) -> str:
        """The workflow this check belongs to, from its place in the suite's tree."""
        parts = self.name.split("/")[1:]
        leaf = parts[-1] if parts else ""
        if "delete" in leaf or "delete" in parts:
            return "content-management"
        if leaf in ("tag list", "tag-list", "referrers"):
            return "content-discovery"
        if "push" in parts or leaf.startswith(
            ("blob-post", "blob-patch", "blob-mount", "manifest-put")
        ):
            return "push"
        return "pull"


@dataclass
class SuiteRun:
    """What one run of the suite left: exit code, output, and its parsed reports."""

    returncode: int
    stdout: str
    stderr: str
    results_dir: Path
    specs: list[Spec] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    apis: dict[str, str] = field(default_factory=dict)
    data: dict[str, str] = field(default_factory=dict)

    def failed_specs(self, workflow: str | None = None) -> list[Spec]:
        return [s for s in self.specs if s.failed and workflow in (None, s.workflow)]

    def describe_failures(self, specs: list[Spec], limit: int = 40) -> str:
        """Failing checks, one line each (repeats folded), then where the full report is."""
        seen: Counter[str] = Counter(s.name for s in specs)
        lines: list[str] = []
        for spec in specs:
            if spec.name not in seen:
                continue
            times = seen.pop(spec.name)
            first = spec.message.strip().splitlines()[0] if spec.message.strip() else ""
            repeat = f" (x{times})" if times > 1 else ""
            lines.append(f"  {spec.status.upper()} {spec.name}{repeat}: {first[:200]}")
        more = len(lines) - limit
        shown = lines[:limit] + ([f"  ... and {more} more"] if more > 0 else [])
        return "\n".join(shown) + f"\n(full report: {self.results_dir / 'report.html'})"


def parse_junit(path: Path) -> tuple[list[Spec], dict[str, int]]:
    """The leaf checks and the suite's totals from its ``junit.xml``."""
    root = ET.parse(path).getroot()  # noqa: S314 - the file is ours, written by the suite
    counts = {k: int(root.get(k, "0")) for k in ("tests", "failures", "errors", "skipped")}
    specs = []
    for case in root.iter("testcase"):
        status = case.get("status", "")
        if not status:  # older junit writers mark the outcome with a child element
            status = next(
                (t for t in ("failure", "error", "skipped") if case.find(t) is not None), "passed"
            )
        specs.append(Spec(case.get("name", ""), status, case.findtext("system-out") or ""))
    return specs, counts


def parse_results_yaml(path: Path) -> dict[str, dict[str, str]]:
    """The ``apis`` and ``data`` maps (name -> status) of the suite's ``results.yaml``.

    Both are flat maps of short strings, so a few lines of parsing avoid a YAML
    dependency.
    """
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in path.read_text().splitlines():
        if line and not line[0].isspace():
            key = line.rstrip().removesuffix(":")
            current = sections.setdefault(key, {}) if line.rstrip().endswith(":") else None
        elif current is not None and line.startswith("  ") and not line.startswith("   "):
            name, sep, value = line.strip().rpartition(": ")
            if sep:
                current[name.strip("\"'")] = value.strip().strip("\"'")
    return {k: sections.get(k, {}) for k in ("apis", "data")}


def suite_environment(registry: Registry, results_dir: Path) -> dict[str, str]:
    """The suite's settings, from its README; nothing inherited from the caller's OCI_*."""
    run_id = uuid.uuid4().hex[:12]  # fresh repositories: a shared registry may hold old runs
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCI_")}
    env.update(
        OCI_REGISTRY=registry.host,
        OCI_TLS="disabled",  # live_registry speaks plain http
        OCI_REPO1=f"conformance-{run_id}/repo1",
        OCI_REPO2=f"conformance-{run_id}/repo2",  # source of cross-repository mounts
        OCI_VERSION="1.1",
        OCI_RESULTS_DIR=str(results_dir),
        OCI_LOG="warn",
        # All four workflows; these are the defaults, spelled out so that a
        # future change of default cannot silently narrow the run.
        OCI_API_PULL="true",
        OCI_API_PUSH="true",
        OCI_API_TAGS_LIST="true",
        OCI_API_REFERRER="true",
        OCI_API_TAGS_DELETE="true",
        OCI_API_MANIFESTS_DELETE="true",
        OCI_API_BLOBS_DELETE="true",
    )
    if registry.username:  # none for an external registry without authentication
        env.update(OCI_USERNAME=registry.username, OCI_PASSWORD=registry.password)
    return env


@pytest.fixture(scope="module")
def suite_run(live_registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> SuiteRun:
    """Run the conformance suite once against the live registry and parse its reports."""
    if not SUITE_BINARY.exists():
        reason = f"{SUITE_BINARY} is missing: run scripts/install-tools"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    results_dir = tmp_path_factory.mktemp("conformance")
    try:
        proc = subprocess.run(
            [str(SUITE_BINARY)],
            cwd=results_dir,  # the suite reads ./oci-conformance.yaml if there is one
            env=suite_environment(live_registry, results_dir),
            capture_output=True,
            text=True,
            timeout=SUITE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout or ""
        if isinstance(out, bytes):  # partial output is bytes even in text mode
            out = out.decode(errors="replace")
        pytest.fail(
            f"conformance suite still running after {SUITE_TIMEOUT} s\n"
            f"{out[-3000:]}\nserver log:\n{live_registry.log()[-3000:]}"
        )
    run = SuiteRun(proc.returncode, proc.stdout, proc.stderr, results_dir)
    junit = results_dir / "junit.xml"
    if not junit.exists():
        # The suite exits 0 without reports when it cannot even load its config.
        pytest.fail(
            f"conformance suite (exit {proc.returncode}) wrote no junit.xml\n"
            f"stdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
        )
    run.specs, run.counts = parse_junit(junit)
    results = parse_results_yaml(results_dir / "results.yaml")
    run.apis, run.data = results["apis"], results["data"]
    return run


def test_suite_passes(suite_run: SuiteRun, live_registry: Registry) -> None:
    """The whole suite passes: exit 0, no failed or errored check."""
    failed = suite_run.failed_specs()
    problems = suite_run.counts.get("failures", 0) + suite_run.counts.get("errors", 0)
    if suite_run.returncode == 0 and not failed and not problems and suite_run.specs:
        return
    summary = suite_run.stdout[suite_run.stdout.find("OCI Conformance Result") :][:3000]
    server_log = live_registry.log()[-2000:]
    pytest.fail(
        f"OCI conformance: exit {suite_run.returncode}, {suite_run.counts}\n"
        f"{suite_run.describe_failures(failed)}\n{summary}"
        + (f"\nserver log (tail):\n{server_log}" if server_log else ""),
        pytrace=False,
    )


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=[w.name for w in WORKFLOWS])
def test_workflow(suite_run: SuiteRun, workflow: Workflow) -> None:
    """Every API of the workflow was exercised and passed; its checks all passed."""
    problems = [
        f"  API {api!r}: {suite_run.apis.get(api, 'not reported by the suite')}"
        for api in workflow.required
        if suite_run.apis.get(api) != "Pass"
    ]
    problems += [
        f"  API {api!r} (optional): {suite_run.apis[api]}"
        for api in workflow.optional
        if suite_run.apis.get(api) in ("FAIL", "Error")
    ]
    failed = suite_run.failed_specs(workflow.name)
    if not problems and not failed:
        return
    detail = suite_run.describe_failures(failed) if failed else ""
    pytest.fail(f"{workflow.name} workflow:\n" + "\n".join(problems) + "\n" + detail, pytrace=False)
