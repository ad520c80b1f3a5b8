-- The metering hierarchy: park → firm → workshop → line → device, what each meter measures and
-- at which metering level, and the registry facts indicators need (sector, land, transformer,
-- projects with their gateways). Filled by a registry import (api/registry.py); traffic only
-- ever adds gateways, devices and points.

ALTER TABLE zayton.parks
    ADD COLUMN district text,
    ADD COLUMN area_km2 numeric(10, 3) CHECK (area_km2 > 0);

ALTER TABLE zayton.firms
    ADD COLUMN sector text,
    ADD COLUMN zone text,
    ADD COLUMN land_area_m2 numeric(14, 2) CHECK (land_area_m2 > 0),
    ADD COLUMN transformer_kva numeric(10, 1) CHECK (transformer_kva > 0),
    ADD COLUMN key_energy_unit boolean NOT NULL DEFAULT false;

-- A workshop and a line may share a name (a "sewing" line in the "sewing" workshop).
ALTER TABLE zayton.workshops DROP CONSTRAINT workshops_firm_id_name_key;
ALTER TABLE zayton.workshops ADD CONSTRAINT workshops_firm_kind_name UNIQUE (firm_id, kind, name);

-- What a device measures: the whole site (workshop_id and equipment_id NULL), a workshop or a
-- line (workshop_id), or one piece of equipment (equipment_id: a compressor, a boiler).
ALTER TABLE zayton.devices
    ADD COLUMN type text,
    ADD COLUMN serial bigint,
    ADD COLUMN equipment_id integer REFERENCES zayton.devices (id),
    ADD CONSTRAINT devices_not_own_equipment CHECK (equipment_id <> id);
CREATE INDEX devices_firm ON zayton.devices (firm_id);

-- Projects the plans count (5G+工业互联网, platforms, digital lines and workshops, energy
-- saving), with the gateways that carry them.
CREATE TABLE zayton.projects (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE,
    name        text NOT NULL,
    kind        text NOT NULL CHECK (kind IN ('5g_industrial_internet', 'industrial_internet_platform',
                                              'digital_line', 'digital_workshop', 'energy_saving')),
    firm_id     integer REFERENCES zayton.firms (id),
    park_id     integer REFERENCES zayton.parks (id),
    year        integer NOT NULL CHECK (year BETWEEN 2000 AND 2100),
    CHECK (firm_id IS NOT NULL OR park_id IS NOT NULL)
);
CREATE TABLE zayton.project_gateways (
    project_id  integer NOT NULL REFERENCES zayton.projects (id) ON DELETE CASCADE,
    gateway_id  integer NOT NULL REFERENCES zayton.gateways (id),
    PRIMARY KEY (project_id, gateway_id)
);
