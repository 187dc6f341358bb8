"""Offline data layer: exogenous profiles on the slot grid, and user meter data.

Nothing here downloads anything; the data sets ship inside installed packages (DWD test
reference years in demandlib, US typical years and the Linke turbidity climatology in pvlib).
One module per concern, each a set of pure functions of the slot grid, arrays and a random
generator:

* `weather`: `load_weather`, `WEATHER_SOURCES`, `weather_site` (typical years, synthetic).
* `pv`: `pv_generation_kwh` (pvlib chain, PVWatts DC/AC).
* `demand`: `household_demand_kwh` (stochastic bottom-up household model).
* `ev`: `ev_mobility` (plugged-in status and trip energy).
* `shiftable`: `shiftable_jobs` (runs of shiftable appliances as EMS jobs).
* `meter`: `read_meter_data` (CSV/Parquet meter data onto the grid).
"""
