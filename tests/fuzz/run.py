"""Run one fuzz target under atheris (libFuzzer) for a while: `python -m tests.fuzz.run TARGET SECONDS OUT_DIR`;
`python -m tests.fuzz.run TARGET --replay FILE` runs one input through the target and shows the traceback.

bin/fuzz calls this for one target or all of them. The corpus starts in a temporary folder from the target's seeds
(../shared/dicom for the DICOM targets); a crash, a hang past 30 s or a failed property is written to OUT_DIR by
libFuzzer (crash-*, timeout-*), and the run stops there.
"""
from __future__ import annotations

import importlib
import os
import random
import sys
import tempfile
from pathlib import Path

TARGETS = ("dicom", "pipeline", "rebuild", "dicomjson", "sigv4", "policy", "websocket")
DICOM_TARGETS = {"dicom", "pipeline", "rebuild"}
DJANGO_TARGETS = {"websocket"}


def _django() -> None:
    """A throw-away SQLite database with one signed-in user, for the websocket consumer."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["APERTURE_DATA_DIR"] = tempfile.mkdtemp(prefix="aperture-fuzz-")
    os.environ.pop("DATABASE_URL", None)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def main(argv: list[str]) -> None:
    name = argv[1]
    if name not in TARGETS:
        raise SystemExit(f"unknown target {name!r}; targets: {', '.join(TARGETS)}")
    if argv[2] == "--replay":
        if name in DJANGO_TARGETS:
            raise SystemExit("replay websocket inputs through tests/fuzz/test_regressions.py")
        importlib.import_module(f"tests.fuzz.target_{name}").one_input(Path(argv[3]).read_bytes())
        print("no failure")
        return
    seconds, out = int(argv[2]), Path(argv[3])
    import atheris

    if name in DJANGO_TARGETS:
        _django()
    with atheris.instrument_imports(include=["imaging", "viewer", "pydicom", "tests.fuzz"]):
        target = importlib.import_module(f"tests.fuzz.target_{name}")
        from tests.fuzz import seeds

    one_input = target.one_input
    if name == "websocket":
        from asgiref.sync import async_to_sync

        from tests import personas  # (after _django(): personas needs the models)

        user = personas.user("fuzz")

        def one_input(data: bytes) -> None:
            async_to_sync(target.feed)(user, target.one_input_texts(data))

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        """Half the time the structure-aware mutations of real files (length fields, truncation, chunks), half
        the time libFuzzer's own."""
        if random.Random(seed).random() < 0.5 and len(data) > 132:
            return seeds.mutate(data, seed)[:max_size]
        return atheris.Mutate(data, max_size)

    corpus = Path(tempfile.mkdtemp(prefix=f"aperture-fuzz-{name}-"))
    for index, data in enumerate(target.seed_inputs()):
        (corpus / f"seed-{index:03d}").write_bytes(data)
    out.mkdir(parents=True, exist_ok=True)
    largest = max((p.stat().st_size for p in corpus.iterdir()), default=4096)
    print(f"fuzzing {name} for {seconds} s; corpus {corpus} ({len(list(corpus.iterdir()))} seeds); crashes to {out}",
          flush=True)
    args = [argv[0], str(corpus), f"-max_total_time={seconds}", f"-artifact_prefix={out}/", "-timeout=30",
            "-rss_limit_mb=4096", f"-max_len={max(largest, 4096)}", "-print_final_stats=1"]
    atheris.Setup(args, lambda data: one_input(data),
                  custom_mutator=custom_mutator if name in DICOM_TARGETS else None)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
