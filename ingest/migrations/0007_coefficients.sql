-- Coefficients as versioned data (api/coefficients.py): conversion to standard coal and CO2
-- emission factors, each with its source and the day it applies from. Scope: national (no region,
-- no firm), a region, or one firm (a firm's code, e.g. its measured gas heating value).
CREATE TABLE zayton.coefficients (
    kind        text NOT NULL CHECK (kind IN ('conversion', 'emission')),
    carrier     text NOT NULL,
    basis       text CHECK (basis IN ('equivalent', 'generation')),
    region      text,
    firm        text,
    valid_from  date NOT NULL,
    value       double precision NOT NULL CHECK (value >= 0),
    unit        text NOT NULL,
    source      text NOT NULL CHECK (source <> ''),
    note        text NOT NULL DEFAULT '',
    placeholder boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX coefficients_key ON zayton.coefficients
    (kind, carrier, coalesce(basis, ''), coalesce(region, ''), coalesce(firm, ''), valid_from);
