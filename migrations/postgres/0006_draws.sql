-- Kindergarten-place draws (gongkai-draw/1 ceremonies): the draw, its applications
-- (children's identities sealed, never in clear), witnesses, and its audit trail.
-- 0005 is left for recordings.
CREATE TABLE draws (
    id                  TEXT    PRIMARY KEY,
    title               TEXT    NOT NULL,
    event_id            TEXT    REFERENCES events(id) ON DELETE SET NULL,
    state               TEXT    NOT NULL,
    -- The draft's settings as JSON (kindergartens, mechanism, multiples, witnesses,
    -- beacon source, application window, draw time).
    setup               TEXT    NOT NULL,
    -- Announcement rounds: a void draw is announced again with new commitments.
    round               BIGINT  NOT NULL DEFAULT 1,
    announcement        TEXT,
    announcement_hash   TEXT,
    organiser_key       TEXT,
    beacon_text         TEXT,
    transcript          TEXT,
    transcript_hash     TEXT,
    countersigned       TEXT,
    -- The public leaves (JSON array, ordered by app), fixed at the announcement.
    leaves              TEXT,
    -- How many play-out steps have been shown on the live event.
    played              BIGINT  NOT NULL DEFAULT 0,
    -- Which node plays the draw out, and when it last said so (a lease: another node
    -- takes over when it goes stale).
    playout_node        TEXT,
    playout_heartbeat   BIGINT,
    created_by          TEXT    NOT NULL,
    created_at          BIGINT  NOT NULL,
    updated_at          BIGINT  NOT NULL
);

CREATE TABLE draw_applications (
    draw_id    TEXT   NOT NULL REFERENCES draws(id) ON DELETE CASCADE,
    app        TEXT   NOT NULL,
    -- HMAC-SHA-256 of the child's ID number under the records key: finds an
    -- application by ID number without storing it.
    child_key  TEXT   NOT NULL,
    -- The child's ID number, name and salt, sealed (XChaCha20-Poly1305, records key).
    sealed     TEXT   NOT NULL,
    choices    TEXT   NOT NULL,
    grp        TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (draw_id, app),
    UNIQUE (draw_id, child_key)
);

CREATE TABLE draw_witnesses (
    draw_id     TEXT   NOT NULL REFERENCES draws(id) ON DELETE CASCADE,
    round       BIGINT NOT NULL,
    position    BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    role        TEXT   NOT NULL,
    commitment  TEXT,
    secret      TEXT,
    token_hash  TEXT,
    PRIMARY KEY (draw_id, round, position)
);

CREATE TABLE draw_audit (
    id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    draw_id  TEXT   NOT NULL REFERENCES draws(id) ON DELETE CASCADE,
    at       BIGINT NOT NULL,
    actor    TEXT   NOT NULL,
    action   TEXT   NOT NULL,
    detail   TEXT   NOT NULL
);
CREATE INDEX draw_audit_draw ON draw_audit(draw_id, id);
