-- Secrets shared by every node of one deployment (e.g. the key that signs viewer
-- cookies), created on first use.
CREATE TABLE server_secrets (
    name       TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
