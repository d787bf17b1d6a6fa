"""Columns of the ECSV tables, declared as data: one Column per table
column, with its unit (an astropy unit string, or None) and a description,
both written into the ECSV header."""

from typing import NamedTuple


class Column(NamedTuple):
    name: str
    unit: str | None
    description: str


# What both night tables (frametable, nightlog) say of a raw file, declared once.
FILE = Column("file", None, "raw file, path relative to raw_dir")
TYPE = Column("type", None, "frame type from the header: bias, dark, flat or light")
FILTER = Column("filter", None, "filter from the header")
OBJECT = Column("object", None, "OBJECT from the header")
EXPOSURE = Column("exposure", "s", "exposure time from the header (NaN where unknown)")
DATE_OBS = Column("date_obs", None, "DATE-OBS as the camera wrote it (UTC)")
# When a frame was taken, as the night log and a stack's frames table say it.
MJD_AVG_TT = Column("mjd_avg_tt", "d", "mid-exposure on TT, modified Julian date")
BJD_TDB = Column("bjd_tdb", "d", "barycentric Julian date of mid-exposure on TDB (science frames)")
AIRMASS = Column("airmass", None, "sec(z) of the target at mid-exposure (science frames)")


def names(columns):
    """The column names, in order."""
    return tuple(column.name for column in columns)


def describe(table, columns):
    """Give each column of ``table`` its declared unit and description (in
    place; the values are untouched); returns the table."""
    for column in columns:
        table[column.name].unit = column.unit
        table[column.name].description = column.description
    return table
