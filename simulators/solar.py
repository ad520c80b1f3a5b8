"""The sun over the park: position, clear-sky irradiance and the weather's share of it.

Solar position from the NOAA approximations (Spencer's Fourier series for declination and the
equation of time, J. W. Spencer, "Fourier series representation of the position of the sun",
Search 2(5), 1971), accurate to a few minutes of time, which is plenty for load shapes. Clear-sky
global horizontal irradiance from the Haurwitz model (GHI = 1098 cos z exp(-0.057 / cos z) W/m²,
B. Haurwitz, J. Meteorology 2, 1945). Quanzhou is at about 24.9° N, 118.6° E.
"""

from __future__ import annotations

import math

from simulators.noise import uniform

QUANZHOU_LATITUDE = 24.87
QUANZHOU_LONGITUDE = 118.68
STANDARD_IRRADIANCE_W_M2 = 1000.0  # STC: a panel rated 1 kWp gives 1 kW at this irradiance
_DAY_S = 86_400


def solar_elevation(ts: float, latitude: float, longitude: float) -> float:
    """Elevation of the sun above the horizon in degrees at POSIX time ``ts`` (UTC)."""
    days = ts / _DAY_S
    gamma = 2 * math.pi * ((days % 365.2422) / 365.2422)  # fractional year, radians
    declination = (
        0.006918
        - 0.399912 * math.cos(gamma)
        + 0.070257 * math.sin(gamma)
        - 0.006758 * math.cos(2 * gamma)
        + 0.000907 * math.sin(2 * gamma)
        - 0.002697 * math.cos(3 * gamma)
        + 0.00148 * math.sin(3 * gamma)
    )
    equation_of_time_min = 229.18 * (
        0.000075
        + 0.001868 * math.cos(gamma)
        - 0.032077 * math.sin(gamma)
        - 0.014615 * math.cos(2 * gamma)
        - 0.040849 * math.sin(2 * gamma)
    )
    utc_minutes = (ts % _DAY_S) / 60
    solar_minutes = utc_minutes + equation_of_time_min + 4 * longitude
    hour_angle = math.radians(solar_minutes / 4 - 180)
    lat = math.radians(latitude)
    cos_zenith = math.sin(lat) * math.sin(declination) + math.cos(lat) * math.cos(
        declination
    ) * math.cos(hour_angle)
    return math.degrees(math.asin(max(-1.0, min(1.0, cos_zenith))))


def clear_sky_ghi(elevation_deg: float) -> float:
    """Global horizontal irradiance under a clear sky, W/m² (Haurwitz)."""
    if elevation_deg <= 0:
        return 0.0
    cos_zenith = math.sin(math.radians(elevation_deg))
    return 1098.0 * cos_zenith * math.exp(-0.057 / cos_zenith)


def cloudiness(key: int, ts: float) -> float:
    """Share of clear-sky irradiance that gets through, 0.1 to 1.0.

    Each day draws a weather type (clear, broken cloud, overcast, rain; Quanzhou has about as
    many overcast as clear days), and each quarter hour a passing-cloud factor within it.
    """
    day = int(ts // _DAY_S)
    weather = uniform(key, day)
    if weather < 0.35:
        low, high = 0.85, 1.0  # clear
    elif weather < 0.7:
        low, high = 0.45, 1.0  # broken cloud
    elif weather < 0.9:
        low, high = 0.25, 0.55  # overcast
    else:
        low, high = 0.1, 0.3  # rain
    passing = uniform(key ^ 0x5A5A, int(ts // 900))
    return low + (high - low) * passing


def pv_fraction(key: int, ts: float, latitude: float, longitude: float) -> float:
    """AC output of a PV array as a fraction of its kWp (temperature and inverter losses 14%)."""
    ghi = clear_sky_ghi(solar_elevation(ts, latitude, longitude))
    if ghi == 0:
        return 0.0
    return 0.86 * ghi / STANDARD_IRRADIANCE_W_M2 * cloudiness(key, ts)
