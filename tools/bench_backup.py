"""Benchmark of the seek-k3s backup pipeline (not a timed test).

Generates a MariaDB database of at least ``--size-gb`` GB of dump text, then measures:

* bare ``mysqldump > /dev/null`` wall time (the baseline),
* the full pipeline: ``roles/backups/files/mysql-backup.sh`` (dump, compress, hash, row counts,
  manifest) followed by ``python -m seek_backup offsite`` (age encryption, multipart upload to
  moto, head_object verification),
* peak RSS of the uploader (``offsite``) at two sizes,
* restore time (``restore-mysql`` from the bucket into a fresh database).

Run: ``nice .venv/bin/python tools/bench_backup.py --workdir /var/tmp/seek-bench``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tools"), str(ROOT)]

from tests.backup.servers import MariaDB, Moto  # noqa: E402
from typing import Any  # noqa: E402

SCRIPT = ROOT / "roles" / "backups" / "files" / "mysql-backup.sh"
DB = "seekbench"
ROW_BYTES = 365  # measured dump bytes per generated asset row (MariaDB 10.11 mysqldump)


def log(msg: str) -> None:
    """Print a timestamped progress line."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def generate(db: MariaDB, name: str, size_gb: float) -> None:
    """Create ``name`` with SEEK-like tables until the dump is about ``size_gb`` GB."""
    have = db.sql(f"SELECT COUNT(*) FROM information_schema.tables WHERE table_schema='{name}'").strip()
    target_rows = int(size_gb * 1e9 / ROW_BYTES)
    if have != "0":
        rows = int(db.sql(f"SELECT COUNT(*) FROM `{name}`.assets").strip() or 0)
        if rows >= target_rows:
            log(f"database {name} already has {rows} asset rows")
            return
        db.sql(f"DROP DATABASE `{name}`")
    log(f"generating {target_rows} rows (~{size_gb} GB of dump) into {name}")
    db.sql(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    db.sql(
        """
        CREATE TABLE assets (
          id BIGINT NOT NULL AUTO_INCREMENT PRIMARY KEY,
          title VARCHAR(255) NOT NULL,
          description TEXT,
          uuid CHAR(36) NOT NULL,
          contributor_id INT NOT NULL,
          policy_id INT,
          version INT NOT NULL DEFAULT 1,
          created_at DATETIME NOT NULL,
          updated_at DATETIME NOT NULL,
          KEY (contributor_id)
        ) ENGINE=InnoDB;
        CREATE TABLE people (id INT PRIMARY KEY, first_name VARCHAR(64), last_name VARCHAR(64), email VARCHAR(128));
        CREATE TABLE sessions (id INT AUTO_INCREMENT PRIMARY KEY, session_id VARCHAR(255), data TEXT);
        CREATE TABLE empty_table (id INT PRIMARY KEY);
        """,
        name,
    )
    words = ("protein kinase assay growth curve strain sample model sbml copasi datafile investigation "
             "study yeast ecoli metabolism flux timecourse glucose replicate control").split()
    word_sql = "ELT(1 + FLOOR(RAND()*%d), %s)" % (len(words), ",".join(f"'{w}'" for w in words))
    batch = 200_000
    done = 0
    while done < target_rows:
        n = min(batch, target_rows - done)
        db.sql(
            f"""
            SET SESSION max_recursive_iterations = {n + 1};
            INSERT INTO assets (title, description, uuid, contributor_id, policy_id, version, created_at, updated_at)
            WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < {n})
            SELECT CONCAT({word_sql}, ' ', {word_sql}, ' ', i),
                   CONCAT_WS(' ', {word_sql}, {word_sql}, MD5(RAND()), {word_sql}, 'It''s a \\"quoted\\" (text),(with) commas', {word_sql},
                             SHA2(RAND(), 256), {word_sql}, {word_sql}, MD5(RAND()), REPEAT({word_sql}, 3)),
                   UUID(), FLOOR(RAND()*5000), IF(RAND() < 0.1, NULL, FLOOR(RAND()*100000)), 1 + FLOOR(RAND()*5),
                   NOW() - INTERVAL FLOOR(RAND()*1000) DAY, NOW()
            FROM seq;
            """,
            name,
        )
        done += n
        log(f"  {done}/{target_rows} rows")
    db.sql(
        """
        SET SESSION max_recursive_iterations = 10000;
        INSERT INTO people
        WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 5000)
        SELECT i, CONCAT('First', i), CONCAT('Last', i), CONCAT('person', i, '@example.org') FROM seq;
        INSERT INTO sessions (session_id, data) VALUES ('abc', 'secret session data');
        """,
        name,
    )


def timed(cmd: list[str], env: dict[str, str] | None = None, stdout: Any = subprocess.DEVNULL,
          shell: bool = False) -> tuple[float, float, float]:
    """Run ``cmd``; return (wall seconds, peak RSS in MiB, CPU seconds of it and its children)."""
    start = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=stdout, stderr=subprocess.PIPE, shell=shell)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{cmd if shell else ' '.join(cmd[:3])} failed ({code}):\n{err}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def restore_cmd(art: Path) -> str:
    """Shell command that writes the plain dump of ``art`` to stdout."""
    return f"{'zstd -dcq' if art.suffix == '.zst' else 'gzip -dc'} {art}"


def main() -> None:
    """Generate, measure, print a table and write results.json."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workdir", default="/var/tmp/seek-bench")
    ap.add_argument("--size-gb", type=float, default=1.1)
    ap.add_argument("--small-fraction", type=float, default=0.1, help="second size for the RSS check")
    ap.add_argument("--compressions", default="gzip,zstd")
    args = ap.parse_args()
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    db = MariaDB(work / "mariadb", extra_args=["--innodb-buffer-pool-size=2G", "--innodb-log-file-size=512M"])
    db.start()
    moto = Moto().start(work)
    results: dict[str, Any] = {"size_gb_target": args.size_gb}
    try:
        generate(db, DB, args.size_gb)
        small = f"{DB}_small"
        small_rows = int(int(db.sql(f"SELECT COUNT(*) FROM `{DB}`.assets").strip()) * args.small_fraction)
        db.sql(f"DROP DATABASE IF EXISTS `{small}`; CREATE DATABASE `{small}`;"
               f"CREATE TABLE `{small}`.assets LIKE `{DB}`.assets;"
               f"INSERT INTO `{small}`.assets SELECT * FROM `{DB}`.assets LIMIT {small_rows};")
        import boto3
        from pyrage import x25519

        s3 = boto3.client("s3", endpoint_url=moto.endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                          region_name="us-east-1")
        s3.create_bucket(Bucket="bench")
        ident = x25519.Identity.generate()
        (work / "identity.txt").write_text(f"{ident}\n")
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("MYSQL", "SEEK_BACKUP_", "AWS_"))}
        env = {**clean, "PYTHONPATH": str(ROOT / "tools")}
        dump_env = {**env, **db.env(DB)}
        flags = ["--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
                 "--default-character-set=utf8mb4", "--no-tablespaces"]
        base = ["mysqldump", "--no-defaults", "-h127.0.0.1", f"-P{db.port}", f"-u{db.user}", f"-p{db.password}",
                *flags, DB]
        log("baseline: warm-up mysqldump > /dev/null")
        timed(base)
        dump_bytes = int(subprocess.run(f"{' '.join(base)} | wc -c", shell=True, capture_output=True,
                                        text=True, check=True).stdout)
        results["dump_bytes"] = dump_bytes
        runs = [timed(base) for _ in range(2)]
        baseline = min(r[0] for r in runs)
        results["baseline_mysqldump_s"] = round(baseline, 2)
        results["baseline_mysqldump_cpu_s"] = round(min(r[2] for r in runs), 2)
        log(f"baseline: {baseline:.1f}s for {dump_bytes / 1e9:.2f} GB of dump")

        def config(root: Path, prefix: str) -> Path:
            cfg = work / f"config-{prefix}.json"
            cfg.write_text(json.dumps({"root": str(root), "bucket": "bench", "prefix": prefix,
                                       "endpoint_url": moto.endpoint, "access_key_id": "bench",
                                       "secret_access_key": "bench", "addressing_style": "path",
                                       "recipients": [str(ident.to_public())], "identity_file": str(work / "identity.txt"),
                                       "mysql_socket": str(db.socket), "mysql_user": "root"}))
            cfg.chmod(0o600)
            return cfg

        for comp in args.compressions.split(","):
            root = work / f"root-{comp}"
            shutil.rmtree(root, ignore_errors=True)
            cfg = config(root, comp)
            log(f"pipeline ({comp}): mysql-backup.sh")
            t_dump, _, cpu_dump = timed(["bash", str(SCRIPT)], env={**dump_env, "BACKUP_ROOT": str(root),
                                                          "BACKUP_COMPRESSION": comp})
            log(f"pipeline ({comp}): offsite (encrypt, multipart upload, head_object verify)")
            t_off, rss_big, cpu_off = timed([sys.executable, "-m", "seek_backup", "--config", str(cfg), "offsite", "--no-prune"],
                                   env=env)
            art = next(root.glob("mysql/*/mysql.sql.*"))
            entry = {"dump_script_s": round(t_dump, 2), "offsite_s": round(t_off, 2),
                     "pipeline_s": round(t_dump + t_off, 2), "ratio": round((t_dump + t_off) / baseline, 2),
                     "artifact_bytes": art.stat().st_size, "uploader_peak_rss_mib_big": round(rss_big, 1),
                     "dump_script_cpu_s": round(cpu_dump, 2), "offsite_cpu_s": round(cpu_off, 2)}
            log(f"  {entry}")
            # second, smaller size for the memory check
            root_s = work / f"root-{comp}-small"
            shutil.rmtree(root_s, ignore_errors=True)
            cfg_s = config(root_s, f"{comp}-small")
            timed(["bash", str(SCRIPT)], env={**env, **db.env(small), "BACKUP_ROOT": str(root_s),
                                              "BACKUP_COMPRESSION": comp})
            _, rss_small, _ = timed([sys.executable, "-m", "seek_backup", "--config", str(cfg_s), "offsite", "--no-prune"],
                                 env=env)
            entry["artifact_bytes_small"] = next(root_s.glob("mysql/*/mysql.sql.*")).stat().st_size
            entry["uploader_peak_rss_mib_small"] = round(rss_small, 1)
            log(f"restore ({comp}): restore-mysql from the bucket into a fresh database")
            t_restore, rss_restore, _ = timed([sys.executable, "-m", "seek_backup", "--config", str(cfg), "restore-mysql",
                                            "--database", "seekbench_restored"], env=env)
            entry["restore_s"] = round(t_restore, 2)
            entry["restore_peak_rss_mib"] = round(rss_restore, 1)
            db.sql("DROP DATABASE IF EXISTS seekbench_restored")
            if comp == args.compressions.split(",")[0]:
                log(f"bare restore ({comp}): decompress the local file straight into mysql")
                db.sql("CREATE DATABASE seekbench_bare")
                bare = (f"{restore_cmd(art)} | mysql --no-defaults --socket={db.socket} -uroot "
                        "--max-allowed-packet=1G seekbench_bare")
                entry["bare_restore_s"] = round(timed(bare, env=env, shell=True)[0], 2)
                db.sql("DROP DATABASE IF EXISTS seekbench_bare")
            results[comp] = entry
            log(f"  {entry}")
    finally:
        moto.stop()
        db.stop()
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    print("\n| compression | dump script (CPU) | offsite (CPU) | pipeline / bare mysqldump | artifact | "
          "uploader peak RSS (small / big artifact) | restore from bucket |")
    print("|---|---|---|---|---|---|---|")
    for comp in args.compressions.split(","):
        e = results[comp]
        print(f"| {comp} | {e['dump_script_s']} s ({e['dump_script_cpu_s']} s) | {e['offsite_s']} s "
              f"({e['offsite_cpu_s']} s) | {e['ratio']} | {e['artifact_bytes'] / 1e6:.0f} MB | "
              f"{e['uploader_peak_rss_mib_small']} MiB ({e['artifact_bytes_small'] / 1e6:.0f} MB) / "
              f"{e['uploader_peak_rss_mib_big']} MiB ({e['artifact_bytes'] / 1e6:.0f} MB) | {e['restore_s']} s"
              + (f" (bare `{comp} -d | mysql`: {e['bare_restore_s']} s)" if "bare_restore_s" in e else "") + " |")
    print(f"\nbare mysqldump > /dev/null: {results['baseline_mysqldump_s']} s "
          f"(CPU {results['baseline_mysqldump_cpu_s']} s) for {results['dump_bytes'] / 1e9:.2f} GB")


if __name__ == "__main__":
    main()
