-- 能耗双控 budgets: an entity's energy total and intensity allowed in a year, as assigned from
-- the level above. entity: 'district', 'park:<code>' or 'firm:<code>' (api/energy.py Entity).
CREATE TABLE zayton.energy_budgets (
    entity                  text NOT NULL CHECK (entity ~ '^(district|park:.+|firm:.+)$'),
    year                    integer NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    total_tce               numeric(14, 3) CHECK (total_tce > 0),
    tce_per_10k_value_added numeric(10, 5) CHECK (tce_per_10k_value_added > 0),
    basis                   text NOT NULL DEFAULT 'equivalent'
                            CHECK (basis IN ('equivalent', 'generation')),
    source                  text NOT NULL DEFAULT '',
    PRIMARY KEY (entity, year),
    CHECK (total_tce IS NOT NULL OR tce_per_10k_value_added IS NOT NULL)
);
