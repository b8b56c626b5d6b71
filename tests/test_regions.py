"""GET /meta/regions: ISO regions with the currencies each accepts, from maintained data."""


def test_regions_list_iso_codes_with_default_currencies(client):
    response = client.get("/meta/regions")
    assert response.status_code == 200
    regions = {r["code"]: r for r in response.get_json()["regions"]}
    assert len(regions) > 200
    assert regions["US"] == {"code": "US", "name": "United States", "defaultCurrency": "USD", "currencies": ["USD"]}
    assert regions["DE"]["defaultCurrency"] == "EUR"
    assert set(regions["PA"]["currencies"]) == {"PAB", "USD"}
    assert "EU" not in regions and "XK" not in regions and "ZZ" not in regions
    assert all(r["defaultCurrency"] in r["currencies"] for r in regions.values())
