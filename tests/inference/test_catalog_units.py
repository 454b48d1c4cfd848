"""A catalog unit's key names its parts files and seeds it: stable across versions and processes."""

from __future__ import annotations

import hashlib
import json
import pickle
from dataclasses import asdict

from starlabels.inference.catalog_inputs import InputItem, Unit


def test_unit_key_is_the_sha1_of_its_items_as_sorted_json():
    items = (InputItem("spectra", "/data/apStar-dr17-2M00000002+7417074.fits"),
             InputItem("hdf5", "/data/rows.h5", 1024, 2048))
    unit = Unit(3, items)
    # the formula parts folders were named with so far: every field of every item, by asdict
    want = hashlib.sha1(json.dumps([asdict(i) for i in items], sort_keys=True).encode()).hexdigest()[:12]
    assert unit.key == want and unit.name == f"unit-000003-{want}"
    assert Unit(3, items[::-1]).key != want  # the order of the items matters
    assert unit.seed(0) == int(hashlib.sha1(f"0:{want}".encode()).hexdigest()[:15], 16)


def test_unit_key_survives_pickling_to_a_reading_process():
    unit = Unit(0, (InputItem("spectra", "a.fits"),))
    key = unit.key
    again = pickle.loads(pickle.dumps(unit))
    assert again == unit and again.key == key


def test_an_items_record_is_its_asdict_and_the_done_marker_lists_them(tmp_path):
    from starlabels.inference.catalog_parts import write_unit

    items = (InputItem("spectra", "/data/apStar-dr17-2M00000002+7417074.fits"),
             InputItem("hdf5", "/data/rows.h5", 1024, 2048))
    for item in items:
        assert item.record() == asdict(item)
    unit = Unit(5, items)
    assert write_unit(tmp_path, unit, None, [("x.fits", "unreadable")]) == 0
    marker = json.loads((tmp_path / f"{unit.name}.json").read_text())
    assert marker == {"rows": 0, "skipped": [["x.fits", "unreadable"]], "items": [asdict(i) for i in items]}
