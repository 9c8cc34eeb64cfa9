"""DICOM networking (DIMSE) speed side by side with Orthanc, in one run, printed as one table.

    .venv/bin/python bench/dimse_bench.py [--slices 300] [--studies 100000] [--orthanc-studies 1000] [--finds 100]
    .venv/bin/python bench/dimse_bench.py --skip-store --studies 1000000 \
        --database-url postgres://root@127.0.0.1:5432/test                     # the C-FIND rows on PostgreSQL

Starts a private Orthanc on loopback (bench/orthanc.py, with its DICOM port; it answers to any called AE title) and
an Aperture server (tests/servers.py: `manage.py serve` with its embedded DICOM listener; if that does not answer a
C-ECHO, `manage.py dicom_listener` beside it), both over one throw-away data directory and database that this
process also opens, to fill and to watch.

C-STORE: dcmtk's `storescu` sends a generated 300-slice 512x512 16-bit CT series (bench/import_bench.py
phantom_series: a body phantom with noise, Explicit VR Little Endian files), once over one association and once with
two storescu processes at a time (half of the files each, a second series), to each target, after a 10-file warm-up.
Files per second are counted from the start of storescu:
- "C-STORE answered": until storescu exits (every C-STORE answered). Orthanc stores files as received.
- Aperture "imported": until the import jobs of those files (found by the storescu AE title) have COMPLETED:
  transcoded to HTJ2K, verified with OpenJPEG, persisted. The honest figure, compared with Orthanc's.

Orthanc runs with TCP_NODELAY=1 in its environment (bench/orthanc.py): as Debian builds it, its DCMTK leaves Nagle's
algorithm on and each C-STORE answer waits for a delayed ACK (about 20 files/s whatever the disk); one more row
shows a second Orthanc as shipped (--no-orthanc-defaults leaves it out). The ratios compare with the faster one.

C-FIND: one pynetdicom SCU in this process keeps one association open per target and times the round trip of each
Study Root C-FIND at STUDY level (by PatientID, and by a one-week StudyDate range, as bench/dicomweb_bench.py
qido_rows does) until its final status. Aperture's data store is filled with --studies StudyIndex rows by
bench/dicomweb_bench.py fill_studies; Orthanc cannot be filled with 100,000 studies in reasonable time (one DICOM
file each, a few hundred a second), so it gets --orthanc-studies (the same studies as a second, small Aperture data
store, written as tiny files from those rows), and both are shown at that size too.

The machine's other load shows in every figure (the targets are the issue's); rows that cannot run print why.
"""
from __future__ import annotations

import argparse
import os
import logging
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

STORE_AET = "BENCHSTORE"  # the Aperture data store the C-STOREs go to
FIND_AET = "BENCHFIND"  # the data store of --studies studies
FIND_SMALL_AET = "BENCHFIND1K"  # the data store of --orthanc-studies studies, the same ones Orthanc holds
NOT_SERVED = "not served"


@dataclass
class StoreRow:
    name: str
    files: int
    seconds: float | None = None
    failure: str | None = None
    baseline: str | None = None  # compared with this row's files/s; the issue wants at least as many
    note: str = ""

    def rate(self) -> float:
        return self.files / self.seconds


@dataclass
class FindRow:
    name: str
    timings: list[float] = field(default_factory=list)
    found: int = 0
    failure: str | None = None
    target_ms: float | None = None

    def median(self) -> float:
        return statistics.median(self.timings) * 1000

    def p95(self) -> float:
        ordered = sorted(self.timings)
        return ordered[max(0, int(len(ordered) * 0.95) - 1)] * 1000


# --- the two servers -------------------------------------------------------------------------------------------


def echo(port: int, called: str) -> bool:
    from pynetdicom import AE
    from pynetdicom.sop_class import Verification

    ae = AE(ae_title="BENCHECHO")
    ae.add_requested_context(Verification)
    ae.acse_timeout = ae.network_timeout = 5
    assoc = ae.associate("127.0.0.1", port, ae_title=called)
    if not assoc.is_established:
        return False
    status = assoc.send_c_echo()
    assoc.release()
    return bool(status) and status.Status == 0


class Aperture:
    """`manage.py serve` over this process's data directory and database, and its DICOM listener on `dicom_port`."""

    def __init__(self, mode: str, extra_env: dict[str, str] | None = None) -> None:
        from tests.servers import ApertureServer, free_port

        self.dicom_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_SETTINGS")}
        env.pop("APERTURE_TASKS", None)
        env.update({"PYTHONUNBUFFERED": "1", "APERTURE_DICOM_LISTEN": "true", "APERTURE_DICOM_HOST": "127.0.0.1",
                    "APERTURE_DICOM_PORT": str(self.dicom_port), "APERTURE_DICOM_ALLOW_ANY": "true"})
        env.update(extra_env or {})
        if mode == "process":
            env["APERTURE_DICOM_LISTEN"] = "false"
        self.server = ApertureServer(port=free_port(), data_dir=Path(os.environ["APERTURE_DATA_DIR"]), env=env,
                                     owns_data=False)
        self.mode = mode
        self.listener: subprocess.Popen | None = None

    def start(self) -> str | None:
        """Start both; None once the listener answers a C-ECHO, else why not."""
        self.server.launch()
        if self.mode == "embedded" and self._wait_echo(30):
            return None
        print("the embedded listener did not answer: starting `manage.py dicom_listener`", file=sys.stderr)
        self.mode = "process"
        log = open(self.server.data_dir / "listener.log", "ab")
        self.listener = subprocess.Popen(
            [sys.executable, "manage.py", "dicom_listener", "--port", str(self.dicom_port)], cwd=ROOT,
            env=self.server.env, stdout=log, stderr=subprocess.STDOUT)
        if self._wait_echo(60):
            return None
        tail = (self.server.data_dir / "listener.log").read_text(errors="replace")[-300:].strip().splitlines()
        return NOT_SERVED + (f" ({tail[-1][:60]})" if tail else "")

    def pid(self) -> int:
        return (self.listener or self.server.process).pid

    def _wait_echo(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.listener and self.listener.poll() is not None:
                return False
            try:
                if echo(self.dicom_port, STORE_AET):
                    return True
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
        return False

    def stop(self) -> None:
        if self.listener and self.listener.poll() is None:
            self.listener.terminate()
            try:
                self.listener.wait(40)
            except subprocess.TimeoutExpired:
                self.listener.kill()
                self.listener.wait(5)
        self.server.stop()


# --- C-STORE ---------------------------------------------------------------------------------------------------


def storescu(port: int, called: str, calling: str, files: list[Path], processes: int,
             nodelay: bool = True) -> tuple[float, str | None]:
    """`processes` storescu processes at a time, one association each, the files split between them; (seconds until
    the last exits, None or what went wrong)."""
    shares = [files[n::processes] for n in range(processes)]
    start = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "TCP_NODELAY"}
    if nodelay:
        env["TCP_NODELAY"] = "1"  # storescu (DCMTK) with Nagle's algorithm off, as the Orthanc it is compared with
    runs = [subprocess.Popen(["/usr/bin/storescu", "-aet", calling, "-aec", called, "127.0.0.1", str(port),
                              *map(str, share)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
            for share in shares]
    outputs = [run.communicate()[0].decode(errors="replace") for run in runs]
    seconds = time.perf_counter() - start
    for run, output in zip(runs, outputs):
        if run.returncode != 0 or "E: " in output:
            lines = [line for line in output.splitlines() if line.startswith(("E: ", "F: "))] or output.splitlines()
            return seconds, f"storescu rc {run.returncode}: {(lines or [''])[0][:60]}"
    return seconds, None


def imported(datastore_id: str, calling: str, files: int, start: float, timeout: float = 900) -> tuple[float, str]:
    """Wait until the import jobs of the files that `calling` sent have all ended and account for `files` files;
    (seconds since `start`, a note on failures or jobs)."""
    from imaging.models import ImportJob, JobStatus

    ended = {JobStatus.COMPLETED, JobStatus.FAILED}
    deadline, first_deadline = time.monotonic() + timeout, time.monotonic() + 120
    while True:
        jobs = list(ImportJob.objects.filter(datastore_id=datastore_id, calling_ae_title=calling)
                    .values_list("status", "imported_files", "failed_files"))
        done = sum(i + f for _, i, f in jobs)
        if jobs and all(status in ended for status, _, _ in jobs) and done >= files:
            seconds = time.perf_counter() - start
            failed = sum(f for _, _, f in jobs)
            bad = sum(status == JobStatus.FAILED for status, _, _ in jobs)
            note = f"{len(jobs)} job(s)" + (f", {failed} files failed" if failed else "") + (
                f", {bad} job(s) FAILED" if bad else "")
            return seconds, note
        if time.monotonic() > deadline or (not jobs and time.monotonic() > first_deadline):
            raise TimeoutError(f"{done}/{files} files imported after {timeout:.0f}s ({len(jobs)} jobs)")
        time.sleep(0.05)


class Profile:
    """py-spy (a tool of its own, not a requirement: --py-spy PATH) sampling the Aperture server and its worker
    processes for one run; `stop()` prints where the time went: the heaviest frames of this repository (inclusive)
    and the heaviest leaves, as shares of all samples."""

    def __init__(self, py_spy: str, pid: int, out: Path) -> None:
        self.out = out
        self.process = subprocess.Popen(
            [py_spy, "record", "--pid", str(pid), "--subprocesses", "--rate", "200", "--format", "raw",
             "--output", str(out), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # attached before the run starts

    def stop(self, top: int = 20) -> None:
        import collections
        import signal

        self.process.send_signal(signal.SIGINT)
        self.process.wait(60)
        if not self.out.exists():
            print("py-spy wrote nothing (ptrace refused?)", file=sys.stderr)
            return
        processes, server, leaves, total = collections.Counter(), collections.Counter(), collections.Counter(), 0
        server_total = 0
        for line in self.out.read_text(errors="replace").splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            frames, n = stack.split(";"), int(count)
            # With --subprocesses a worker's stack starts with its parents' "process" frames: the last one is its own.
            named = [n for n, frame in enumerate(frames[:4]) if frame.startswith("process ")]
            process = frames[named[-1]] if named else ""
            frames = frames[named[-1] + 1:] if named else frames
            if not frames:
                continue
            total += n
            processes[process[:90]] += n
            leaves[frames[-1]] += n
            if "manage.py serve" in process or "dicom_listener" in process:
                server_total += n
                for frame in set(frames):
                    server[frame] += n
        print(f"py-spy: {total} busy samples at 200/s ({self.out}); by process:", file=sys.stderr)
        for process, n in processes.most_common(8):
            print(f"    {100 * n / max(total, 1):5.1f}%  {process}", file=sys.stderr)
        print(f"  the listener's process ({server_total} samples), inclusive:", file=sys.stderr)
        for frame, n in server.most_common(top):
            print(f"    {100 * n / max(server_total, 1):5.1f}%  {frame.replace(str(ROOT) + '/', '')[:150]}",
                  file=sys.stderr)
        print("  leaves, all processes:", file=sys.stderr)
        for frame, n in leaves.most_common(top):
            print(f"    {100 * n / max(total, 1):5.1f}%  {frame.replace(str(ROOT) + '/', '')[:150]}",
                  file=sys.stderr)


def store_rows(orthanc, aperture: Aperture | None, aperture_failure: str | None, datastore_id: str | None,
               series: dict[str, list[Path]], py_spy: str | None = None, orthanc_plain=None) -> list[StoreRow]:
    rows: list[StoreRow] = []
    for kind, processes in (("warm", 1), ("1 association", 1), ("2 storescu at once", 2)):
        files = series[kind]
        calling = {"warm": "SCUWARM", "1 association": "SCUONE", "2 storescu at once": "SCUTWO"}[kind]
        label = f"{len(files)} CT, {kind}"
        before = orthanc.count()
        seconds, failure = storescu(orthanc.dicom_port, orthanc.aet, calling, files, processes)
        stored = orthanc.count() - before
        if not failure and stored != len(files):
            failure = f"{stored}/{len(files)} stored"
        orthanc_row = StoreRow(f"Orthanc C-STORE answered ({label})", len(files), seconds, failure)
        answered = StoreRow(f"Aperture C-STORE answered ({label})", len(files), failure=aperture_failure,
                            baseline=orthanc_row.name)
        done = StoreRow(f"Aperture imported: HTJ2K, verified ({label})", len(files), failure=aperture_failure,
                        baseline=orthanc_row.name)
        if aperture and not aperture_failure:
            profile = None
            if py_spy and kind == "1 association":
                profile = Profile(py_spy, aperture.pid(), Path(tempfile.gettempdir()) / "dimse-bench-profile.txt")
            start = time.perf_counter()
            answered.seconds, answered.failure = storescu(aperture.dicom_port, STORE_AET, calling, files, processes)
            if answered.failure:
                done.failure = answered.failure
            else:
                try:
                    done.seconds, done.note = imported(datastore_id, calling, len(files), start)
                except TimeoutError as error:
                    done.failure = str(error)[:60]
            if profile:
                profile.stop()
        print(f"{label}: Orthanc {seconds:.1f}s, Aperture answered {answered.seconds or 0:.1f}s, "
              f"imported {done.seconds or 0:.1f}s {done.note}", file=sys.stderr)
        if kind != "warm":
            rows += [orthanc_row, answered, done]
    if orthanc_plain:
        files = series["1 association"]
        seconds, failure = storescu(orthanc_plain.dicom_port, orthanc_plain.aet, "SCUONE", files, 1,
                                    nodelay=False)
        rows.append(StoreRow(f"Orthanc, Debian's defaults: Nagle on ({len(files)} CT, 1 association)", len(files),
                             seconds, failure))
    return rows


# --- C-FIND ----------------------------------------------------------------------------------------------------


class FindSCU:
    """One association to one target, kept open; `find()` times one Study Root C-FIND at STUDY level."""

    def __init__(self, port: int, called: str) -> None:
        from pynetdicom import AE
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind

        self.model = StudyRootQueryRetrieveInformationModelFind
        self.ae = AE(ae_title="BENCHFINDSCU")
        self.ae.add_requested_context(self.model)
        self.ae.acse_timeout = self.ae.dimse_timeout = self.ae.network_timeout = 60
        self.assoc = self.ae.associate("127.0.0.1", port, ae_title=called)
        if not self.assoc.is_established:
            raise RuntimeError(f"association to {called} refused")
        # pynetdicom leaves Nagle's algorithm on: a query in two PDUs (command, identifier) would wait for an ACK.
        self.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def find(self, keys: dict[str, str]) -> tuple[float, int]:
        from pydicom.dataset import Dataset

        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        for keyword in ("StudyInstanceUID", "PatientName", "PatientID", "PatientBirthDate", "StudyDate", "StudyTime",
                        "AccessionNumber", "StudyDescription", "ModalitiesInStudy",
                        "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"):
            setattr(query, keyword, keys.get(keyword, ""))
        found = 0
        start = time.perf_counter()
        for status, identifier in self.assoc.send_c_find(query, self.model):
            if not status:
                raise RuntimeError("C-FIND: no answer (timeout or aborted)")
            if status.Status in (0xFF00, 0xFF01):
                found += 1
            elif status.Status != 0x0000:
                raise RuntimeError(f"C-FIND status 0x{status.Status:04X}")
        return time.perf_counter() - start, found

    def close(self) -> None:
        if self.assoc.is_established:
            self.assoc.release()


def find_rows(targets: list[tuple[str, int, str, dict[str, str] | None, float | None]], runs: int) -> list[FindRow]:
    """For each (label, port, called AE title, probe, target p95 ms): `runs` C-FINDs by PatientID and by StudyDate
    range over one association, after 5 to warm up, one query of each target in turn."""
    rows, live = [], []
    for label, port, called, probe, target in targets:
        for search in ("PatientID", "StudyDate"):
            name = f"{label} C-FIND STUDY by {'PatientID' if search == 'PatientID' else 'StudyDate (1 week)'}"
            row = FindRow(name, target_ms=target)
            rows.append(row)
            if probe is None:
                row.failure = NOT_SERVED
                continue
            try:
                scu = FindSCU(port, called)
                for _ in range(5):
                    scu.find({search: probe[search]})
            except Exception as error:  # noqa: BLE001 - a row that cannot run says why
                row.failure = str(error)[:60]
                continue
            live.append((row, scu, {search: probe[search]}))
    for _ in range(runs):
        for row, scu, keys in live:
            if row.failure:
                continue
            try:
                seconds, row.found = scu.find(keys)
                row.timings.append(seconds)
            except Exception as error:  # noqa: BLE001
                row.failure = str(error)[:60]
    for _, scu, _ in live:
        scu.close()
    return rows


def orthanc_fill(orthanc, datastore_id: str, folder: Path) -> None:
    """The StudyIndex rows of `datastore_id` as one tiny CT instance per study, posted to Orthanc."""
    from imaging.models import StudyIndex
    from tests.dicomgen import ct_dataset, to_bytes

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, study in enumerate(StudyIndex.objects.filter(datastore_id=datastore_id).order_by("study_instance_uid")):
        ds = ct_dataset(study_uid=study.study_instance_uid, series_uid=study.study_instance_uid + ".1",
                        sop_uid=study.study_instance_uid + ".1.1", patient_name=study.patient_name,
                        patient_id=study.patient_id, rows=8, columns=8, seed=n)
        ds.StudyDate, ds.AccessionNumber = study.study_date, study.accession_number
        ds.StudyDescription = study.study_description
        path = folder / f"{n:06}.dcm"
        path.write_bytes(to_bytes(ds))
        paths.append(path)
    start = time.perf_counter()
    orthanc.ingest_seconds(paths)
    print(f"Orthanc: {len(paths)} studies filled in {time.perf_counter() - start:.0f}s", file=sys.stderr)


# --- the table -------------------------------------------------------------------------------------------------


def print_table(stores: list[StoreRow], finds: list[FindRow]) -> None:
    by_name = {row.name: row for row in stores}
    width = max([len(row.name) for row in stores + finds] + [40]) + 2
    if stores:
        print(f"{'C-STORE (storescu)':<{width}}{'files/s':>9}{'seconds':>9}{'ratio':>7}{'target':>9}{'met?':>6}")
    for row in stores:
        if row.failure or row.seconds is None:
            print(f"{row.name:<{width}}{row.failure or 'no data':>40}")
            continue
        ratio, target, met = "", "", ""
        base = by_name.get(row.baseline or "")
        if base and base.seconds and not base.failure:
            value = row.rate() / base.rate()
            ratio, target, met = f"{value:.2f}", ">= 1.00", "yes" if value >= 1 else "NO"
        print(f"{row.name:<{width}}{row.rate():>9.1f}{row.seconds:>9.2f}{ratio:>7}{target:>9}{met:>6}"
              + (f"   ({row.note})" if row.note else ""))
    if finds:
        print(f"{'C-FIND (one association, round trip)':<{width}}{'p50 ms':>9}{'p95 ms':>9}{'found':>7}"
              f"{'target':>9}{'met?':>6}")
    for row in finds:
        if row.failure or not row.timings:
            print(f"{row.name:<{width}}{row.failure or 'no data':>40}")
            continue
        target, met = "", ""
        if row.target_ms:
            target, met = f"p95<{row.target_ms:.0f}", "yes" if row.p95() < row.target_ms else "NO"
        print(f"{row.name:<{width}}{row.median():>9.2f}{row.p95():>9.2f}{row.found:>7}{target:>9}{met:>6}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slices", type=int, default=300, help="instances in each CT series (default 300)")
    parser.add_argument("--studies", type=int, default=100_000, help="studies in Aperture for C-FIND (0: none)")
    parser.add_argument("--orthanc-studies", type=int, default=1000,
                        help="studies in Orthanc (and a second Aperture store) for the side-by-side C-FIND (0: none)")
    parser.add_argument("--finds", type=int, default=100, help="timed C-FINDs per row (default 100)")
    parser.add_argument("--listener", choices=("embedded", "process"), default="embedded",
                        help="the listener inside `manage.py serve` (default), or `manage.py dicom_listener`")
    parser.add_argument("--server-env", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the Aperture server, e.g. APERTURE_DICOM_BATCH_FILES=50 (repeatable)")
    parser.add_argument("--database-url", help="Aperture on this PostgreSQL server (a throw-away database)")
    parser.add_argument("--skip-store", action="store_true", help="only the C-FIND rows")
    parser.add_argument("--py-spy", metavar="PATH", help="profile Aperture during the 1-association run with "
                        "this py-spy executable (a tool of its own; that run then carries the sampling's overhead)")
    parser.add_argument("--orthanc-defaults", action=argparse.BooleanOptionalAction, default=True,
                        help="also a row for a second Orthanc as Debian ships it (Nagle's algorithm on)")
    parser.add_argument("--skip-orthanc", action="store_true", help="only the Aperture rows")
    args = parser.parse_args()
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

    from bench.common import throwaway_store
    from bench.import_bench import phantom_series
    from bench.orthanc import Orthanc

    work = Path(tempfile.mkdtemp(prefix="dimse-bench-"))
    orthanc = orthanc_plain = aperture = None
    stores: list[StoreRow] = []
    finds: list[FindRow] = []
    try:
        series: dict[str, list[Path]] = {}
        if not args.skip_store:
            for kind, count in (("warm", 10), ("1 association", args.slices), ("2 storescu at once", args.slices)):
                folder = work / kind.replace(" ", "-")
                phantom_series(folder, count)
                series[kind] = sorted(folder.glob("*.dcm"))
        if not args.skip_orthanc:
            orthanc = Orthanc(nodelay=True).start()
            if args.orthanc_defaults and series:
                orthanc_plain = Orthanc(aet="ORTHANCPLAIN").start()
        with throwaway_store("aperture-dimse-bench-"):
            from django.db import connection

            from imaging.models import Datastore, DatastoreStatus

            from bench.dicomweb_bench import fill_studies

            logging.getLogger("pynetdicom").setLevel(logging.WARNING)  # not every PDU on stderr

            datastore = Datastore.objects.create(name="dimse-bench-store", status=DatastoreStatus.ACTIVE,
                                                 ae_title=STORE_AET)
            probes: dict[str, dict[str, str]] = {}
            for aet, count in ((FIND_AET, args.studies), (FIND_SMALL_AET, args.orthanc_studies)):
                if count:
                    start = time.perf_counter()
                    find_store = Datastore.objects.create(name=f"dimse-bench-{aet}", status=DatastoreStatus.ACTIVE,
                                                          ae_title=aet)
                    probes[aet] = fill_studies(find_store.id, count)
                    probes[aet]["datastore"] = find_store.id
                    print(f"{connection.vendor}: {count} studies filled in {time.perf_counter() - start:.0f}s",
                          file=sys.stderr)
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")
            connection.close()
            aperture = Aperture(args.listener, dict(item.split("=", 1) for item in args.server_env))
            failure = aperture.start()
            if failure:
                print(f"Aperture's listener: {failure}", file=sys.stderr)
            vendor = connection.vendor
            if series and orthanc:
                stores = store_rows(orthanc, aperture, failure, datastore.id, series, args.py_spy, orthanc_plain)
            elif series:
                print("--skip-orthanc: no C-STORE rows (they need Orthanc's to compare)", file=sys.stderr)
            targets = []
            if args.studies:
                targets.append((f"Aperture at {args.studies:,} ({vendor})", aperture.dicom_port, FIND_AET,
                                None if failure else probes[FIND_AET], 20.0))
            if args.orthanc_studies:
                targets.append((f"Aperture at {args.orthanc_studies:,} ({vendor})", aperture.dicom_port,
                                FIND_SMALL_AET, None if failure else probes[FIND_SMALL_AET], None))
                if orthanc:
                    orthanc_fill(orthanc, probes[FIND_SMALL_AET]["datastore"], work / "orthanc-studies")
                    targets.append((f"Orthanc at {args.orthanc_studies:,}", orthanc.dicom_port, orthanc.aet,
                                    probes[FIND_SMALL_AET], None))
            finds = find_rows(targets, args.finds)
            aperture.stop()
            aperture = None
    finally:
        if aperture:
            aperture.stop()
        for peer in (orthanc, orthanc_plain):
            if peer:
                peer.stop()
        shutil.rmtree(work, ignore_errors=True)
        if os.environ.get("APERTURE_DATA_DIR", "").startswith(tempfile.gettempdir()) and not os.environ.get(
                "APERTURE_KEEP_TEST_DATA"):
            shutil.rmtree(os.environ["APERTURE_DATA_DIR"], ignore_errors=True)
    print("(shared 2-core machine: other processes' load is in every figure; compare the rows of one run)")
    print_table(stores, finds)


if __name__ == "__main__":
    main()
