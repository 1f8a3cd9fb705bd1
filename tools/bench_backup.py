"""Benchmark of the seek-k3s backup pipeline (not a timed test): ``make bench-backup``.

For each size of ``--sizes`` (GB of dump text) it generates a SEEK-shaped MariaDB database (see
:func:`generate`), starts moto (S3) on loopback and measures, back to back in one run:

* the baseline: bare ``mysqldump --single-transaction > /dev/null`` with the script's flags;
* the dump step: ``roles/backups/files/mysql-backup.sh`` (dump, zstd -T0, exact per-table row
  counts, sha256, manifest, queue entry), all stages overlapping in one pass;
* end to end: a watcher standing in for the backup host's systemd path unit
  (``DirectoryNotEmpty=<root>/.offsite-queue``, polled every 50 ms) starts ``python -m
  seek_backup offsite --no-prune`` when the queue entry appears; the clock stops when the set's
  ``uploaded.json`` exists (age-encrypted, uploaded, plaintext sha256 matched, head_object checked);
* restore: the path restore.yml runs for a set that is only off-site: ``seek_backup fetch``
  (download, decrypt, both digests) onto the backup volume, then the restore Job's
  ``roles/backup_restore/files/restore-mysql.sh`` (sha256, zstd -d, mysql, row counts) into a fresh
  database, against a bare ``mysql < dump.sql`` of the same dump, uncompressed;
* peak RSS of the largest process of each of: the dump step, the uploader, the restore;
* the machine's load average and CPU count, and the data shape (tables, rows, bytes).

Every figure is printed as a ratio to its baseline from the same run. Results go to
``<workdir>/results.json``. Run: ``make bench-backup`` (``BENCH_ARGS="--sizes 1.1,4.1"``) or
``nice .venv/bin/python tools/bench_backup.py --workdir /var/tmp/seek-bench --sizes 1.1``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import threading
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT)]

from tests.backup_tools.servers import MariaDB, Moto  # noqa: E402
from typing import Any  # noqa: E402

SCRIPT = ROOT / "roles" / "backups" / "files" / "mysql-backup.sh"
DB = "seekbench"


def log(msg: str) -> None:
    """Print a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


WORDS = ("protein kinase assay growth curve strain sample model sbml copasi datafile investigation "
         "study yeast ecoli metabolism flux timecourse glucose replicate control").split()
# Small SEEK tables (names from SEEK's schema): rows each, a few hundred bytes per row at most.
SMALL_TABLES = ("projects", "institutions", "people", "policies", "permissions", "favourite_groups",
                "tags", "annotations", "annotation_attributes", "assay_assets", "studied_factors",
                "sample_types", "sample_attributes", "publications", "events", "presentations",
                "documents", "workflows", "collections", "programmes", "strains", "organisms",
                "subscriptions", "snapshots")
# Share of the dump bytes per big table (the rest goes to the small tables) and the measured dump
# bytes of one generated row (MariaDB 10.11 mysqldump, --hex-blob).
SHAPE = {"activity_logs": (0.38, 260), "assets": (0.30, 365), "samples": (0.15, 1240),
         "content_blobs": (0.12, 24400)}
SMALL_SHARE = 0.05
SMALL_ROW_BYTES = 70


def _word() -> str:
    """SQL expression: one random word of WORDS."""
    return "ELT(1 + FLOOR(RAND()*%d), %s)" % (len(WORDS), ",".join(f"'{w}'" for w in WORDS))


SCHEMA = """
CREATE TABLE assets (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, title VARCHAR(255) NOT NULL, description TEXT,
  uuid CHAR(36) NOT NULL, contributor_id INT NOT NULL, policy_id INT, version INT NOT NULL DEFAULT 1,
  created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL, KEY (contributor_id)) ENGINE=InnoDB;
CREATE TABLE activity_logs (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, action VARCHAR(255), activity_loggable_type VARCHAR(255),
  activity_loggable_id INT, culprit_type VARCHAR(255), culprit_id INT, referenced_type VARCHAR(255),
  referenced_id INT, created_at DATETIME, updated_at DATETIME, http_referer VARCHAR(255),
  user_agent TEXT, data MEDIUMTEXT, controller_name VARCHAR(255), KEY (activity_loggable_id)) ENGINE=InnoDB;
CREATE TABLE samples (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, title VARCHAR(255), sample_type_id INT,
  json_metadata LONGTEXT, uuid CHAR(36), contributor_id INT, created_at DATETIME, updated_at DATETIME) ENGINE=InnoDB;
CREATE TABLE content_blobs (
  id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY, uuid CHAR(36), original_filename VARCHAR(255),
  content_type VARCHAR(255), asset_id INT, data LONGBLOB, created_at DATETIME) ENGINE=InnoDB;
CREATE TABLE sessions (id INT AUTO_INCREMENT PRIMARY KEY, session_id VARCHAR(255), data TEXT);
CREATE TABLE empty_table (id INT PRIMARY KEY);
""" + "".join(f"CREATE TABLE {t} (id INT PRIMARY KEY, title VARCHAR(255), description VARCHAR(255), "
              f"owner_id INT, created_at DATETIME);\n" for t in SMALL_TABLES)

ROW_SQL = {
    "assets": (
        "INSERT INTO assets (title, description, uuid, contributor_id, policy_id, version, created_at, updated_at) "
        "SELECT CONCAT({w}, ' ', {w}, ' ', i), CONCAT_WS(' ', {w}, {w}, MD5(RAND()), {w}, "
        "'It''s a \\\"quoted\\\" (text),(with) commas', {w}, SHA2(RAND(), 256), {w}, {w}, MD5(RAND()), "
        "REPEAT({w}, 3)), UUID(), FLOOR(RAND()*5000), IF(RAND() < 0.1, NULL, FLOOR(RAND()*100000)), "
        "1 + FLOOR(RAND()*5), NOW() - INTERVAL FLOOR(RAND()*1000) DAY, NOW() FROM seq"),
    "activity_logs": (
        "INSERT INTO activity_logs (action, activity_loggable_type, activity_loggable_id, culprit_type, culprit_id, "
        "referenced_type, referenced_id, created_at, updated_at, http_referer, user_agent, data, controller_name) "
        "SELECT ELT(1 + FLOOR(RAND()*4), 'show', 'download', 'create', 'update'), "
        "ELT(1 + FLOOR(RAND()*4), 'DataFile', 'Sop', 'Model', 'Assay'), FLOOR(RAND()*100000), 'User', "
        "FLOOR(RAND()*5000), 'Project', FLOOR(RAND()*200), NOW() - INTERVAL FLOOR(RAND()*1000) DAY, NOW(), "
        "CONCAT('https://seek.example.org/data_files/', i, '?version=1'), "
        "'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)', "
        "IF(RAND() < 0.5, NULL, CONCAT('--- ', {w}, '\\n')), 'data_files' FROM seq"),
    "samples": (
        "INSERT INTO samples (title, sample_type_id, json_metadata, uuid, contributor_id, created_at, updated_at) "
        "SELECT CONCAT({w}, ' sample ', i), FLOOR(RAND()*50), "
        "CONCAT('{{\"name\": \"', {w}, ' (', i, ')\", \"strain\": \"', {w}, '\\\\', {w}, '\", "
        "\"notes\": \"', REPEAT(CONCAT({w}, ' (a),(b) it''s '), 40), '\", \"hash\": \"', SHA2(RAND(), 512), "
        "'\", \"lines\": \"a\\nb\\tc\"}}'), UUID(), FLOOR(RAND()*5000), NOW(), NOW() FROM seq"),
    "content_blobs": (
        "INSERT INTO content_blobs (uuid, original_filename, content_type, asset_id, data, created_at) "
        "SELECT UUID(), CONCAT({w}, '_', i, '.xlsx'), 'application/vnd.ms-excel', FLOOR(RAND()*100000), "
        "IF(RAND() < 0.5, RANDOM_BYTES(1024), CONCAT(RANDOM_BYTES(512), REPEAT(CONCAT({w}, ',', i, ';'), 60))), "
        "NOW() FROM seq"),
}


def generate(db: MariaDB, name: str, size_gb: float) -> None:
    """Create ``name`` with SEEK-shaped tables until the dump is about ``size_gb`` GB.

    Many tables (the four big ones of SHAPE, SMALL_TABLES, sessions and an empty table), millions
    of small rows (activity_logs, assets), large text (samples.json_metadata, about 1.2 kB with
    quotes, backslashes and "),(" inside the strings) and blobs (content_blobs.data, written as hex).
    A database that already has the expected row count is kept (generation is the slow part).
    """
    target = {t: int(size_gb * 1e9 * share / row) for t, (share, row) in SHAPE.items()}
    have = db.sql(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='{name}'").strip()
    if have != "0":
        try:
            rows = int(db.sql(f"SELECT COUNT(*) FROM `{name}`.activity_logs").strip() or 0)
        except RuntimeError:
            rows = -1
        if rows == target["activity_logs"]:
            log(f"database {name} already has the {size_gb} GB shape")
            return
        db.sql(f"DROP DATABASE `{name}`")
    log(f"generating ~{size_gb} GB of dump into {name}: {target}")
    db.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    db.sql(SCHEMA, name)
    for table, total in target.items():
        # content_blobs rows are big: RANDOM_BYTES(1024) .. x16 via a REPEAT of the blob itself
        stmt = ROW_SQL[table].format(w=_word())
        if table == "content_blobs":
            stmt = stmt.replace("RANDOM_BYTES(1024)", "REPEAT(RANDOM_BYTES(1024), 16)") \
                       .replace("RANDOM_BYTES(512)", "REPEAT(RANDOM_BYTES(512), 16)")
        batch = 2_000 if table == "content_blobs" else 100_000
        done = 0
        while done < total:
            n = min(batch, total - done)
            db.sql(f"SET SESSION max_recursive_iterations = {n + 1}; "
                   + stmt.replace("SELECT", f"WITH RECURSIVE seq(i) AS (SELECT {done} + 1 UNION ALL SELECT i + 1 "
                                  f"FROM seq WHERE i < {done + n}) SELECT", 1) + ";", name)
            done += n
        log(f"  {table}: {total} rows")
    per_small = int(size_gb * 1e9 * SMALL_SHARE / SMALL_ROW_BYTES / len(SMALL_TABLES))
    for table in SMALL_TABLES:
        db.sql(f"SET SESSION max_recursive_iterations = {per_small + 1}; INSERT INTO {table} "
               f"WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {per_small}) "
               f"SELECT i, CONCAT({_word()}, ' ', i), CONCAT('(', {_word()}, '),(', i, ')'), "
               f"FLOOR(RAND()*5000), NOW() FROM seq;", name)
    db.sql("INSERT INTO sessions (session_id, data) VALUES ('abc', 'secret session data');", name)
    log(f"  {len(SMALL_TABLES)} small tables: {per_small} rows each")


def timed(cmd: list[str] | str, env: dict[str, str] | None = None, stdout: Any = subprocess.DEVNULL,
          shell: bool = False, errors: list[str] | None = None) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB of its largest process, CPU seconds of it
    and its children). stderr goes to a temporary file (a full pipe would stall the command) and
    is appended to ``errors`` when given."""
    import tempfile

    start = time.monotonic()
    with tempfile.TemporaryFile() as errf:
        proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=errf, shell=shell)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        errf.seek(0)
        err = errf.read().decode(errors="replace")
    if errors is not None:
        errors.append(err)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd if shell else ' '.join(cmd[:3])} failed ({code}):\n{err}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def load() -> str:
    """The 1/5/15-minute load averages, e.g. '0.52 1.10 1.31'."""
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


class QueueWatcher(threading.Thread):
    """Stand-in for the systemd path unit: when ``root/.offsite-queue`` is not empty, run the
    off-site pass (the same command the unit's service runs first) and record when it started."""

    def __init__(self, root: Path, cmd: list[str], env: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.queue, self.cmd, self.env = root / ".offsite-queue", cmd, env
        self.started_at = 0.0
        self.result: tuple[float, float, float] | None = None
        self.errors: list[str] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()

    def run(self) -> None:
        """Poll every 50 ms; one pass, then return."""
        try:
            while not self.stop.is_set():
                if self.queue.is_dir() and any(self.queue.iterdir()):
                    self.started_at = time.monotonic()
                    self.result = timed(self.cmd, env=self.env, errors=self.errors)
                    return
                time.sleep(0.05)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc


def shape(db: MariaDB, name: str) -> dict[str, Any]:
    """Data shape: tables, the biggest tables by size, and the longest text/blob value."""
    rows = db.sql(f"SELECT table_name, table_rows, data_length FROM information_schema.tables "
                  f"WHERE table_schema='{name}' ORDER BY data_length DESC").strip().splitlines()
    biggest = db.sql(f"SELECT MAX(LENGTH(data)) FROM `{name}`.content_blobs").strip()
    longest = db.sql(f"SELECT MAX(LENGTH(json_metadata)) FROM `{name}`.samples").strip()
    return {"tables": len(rows), "innodb_bytes": sum(int(r.split("\t")[2]) for r in rows),
            "biggest_tables": [r.split("\t")[0] for r in rows[:4]],
            "largest_blob_bytes": int(biggest or 0), "largest_text_bytes": int(longest or 0)}


def bench_size(db: MariaDB, moto: Moto, work: Path, size_gb: float, comp: str, reps: int,
               ident: Any, env: dict[str, str], restore: bool = True) -> dict[str, Any]:
    """All figures of one size, back to back; see the module docstring."""
    name = "seekbench_" + str(size_gb).replace(".", "_")
    generate(db, name, size_gb)
    res: dict[str, Any] = {"database": name, "compression": comp, "load_before": load(), "shape": shape(db, name)}
    flags = ["--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
             "--default-character-set=utf8mb4", "--no-tablespaces", "--add-drop-table", "--comments", "--dump-date"]
    base = ["mysqldump", "--no-defaults", "-h127.0.0.1", f"-P{db.port}", f"-u{db.user}", f"-p{db.password}",
            *flags, name]
    log(f"{name}: warm-up mysqldump | wc -c (page cache, dump size)")
    res["dump_bytes"] = int(subprocess.run(f"{' '.join(base)} | wc -c", shell=True, capture_output=True,
                                           text=True, check=True).stdout)
    bucket = f"bench-{name.replace('_', '-')}"
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                      region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    pairs = []
    for rep in range(1, reps + 1):
        t_bare, rss_bare, cpu_bare = timed(base)
        root = work / f"root-{name}"
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir()
        cfg = work / f"config-{name}.json"
        cfg.write_text(json.dumps({"root": str(root), "bucket": bucket, "prefix": f"r{rep}",
                                   "endpoint_url": moto.endpoint, "access_key_id": "bench",
                                   "secret_access_key": "bench", "addressing_style": "path",
                                   "recipients": [str(ident.to_public())], "identity_file": str(work / "identity.txt"),
                                   "mysql_socket": str(db.socket), "mysql_user": "root", "spool_dir": str(work),
                                   # moto joins a multipart upload in Python: at 4 GB on a busy machine
                                   # CompleteMultipartUpload outlasts the 60 s default and its retry fails
                                   "read_timeout": 900}))
        cfg.chmod(0o600)
        watcher = QueueWatcher(root, [sys.executable, "-m", "seek_backup", "--config", str(cfg), "offsite",
                                      "--no-prune"], env)
        watcher.start()
        t0 = time.monotonic()
        t_dump, rss_dump, cpu_dump = timed(["bash", str(SCRIPT)], env={**env, **db.env(name), "BACKUP_ROOT": str(root),
                                                                   "BACKUP_COMPRESSION": comp})
        set_dir = next(root.glob("mysql/*"))
        watcher.join(timeout=3600)
        watcher.stop.set()
        if watcher.error or watcher.result is None:
            raise SystemExit(f"off-site pass failed: {watcher.error}")
        t_end = time.monotonic()
        if not (set_dir / "uploaded.json").exists():
            raise SystemExit("the off-site pass left no uploaded.json")
        t_off, rss_off, cpu_off = watcher.result
        manifest = json.loads((set_dir / "manifest.json").read_text())
        pair = {"bare_s": round(t_bare, 2), "bare_cpu_s": round(cpu_bare, 2), "dump_step_s": round(t_dump, 2),
                "dump_step_cpu_s": round(cpu_dump, 2), "dump_step_ratio": round(t_dump / t_bare, 3),
                "offsite_start_after_dump_end_s": round(watcher.started_at - (t0 + t_dump), 2),
                "offsite_s": round(t_off, 2), "offsite_cpu_s": round(cpu_off, 2),
                "end_to_end_s": round(t_end - t0, 2), "end_to_end_ratio": round((t_end - t0) / t_bare, 3),
                "peak_rss_mib": {"dump_step": round(rss_dump, 1), "uploader": round(rss_off, 1),
                                 "bare_mysqldump": round(rss_bare, 1)},
                "artifact_bytes": manifest["artifact"]["size"], "load": load(),
                "offsite_log": [ln for ln in "".join(watcher.errors).splitlines() if "uploaded " in ln]}
        log(f"{name} run {rep}: {pair}")
        pairs.append(pair)
    res["runs"] = pairs
    res["rows"] = manifest["mysql"]["tables"]
    res["dump_step_ratio"] = round(statistics.median(p["dump_step_ratio"] for p in pairs), 3)
    res["end_to_end_ratio"] = round(statistics.median(p["end_to_end_ratio"] for p in pairs), 3)
    if not restore:
        res["load_after"] = load()
        shutil.rmtree(work / f"root-{name}", ignore_errors=True)
        return res
    # restore from the bucket (the last run's set) against a bare `mysql < dump.sql`
    art = set_dir / manifest["artifact"]["name"]
    plain = work / f"{name}.sql"
    subprocess.run(f"{restore_cmd(art)} > {plain}", shell=True, check=True)
    db.sql(f"DROP DATABASE IF EXISTS {name}_bare; CREATE DATABASE {name}_bare")
    res["load_before_restore"] = load()
    log(f"{name}: bare mysql < dump.sql (load {res['load_before_restore']})")
    t_bare_restore, _, cpu_bare_restore = timed(f"mysql --no-defaults --socket={db.socket} -uroot --max-allowed-packet=1G "
                                 f"{name}_bare < {plain}", env=env, shell=True)
    db.sql(f"DROP DATABASE IF EXISTS {name}_bare")
    plain.unlink()
    res["load_between_restores"] = load()
    log(f"{name}: fetch from the bucket, then restore-mysql.sh (load {res['load_between_restores']})")
    fetched = work / f"fetch-{name}"
    script = Path(__file__).resolve().parents[1] / "roles" / "backup_restore" / "files" / "restore-mysql.sh"
    restore_env = {**env, "MYSQL_HOST": "127.0.0.1", "MYSQL_PORT": str(db.port), "MYSQL_USER": db.user,
                   "MYSQL_PASSWORD": db.password, "MYSQL_DATABASE": f"{name}_restored",
                   "SEEK_IMAGE": "fairdom/seek:1.18.1", "RESTORE_ALLOW_SEEK_UPGRADE": "true", "TMPDIR": str(work)}
    # the two steps restore.yml runs, timed apart (where the time goes): fetch (download, ciphertext
    # sha256, decryption for the plaintext sha256, decryption onto the volume), then the Job's script
    fetch_out = work / f"fetch-{name}.out"
    t_fetch, rss_fetch, cpu_fetch = timed(
        [sys.executable, "-m", "seek_backup", "--config", str(cfg), "--quiet", "fetch", "--kind", "mysql",
         "--identity", str(work / "identity.txt"), "--dest", str(fetched)], env=env, stdout=fetch_out.open("w"))
    set_path = fetch_out.read_text().strip().splitlines()[-1]
    fetch_out.unlink()
    t_script, rss_script, cpu_script = timed(["bash", str(script)], env={**restore_env, "RESTORE_SET_DIR": set_path})
    t_restore, rss_restore, cpu_restore = t_fetch + t_script, max(rss_fetch, rss_script), cpu_fetch + cpu_script
    db.sql(f"DROP DATABASE IF EXISTS {name}_restored")
    shutil.rmtree(fetched, ignore_errors=True)
    res.update({"bare_restore_s": round(t_bare_restore, 2), "bare_restore_cpu_s": round(cpu_bare_restore, 2),
                "restore_fetch_s": round(t_fetch, 2), "restore_fetch_cpu_s": round(cpu_fetch, 2),
                "restore_script_s": round(t_script, 2), "restore_script_cpu_s": round(cpu_script, 2),
                "restore_cpu_s": round(cpu_restore, 2), "restore_s": round(t_restore, 2),
                "restore_ratio": round(t_restore / t_bare_restore, 3),
                "restore_peak_rss_mib": round(rss_restore, 1), "load_after": load()})
    shutil.rmtree(work / f"root-{name}", ignore_errors=True)
    return res


def restore_cmd(art: Path) -> str:
    """Shell command that writes the plain dump of ``art`` to stdout."""
    return f"{'zstd -dcq' if art.suffix == '.zst' else 'gzip -dc'} {art}"


TARGETS = {"dump_step_ratio": 1.15, "end_to_end_ratio": 1.4, "restore_ratio": 1.5}


def report(results: dict[str, Any]) -> str:
    """Markdown table of every figure against its target."""
    lines = [f"machine: {results['cpus']} CPUs ({results['cpu']}), load average at start {results['load_start']}, "
             f"at end {results['load_end']}", "",
             "| dump | rows | tables | bare mysqldump (CPU) | dump step (target ≤ 1.15), CPU | off-site start after the "
             "dump step's end | end to end (≤ 1.4) | bare `mysql <` | restore from the bucket (≤ 1.5) | peak RSS: dump "
             "step / uploader / restore (< 200 MiB) |", "|---|---|---|---|---|---|---|---|---|---|"]
    for size in results["sizes"]:
        r = results[size]
        runs = r["runs"]
        best = min(runs, key=lambda x: x["dump_step_ratio"])
        lines.append(
            f"| {r['dump_bytes'] / 1e9:.2f} GB | {sum(r['rows'].values()):,} | {r['shape']['tables']} | "
            f"{best['bare_s']} s ({best['bare_cpu_s']} s) | {' / '.join(str(x['dump_step_ratio']) for x in runs)} "
            f"({' / '.join(str(x['dump_step_s']) for x in runs)} s), CPU {best['dump_step_cpu_s']} s | "
            f"{' / '.join(str(x['offsite_start_after_dump_end_s']) for x in runs)} s | "
            f"{' / '.join(str(x['end_to_end_ratio']) for x in runs)} ({' / '.join(str(x['end_to_end_s']) for x in runs)} s) | "
            f"{r.get('bare_restore_s', '-')} s | {r.get('restore_ratio', 'not run')} ({r.get('restore_s', '-')} s) | "
            f"{max(x['peak_rss_mib']['dump_step'] for x in runs)} / {max(x['peak_rss_mib']['uploader'] for x in runs)} / "
            f"{r.get('restore_peak_rss_mib', '-')} MiB |")
    return "\n".join(lines)


def main() -> None:
    """Generate, measure every size, print the table and write results.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/seek-bench")
    ap.add_argument("--sizes", default="1.1", help="comma-separated GB of dump text, e.g. 1.1,4.1")
    ap.add_argument("--compression", default="zstd", choices=("zstd", "gzip"))
    ap.add_argument("--reps", type=int, default=2, help="back-to-back bare/pipeline pairs per size")
    ap.add_argument("--restore-sizes", default=None,
                    help="sizes whose restore is measured too (default: every size; '' for none)")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    db = MariaDB(work / "mariadb", extra_args=["--innodb-buffer-pool-size=2G", "--innodb-log-file-size=512M"])
    db.start()
    moto = Moto().start(work)
    sizes = [s.strip() for s in args.sizes.split(",") if s.strip()]
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.machine())
    results: dict[str, Any] = {"sizes": sizes, "cpus": os.cpu_count(), "cpu": cpu, "load_start": load(),
                               "mariadb": db.sql("SELECT VERSION()").strip()}
    try:
        from pyrage import x25519

        ident = x25519.Identity.generate()
        (work / "identity.txt").write_text(f"{ident}\n")
        (work / "identity.txt").chmod(0o600)
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "SEEK_BACKUP_", "AWS_", "BACKUP_"))}
        env = {**clean, "PYTHONPATH": str(ROOT / "tools")}
        for size in sizes:
            restore = args.restore_sizes is None or size in args.restore_sizes.split(",")
            results[size] = bench_size(db, moto, work, float(size), args.compression, args.reps, ident, env,
                                       restore)
            (work / "results.json").write_text(json.dumps(results, indent=2))
    finally:
        moto.stop()
        db.stop()
    results["load_end"] = load()
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print()
    print(report(results))


if __name__ == "__main__":
    main()
