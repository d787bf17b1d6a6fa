"""Table columns declared as data (ccdreduce.columns)."""

import numpy as np
from astropy.table import Table

from ccdreduce.columns import EXPOSURE, FILE, Column, describe, names


def test_columns_give_their_unit_and_description_to_a_table_and_keep_its_values(tmp_path):
    schema = (FILE, EXPOSURE, Column("fwhm", "pix", "median FWHM of the stars"))
    assert names(schema) == ("file", "exposure", "fwhm")
    table = Table({"file": ["a.fit", "b.fit"], "exposure": [30.0, 60.0], "fwhm": [2.5, 3.1]})
    assert describe(table, schema) is table
    assert str(table["fwhm"].unit) == "pix" and table["file"].unit is None
    assert table["exposure"].description == EXPOSURE.description
    table.write(tmp_path / "t.ecsv", format="ascii.ecsv")
    back = Table.read(tmp_path / "t.ecsv", format="ascii.ecsv")
    assert str(back["exposure"].unit) == "s" and back["fwhm"].description.startswith("median")
    np.testing.assert_array_equal(back["fwhm"], [2.5, 3.1])
