"""Broker accounts from the registry, and password hashes Mosquitto's own tool agrees with."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pantau.broker.accounts import accounts_for
from pantau.broker.files import check_acl, check_passwd, write_files
from pantau.broker.passwords import WeakSecret, check_secret, hash_password, verify_password
from pantau.city import City
from pantau.topics import Topics


def test_hashes_are_mosquittos_own_format(tmp_path: Path) -> None:
    tool = shutil.which("mosquitto_passwd")
    assert tool is not None, "mosquitto_passwd comes with mosquitto (scripts/setup)"
    theirs = tmp_path / "passwd"
    theirs.touch()
    subprocess.run([tool, "-b", str(theirs), "alice", "s3cret-pw"], check=True)
    hashed = theirs.read_text().strip().split(":", 1)[1]
    assert verify_password("s3cret-pw", hashed)
    assert not verify_password("wrong", hashed)
    ours = hash_password("s3cret-pw")
    assert ours.startswith("$7$101$") and verify_password("s3cret-pw", ours)


def test_every_device_writes_only_its_own_topics_and_reads_nothing(city: City) -> None:
    topics = Topics("pantau")
    accounts = {a.username: a for a in accounts_for(city, topics)}
    for device_id in city.devices:
        a = accounts[device_id]
        assert a.reads == ()
        assert set(a.writes) == {topics.sensor_up(device_id), topics.device_status(device_id)}
    gateway = accounts["gw-karawaci"]
    karawaci = {d.id for d in city.devices.values() if d.kecamatan_id == "kec-karawaci"}
    assert {t.split("/")[2] for t in gateway.writes} == karawaci | {"gw-karawaci"}
    assert accounts["bpbd-barat-siang"].reads == (topics.crew_alerts("bpbd-barat-siang"),)
    assert not any(
        "#" in t or "+" in t
        for a in accounts.values()
        if a.role != "service"
        for t in (*a.reads, *a.writes)
    )


def test_generated_files_pass_their_own_checks(tmp_path: Path, city: City) -> None:
    accounts = accounts_for(city, Topics("pantau"))
    passwd, acl = write_files(tmp_path, accounts, "k" * 40)
    users = check_passwd(passwd)
    assert users == {a.username for a in accounts}
    check_acl(acl, users)
    assert passwd.stat().st_mode & 0o077 == 0  # hashes are not for everyone


@pytest.mark.parametrize("secret", ["short", "change-me-change-me-change-me-change-me", ""])
def test_weak_or_placeholder_secrets_are_refused(secret: str) -> None:
    with pytest.raises(WeakSecret):
        check_secret(secret)
