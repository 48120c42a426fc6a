"""The UTM standard: one form for every tag, from link creation to the warehouse.

A normal value is Latin lower case letters and digits, words joined by single
"_", at most MAX_VALUE_CHARS long; platform macros (``{keyword}``) are kept
verbatim in utm_content and utm_term. ``utm_campaign`` is made of the parts the
dictionary names (by default ``vertical_region_goal_yyyymm``). docs/utm.md
describes the standard and every finding code.

- ``normalise_touch_utm`` normalises what a visitor arrived with, for storage.
- ``validate_url`` lints one ad link; ``compose_link``/``build_link`` make one.
- ``load_dictionary`` reads a site's dictionary on top of the shipped one;
  ``SiteDictionaries`` reads the one a site keeps in Firestore.
- ``shared.utm.service`` is the ``utm_check`` HTTP API without HTTP.
"""

from __future__ import annotations

from shared.utm._dictionary import (
    DEFAULT_PATH,
    Dictionary,
    default_dictionary,
    extend_dictionary,
    load_dictionary,
)
from shared.utm._links import (
    REQUIRED_FIELDS,
    build_link,
    compose_link,
    normalise_url,
    validate_url,
)
from shared.utm._sites import (
    COLLECTION,
    SiteDictionaries,
    delete_site_dictionary,
    get_site_dictionary_text,
    parse_site_dictionary,
    put_site_dictionary,
)
from shared.utm._values import (
    ERROR,
    FIXED_BY_NORMALISING,
    MACRO_FIELDS,
    MAX_VALUE_CHARS,
    UTM_FIELDS,
    WARNING,
    Finding,
    check_values,
    conforms,
    normal_form,
    normalise_touch_utm,
)

__all__ = [
    "COLLECTION",
    "DEFAULT_PATH",
    "ERROR",
    "FIXED_BY_NORMALISING",
    "MACRO_FIELDS",
    "MAX_VALUE_CHARS",
    "REQUIRED_FIELDS",
    "UTM_FIELDS",
    "WARNING",
    "Dictionary",
    "Finding",
    "SiteDictionaries",
    "build_link",
    "check_values",
    "compose_link",
    "conforms",
    "default_dictionary",
    "delete_site_dictionary",
    "extend_dictionary",
    "get_site_dictionary_text",
    "load_dictionary",
    "normal_form",
    "normalise_touch_utm",
    "normalise_url",
    "parse_site_dictionary",
    "put_site_dictionary",
    "validate_url",
]
