"""Online monitoring of key energy-using units (重点用能单位能耗在线监测).

Indicator sets of 16-digit data items for 15-minute, daily and monthly periods, built from the
rollups and kept in a local outbox, delivered over HTTPS to every data centre until each
acknowledges, in a format chosen per unit from plug-ins; and the completeness and consistency
figures the platforms check. docs/monitoring.md describes it all.

Modules: ``codes`` (data-item codes), ``periods``, ``items`` (units and their data items),
``build``, ``formats`` (the plug-in interface), ``reference`` (Zayton's JSON format),
``plugins`` (the registry), ``outbox``, ``upload``, ``reports``, ``service`` (the periodic job)
and ``config`` (its TOML file).
"""
