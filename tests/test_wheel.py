"""convscope installs like a package, and the Docker image starts it that way.

The wheel is built from a copy of the sources (no stale ``build/`` files), installed without its
dependencies into a fresh virtual environment that borrows the test venv's (torch and the rest,
through a .pth file: nothing is downloaded), and ``convscope serve`` runs from an empty directory:
pages, static files and models come from the package, the store from ``./data``. The Dockerfile is
checked for its properties, and its CMD, run against that installed wheel, serves a photo and passes
its HEALTHCHECK. Docker itself has no daemon on these machines.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from conftest import _free_port, make_photo

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def bin(self) -> Path:
        return self.venv / "bin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    shutil.copytree(ROOT / "app", src / "app", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    pip = [sys.executable, "-m", "pip"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q", "-w", str(tmp / "dist"),
                    str(src)], check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("convscope-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    subprocess.run([*pip, "--python", str(venv / "bin" / "python"), "install", "--no-deps", "--no-index", "-q",
                    str(wheel)], check=True, capture_output=True)
    # The dependencies: the test venv's site-packages, after the new venv's own (its .pth files,
    # among them the editable install of the checkout, are not processed from there).
    purelib = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                             check=True, capture_output=True, text=True).stdout.strip()
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (Path(purelib) / "zz_test_dependencies.pth").write_text("\n".join(sorted(ours)) + "\n")
    return Installed(wheel, venv)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONVSCOPE_") and k != "PYTHONPATH"}
    # light on the CI machine: one intra-op thread; EfficientNet's weights are not ours to package
    return {**env, "CONVSCOPE_TORCH_THREADS": "1", "CONVSCOPE_SERVE_EFFICIENTNET": "false", "CONVSCOPE_FIRST_START_BUILDS": "0",
            "CONVSCOPE_ALLOWED_HOSTS": '["127.0.0.1", "localhost"]', **extra}


@pytest.fixture
def serve_installed(installed: Installed, tmp_path: Path) -> Iterator[object]:
    """Start a command (argv, run in an empty directory with the installed venv first on PATH); returns
    its base URL once /readyz answers."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str], port: int, **env: str) -> str:
        run = tmp_path / "run"
        run.mkdir(exist_ok=True)
        full_env = _env(PATH=f"{installed.bin}{os.pathsep}{os.environ.get('PATH', '')}", **env)
        exe = shutil.which(argv[0], path=full_env["PATH"])
        assert exe == str(installed.bin / argv[0]), f"{argv[0]} must come from the installed wheel, found {exe}"
        proc = subprocess.Popen([exe, *argv[1:]], cwd=run, env=full_env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError("the server ended: " + proc.stderr.read().decode()[-3000:])  # type: ignore[union-attr]
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    return url
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError("the server did not become ready")

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_wheel_holds_templates_static_models_and_license(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    for want in ("app/templates/base.html", "app/static/css/app.css", "app/static/vendor/htmx-2.0.11.min.js",
                 "app/models/lenet/weights.safetensors", "app/models/cifarnet/card.json",
                 "app/i18n/messages/common.toml"):
        assert want in names, f"{want} is not in the wheel"
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    code = "import app, app.config as c; print(app.__file__); print(c.Settings().models_dir); print(c.Settings().data_dir)"
    out = subprocess.run([str(installed.bin / "python"), "-c", code], cwd=installed.venv.parent, env=_env(),
                         capture_output=True, text=True, check=True).stdout.split("\n")
    assert out[0].startswith(str(installed.venv)), out  # not the checkout
    assert out[1] == str(Path(out[0]).parent / "models")
    assert out[2] == str(installed.venv.parent / "data")  # ./data of where it runs


def _upload_and_predict(url: str) -> None:
    page = httpx.get(url + "/")
    assert page.status_code == 200 and "<html" in page.text
    css = re.findall(r'href="(/static/[^"]+\.css)[^"]*"', page.text)
    assert css and all(httpx.get(url + c).status_code == 200 for c in css)
    assert {m["name"] for m in httpx.get(url + "/api/models").json()} >= {"lenet", "cifarnet"}
    r = httpx.post(url + "/api/images", files={"file": ("photo.jpg", make_photo(160, 120, seed=3), "image/jpeg")})
    assert r.status_code == 201, r.text
    pred = httpx.get(f"{url}/api/images/{r.json()['id']}/predictions", params={"model": "lenet"}, timeout=30)
    assert pred.status_code == 200 and len(pred.json()["predictions"]) == 5


def test_installed_wheel_serves_from_another_directory(serve_installed, tmp_path: Path) -> None:
    port = _free_port()
    url = serve_installed(["convscope", "serve", "--port", str(port)], port)
    _upload_and_predict(url)
    assert (tmp_path / "run" / "data" / "convscope.sqlite3").is_file()  # the store went to ./data


# --------------------------------------------------------------------------- the Dockerfile


def _instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _exec_form(rest: str) -> list[str]:
    import json

    argv = json.loads(rest)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), rest
    return argv


def test_dockerfile_properties() -> None:
    ins = _instructions()
    words = [w for w, _ in ins]
    froms = [i for i, w in enumerate(words) if w == "FROM"]
    assert len(froms) >= 2, "multi-stage: a build stage and a runtime stage"
    final = ins[froms[-1]:]
    build = ins[:froms[-1]]

    def index(pred: object, within: list[tuple[str, str]]) -> int:
        return next(i for i, (w, r) in enumerate(within) if pred(w, r))  # type: ignore[operator]

    lock = index(lambda w, r: w == "COPY" and "requirements.lock" in r, build)
    deps = index(lambda w, r: w == "RUN" and "install-deps.sh" in r, build)
    code = index(lambda w, r: w == "COPY" and re.search(r"(^|\s)app(\s|$)", r), build)
    assert lock < deps < code, "the locked dependencies are installed in a layer before the code is copied"
    install = build[index(lambda w, r: w == "RUN" and "pip install" in r and "/src" in r, build)][1]
    assert " -e " not in f" {install} " and "--editable" not in install, "the wheel is installed, not editable"
    assert any(w == "ARG" and r.startswith("TORCH_INDEX=https://download.pytorch.org/whl/cpu") for w, r in build)
    users = [r for w, r in final if w == "USER"]
    assert users and users[-1] not in ("root", "0"), "runs as an unprivileged user"
    (health,) = [r for w, r in final if w == "HEALTHCHECK"]
    assert "/readyz" in health and " CMD " in f" {health} "
    cmds = [r for w, r in final if w == "CMD"]
    assert not [w for w in words if w == "ENTRYPOINT"] and cmds
    argv = _exec_form(cmds[-1])
    assert argv[:2] == ["convscope", "serve"], "exec form: convscope itself is PID 1 (no shell, no make)"
    assert "make" not in DOCKERFILE.read_text().split("CMD")[-1]
    readme = (ROOT / "README.md").read_text()
    assert "convscope serve" in readme and "docker run -p 8000:8000" in readme


def test_install_deps_cpu_lock_drops_only_the_cuda_stack() -> None:
    out = subprocess.run(["sh", str(ROOT / "docker" / "install-deps.sh"), "--filter", str(ROOT / "requirements.lock")],
                         capture_output=True, text=True, check=True).stdout
    names = {line.split("==")[0] for line in out.splitlines() if re.match(r"^[a-z0-9]", line)}
    assert names and not {n for n in names if n in ("torch", "torchvision", "triton") or n.startswith(("nvidia-", "cuda-"))}
    assert {"fastapi", "pillow", "timm", "numpy", "uvicorn"} <= names
    assert all("--hash=sha256:" in block for block in re.split(r"\n(?=[a-z0-9])", out.split("\n\n", 1)[-1])
               if re.match(r"^[a-z0-9]", block))


def test_docker_cmd_and_healthcheck_start_the_installed_wheel(serve_installed, tmp_path: Path) -> None:
    ins = _instructions()
    final = ins[max(i for i, (w, _) in enumerate(ins) if w == "FROM"):]
    argv = _exec_form([r for w, r in final if w == "CMD"][-1])
    port = _free_port()
    argv[argv.index("--port") + 1] = str(port)
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(r for w, r in final if w == "ENV")))
    env.pop("PATH", None)
    env["CONVSCOPE_DATA_DIR"] = str(tmp_path / "volume")  # the image's /data volume
    url = serve_installed(argv, port, **env)
    _upload_and_predict(url)
    (health,) = [r for w, r in final if w == "HEALTHCHECK"]
    check = _exec_form(health.split(" CMD ", 1)[1]) if "[" in health.split(" CMD ", 1)[1] else \
        shlex.split(health.split(" CMD ", 1)[1])
    check = [str(Path(sys.executable)) if check[0] == "python" else check[0], *check[1:]]
    check = [a.replace(":8000/", f":{port}/") for a in check]
    assert subprocess.run(check, timeout=30).returncode == 0
    assert (tmp_path / "volume" / "convscope.sqlite3").is_file()
