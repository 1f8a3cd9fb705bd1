"""The Solr init step, run as rendered: configset copied from SEEK, core rebuilt on a change.

The script the StatefulSet's `configset` init container runs (roles/solr/files/solr-configset.sh)
is taken from the rendered manifest and run with bash against directories standing in for the
SEEK image's configset, the emptyDir and Solr's volume. The core directory is made the way the
stock image's precreate-core makes it (a copy of the whole configset directory), so the checksum
file it carries is the one the init step wrote.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.render.conftest import Rendered

CHECKSUM = "seek-k3s-configset.sha256"


def _script(rendered: Rendered) -> str:
    solr = rendered.get("StatefulSet", "solr")
    [init] = solr["spec"]["template"]["spec"]["initContainers"]
    assert init["command"][:2] == ["bash", "-ec"]
    return init["command"][2]


class Pod:
    """Directories of one Solr pod: SEEK's configset, the emptyDir and /var/solr."""

    def __init__(self, root: Path, script: str) -> None:
        self.source = root / "seek" / "solr" / "seek" / "conf"
        self.configset = root / "configset"
        self.core = root / "var-solr" / "data" / "seek"
        self.script = script
        self.source.mkdir(parents=True)
        (self.source / "lang").mkdir()
        (self.source / "solrconfig.xml").write_text("<config><luceneMatchVersion>7.1.0</luceneMatchVersion></config>\n")
        (self.source / "schema.xml").write_text("<schema name='seek'/>\n")
        (self.source / "lang" / "stopwords_en.txt").write_text("a\nan\n")
        self.core.parent.mkdir(parents=True)

    def start(self) -> subprocess.CompletedProcess:
        """Run the init step with a fresh emptyDir, as a new pod does."""
        shutil.rmtree(self.configset, ignore_errors=True)
        self.configset.mkdir()
        env = {"PATH": "/usr/bin:/bin", "CONFIGSET_SOURCE": str(self.source),
               "CONFIGSET_DIR": str(self.configset), "CHECKSUM_FILE": CHECKSUM,
               "CORE_DIR": str(self.core)}
        return subprocess.run(["bash", "-ec", self.script], env=env, capture_output=True,
                              text=True, timeout=60, check=False)

    def precreate(self) -> None:
        """What solr-precreate does when the core is missing: copy the configset directory."""
        if not self.core.is_dir():
            shutil.copytree(self.configset, self.core)
            (self.core / "core.properties").touch()
            (self.core / "data" / "index").mkdir(parents=True)
            (self.core / "data" / "index" / "segments_1").write_text("indexed documents")


@pytest.fixture
def pod(rendered: Rendered, tmp_path: Path) -> Pod:
    """A Solr pod's directories with the rendered init script."""
    return Pod(tmp_path, _script(rendered))


def test_first_start_copies_the_configset_with_its_checksum(pod: Pod) -> None:
    """The emptyDir gets conf/ (every file) and the checksum; no core is touched."""
    result = pod.start()
    assert result.returncode == 0, result.stderr
    assert (pod.configset / "conf" / "lang" / "stopwords_en.txt").read_text() == "a\nan\n"
    assert (pod.configset / "conf" / "solrconfig.xml").is_file()
    checksum = (pod.configset / CHECKSUM).read_text().strip()
    assert len(checksum) == 64 and int(checksum, 16) >= 0
    assert not pod.core.exists()


def test_same_configset_keeps_the_core_and_its_index(pod: Pod) -> None:
    """A restart with an unchanged configset keeps the index."""
    assert pod.start().returncode == 0
    pod.precreate()
    result = pod.start()
    assert result.returncode == 0, result.stderr
    assert (pod.core / "data" / "index" / "segments_1").read_text() == "indexed documents"
    assert "kept" in result.stdout


def test_changed_configset_removes_the_core(pod: Pod) -> None:
    """A new SEEK release with another schema: the core goes, precreate rebuilds it from the new conf."""
    assert pod.start().returncode == 0
    pod.precreate()
    old = (pod.core / CHECKSUM).read_text()
    (pod.source / "schema.xml").write_text("<schema name='seek' version='1.19'/>\n")
    result = pod.start()
    assert result.returncode == 0, result.stderr
    assert not pod.core.exists()
    assert "must reindex" in result.stdout
    pod.precreate()
    assert (pod.core / "conf" / "schema.xml").read_text() == "<schema name='seek' version='1.19'/>\n"
    assert (pod.core / CHECKSUM).read_text() != old


def test_a_new_file_in_the_configset_counts_as_a_change(pod: Pod) -> None:
    """Files added to the configset (not only edited ones) change the checksum."""
    assert pod.start().returncode == 0
    pod.precreate()
    (pod.source / "lang" / "stopwords_de.txt").write_text("der\n")
    assert pod.start().returncode == 0
    assert not pod.core.exists()


def test_core_from_the_old_seek_solr_image_is_rebuilt(pod: Pod) -> None:
    """A core without a checksum (built by fairdom/seek-solr before 1.18) is rebuilt once."""
    (pod.core / "conf").mkdir(parents=True)
    (pod.core / "core.properties").write_text("name=seek\n")
    result = pod.start()
    assert result.returncode == 0, result.stderr
    assert not pod.core.exists()
    assert "'unknown'" in result.stdout


def test_missing_configset_fails_and_keeps_the_core(pod: Pod) -> None:
    """A SEEK image without solr/seek/conf stops the pod before anything is removed."""
    assert pod.start().returncode == 0
    pod.precreate()
    shutil.rmtree(pod.source)
    result = pod.start()
    assert result.returncode != 0
    assert "solr_configset_source" in result.stderr
    assert (pod.core / "data" / "index" / "segments_1").is_file()
