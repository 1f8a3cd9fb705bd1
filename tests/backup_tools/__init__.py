"""Tests of the backup tooling against real servers (MariaDB, etcd, moto)."""
