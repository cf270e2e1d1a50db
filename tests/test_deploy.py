"""The deployment files, validated by the real tools as far as these machines allow.

* ``docker-compose.yml``: rendered by ``docker-compose config`` (with and without the
  ``gpu`` profile; a missing secret is refused, naming it), checked against the Compose
  Specification schema (``check-jsonschema --builtin-schema vendor.compose-spec``), and its
  promises checked one by one (healthchecks, restart policies, loopback-only ports, the
  migration gate, the GPU reservation, no password in the file, ``.env.example`` complete).
* ``deploy/kubernetes``: rendered by ``kubectl kustomize``; the core resources validated by
  ``kubernetes-validate --strict``, the ``RayCluster`` and ``RayJob`` against KubeRay's own CRD
  schemas (``../shared/vendor/kuberay``, skipped where absent).
* Every command the compose file and the manifests run is an entrypoint role, and every
  ``bench`` command the entrypoint's roles run exists (parsed by the real parser).
* The image's install step (``deploy/install.sh``, which the Dockerfile's builder runs) is run
  into a fresh virtualenv from the same lock, and the entrypoint's roles are checked with the
  ``bench`` installed there.

Each external tool missing here skips its test with the reason.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import tomllib
import yaml

from bench_service.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
KUSTOMIZE = ROOT / "deploy" / "kubernetes"
LOCK = ROOT / "deploy" / "requirements.lock"
KUBERAY = ROOT.parent / "shared" / "vendor" / "kuberay"
if not KUBERAY.is_dir():  # a worktree beside the main checkout
    KUBERAY = Path("/work/shared/vendor/kuberay")
ROLES = {"head", "worker", "api", "dashboard", "migrate", "sweep"}
LONG_RUNNING = {"postgres", "ray-head", "ray-worker", "ray-gpu-worker", "api", "dashboard"}
SECRETS = ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN", "BENCH_API_TOKENS", "BENCH_DASHBOARD_TOKEN")


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"`{name}` is not installed (see the dev extra / deploy/README.md)")
    return found


def _env_file(tmp_path: Path, **override: str) -> Path:
    """``.env.example`` with every secret filled in (as a user's ``.env``)."""
    values = {k: f"secret-{k.lower()}-0123456789" for k in SECRETS}
    values.update(override)
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        key = line.split("=", 1)[0]
        lines.append(f"{key}={values[key]}" if key in values and "=" in line else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _compose_config(tmp_path: Path, *extra: str, env_file: Path | None = None
                    ) -> subprocess.CompletedProcess[str]:
    exe = _tool("docker-compose")
    env_file = env_file or _env_file(tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in SECRETS}
    return subprocess.run([exe, "--project-directory", str(ROOT), "-f", str(COMPOSE),
                           "--env-file", str(env_file), *extra, "config"],
                          capture_output=True, text=True, timeout=120, check=False, env=env)


# --- compose --------------------------------------------------------------------------------
def test_compose_renders_with_docker_compose_and_the_gpu_profile(tmp_path: Path) -> None:
    plain = _compose_config(tmp_path)
    assert plain.returncode == 0, plain.stderr
    services = yaml.safe_load(plain.stdout)["services"]
    # (docker-compose 1.x renders profiled services too; `up` starts them only with the
    # profile)
    assert set(services) - {"ray-gpu-worker"} == {"postgres", "migrate", "ray-head",
                                                  "ray-worker", "api", "dashboard"}
    gpu = _compose_config(tmp_path, "--profile", "gpu")
    assert gpu.returncode == 0, gpu.stderr
    rendered = yaml.safe_load(gpu.stdout)
    worker = rendered["services"]["ray-gpu-worker"]
    assert worker["profiles"] == ["gpu"]
    device = worker["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert worker["environment"]["RAY_NUM_GPUS"] == "1"
    assert worker["build"]["args"]["BENCH_LOCK"] == "deploy/requirements-gpu.lock"
    # the rendered file is itself valid against the Compose Specification
    out = tmp_path / "rendered.yml"
    out.write_text(gpu.stdout)
    _check_compose_schema(out)


def test_compose_refuses_a_missing_secret_naming_it(tmp_path: Path) -> None:
    for secret in SECRETS:
        done = _compose_config(tmp_path, env_file=_env_file(tmp_path, **{secret: ""}))
        assert done.returncode != 0
        assert f"set {secret}" in done.stderr, done.stderr


def _check_compose_schema(path: Path) -> None:
    exe = _tool("check-jsonschema")
    done = subprocess.run([exe, "--builtin-schema", "vendor.compose-spec", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_file_is_valid_against_the_compose_spec() -> None:
    _check_compose_schema(COMPOSE)


def _raw_compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_compose_promises() -> None:
    services = _raw_compose()["services"]
    for name in LONG_RUNNING:
        svc = services[name]
        assert svc.get("restart") == "unless-stopped", name
        assert svc.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["migrate"]["restart"] == "no"
    # everything that talks to the database waits for the one-shot migration to succeed
    for name in ("ray-head", "api", "dashboard"):
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"}, name
    assert services["migrate"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    # only the API and the dashboard publish ports, on loopback unless told otherwise
    published = {n: s["ports"] for n, s in services.items() if s.get("ports")}
    assert set(published) == {"api", "dashboard"}
    for ports in published.values():
        assert all(p.startswith("${BENCH_PUBLISH_ADDRESS:-127.0.0.1}:") for p in ports)
    assert services["postgres"]["volumes"] == ["pgdata:/var/lib/postgresql/data"]
    assert "pgdata" in _raw_compose()["volumes"]
    assert services["ray-gpu-worker"]["profiles"] == ["gpu"]
    text = COMPOSE.read_text()
    assert "POSTGRES_PASSWORD: ${POSTGRES_PASSWORD:?" in text  # from .env, never a literal
    assert not re.search(r"PASSWORD:\s*[A-Za-z0-9]+\s*$", text, re.M)


def test_env_example_documents_every_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    lines = ENV_EXAMPLE.read_text().splitlines()
    documented: dict[str, bool] = {}
    for i, line in enumerate(lines):
        m = re.match(r"^([A-Z0-9_]+)=", line)
        if m:  # documented: a comment right above it, or above the group it belongs to
            above = i - 1
            while above >= 0 and re.match(r"^[A-Z0-9_]+=", lines[above]):
                above -= 1
            documented[m.group(1)] = above >= 0 and lines[above].startswith("#")
    assert used <= set(documented), sorted(used - set(documented))
    assert set(documented) <= used, sorted(set(documented) - used)
    assert all(documented.values()), [k for k, v in documented.items() if not v]
    for secret in SECRETS:  # no secret value is shipped
        assert f"{secret}=\n" in ENV_EXAMPLE.read_text()


# --- kubernetes -----------------------------------------------------------------------------
def _rendered() -> list[dict[str, Any]]:
    exe = _tool("kubectl")
    done = subprocess.run([exe, "kustomize", str(KUSTOMIZE)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def test_kustomize_core_resources_validate_strictly(tmp_path: Path) -> None:
    docs = _rendered()
    core = [d for d in docs if not d["apiVersion"].startswith("ray.io/")]
    kinds = {d["kind"] for d in core}
    assert {"Namespace", "Secret", "ConfigMap", "StatefulSet", "Service", "Deployment",
            "NetworkPolicy"} <= kinds
    path = tmp_path / "core.yaml"
    path.write_text(yaml.safe_dump_all(core))
    exe = _tool("kubernetes-validate")
    done = subprocess.run([exe, "--strict", "--quiet", str(path)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAIL" not in done.stdout + done.stderr


def _crd_schema(name: str) -> dict[str, Any]:
    path = KUBERAY / name
    if not path.is_file():
        pytest.skip(f"KubeRay's CRD {name} is not in {KUBERAY} (shared/vendor/kuberay)")
    crd = yaml.safe_load(path.read_text())
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return dict(version["schema"]["openAPIV3Schema"])


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields refused, as the API server prunes/refuses them
    (``x-kubernetes-preserve-unknown-fields`` keeps a node open)."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if ("properties" in out and "additionalProperties" not in out
                and not out.get("x-kubernetes-preserve-unknown-fields")):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@pytest.mark.parametrize(("kind", "crd"), [("RayCluster", "ray.io_rayclusters.yaml"),
                                           ("RayJob", "ray.io_rayjobs.yaml")])
def test_ray_resources_validate_against_kuberays_crds(kind: str, crd: str) -> None:
    import jsonschema

    schema = _strict(_crd_schema(crd))
    docs = [d for d in _rendered() if d["kind"] == kind]
    assert len(docs) == 1
    for doc in docs:
        body = {k: v for k, v in doc.items() if k != "metadata"}  # metadata: ObjectMeta
        errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(body), key=str)
        assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def test_ray_cluster_shape() -> None:
    docs = {(d["kind"], d["metadata"]["name"]): d for d in _rendered()}
    cluster = docs[("RayCluster", "bench")]["spec"]
    assert cluster["authOptions"] == {"mode": "token", "secretName": "bench-ray-auth"}
    secret = docs[("Secret", "bench-ray-auth")]
    assert "auth_token" in secret["stringData"]  # the key KubeRay reads
    groups = {g["groupName"]: g for g in cluster["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    assert cluster["enableInTreeAutoscaling"] is True
    for g in groups.values():
        assert 0 <= g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
    gpu = groups["gpu"]
    limits = gpu["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == gpu["rayStartParams"]["num-gpus"] == "1"
    job = docs[("RayJob", "bench-sweep-example")]["spec"]
    assert job["clusterSelector"] == {"ray.io/cluster": "bench"}
    spec_path = shlex.split(job["entrypoint"])[2]
    mounts = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    mount = next(m for m in mounts if spec_path.startswith(m["mountPath"] + "/"))
    volumes = cluster["headGroupSpec"]["template"]["spec"]["volumes"]
    cm = next(v for v in volumes if v["name"] == mount["name"])["configMap"]["name"]
    data = docs[("ConfigMap", cm)]["data"]
    spec_file = Path(spec_path).name
    assert spec_file in data
    from bench_service.sweep import load_spec, plan_sweep

    held = ROOT / "deploy" / "kubernetes" / spec_file
    assert yaml.safe_load(data[spec_file]) == yaml.safe_load(held.read_text())
    assert plan_sweep(load_spec(str(held))).trials  # the held spec is a valid sweep


def _pods(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(owner, pod template) of every workload, Ray's included."""
    out = []
    for d in docs:
        spec = d.get("spec", {})
        name = f"{d['kind']}/{d['metadata']['name']}"
        if d["kind"] in ("Deployment", "StatefulSet"):
            out.append((name, spec["template"]))
        if d["kind"] == "RayCluster":
            out.append((name + "/head", spec["headGroupSpec"]["template"]))
            out += [(f"{name}/{g['groupName']}", g["template"])
                    for g in spec["workerGroupSpecs"]]
    return out


def test_network_policy_lets_only_api_dashboard_and_ray_reach_postgres() -> None:
    docs = _rendered()
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")["spec"]
    assert policy["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "postgres"}
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]
    (source,) = rule["from"]
    allowed = source["podSelector"]["matchLabels"]
    clients = {owner for owner, pod in _pods(docs)
               if all(pod["metadata"].get("labels", {}).get(k) == v for k, v in allowed.items())}
    assert clients == {"Deployment/bench-api", "Deployment/bench-dashboard",
                       "RayCluster/bench/head", "RayCluster/bench/cpu", "RayCluster/bench/gpu"}


# --- every command is an entrypoint role; every bench command exists ------------------------
def _role_of(argv: list[str]) -> str:
    if argv and argv[0] in ("bench-entrypoint", "/usr/local/bin/bench-entrypoint"):
        argv = argv[1:]
    assert argv and argv[0] in ROLES, argv
    return argv[0]


def test_compose_and_manifests_run_only_entrypoint_roles() -> None:
    roles = set()
    for name, svc in _raw_compose()["services"].items():
        if name == "postgres":
            continue
        roles.add(_role_of(list(svc["command"])))
        assert svc["image"].startswith("${BENCH")  # the one image (CPU or GPU build)
        if name == "migrate":  # one-shot: no healthcheck
            continue
        test = svc["healthcheck"]["test"]
        assert test[:3] == ["CMD", "bench-entrypoint", "health"], test
    assert roles == {"head", "worker", "api", "dashboard", "migrate"}
    docs = _rendered()
    for _owner, pod in _pods(docs):
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            if c["image"].startswith("postgres"):
                continue
            roles.add(_role_of(list(c.get("command", [])) + list(c.get("args", []))))
    job = next(d for d in docs if d["kind"] == "RayJob")
    assert _role_of(shlex.split(job["spec"]["entrypoint"])) == "sweep"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["bench-entrypoint"]' in dockerfile


def _entrypoint_commands(path: Path = ENTRYPOINT, env: dict[str, str] | None = None
                         ) -> dict[str, list[str]]:
    done = subprocess.run([str(path), "check"], capture_output=True, text=True, timeout=60,
                          check=True, env=env)
    return {line.split(": ", 1)[0]: shlex.split(line.split(": ", 1)[1])
            for line in done.stdout.splitlines()}


def test_every_bench_command_of_the_entrypoint_exists() -> None:
    commands = _entrypoint_commands()
    assert set(commands) == ROLES
    parser = build_parser()
    bench = [argv[1:] for argv in commands.values() if argv[0] == "bench"]
    assert len(bench) == 4  # api, dashboard, migrate, sweep
    for args in bench:
        parser.parse_args(args)  # exits (SystemExit) on an unknown command or option
    for role in ("head", "worker"):
        assert commands[role][:2] == ["ray", "start"] and "--block" in commands[role]


def test_entrypoint_refuses_missing_or_placeholder_settings() -> None:
    env = {"PATH": os.environ["PATH"]}
    for role, var in (("api", "BENCH_DB_URL"), ("head", "RAY_AUTH_TOKEN"),
                      ("worker", "RAY_AUTH_TOKEN")):
        done = subprocess.run([str(ENTRYPOINT), role], capture_output=True, text=True,
                              timeout=30, check=False, env=env)
        assert done.returncode == 2 and f"${var}" in done.stderr, done.stderr
        done = subprocess.run([str(ENTRYPOINT), role], capture_output=True, text=True,
                              timeout=30, check=False, env={**env, var: "CHANGE-ME"})
        assert done.returncode == 2 and "placeholder" in done.stderr, done.stderr
    done = subprocess.run([str(ENTRYPOINT), "train"], capture_output=True, text=True,
                          timeout=30, check=False, env=env)
    assert done.returncode == 2 and "unknown role 'train'" in done.stderr


# --- the image's install step ---------------------------------------------------------------
def _requirement_names(reqs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-")
            for r in reqs}


def test_lock_is_generated_and_pins_every_dependency() -> None:
    for lock in (LOCK, LOCK.with_name("requirements-gpu.lock")):
        text = lock.read_text()
        assert text.startswith("# This file was autogenerated by uv via the following "
                               "command:\n#    deploy/lock.sh\n"), lock
        pins = dict(re.findall(r"^([a-z0-9._-]+)==(\S+)$", text, re.M))
        assert pins, lock
        project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
        wanted = _requirement_names(project["dependencies"])
        for extra in ("postgres", "parquet", "dashboard", "service"):
            wanted |= _requirement_names(project["optional-dependencies"][extra])
        assert wanted <= set(pins), sorted(wanted - set(pins))
    assert dict(re.findall(r"^(torch)==(\S+)$", LOCK.read_text(), re.M))["torch"].endswith(
        "+cpu")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert dockerfile.count("\nFROM ") >= 2  # multi-stage
    assert "deploy/install.sh /opt/venv" in dockerfile and "\nUSER bench\n" in dockerfile


@pytest.mark.slow
def test_the_images_install_step_in_a_fresh_virtualenv(tmp_path: Path) -> None:
    """``deploy/install.sh`` (the Dockerfile's builder step) into a new virtualenv, from the
    same lock (torch's CPU wheel from pip's local wheel folder where it has one, else
    PyTorch's index); then the entrypoint's roles, run with that virtualenv's commands."""
    _tool("uv")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    wheels = Path("/opt/wheels")
    if any(wheels.glob("torch-*+cpu-*.whl")):
        env["BENCH_TORCH_FIND_LINKS"] = str(wheels)
    env["BENCH_PYTHON"] = sys.executable
    venv = tmp_path / "venv"
    done = subprocess.run([str(ROOT / "deploy" / "install.sh"), str(venv)], env=env,
                          capture_output=True, text=True, timeout=600, check=False,
                          cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    bin_dir = venv / "bin"
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    # the installed package, not this checkout: imported from the venv's site-packages
    where = subprocess.run([str(bin_dir / "python"), "-c",
                            "import bench_service, ray, torch; print(bench_service.__file__,"
                            " torch.__version__, ray.__version__)"],
                           env=env, capture_output=True, text=True, timeout=120, check=True,
                           cwd=tmp_path)
    path, torch_version, _ray = where.stdout.split()
    assert path.startswith(str(venv)) and torch_version.endswith("+cpu"), where.stdout
    code = ("import json, sys; from bench_service.cli import build_parser; p = build_parser()\n"
            "for args in json.loads(sys.argv[1]): p.parse_args(args)\n")
    commands = _entrypoint_commands(env=env)
    bench = [argv[1:] for argv in commands.values() if argv[0] == "bench"]
    parsed = subprocess.run([str(bin_dir / "python"), "-c", code, json.dumps(bench)], env=env,
                            capture_output=True, text=True, timeout=120, check=False,
                            cwd=tmp_path)
    assert parsed.returncode == 0, parsed.stderr
    for tool in ("bench", "ray"):
        assert (bin_dir / tool).exists(), tool
