"""The supported regions (ISO 3166-1 alpha-2) and the ISO 4217 currencies each one accepts."""
from __future__ import annotations

from dataclasses import dataclass

import pycountry
from babel import Locale
from babel.numbers import get_territory_currencies

from gatehouse.errors import field_error


@dataclass(frozen=True)
class Region:
    code: str
    name: str
    default_currency: str
    currencies: tuple[str, ...]


def _load() -> dict[str, Region]:
    # pycountry supplies the ISO list (babel also knows non-ISO territories such as EU or XK);
    # babel supplies English names and each territory's legal-tender currencies, default first.
    names = Locale("en").territories
    regions = {}
    for country in pycountry.countries:
        code = country.alpha_2
        currencies = tuple(get_territory_currencies(code, tender=True))
        if currencies:
            regions[code] = Region(code, names.get(code, country.name), currencies[0], currencies)
    return dict(sorted(regions.items()))


REGIONS: dict[str, Region] = _load()


def resolve(region: str | None, currency: str | None, default_region: str) -> tuple[str, str]:
    """CONTRACT §3: a region alone takes its default currency; neither takes the service's default.

    A currency given without a region is checked against the service's default region.
    """
    code = (region or default_region).upper()
    found = REGIONS.get(code)
    if found is None:
        raise field_error("region", "is not a supported ISO 3166-1 alpha-2 region code")
    if currency is None:
        return code, found.default_currency
    if currency.upper() not in found.currencies:
        raise field_error("currency", f"is not accepted in region {code} (accepted: {', '.join(found.currencies)})")
    return code, currency.upper()
