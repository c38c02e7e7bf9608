"""Running the documentation's examples (tests/test_docs.py) on tiny data. The liberties a test
takes with an example are all here, each with its reason:

* Shell lines run in-process through the click commands `img2img` builds from the installed
  plugins (a new interpreter per line would cost seconds each); `python -m img2img` is the same
  command. `export`, `mkdir -p` and `echo` (with `>`/`>>`) are done directly.
* `pip install` is checked, not run (no network, and the environment is the one being tested):
  every extra it names exists in pyproject.toml and its packages are installed here; a local
  folder it names is a plugin, which is then made visible as an installed distribution would be.
* Training is cut to tiny sizes by flags appended to what the page typed (the last value of a
  flag wins, so these override the page's): `--max-steps 2` (4 when resuming), batch 2, no loader
  workers, the CPU, 32 px and the model's own `smoke_options`. A resumed run only gets
  `--max-steps` (it keeps its settings); a run started from another run's weights (`--init-from`)
  keeps that run's sizes and options, which its weights need. A run that evaluates as it trains
  does so every step (`--eval-every 1`): it has only two. The demo gets `--steps 2`.
* `distill` gets `--max-steps 2`, no loader workers, the CPU and `--width 4` (or, where the
  page chose `--macs`, `--macs 1M`): the sandbox's teachers are the tiny smoke networks (8 wide,
  ~2M MACs at 32 px), which a 16-wide student, or one of the page's budget, would not be
  smaller than.
* `export --int8` gets `--min-psnr 0`: a network trained for two steps is noise, and the quality
  gate that refuses it is tested on its own in tests/interop/test_export.py.
* `img2img serve` builds its app for real but does not listen; `curl` lines are sent to that app
  through Starlette's TestClient once `/healthz` says the models are loaded.
* Python blocks run as modules in the sandbox, with `img2img.train` given the same tiny settings.
* Weights & Biases runs offline (`WANDB_MODE=offline`), as in every test.
"""
from __future__ import annotations

import importlib
import re
import shlex
import shutil
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from click.testing import CliRunner

try:
    import tomllib
except ImportError:  # Python 3.10: the tomli backport, a dependency there
    import tomli as tomllib

import img2img
from img2img.cli import build_cli
from img2img.testing import write_sample_images

ROOT = Path(__file__).resolve().parents[1]
TINY_TRAINING = ["--max-steps", "2", "--batch-size", "2", "--workers", "0", "--device", "cpu"]
TINY_SIZE = ["--load-size", "32", "--crop-size", "32"]
PLUGIN_ENV = ("IMG2IMG_LOAD_PLUGINS", "IMG2IMG_TRACE_PLUGINS")
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def flags(options: dict[str, Any]) -> list[str]:
    """`{"ngf": 8, "dropout": False}` -> `["--ngf", "8", "--no-dropout"]`."""
    out = []
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, str(value)]
    return out


def smoke_options(model: str) -> dict[str, Any]:
    cls = img2img.catalog().models.get(model)
    return dict(cls.smoke_options) if cls is not None else {}


def tiny_command(args: list[str]) -> list[str]:
    """`args` of an `img2img` command line with the tiny settings appended (see above)."""
    words = [a for a in args if not a.startswith("-")]
    command = words[0] if words else None
    if "--help" in args or "-h" in args or "--print-config" in args:
        return args
    if command == "train" and len(words) > 1:
        if "--resume" in args:
            return [*args, "--max-steps", "4"]
        tiny = [*TINY_TRAINING, *(["--eval-every", "1"] if "--eval-every" in args else [])]
        if "--init-from" in args:
            return [*args, *tiny]
        return [*args, *tiny, *TINY_SIZE, *flags(smoke_options(words[1]))]
    if command == "distill" and len(words) > 1:
        width = ["--macs", "1M"] if "--macs" in args else ["--width", "4"]
        return [*args, "--max-steps", "2", "--workers", "0", "--device", "cpu", *width]
    if command == "demo":
        return [*args, "--steps", "2"]
    if command == "export" and "--int8" in args:
        return [*args, "--min-psnr", "0"]
    return args


def tiny_train(train):
    """`img2img.train` with the tiny settings (the Python form of `tiny_command`)."""
    def wrapped(model, **settings):
        if settings.get("resume") is not None:
            return train(model, **{**settings, "max_steps": 4})
        tiny = {"max_steps": 2, "batch_size": 2, "workers": 0, "device": "cpu"}
        if settings.get("init_from") is None:
            tiny.update(load_size=32, crop_size=32, **smoke_options(model))
        return train(model, **{**settings, **tiny})
    return wrapped


def outputs(args: list[str]) -> list[str]:
    """The paths a command was told to write with -o/--out/--output."""
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-o", "--out", "--output")]


class Shell:
    """Runs the shell lines of one page, in order, in its sandbox folder (the working directory)."""

    def __init__(self, root: Path, monkeypatch):
        self.root, self.monkeypatch = root, monkeypatch
        self.exported: dict[str, str] = {}
        self.apps: dict[int, Any] = {}
        self.clients: dict[int, Any] = {}
        self._cli = None
        server = importlib.import_module("img2img.serve.server")
        monkeypatch.setattr(server, "run", self._serve)

    # -- the commands -------------------------------------------------------------------------
    def cli(self, env: dict[str, str]):
        env = {**self.exported, **env}
        if any(name in env for name in PLUGIN_ENV):
            with self.monkeypatch.context() as patch:
                for name in PLUGIN_ENV:
                    if name in env:
                        patch.setenv(name, env[name])
                return build_cli()
        if self._cli is None:
            self._cli = build_cli()
        return self._cli

    def img2img(self, args: list[str], env: dict[str, str], where: str) -> str:
        args = tiny_command(args)
        result = CliRunner().invoke(self.cli(env), args, prog_name="img2img",
                                    env={**self.exported, **env})
        print(f"{where}$ img2img {shlex.join(args)}\n{result.output}")  # shown on a failure
        assert result.exit_code == 0, (f"{where}: img2img {shlex.join(args)} exited "
                                       f"{result.exit_code}:\n{result.output[-3000:]}"
                                       f"{result.exc_info if result.exception else ''}")
        for path in outputs(args):
            assert (self.root / path).exists(), f"{where}: {path} was not written"
        return result.stdout

    def pip(self, args: list[str], where: str) -> str:
        assert args[:1] == ["install"], f"{where}: only `pip install` is understood"
        for target in (a for a in args[1:] if a != "-e"):
            match = re.fullmatch(r"(\.|img2img|[\w./-]+?)(?:\[([\w,]+)\])?", target)
            assert match, f"{where}: cannot read pip target {target}"
            name, extras = match.group(1), (match.group(2) or "").split(",")
            if name in (".", "img2img"):
                for extra in filter(None, extras):
                    check_extra(extra, where)
            else:
                self.install_plugin(self.root / name, where)
        return ""

    def install_plugin(self, folder: Path, where: str) -> None:
        """A local plugin folder becomes visible as `pip install -e` makes it: a distribution
        with its entry points, on sys.path (already-installed ones are left as they are)."""
        import importlib.metadata as md

        project = tomllib.loads((folder / "pyproject.toml").read_text())["project"]
        points = project.get("entry-points", {}).get("img2img")
        assert points, f"{where}: {folder.name} declares no img2img entry point"
        try:
            md.distribution(project["name"])
            return
        except md.PackageNotFoundError:
            pass
        site = self.root / ".site-packages"
        info = site / f"{project['name'].replace('-', '_')}-{project['version']}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\n"
                                       f"Version: {project['version']}\n")
        (info / "entry_points.txt").write_text(
            "[img2img]\n" + "".join(f"{k} = {v}\n" for k, v in points.items()))
        self.monkeypatch.syspath_prepend(str(folder))
        self.monkeypatch.syspath_prepend(str(site))
        importlib.invalidate_caches()
        self._cli = None

    def echo(self, args: list[str]) -> str:
        return " ".join(args) + "\n"

    def mkdir(self, args: list[str]) -> str:
        for folder in (a for a in args if a != "-p"):
            Path(folder).mkdir(parents=True, exist_ok=True)
        return ""

    # -- serve and curl -----------------------------------------------------------------------
    def _serve(self, app, host, port, *, log_level="info", on_listening=print):
        self.apps[port] = app
        on_listening(f"http://{host}:{port}/")

    def client(self, port: int, where: str):
        from starlette.testclient import TestClient

        assert port in self.apps, f"{where}: no `img2img serve` on port {port} before this line"
        if port not in self.clients:
            client = TestClient(self.apps[port]).__enter__()
            self.clients[port] = client
            deadline = time.monotonic() + 120
            while client.get("/healthz").status_code != 200:
                assert time.monotonic() < deadline, f"{where}: the served models never loaded"
                time.sleep(0.1)
        return self.clients[port]

    def curl(self, args: list[str], where: str) -> str:
        fields, files, out, url = [], {}, None, None
        words = iter(args)
        for word in words:
            if word == "-F":
                key, value = next(words).split("=", 1)
                if value.startswith("@"):
                    files[key] = (value[1:], Path(value[1:]).read_bytes())
                else:
                    fields.append((key, value))
            elif word == "-o":
                out = next(words)
            else:
                url = word
        match = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/.*)", url or "")
        assert match, f"{where}: curl to {url}: only the served app is reachable in a test"
        client = self.client(int(match.group(1)), where)
        if fields or files:
            response = client.post(match.group(2), data=_form(fields), files=files)
        else:
            response = client.get(match.group(2))
        print(f"{where}$ curl {shlex.join(args)}\n{response.status_code} {response.headers}")
        assert response.status_code == 200, f"{where}: {url} answered {response.status_code}: " \
                                            f"{response.text[:500]}"
        if out:
            Path(out).write_bytes(response.content)
            return ""
        return response.text

    def close(self) -> None:
        for client in self.clients.values():
            client.__exit__(None, None, None)

    # -- the lines ----------------------------------------------------------------------------
    def run_block(self, code: str, page: str, first_line: int) -> None:
        """Run a ```bash block whose first line is line `first_line` of `page`."""
        for number, line in logical_lines(code):
            for command in parse(line):
                self.run(command, f"{page}:{first_line + number}")

    def run(self, command: tuple[dict, list[str], tuple[str, str] | None], where: str) -> None:
        env, argv, redirect = command
        argv = [self.expand(a) for a in argv]
        program, args = argv[0], argv[1:]
        if program == "python" and args[:2] == ["-m", "img2img"]:
            program, args = "img2img", args[2:]
        if program == "export":
            self.exported.update(a.split("=", 1) for a in args)
            return
        runners = {"img2img": lambda: self.img2img(args, env, where),
                   "pip": lambda: self.pip(args, where), "echo": lambda: self.echo(args),
                   "mkdir": lambda: self.mkdir(args), "curl": lambda: self.curl(args, where)}
        assert set(runners) == PROGRAMS - {"export", "python"}
        assert program in runners, unsupported(program, where)
        printed = runners[program]()
        if redirect:
            mode, path = redirect
            with open(self.expand(path), "a" if mode == ">>" else "w") as file:
                file.write(printed)

    def expand(self, word: str) -> str:
        assert "$" not in word, f"shell variables are not expanded here: {word}"
        return str(self.root / "home") + word[1:] if word.startswith("~") else word


PROGRAMS = {"img2img", "python", "export", "pip", "echo", "mkdir", "curl"}


def unsupported(program: str, where: str) -> str:
    return (f"{where}: `{program}` cannot run in the tests; mark the block with "
            "<!-- not run: REASON --> right above it")


def logical_lines(code: str) -> list[tuple[int, str]]:
    """(index of the first physical line, line) with `\\` continuations joined."""
    lines, start, pending = [], 0, ""
    for number, physical in enumerate(code.splitlines()):
        if not pending:
            start = number
        if physical.endswith("\\"):
            pending += physical[:-1] + " "
            continue
        lines.append((start, pending + physical))
        pending = ""
    return lines


def programs(code: str) -> list[str]:
    """The program each command of a shell block runs (`python -m img2img`: img2img)."""
    found = []
    for _, line in logical_lines(code):
        for _, argv, _ in parse(line):
            found.append("img2img" if argv[:3] == ["python", "-m", "img2img"] else argv[0])
    return found


def _form(fields: list[tuple[str, str]]) -> dict[str, list[str]]:
    """Form fields as httpx takes them, a repeated field (`-F label=3 -F label=8`) included."""
    form: dict[str, list[str]] = {}
    for key, value in fields:
        form.setdefault(key, []).append(value)
    return form


def parse(line: str) -> list[tuple[dict, list[str], tuple[str, str] | None]]:
    """One shell line -> commands: (environment assignments, words, (`>` or `>>`, file))."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.commenters = "#"
    commands, words = [], []
    for token in [*lexer, "&&"]:
        if token in ("&&", ";"):
            if words:
                redirect = None
                if len(words) > 2 and words[-2] in (">", ">>"):
                    redirect, words = (words[-2], words[-1]), words[:-2]
                env = {}
                while words and ASSIGNMENT.match(words[0]):
                    key, value = words.pop(0).split("=", 1)
                    env[key] = value
                assert words, f"an assignment alone is not understood: {line}"
                assert not {"|", "<", "&", "(", ")"} & set(words), f"not understood: {line}"
                commands.append((env, words, redirect))
            words = []
        else:
            words.append(token)
    return commands


def check_extra(extra: str, where: str) -> None:
    """`extra` is declared in pyproject.toml and every package it brings is installed here."""
    import importlib.metadata as md

    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    assert extra in extras, f"{where}: img2img has no extra '{extra}'"
    for requirement in extras[extra]:
        name = re.match(r"[A-Za-z0-9_.\-]+", requirement).group(0)
        nested = re.match(r"img2img\[([\w,]+)\]", requirement)
        if nested:
            for inner in nested.group(1).split(","):
                check_extra(inner, where)
            continue
        try:
            md.distribution(name)
        except md.PackageNotFoundError:
            raise AssertionError(f"{where}: extra '{extra}' needs {name}, not installed here")


# -- the sandbox every page's examples run in ------------------------------------------------------
def _picture(path: Path, size: int = 40, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    image = cv2.GaussianBlur(rng.integers(0, 256, (size, size, 3), np.uint8), (5, 5), 1)
    assert cv2.imwrite(str(path), image)


def _copy(sources: list[Path], folder: Path, crop=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for source in sources:
        if crop is None:
            shutil.copyfile(source, folder / source.name)
        else:
            image = cv2.imread(str(source), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(folder / source.name), crop(image))


def _clip(path: Path, frames: int = 8, size: int = 40) -> None:
    """A small H.264 MP4 of a texture moving 2 px a frame, with a sine audio track."""
    import av

    rng = np.random.default_rng(0)
    wide = cv2.GaussianBlur(rng.integers(0, 256, (size, size + 2 * frames, 3), np.uint8),
                            (5, 5), 1)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=8)
        video.width = video.height = size
        video.pix_fmt = "yuv420p"
        sound = out.add_stream("aac", rate=16000)
        sound.layout = "mono"
        for i in range(frames):
            frame = np.ascontiguousarray(wide[:, 2 * i:2 * i + size])
            picture = av.VideoFrame.from_ndarray(frame, format="rgb24")
            picture.pts = i
            out.mux(video.encode(picture))
        out.mux(video.encode(None))
        wave = np.sin(np.arange(16000 * frames // 8) / 8).astype(np.float32)[None] * 0.3
        chunk = av.AudioFrame.from_ndarray(wave, format="flt", layout="mono")
        chunk.sample_rate, chunk.pts = 16000, 0
        out.mux(sound.encode(chunk))
        out.mux(sound.encode(None))


def build_sandbox(root: Path) -> Path:
    """Every folder, file and run the documentation's examples name, at tiny sizes."""
    for name in ("pairs", "held_out", "facades"):
        write_sample_images("paired", root / name, n=4, size=40, seed=len(name))
    for name in ("photos", "paintings", "horses", "zebras", "grey", "colour", "test_photos",
                 "test_paintings", "test_horses", "test_zebras", "new_inputs", "shots",
                 "big_folder"):
        write_sample_images("images", root / name, n=3, size=40, seed=len(name))
    write_sample_images("unpaired", root / "horse2zebra", n=3, size=40)
    for i, name in enumerate(("photo.jpg", "photo.png", "in.png", "holiday.jpg", "painting.jpg",
                              "horse.jpg", "my_edges.png", "more/1.png", "more/2.png")):
        _picture(root / name, seed=i)
    _clip(root / "clip.mp4")
    (root / "footage").mkdir()
    _clip(root / "footage" / "take1.mp4")
    _picture(root / "footage" / "still.png")
    data = ROOT / "datasets"
    faces = sorted((data / "faces_grey2colour" / "trainB").glob("*.jpg"))
    _copy(faces[:3], root / "selfies")
    _copy(faces[3:6], root / "portraits")
    shutil.copyfile(faces[6], root / "group-photo.jpg")
    edges = data / "faces_edges2photo"
    _copy(sorted((edges / "train").glob("*.jpg"))[:4], root / "my_edges2photos" / "train")
    _copy(sorted((edges / "test").glob("*.jpg"))[:2], root / "my_edges2photos" / "test")
    hands = sorted((data / "handwriting_print2hand").glob("*.png"))
    right, left = (lambda im: im[:, im.shape[1] // 2:]), (lambda im: im[:, :im.shape[1] // 2])
    _copy(hands[0:8], root / "glyphs", crop=right)
    _copy(hands[8:14], root / "writers" / "alice", crop=right)
    _copy(hands[14:20], root / "writers" / "bob", crop=right)
    _copy(hands[20:23], root / "printed_glyphs", crop=left)
    shutil.copyfile(root / "printed_glyphs" / hands[20].name, root / "glyph.png")
    from PIL import ImageFont  # Pillow's own TrueType font, so no system font is needed

    (root / "MyFont.ttf").write_bytes(ImageFont.load_default(size=20).font_bytes)
    weights = ROOT / "tests" / "data" / "ref_weights"
    for name, source in (("latest_net_G_A.pth", "cyclegan_resnet9_instance/latest_net_G.pth"),
                         ("latest_net_G_B.pth", "cyclegan_resnet9_instance/latest_net_G.pth"),
                         ("latest_net_G.pth", "pix2pix_unet256_batch_dropout/latest_net_G.pth"),
                         ("latest_net_D.pth", "pix2pix_unet256_batch_dropout/latest_net_D.pth")):
        shutil.copyfile(weights / source, root / name)
    for name in ("datasets", "examples"):
        (root / name).symlink_to(ROOT / name, target_is_directory=True)
    (root / "home").mkdir()
    return root


SANDBOX_RUNS = [
    ["train", "pix2pix", "--data", "pairs", "--name", "edges2shoes"],
    ["train", "cyclegan", "--a", "horses", "--b", "zebras", "--name", "horse2zebra"],
    ["prepare", "handwriting", "writers", "glyph_pairs", "--font", "MyFont.ttf"],
    ["train", "pix2pix", "--preset", "handwriting", "--data", "glyph_pairs", "--name", "hands"],
    ["train", "cgan", "--data", "datasets/digits", "--channels", "1", "--name", "digits-cgan"],
]
