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
