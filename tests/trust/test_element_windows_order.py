"""A censored network's element windows must match its abundance labels by name and order."""

from __future__ import annotations

import pytest

from starlabels.errors import InputDataError
from starlabels.models.censored import check_element_labels

LABELS = ["TEFF", "LOGG", "FE_H", "MG_FE", "SI_FE", "CA_FE"]


def test_same_elements_in_the_same_order_pass():
    check_element_labels(["Mg", "Si", "Ca"], LABELS, 3)
    check_element_labels(["MG_FE", "[Si/Fe]", "ca_h"], LABELS, 3)


@pytest.mark.parametrize("elements", [["Si", "Mg", "Ca"], ["Mg", "Si"], ["Mg", "Si", "Ti"]])
def test_order_count_or_name_mismatch_is_an_error_naming_the_keys(elements):
    with pytest.raises(InputDataError, match=r"element_names.*label_names") as info:
        check_element_labels(elements, LABELS, 3)
    assert "MG_FE" in str(info.value) and str(elements) in str(info.value)
