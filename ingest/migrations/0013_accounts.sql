-- Accounts of the API: who may see what. role district sees every firm, park the firms of its
-- park, firm itself; editor accounts may also write business data and budgets in that scope.
CREATE TABLE zayton.accounts (
    id              integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    username        text NOT NULL UNIQUE CHECK (username ~ '^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$'),
    password_hash   text,
    role            text NOT NULL CHECK (role IN ('district', 'park', 'firm')),
    park_id         integer REFERENCES zayton.parks (id),
    firm_id         integer REFERENCES zayton.firms (id),
    editor          boolean NOT NULL DEFAULT false,
    active          boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK ((role = 'district' AND park_id IS NULL AND firm_id IS NULL)
        OR (role = 'park' AND park_id IS NOT NULL AND firm_id IS NULL)
        OR (role = 'firm' AND firm_id IS NOT NULL AND park_id IS NULL))
);

-- API keys for machines: the key is shown once; only its SHA-256 is kept.
CREATE TABLE zayton.api_keys (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id  integer NOT NULL REFERENCES zayton.accounts (id) ON DELETE CASCADE,
    name        text NOT NULL,
    digest      bytea NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);

-- The key that signs access tokens: made by the first API process (from the operating system's
-- random source), shared by every process on the same database.
CREATE TABLE zayton.api_secret (
    only_one    boolean PRIMARY KEY DEFAULT true CHECK (only_one),
    secret      bytea NOT NULL CHECK (length(secret) >= 32)
);
